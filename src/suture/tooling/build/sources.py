"""Turn what the user gave ``suture build`` into a directory of source files.

``suture build OLD NEW`` accepts, for each side, one of:

* a source root directory (holds top-level modules and packages, like ``src/``
  or ``site-packages``);
* a wheel (``.whl``);
* an sdist (``.tar.gz``, ``.tgz``, ``.tar.bz2``, ``.tar.xz``, ``.tar``, ``.zip``);
* a pinned distribution spec ``name==version``, downloaded with pip.

:func:`materialize` returns a :class:`SourceTree` whose ``root`` is a directory
that could go on ``sys.path`` as is. Directories are used in place; archives are
unpacked into a cache and never touched again.

Cache layout (under :func:`default_cache_dir`, or ``cache_dir=``)::

    sources-v1/wheel/<sha256 of the .whl>/{info.json, root/}
    sources-v1/sdist-2/<sha256 of the archive>/{info.json, root/}   (sdist/: older rules)
    sources-v1/download/<name>-<version>-<hash of the pip options>/<the file pip saved>
    sources-v1/tmp/            staging; an entry appears only by an atomic rename

Invariants:

* An entry directory exists only when it is complete: everything is written in
  ``tmp/`` and renamed into place. So "the entry exists" is the cache hit test,
  and a hit never re-extracts or calls pip. Entries are keyed by content (the
  archive's sha256), so a hit is always the same bytes.
* ``root/`` of an sdist entry holds only the importable parts. We *move* them out
  of the unpacked sdist into a clean directory instead of returning the sdist
  folder plus an exclude set: then ``root`` means the same thing for every kind,
  can go on ``PYTHONPATH`` for differential runs, and ``setup.py`` or ``tests/``
  can never be imported by accident. What was kept and dropped is recorded in
  ``info.json``.
* A wheel's ``<name>.data/purelib/`` and ``platlib/`` contents are installed at
  the top of ``root/``, as an installer would; its other ``.data`` parts
  (scripts, headers, data) are not importable and are left out.

Unpacking is done member by member rather than with ``tarfile.extractall``, so
the result is the same on every Python we support, whether or not its tarfile
has extraction filters (3.12, and backports in late 3.9-3.11 patch releases).
Every member is checked before anything is written and all unsafe members are
reported at once: absolute names, ``..`` components, backslashes, device files
and FIFOs, and links whose target leaves the archive. Links that stay inside are
written as copies of the file they point to, so no link is ever created on disk
and no later member can be written through one. Links to directories or to
missing members are skipped, logged, and listed in ``info.json``.

Downloading an sdist (only when no wheel exists for the pin) makes pip run the
project's build backend to read its metadata, i.e. code from the sdist runs on
this machine. Prefer wheels. When neither works (an old release with no wheel for
this Python and a build that fails today), the wheel built for another supported
Python is taken: its Python sources are the release's.

An sdist's packages are found at its top, in ``src/``, or (when the top holds no
package) in ``lib3/``, ``lib/``, ``python3/`` or ``python/``, preferring a folder
whose files parse on this Python (PyYAML 5.3 ships a Python 2 copy in ``lib/``).

Size: about 1,000 lines, over the ~500-line rule of thumb: one module per input kind
(directory, wheel, sdist, pip) would be the natural split, but the archive safety checks
above are shared by all of them and must stay in one reviewed place. Issue 14 only moved
this file.
"""

from __future__ import annotations

import ast
import email.parser
import functools
import hashlib
import json
import keyword
import logging
import os
import posixpath
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Dict, FrozenSet, Iterator, List, Optional, Sequence, Tuple

from ...runtime.errors import SutureError

try:
    from packaging.utils import (
        InvalidSdistFilename,
        InvalidWheelFilename,
        canonicalize_name,
        parse_sdist_filename,
        parse_wheel_filename,
    )
except ImportError:  # pragma: no cover - packaging is a declared dependency
    _HAVE_PACKAGING = False
else:
    _HAVE_PACKAGING = True

__all__ = [
    # what to build from
    "SourceTree",
    "materialize",
    "default_cache_dir",
    "Progress",
    # errors, by remedy
    "SourceError",
    "SourceNotFound",
    "UnknownSourceKind",
    "UnsafeArchive",
    "DownloadFailed",
]

_log = logging.getLogger(__name__)

Progress = Optional[Callable[[str], None]]
"""Told, in a few words, each slow step before it starts (``suture build`` prints them
on stderr when that is a terminal): a download or an unpacking can take seconds, and
silence looks like a hang."""


def _say(progress: Progress, message: str) -> None:
    if progress is not None:
        progress(message)

_CACHE_LAYOUT = "sources-v1"
_INFO_FORMAT = 1
# Where extracted archives live; sdists moved when the source-root rules changed (lib3/),
# so entries extracted under the old rules are not reused (downloads still are).
_EXTRACTED = {"wheel": "wheel", "sdist": "sdist-2"}
_WHEEL_SUFFIX = ".whl"
_TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar")
_SDIST_SUFFIXES = _TAR_SUFFIXES + (".zip",)
# Files at the top of a root that count although they are not .py modules.
_TOP_LEVEL_BINARY_SUFFIXES = (".so", ".pyd", ".pyi")
_BYTECODE_SUFFIXES = (".pyc", ".pyo")
_METADATA_DIR_SUFFIXES = (".dist-info", ".egg-info")

# Top-level names of a flat-layout sdist that are project tooling, not the
# distribution's code. Deliberately not applied to src/ layouts or to
# directories the user passes: there every top-level package is meant.
_FLAT_EXCLUDED_DIRS = frozenset({
    "bench", "benchmark", "benchmarks", "build", "ci", "demo", "demos", "dist",
    "doc", "docs", "example", "examples", "notebooks", "sample", "samples",
    "scripts", "src", "test", "testing", "tests", "tools", "tutorial", "tutorials",
})
_FLAT_EXCLUDED_MODULES = frozenset({
    "conftest", "distribute_setup", "dodo", "ez_setup", "fabfile", "noxfile",
    "runtests", "setup", "tasks", "versioneer",
})

_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
_PINNED_SPEC = re.compile(
    r"^\s*(?P<name>" + _NAME + r")\s*==\s*(?P<version>[A-Za-z0-9][A-Za-z0-9.+!_-]*)\s*$"
)
_REQUIREMENT_LIKE = re.compile(
    r"^\s*" + _NAME + r"\s*(?:\[[^\]]*\]\s*)?(?:===|==|~=|!=|<=|>=|<|>|@|;)"
)
_LINK_HOPS = 40
_STDERR_TAIL_LINES = 12


# --------------------------------------------------------------------------- errors


class SourceError(SutureError):
    """An input to ``suture build`` cannot be turned into a source tree."""

    code = "SUT-E500"


class SourceNotFound(SourceError):
    """The path does not exist (and is not a pinned ``name==version`` spec)."""

    code = "SUT-E501"


class UnknownSourceKind(SourceError, ValueError):
    """The input exists but is not a directory, wheel, sdist or pinned spec."""

    code = "SUT-E502"


class UnsafeArchive(SourceError, ValueError):
    """The archive has members that would land outside the extraction directory."""

    code = "SUT-E503"


class DownloadFailed(SourceError):
    """pip could not download the pinned distribution."""

    code = "SUT-E504"


# ----------------------------------------------------------------------- the tree


def _is_identifier(name: str) -> bool:
    return name.isidentifier() and not keyword.iskeyword(name)


@dataclass(frozen=True)
class SourceTree:
    """A directory of top-level modules and packages, and where it came from."""

    root: Path
    """Directory holding top-level modules and packages."""
    name: Optional[str]
    """Distribution name, from METADATA / PKG-INFO, else the file name, else the spec."""
    version: Optional[str]
    kind: str
    """``"dir"``, ``"wheel"``, ``"sdist"`` or ``"spec"``."""
    origin: str
    """Exactly what the user passed."""
    sha256: Optional[str] = field(default=None, compare=False)
    """sha256 of the wheel or sdist file the tree was unpacked from; None for a dir."""

    def modules(self) -> Dict[str, Path]:
        """Import name -> ``.py`` file, for every importable module under ``root``.

        ``pkg/__init__.py`` is ``pkg``, ``pkg/sub/m.py`` is ``pkg.sub.m``. Paths
        whose parts are not identifiers (``*.dist-info``, ``my-data/``), and
        ``__pycache__``, are not importable and are skipped. When both
        ``pkg.py`` and ``pkg/__init__.py`` exist, the package wins, as in
        ``importlib``'s FileFinder.
        """
        modules, _ = self._classify()
        return modules

    def other_files(self) -> Dict[str, Path]:
        """Relative posix path -> file, for everything else that ships with the code.

        That is every file inside a top-level package that :meth:`modules` does
        not list (extension modules, ``.pyi`` stubs, data, templates, and ``.py``
        files in non-importable directories), plus extension modules and stubs
        at the top of ``root``. Bytecode, ``__pycache__`` and ``*.dist-info`` /
        ``*.egg-info`` directories are skipped.
        """
        _, others = self._classify()
        return others

    def _classify(self) -> Tuple[Dict[str, Path], Dict[str, Path]]:
        modules: Dict[str, Tuple[str, Path]] = {}  # import name -> (relative path, file)
        others: Dict[str, Path] = {}
        for parts, path in _walk_files(self.root):
            rel = "/".join(parts)
            module = _module_name(parts[:-1], parts[-1])
            if module is not None:
                shadowed = modules.get(module)
                if shadowed is None or parts[-1] == "__init__.py":
                    modules[module] = (rel, path)
                else:
                    shadowed = (rel, path)
                if shadowed is not None:
                    # Never importable: the package of the same name wins.
                    others[shadowed[0]] = shadowed[1]
            elif parts[-1].endswith(_BYTECODE_SUFFIXES):
                continue
            elif len(parts) > 1 or (
                parts[-1].endswith(_TOP_LEVEL_BINARY_SUFFIXES)
                and _is_identifier(parts[-1].split(".", 1)[0])
            ):
                others[rel] = path
        return (
            {name: path for name, (_, path) in sorted(modules.items())},
            dict(sorted(others.items())),
        )


def _module_name(dirs: Tuple[str, ...], filename: str) -> Optional[str]:
    if not filename.endswith(".py"):
        return None
    if not all(_is_identifier(part) for part in dirs):
        return None
    stem = filename[: -len(".py")]
    if stem == "__init__":
        return ".".join(dirs) if dirs else None
    if not _is_identifier(stem):
        return None
    return ".".join(dirs + (stem,))


def _walk_files(root: Path) -> Iterator[Tuple[Tuple[str, ...], Path]]:
    """Yield (relative parts, path) for files in top-level packages and at the top.

    Only directories named like a top-level package are entered, so a
    ``site-packages`` root does not drag in ``bin/`` or ``share/``; below that,
    everything but ``__pycache__`` and metadata directories is walked, in a
    stable order. Directory symlinks are not followed.
    """
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root).parts
        dirnames[:] = sorted(
            d for d in dirnames
            if d != "__pycache__"
            and not d.endswith(_METADATA_DIR_SUFFIXES)
            and (rel or _is_identifier(d))
        )
        for filename in sorted(filenames):
            yield rel + (filename,), Path(dirpath, filename)


# --------------------------------------------------------------------- entry point


def default_cache_dir() -> Path:
    """``$SUTURE_CACHE_DIR``, else ``$XDG_CACHE_HOME/suture``, else ``~/.cache/suture``.

    A relative ``XDG_CACHE_HOME`` is ignored, as the XDG spec requires.
    """
    explicit = os.environ.get("SUTURE_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "suture"
    return Path.home() / ".cache" / "suture"


def materialize(
    spec: str,
    *,
    cache_dir: Optional[Path] = None,
    find_links: Sequence[str] = (),
    index_url: Optional[str] = None,
    no_index: bool = False,
    progress: Progress = None,
) -> SourceTree:
    """Return the source tree for a directory, wheel, sdist or ``name==version``.

    An existing path always wins over reading ``spec`` as a distribution pin.
    ``find_links``, ``index_url`` and ``no_index`` are passed to pip and are
    part of the download cache key; pip's own configuration (``pip.conf``,
    ``PIP_*``) still applies.
    """
    if not spec.strip():
        raise UnknownSourceKind(
            "Cannot build from '': pass a source directory, a wheel, an sdist or "
            "'name==version'.",
            details={"spec": spec},
        )
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = Path(spec).expanduser()
    if path.is_dir():
        return _from_directory(spec, path)
    if path.is_file():
        archive_kind = _archive_kind(path)
        if archive_kind is None:
            raise UnknownSourceKind(
                f"Cannot build from {spec!r}: {path.resolve()} is a file but not a "
                f"wheel (.whl) or an sdist ({', '.join(_SDIST_SUFFIXES)}). "
                "Pass a source directory, a wheel, an sdist or 'name==version'.",
                details={"spec": spec, "path": str(path.resolve())},
            )
        return _from_archive(path, archive_kind, kind=archive_kind, origin=spec, cache=cache,
                             progress=progress)
    if path.exists():
        raise UnknownSourceKind(
            f"Cannot build from {spec!r}: {path.resolve()} is neither a directory "
            "nor a regular file.",
            details={"spec": spec, "path": str(path.resolve())},
        )
    pinned = _PINNED_SPEC.match(spec)
    if pinned is not None:
        return _from_spec(
            spec, pinned.group("name"), pinned.group("version"), cache=cache,
            find_links=find_links, index_url=index_url, no_index=no_index, progress=progress,
        )
    if _REQUIREMENT_LIKE.match(spec):
        raise UnknownSourceKind(
            f"Cannot build from {spec!r}: a distribution spec must pin one exact "
            "version, like 'urllib3==1.26.18' (no ranges, wildcards, extras or markers).",
            details={"spec": spec},
        )
    hint = ""
    if "/" not in spec and os.sep not in spec and _archive_kind(path) is None:
        hint = f" To download a release instead, pin it: '{spec}==<version>'."
    raise SourceNotFound(
        f"Cannot build from {spec!r}: {path.absolute()} does not exist.{hint}",
        details={"spec": spec, "path": str(path.absolute())},
    )


def _archive_kind(path: Path) -> Optional[str]:
    name = path.name.lower()
    if name.endswith(_WHEEL_SUFFIX):
        return "wheel"
    if name.endswith(_SDIST_SUFFIXES):
        return "sdist"
    return None


def _from_directory(spec: str, path: Path) -> SourceTree:
    root = path.resolve()
    if (root / "__init__.py").is_file():
        raise UnknownSourceKind(
            f"Cannot build from {spec!r}: {root} holds __init__.py, so it is a package, "
            f"not a source root. Pass the directory that contains it: {root.parent}",
            details={"spec": spec, "path": str(root)},
        )
    return SourceTree(root=root, name=None, version=None, kind="dir", origin=spec)


# ------------------------------------------------------------------------ archives


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _from_archive(
    path: Path,
    archive_kind: str,
    *,
    kind: str,
    origin: str,
    cache: Path,
    fallback_name: Optional[str] = None,
    fallback_version: Optional[str] = None,
    progress: Progress = None,
) -> SourceTree:
    digest = _sha256_file(path)
    entry = cache / _CACHE_LAYOUT / _EXTRACTED[archive_kind] / digest
    if entry.is_dir():
        _log.debug("cache hit for %s: %s", path, entry)
        info = _read_info(entry)
    else:
        _say(progress, f"unpacking {path.name} into the cache {cache}")
        info = _build_entry(path, archive_kind, entry, cache)
    return SourceTree(
        root=entry / "root",
        name=info.get("name") or fallback_name,
        version=info.get("version") or fallback_version,
        kind=kind,
        origin=origin,
        sha256=digest,
    )


def _read_info(entry: Path) -> Dict[str, Any]:
    info_path = entry / "info.json"
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _damaged_cache(entry, f"cannot read info.json: {exc}") from exc
    if not isinstance(info, dict) or info.get("format") != _INFO_FORMAT:
        raise _damaged_cache(entry, "info.json has an unknown format")
    if not (entry / "root").is_dir():
        raise _damaged_cache(entry, "root/ is missing")
    return info


def _damaged_cache(entry: Path, problem: str) -> SourceError:
    return SourceError(
        f"Cache entry {entry} is damaged ({problem}). Nothing was built from it. "
        f"Delete it and retry: rm -rf {shlex.quote(str(entry))}",
        details={"path": str(entry), "problem": problem},
    )


def _staging_dir(cache: Path, prefix: str) -> Path:
    parent = cache / _CACHE_LAYOUT / "tmp"
    try:
        parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=prefix + "-", dir=parent))
    except OSError as exc:
        raise SourceError(
            f"Cannot write to the cache at {cache}: {exc}. Nothing was built. Pass "
            "another directory (cache_dir=, or set SUTURE_CACHE_DIR) or fix its permissions.",
            details={"cache": str(cache)},
        ) from exc


def _publish(staging: Path, entry: Path) -> None:
    """Rename a finished staging directory into place; a concurrent winner is fine."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(staging, entry)
    except OSError:
        if not entry.is_dir():
            raise
        # Another process published the same content-addressed entry first.
        shutil.rmtree(staging, ignore_errors=True)


def _build_entry(path: Path, archive_kind: str, entry: Path, cache: Path) -> Dict[str, Any]:
    staging = _staging_dir(cache, entry.name[:12])
    try:
        tree = staging / "tree"
        tree.mkdir()
        skipped_links = _extract(path, archive_kind, tree)
        if archive_kind == "wheel":
            info = _finish_wheel(path, tree, staging / "root")
        else:
            info = _finish_sdist(path, tree, staging / "root")
        info["skipped_links"] = skipped_links
        info["archive"] = path.name
        (staging / "info.json").write_text(
            json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        _publish(staging, entry)
    except OSError as exc:
        raise SourceError(
            f"Cannot unpack {path} into the cache at {cache}: {exc}. Nothing was cached.",
            details={"path": str(path), "cache": str(cache)},
        ) from exc
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return info


@dataclass(frozen=True)
class _Member:
    raw_name: str
    name: str  # normalized relative posix path; "" for the archive root itself
    type: str  # "file" | "dir" | "link" | "special"
    link_target: Optional[str]  # as stored in the archive
    link_resolved: Optional[str]  # normalized path relative to the archive root
    open: Optional[Callable[[], IO[bytes]]]


def _normalize(raw: str) -> str:
    return "/".join(part for part in raw.split("/") if part not in ("", "."))


# One check, one message each; None means the member passed.


def _check_name(member: _Member) -> Optional[str]:
    raw = member.raw_name
    if "\x00" in raw:
        return "has a NUL byte in its name"
    if raw.startswith("/") or re.match(r"^[A-Za-z]:", raw):
        return "is an absolute path"
    if "\\" in raw:
        return "has a backslash in its name"
    if ".." in raw.split("/"):
        return "has a '..' component"
    return None


def _check_type(member: _Member) -> Optional[str]:
    if member.type == "special":
        return "is a device file or FIFO"
    return None


def _check_link(member: _Member) -> Optional[str]:
    if member.type != "link":
        return None
    target = member.link_target or ""
    if target.startswith("/") or re.match(r"^[A-Za-z]:", target):
        return f"is a link to the absolute path {target!r}"
    resolved = member.link_resolved or ""
    if resolved == ".." or resolved.startswith("../"):
        return f"is a link to {target!r}, outside the archive"
    return None


_MEMBER_CHECKS = (_check_name, _check_type, _check_link)


def _link_member(raw: str, target: str, *, relative_to_member: bool,
                 opener: Optional[Callable[[], IO[bytes]]] = None) -> _Member:
    base = posixpath.dirname(_normalize(raw)) if relative_to_member else ""
    resolved = posixpath.normpath(posixpath.join(base, target)) if target else "."
    return _Member(raw, _normalize(raw), "link", target, resolved, opener)


def _open_tar_member(archive: tarfile.TarFile, info: tarfile.TarInfo) -> IO[bytes]:
    stream = archive.extractfile(info)
    assert stream is not None, "regular tar members always have data"
    return stream


def _tar_members(archive: tarfile.TarFile) -> List[_Member]:
    members = []
    for info in archive.getmembers():
        if info.isreg():
            opener = functools.partial(_open_tar_member, archive, info)
            members.append(_Member(info.name, _normalize(info.name), "file", None, None, opener))
        elif info.isdir():
            members.append(_Member(info.name, _normalize(info.name), "dir", None, None, None))
        elif info.issym():
            members.append(_link_member(info.name, info.linkname, relative_to_member=True))
        elif info.islnk():
            members.append(_link_member(info.name, info.linkname, relative_to_member=False))
        else:
            members.append(_Member(info.name, _normalize(info.name), "special", None, None, None))
    return members


def _zip_members(archive: zipfile.ZipFile) -> List[_Member]:
    members = []
    for info in archive.infolist():
        mode = info.external_attr >> 16
        if info.is_dir():
            members.append(_Member(info.filename, _normalize(info.filename), "dir", None, None, None))
        elif stat.S_ISLNK(mode):
            target = archive.read(info).decode("utf-8", errors="replace")
            members.append(_link_member(info.filename, target, relative_to_member=True))
        else:
            opener = functools.partial(archive.open, info)
            members.append(_Member(info.filename, _normalize(info.filename), "file", None, None, opener))
    return members


def _preflight(path: Path, members: Sequence[_Member]) -> None:
    problems = [
        (member.raw_name, problem)
        for member in members
        for check in _MEMBER_CHECKS
        for problem in [check(member)]
        if problem is not None
    ]
    if not problems:
        return
    listed = "; ".join(f"{name!r} {problem}" for name, problem in problems[:5])
    more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
    count = "1 unsafe member" if len(problems) == 1 else f"{len(problems)} unsafe members"
    raise UnsafeArchive(
        f"Refused to unpack {path}: {count}: {listed}{more}. Nothing was extracted. "
        "Get the archive from a trusted source, or unpack and check it yourself and "
        "pass the directory.",
        details={"path": str(path), "members": [list(p) for p in problems]},
    )


def _wheel_destination(name: str) -> Optional[str]:
    """Where a wheel member is installed relative to site-packages, or None."""
    first, _, rest = name.partition("/")
    if not first.endswith(".data"):
        return name
    scheme, _, inner = rest.partition("/")
    if scheme in ("purelib", "platlib") and inner:
        return inner
    return None


def _resolve_link(member: _Member, by_name: Dict[str, _Member]) -> Optional[_Member]:
    """The file member a link ends at, following links inside the archive, or None."""
    current: Optional[_Member] = member
    for _ in range(_LINK_HOPS):
        assert current is not None
        current = by_name.get(current.link_resolved or "")
        if current is None or current.type != "link":
            break
    if current is None or current.type != "file":
        return None  # a directory, a missing member, or a cycle
    return current


def _extract(path: Path, archive_kind: str, tree: Path) -> List[str]:
    """Write the archive's files under ``tree``; return the links that were skipped."""
    skipped: List[str] = []
    try:
        if path.name.lower().endswith(_TAR_SUFFIXES):
            with tarfile.open(path, "r:*") as tar:
                _write_members(path, archive_kind, _tar_members(tar), tree, skipped)
        else:
            with zipfile.ZipFile(path) as zf:
                _write_members(path, archive_kind, _zip_members(zf), tree, skipped)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise SourceError(
            f"Cannot read {path} as a {archive_kind}: {exc}. Check that the download "
            "is complete and that the file is what its name says.",
            details={"path": str(path), "kind": archive_kind},
        ) from exc
    return skipped


def _write_members(path: Path, archive_kind: str, members: List[_Member],
                   tree: Path, skipped: List[str]) -> None:
    _preflight(path, members)
    by_name = {member.name: member for member in members}
    for member in members:
        if not member.name:
            continue
        destination = _wheel_destination(member.name) if archive_kind == "wheel" else member.name
        if destination is None:
            continue  # a wheel's scripts, headers or data: not importable
        target = tree.joinpath(*destination.split("/"))
        if member.type == "dir":
            target.mkdir(parents=True, exist_ok=True)
            continue
        source = member
        if member.type == "link":
            resolved = _resolve_link(member, by_name)
            if resolved is None:
                _log.warning(
                    "%s: skipped link %r -> %r (points to a directory or a missing member)",
                    path, member.raw_name, member.link_target,
                )
                skipped.append(member.name)
                continue
            source = resolved
        assert source.open is not None, "file members always carry an opener"
        target.parent.mkdir(parents=True, exist_ok=True)
        stream = source.open()
        with stream, target.open("wb") as out:
            shutil.copyfileobj(stream, out)


# ------------------------------------------------------------------ wheel / sdist


def _read_metadata(path: Path) -> Tuple[Optional[str], Optional[str]]:
    """(Name, Version) from a METADATA or PKG-INFO file."""
    text = path.read_text(encoding="utf-8", errors="replace")
    headers = email.parser.HeaderParser().parsestr(text)
    name = headers.get("Name")
    version = headers.get("Version")
    return (name.strip() if name else None, version.strip() if version else None)


def _canonical(name: str) -> str:
    if _HAVE_PACKAGING:
        return str(canonicalize_name(name))
    return re.sub(r"[-_.]+", "-", name).lower()  # pragma: no cover


def _name_from_filename(path: Path, archive_kind: str) -> Tuple[Optional[str], Optional[str]]:
    """(name, version) from a wheel or sdist file name, or (None, None)."""
    filename = path.name
    if _HAVE_PACKAGING:
        try:
            if archive_kind == "wheel":
                wheel_name, wheel_version, _, _ = parse_wheel_filename(filename)
                return str(wheel_name), str(wheel_version)
            if filename.lower().endswith((".tar.gz", ".zip")):
                sdist_name, sdist_version = parse_sdist_filename(filename)
                return str(sdist_name), str(sdist_version)
        except (InvalidWheelFilename, InvalidSdistFilename):
            return None, None
    # Without packaging, or for the tar suffixes it does not accept: the
    # version is what follows the last '-' of the stem.
    lower = filename.lower()
    suffix = next(s for s in (_WHEEL_SUFFIX,) + _SDIST_SUFFIXES if lower.endswith(s))
    stem = filename[: -len(suffix)]
    if archive_kind == "wheel":
        parts = stem.split("-")
        return (_canonical(parts[0]), parts[1]) if len(parts) >= 5 else (None, None)
    name, dash, version = stem.rpartition("-")
    return (_canonical(name), version) if dash and name and version else (None, None)


def _finish_wheel(path: Path, tree: Path, root: Path) -> Dict[str, Any]:
    tree.rename(root)
    file_name, file_version = _name_from_filename(path, "wheel")
    candidates = sorted(root.glob("*.dist-info/METADATA"))
    if len(candidates) > 1 and file_name is not None:
        candidates = [
            c for c in candidates
            if _canonical(c.parent.name[: -len(".dist-info")].split("-")[0]) == file_name
        ]
    name, version = _read_metadata(candidates[0]) if len(candidates) == 1 else (None, None)
    return {
        "format": _INFO_FORMAT,
        "name": name or file_name,
        "version": version or file_version,
        "layout": "wheel",
        "kept": sorted(p.name for p in root.iterdir()),
        "dropped": [],
    }


def _holds_python(directory: Path) -> bool:
    """True if some .py/.pyi file lies under ``directory`` on an importable path."""
    for parts, _ in _walk_files(directory):
        if parts[-1].endswith((".py", ".pyi")) and all(_is_identifier(p) for p in parts[:-1]):
            return True
    return False


def _importable_entry(entry: Path) -> bool:
    name = entry.name
    if entry.is_dir():
        return _is_identifier(name) and _holds_python(entry)
    if name.endswith(".py"):
        return _is_identifier(name[: -len(".py")])
    return name.endswith(_TOP_LEVEL_BINARY_SUFFIXES) and _is_identifier(name.split(".", 1)[0])


def _sdist_top(tree: Path) -> Path:
    """The sdist's single top folder (``name-version/``), else the archive root."""
    entries = list(tree.iterdir())
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return tree


# Folders that setup.py's ``package_dir`` commonly points at instead of ``src``; not
# packages themselves (no ``__init__.py``). PyYAML 5.3 keeps ``lib/yaml`` (Python 2) and
# ``lib3/yaml`` (Python 3).
_SOURCE_ROOTS = ("src", "lib3", "lib", "python3", "python")


def _parses(directory: Path) -> bool:
    """Does every .py file under ``directory`` parse as this Python's syntax?"""
    for py in directory.rglob("*.py"):
        try:
            ast.parse(py.read_bytes())
        except (SyntaxError, ValueError):
            return False
    return True


def _source_root(top: Path) -> Optional[Path]:
    """The folder holding the packages when it is not the sdist's top folder: the first
    of ``_SOURCE_ROOTS`` that is not a package and holds Python, preferring one whose
    files parse here (a Python 2 copy beside a Python 3 one does not)."""
    candidates = [top / name for name in _SOURCE_ROOTS
                  if (top / name).is_dir() and not (top / name / "__init__.py").exists()
                  and _holds_python(top / name)]
    flat = [e for e in top.iterdir() if _importable_entry(e) and e.name not in _SOURCE_ROOTS
            and e.name not in _FLAT_EXCLUDED_DIRS
            and not (e.suffix == ".py" and e.stem in _FLAT_EXCLUDED_MODULES)]
    if flat:   # the top folder has packages of its own: only ``src/`` overrides that
        candidates = [d for d in candidates if d.name == "src"]
    return next((d for d in candidates if _parses(d)), candidates[0] if candidates else None)


def _finish_sdist(path: Path, tree: Path, root: Path) -> Dict[str, Any]:
    top = _sdist_top(tree)
    src = _source_root(top)
    if src is not None:
        layout, base = src.name, src
        excluded_dirs: FrozenSet[str] = frozenset()
        excluded_modules: FrozenSet[str] = frozenset()
    else:
        layout, base = "flat", top
        excluded_dirs, excluded_modules = _FLAT_EXCLUDED_DIRS, _FLAT_EXCLUDED_MODULES
    kept: List[str] = []
    dropped: List[str] = []
    root.mkdir()
    for entry in sorted(base.iterdir()):
        excluded = (
            entry.name in excluded_dirs if entry.is_dir()
            else entry.suffix == ".py" and entry.stem in excluded_modules
        )
        if _importable_entry(entry) and not excluded:
            entry.rename(root / entry.name)
            kept.append(entry.name)
        else:
            dropped.append(entry.name)
    if not kept:
        raise SourceError(
            f"Found no importable modules in the sdist {path}: looked in "
            f"{layout + '/' if layout != 'flat' else 'its top folder'} and dropped "
            f"{', '.join(dropped) or 'nothing'}. Unpack it and pass the directory "
            "that holds the packages.",
            details={"path": str(path), "layout": layout, "dropped": dropped},
        )
    file_name, file_version = _name_from_filename(path, "sdist")
    pkg_info = top / "PKG-INFO"
    name, version = _read_metadata(pkg_info) if pkg_info.is_file() else (None, None)
    shutil.rmtree(tree)
    _log.debug("%s: %s layout, kept %s, dropped %s", path, layout, kept, dropped)
    return {
        "format": _INFO_FORMAT,
        "name": name or file_name,
        "version": version or file_version,
        "layout": layout,
        "kept": kept,
        "dropped": dropped,
    }


# -------------------------------------------------------------------------- pip


def _from_spec(
    spec: str,
    name: str,
    version: str,
    *,
    cache: Path,
    find_links: Sequence[str],
    index_url: Optional[str],
    no_index: bool,
    progress: Progress = None,
) -> SourceTree:
    links = [str(Path(link).resolve()) if Path(link).exists() else link for link in find_links]
    options = {"find_links": links, "index_url": index_url, "no_index": no_index}
    key = hashlib.sha256(json.dumps(options, sort_keys=True).encode("utf-8")).hexdigest()[:16]
    safe_version = re.sub(r"[^A-Za-z0-9._+!-]", "_", version)
    download = cache / _CACHE_LAYOUT / "download" / f"{_canonical(name)}-{safe_version}-{key}"
    requirement = f"{name}=={version}"
    if download.is_dir():
        _log.debug("cache hit for %s: %s", requirement, download)
        _say(progress, f"{requirement}: already downloaded, in the cache {cache}")
        archive = _single_archive(download)
        if archive is None:
            raise _damaged_cache(download, "it does not hold exactly one wheel or sdist")
    else:
        _say(progress, f"downloading {requirement} with pip into the cache {cache}")
        archive = _download(requirement, download, cache, links, index_url, no_index,
                            progress)
    archive_kind = _archive_kind(archive)
    assert archive_kind is not None, "_single_archive only returns wheels and sdists"
    return _from_archive(
        archive, archive_kind, kind="spec", origin=spec, cache=cache,
        fallback_name=name, fallback_version=version, progress=progress,
    )


def _single_archive(directory: Path) -> Optional[Path]:
    files = [p for p in directory.iterdir() if p.is_file()]
    if len(files) == 1 and _archive_kind(files[0]) is not None:
        return files[0]
    return None


_OTHER_PYTHONS = ("3.13", "3.12", "3.11", "3.10", "3.9")


def _pip_command(requirement: str, dest: Path, find_links: Sequence[str],
                 index_url: Optional[str], no_index: bool, binary_only: bool,
                 python: Optional[str] = None, verbose: bool = False) -> List[str]:
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-input",
        "--disable-pip-version-check", "--progress-bar", "off", "--dest", str(dest),
    ]
    if verbose:  # pip logs each index's project page it could not find (_unknown_project)
        command.append("-vv")
    if binary_only:
        command.append("--only-binary=:all:")
    if python:
        command += ["--python-version", python]
    if no_index:
        command.append("--no-index")
    if index_url is not None:
        command += ["--index-url", index_url]
    for link in find_links:
        command += ["--find-links", link]
    command.append(requirement)
    return command


def _run_pip(command: List[str]) -> Tuple[int, str, str]:
    """pip's exit status, stderr and stdout (where ``-vv`` logs go)."""
    try:
        done = subprocess.run(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            encoding="utf-8", errors="replace", check=False,
        )
    except OSError as exc:
        return -1, f"could not start {command[0]}: {exc}", ""
    return done.returncode, done.stderr, done.stdout


_NO_VERSIONS = re.compile(r"Could not find a version that satisfies the requirement "
                          r"\S+ \(from versions: none\)")
_INDEXES = re.compile(r"^Looking in indexes: (.+)$", re.MULTILINE)
_LINKS = re.compile(r"^Looking in links: (.+)$", re.MULTILINE)


def _unknown_project(name: str, log: str) -> Optional[List[str]]:
    """The places pip looked in, when its ``-vv`` log shows that none of them knows the
    project ``name`` at all; None when it may exist or this cannot be told.

    A typo in the name otherwise costs seven pip runs (wheel, sdist, then the wheels of
    five other Pythons), each asking every index again: 15-25 s of silence. The other
    Pythons' wheels come from the same project pages, so when every index answered that it
    has no page for the project (HTTP 404, or a ``file:`` index with no such directory)
    and pip found no file of it at all, they cannot help. Anything else (an index that
    failed another way, a ``--find-links`` that is not a local directory, a local file of
    that name) keeps the slow path: a fallback skipped wrongly would refuse a release
    that can be built."""
    if not _NO_VERSIONS.search(log):
        return None
    project = _canonical(name)
    found = _INDEXES.search(log)
    if found:
        indexes = [u.strip() for u in found.group(1).split(",")]
    elif "Ignoring indexes:" in log:  # --no-index
        indexes = []
    else:  # pip names its indexes only when they are not just PyPI
        indexes = ["https://pypi.org/simple"]
    for index in indexes:
        page = index.rstrip("/") + "/" + project + "/"
        missing = (f"Could not fetch URL {page}: 404 ", f"Location '{page}' is ignored: it is "
                   f"neither a file nor a directory")
        if not any(m in log for m in missing):
            return None
    links_line = _LINKS.search(log)
    links = [u.strip() for u in links_line.group(1).split(",")] if links_line else []
    for link in links:
        directory = Path(link[len("file://"):] if link.startswith("file://") else link)
        if not directory.is_dir():
            return None
        for entry in directory.iterdir():
            stem = re.split(r"-\d", entry.name, maxsplit=1)[0]
            if _canonical(stem) == project:
                return None
    return indexes + links


def _refuse_unknown_project(requirement: str, log: str) -> None:
    name = requirement.split("==", 1)[0]
    places = _unknown_project(name, log)
    if places is None:
        return
    raise SourceNotFound(
        f"Cannot build from {requirement!r}: {name} was not found on the index: no "
        f"release of that name in {', '.join(places)}. Check the spelling of the "
        f"distribution's name (as on PyPI), or pass --index-url/--find-links where it is. "
        f"Nothing was cached.",
        details={"requirement": requirement, "name": name, "looked_in": places},
    )


def _tail(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return "\n".join(lines[-_STDERR_TAIL_LINES:])


def _download(requirement: str, download: Path, cache: Path, find_links: Sequence[str],
              index_url: Optional[str], no_index: bool, progress: Progress = None) -> Path:
    staging = _staging_dir(cache, "download")
    try:
        dest = staging / "wheel"
        command = _pip_command(requirement, dest, find_links, index_url, no_index, True)
        returncode, stderr, _ = _run_pip(command)
        if returncode != 0:
            # Same requirement, any format: pip still prefers a wheel, so this
            # only differs when no wheel fits and pip takes the sdist.
            last = _tail(stderr).splitlines()[-1:]
            _log.info("no wheel for %s (pip: %s); falling back to an sdist",
                      requirement, last[0] if last else "no message")
            _say(progress, f"no wheel of {requirement} for this Python; trying its sdist")
            dest = staging / "any"
            command = _pip_command(requirement, dest, find_links, index_url, no_index, False,
                                   verbose=True)
            returncode, stderr, stdout = _run_pip(command)
            if returncode != 0:
                _refuse_unknown_project(requirement, stdout + "\n" + stderr)
        # Neither a wheel for this Python nor an sdist pip can prepare (old releases whose
        # build no longer runs): a wheel built for another supported Python holds the same
        # Python sources (PyYAML 5.4 has cp36-cp39 wheels only). Its native files are
        # that Python's, and the builder reports them as such.
        here = f"{sys.version_info.major}.{sys.version_info.minor}"
        for other in [v for v in _OTHER_PYTHONS if v != here] if returncode != 0 else []:
            _say(progress, f"no sdist of {requirement} that builds here; trying the wheel "
                           f"for Python {other}")
            attempt_dest = staging / f"py{other}"
            attempt = _pip_command(requirement, attempt_dest, find_links, index_url,
                                   no_index, True, python=other)
            code, err, _ = _run_pip(attempt)
            if code == 0:
                _log.info("took the Python %s wheel of %s for its sources", other, requirement)
                returncode, stderr, command, dest = code, err, attempt, attempt_dest
                break
        if returncode != 0:
            by_hand = [arg if arg != str(dest) else "." for arg in command]
            raise DownloadFailed(
                f"pip could not download {requirement} (tried a wheel, an sdist, then the "
                "wheels of other Python versions); "
                f"exit status {returncode}. Last lines of pip's stderr:\n{_tail(stderr)}\n"
                f"Nothing was cached. Retry by hand to see everything: {shlex.join(by_hand)}",
                details={"requirement": requirement, "returncode": returncode,
                         "stderr_tail": _tail(stderr), "command": command},
            )
        archive = _single_archive(dest) if dest.is_dir() else None
        if archive is None:
            found = sorted(p.name for p in dest.iterdir()) if dest.is_dir() else []
            raise DownloadFailed(
                f"pip reported success for {requirement} but saved {found or 'nothing'} "
                "instead of exactly one wheel or sdist. Nothing was cached. "
                f"Command: {shlex.join(command)}",
                details={"requirement": requirement, "files": found, "command": command},
            )
        _publish(dest, download)
    except OSError as exc:
        raise SourceError(
            f"Cannot store the download of {requirement} in the cache at {cache}: {exc}. "
            "Nothing was cached.",
            details={"requirement": requirement, "cache": str(cache)},
        ) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return download / archive.name
