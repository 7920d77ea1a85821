"""Make the directory that ``suture run`` puts first on PYTHONPATH.

The target may run in a foreign environment (the user's venv) where Suture is
not installed, and must not see Suture's tooling or its dependencies there. So
PYTHONPATH gets one directory holding only:

    sitecustomize.py      starts the agent, then chains to the user's sitecustomize
    attach.py             what ``suture attach`` runs in the target (see that file)
    suture/__init__.py    the version, and nothing else
    suture/runtime/...    a copy of this runtime (stdlib only)

It is built under the user's runtime directory (0700, ours; see
``_agent.socket_dir``), never in the application's working directory, in a
subdirectory named by a hash of its content: built once, atomically (write to
a temporary name, then rename), shared by every process of this user, and
immutable afterwards. A copy rather than a symlink: uninstalling or upgrading
Suture must not change what a running target imports next.

Importing this package does nothing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from typing import Dict, List, Optional, Tuple

from .. import _agent

__all__ = ["prepare", "bundle", "publish"]

_HERE = os.path.dirname(os.path.abspath(__file__))
_RUNTIME = os.path.dirname(_HERE)

_PACKAGE_INIT = '''\
"""Suture runtime only (copied by ``suture run``); the tooling is not here.

If a full Suture is installed further down sys.path, its subpackages are
reachable through __path__: what pkgutil.extend_path does, written out here
because this runs in every process and pkgutil's imports cost about 1 MiB.
"""

import os as _os
import sys as _sys


def _extend_path(path, name):
    path = list(path)
    for entry in _sys.path:
        if not isinstance(entry, str):
            continue
        try:
            finder = _sys.path_importer_cache[entry]
        except KeyError:
            finder = None
            for hook in _sys.path_hooks:
                try:
                    finder = hook(entry)
                except ImportError:
                    continue
                _sys.path_importer_cache.setdefault(entry, finder)
                break
        spec = finder.find_spec(name) if hasattr(finder, "find_spec") else None
        for portion in (spec.submodule_search_locations or []) if spec is not None else []:
            if portion not in path:
                path.append(portion)
        pkgfile = _os.path.join(entry, name + ".pkg")
        if _os.path.isfile(pkgfile):
            try:
                with open(pkgfile) as f:
                    lines = [line.rstrip("\\n") for line in f]
            except OSError:
                continue
            path += [line for line in lines if line and not line.startswith("#")]
    return path


__path__ = _extend_path(__path__, __name__)
__version__ = {version!r}
del _extend_path, _os, _sys
'''


def _runtime_files() -> List[Tuple[str, str]]:
    """(path relative to suture/runtime, absolute path) of every .py file, sorted."""
    out = []
    for root, dirs, files in os.walk(_RUNTIME):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                full = os.path.join(root, name)
                out.append((os.path.relpath(full, _RUNTIME), full))
    return out


def _version() -> str:
    return str(getattr(sys.modules.get("suture"), "__version__", "unknown"))


def bundle() -> Tuple[str, Dict[str, bytes]]:
    """(directory name, {relative path: content}) of the bootstrap directory.

    Read once, into memory, so that a process that has dropped to another user's
    identity (``suture attach`` as root) can publish it without reading our files.
    The name is ``<version>-<hash of everything>``.
    """
    init = _PACKAGE_INIT.format(version=_version()).encode("utf-8")
    files: Dict[str, bytes] = {}
    for rel, full in _runtime_files():
        with open(full, "rb") as f:
            files[os.path.join("suture", "runtime", rel)] = f.read()
    files[os.path.join("suture", "__init__.py")] = init
    for name in ("sitecustomize.py", "attach.py"):
        with open(os.path.join(_HERE, name), "rb") as f:
            files[name] = f.read()
    digest = hashlib.sha256()
    for rel in sorted(files):
        data = files[rel]
        digest.update(rel.encode("utf-8") + b"\0" + str(len(data)).encode() + b"\0" + data)
    return f"{_version()}-{digest.hexdigest()[:16]}", files


def publish(base: str, content: Tuple[str, Dict[str, bytes]]) -> str:
    """Write ``content`` (from ``bundle()``) under ``base`` once; return its directory.

    Atomic: written to a temporary name, then renamed. A directory that is already
    there is used as is (same name, same content).
    """
    name, files = content
    target = os.path.join(base, name)
    if os.path.isfile(os.path.join(target, "sitecustomize.py")):
        return target
    os.makedirs(base, mode=0o700, exist_ok=True)
    staging = os.path.join(base, f".tmp-{os.getpid()}-{os.urandom(4).hex()}")
    try:
        for rel, data in sorted(files.items()):
            dest = os.path.join(staging, rel)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "wb") as f:
                f.write(data)
        try:
            os.rename(staging, target)
        except OSError:
            if not os.path.isfile(os.path.join(target, "sitecustomize.py")):
                raise
            # another process published the same content first: use theirs
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def prepare(base: Optional[str] = None) -> str:
    """Return a directory to put first on PYTHONPATH (built if missing). Stdlib only.

    ``base`` defaults to ``<runtime dir>/bootstrap``; raises ``AgentStartError``
    if the runtime directory is unsafe (same rules as the agent's).
    """
    if base is None:
        base = os.path.join(_agent.ensure_dir(_agent.socket_dir()), "bootstrap")
    return publish(base, bundle())
