"""What code a process runs: the distributions of its loaded modules, checked against disk.

The agent's ``inventory`` op (docs/protocol.md). For every module in ``sys.modules`` that
has a file, it finds the distribution whose ``RECORD`` lists that file (a ``*.dist-info``
directory in the import root the module was loaded from) and reports, per distribution,
its name and version and, per loaded module, whether the file still is what was loaded:

* ``changed on disk since import``: the file's size or mtime differs from what they were
  when the agent first saw the module (at agent start for the modules already imported
  then, else at the first ``inventory``): an upgrade under a running process. The version
  that process runs is then the one first seen (``version``), not the disk's
  (``version_on_disk``); if the file had already changed when it was first attributed to
  a release, that release may not be the one loaded: ``version_uncertain``.
* ``differs from RECORD``: the file's sha256 is not the one the distribution's RECORD
  lists (edited in place, or another release's file).
* ``missing on disk``: the file was deleted.

Standard library only, and bounded: hashes are cached by (mtime, size), so a second call
hashes only files that changed; one call hashes at most ``MAX_BYTES`` and no file over
``MAX_FILE`` (those are counted ``unchecked``). Files imported after the agent started
and changed before the first ``inventory`` cannot be told from unchanged ones: nothing
recorded what they were.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:   # not at run time: typing costs an idle agent 1.6 MiB (issue 19)
    from typing import Any, Dict, List, Optional, Tuple

MAX_BYTES = 64 * 1024 * 1024   # bytes hashed per call, at most
MAX_FILE = 8 * 1024 * 1024     # larger files are not hashed
MAX_LISTED = 20                # changed modules listed per distribution (all are counted)

_seen: Dict[str, Tuple[int, int]] = {}            # file -> (mtime_ns, size) when first seen
_hashes: Dict[str, Tuple[int, int, str]] = {}     # file -> (mtime_ns, size, RECORD-style hash)
# dist-info path -> (RECORD's (mtime_ns, size), name, version, {abs file: hash}, top names)
_infos: Dict[str, Tuple[Tuple[int, int], str, str, Dict[str, str], List[str]]] = {}
_first: Dict[str, Tuple[str, str]] = {}           # file -> (name, version) of its first owner
# Files that had already changed since import when first attributed to a release: the
# release they were loaded from is not known (the dist-info there now may be a newer one).
_uncertain: Dict[str, bool] = {}


def _modules() -> List[Tuple[str, str]]:
    out = []
    for name, module in list(sys.modules.items()):
        # The module's own dict, not getattr: no module __getattr__, lazy-import proxy or
        # non-module object in sys.modules runs application code for this.
        try:
            own = object.__getattribute__(module, "__dict__")
        except Exception:  # noqa: BLE001 - an object without one has no file either
            continue
        file = own.get("__file__") if isinstance(own, dict) else None
        if isinstance(file, str) and os.path.isabs(file):
            out.append((name, file))
    return out


def _stat(file: str) -> Optional[Tuple[int, int]]:
    try:
        st = os.stat(file)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def note_loaded() -> None:
    """Record size and mtime of every loaded module's file not seen yet (one stat each).
    Called by the agent when it starts; never raises."""
    try:
        for _, file in _modules():
            if file not in _seen:
                st = _stat(file)
                if st is not None:
                    _seen[file] = st
    except Exception:  # noqa: BLE001 - a bookkeeping failure must not reach the application
        pass


def _root(name: str, file: str) -> str:
    """The import root a module was loaded from: ``root/a/b.py`` for ``a.b``."""
    up = name.count(".") + 1 + (os.path.basename(file).startswith("__init__.") and 1 or 0)
    for _ in range(up):
        file = os.path.dirname(file)
    return file


def _read_info(path: str) -> Optional[Tuple[Tuple[int, int], str, str, Dict[str, str],
                                            List[str]]]:
    """Name, version, RECORD and top-level names of one ``*.dist-info`` (cached by
    RECORD's stat); None when it has no readable METADATA."""
    record = os.path.join(path, "RECORD")
    key = _stat(record) or (0, 0)
    cached = _infos.get(path)
    if cached is not None and cached[0] == key:
        return cached
    name = version = None
    try:
        with open(os.path.join(path, "METADATA"), encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    break
                field, _, value = line.partition(":")
                if field.lower() == "name" and name is None:
                    name = value.strip()
                elif field.lower() == "version" and version is None:
                    version = value.strip()
    except OSError:
        return None
    if not name or not version:
        return None
    files: Dict[str, str] = {}
    root = os.path.dirname(path)
    if key != (0, 0):
        import csv
        try:
            with open(record, encoding="utf-8", errors="replace", newline="") as f:
                for row in csv.reader(f):
                    if len(row) >= 2 and row[0]:
                        full = os.path.normpath(os.path.join(root, row[0]))
                        files[full] = row[1]
        except (OSError, csv.Error):
            files = {}
    tops: List[str] = []
    try:
        with open(os.path.join(path, "top_level.txt"), encoding="utf-8") as f:
            tops = [line.strip() for line in f if line.strip()]
    except OSError:
        pass
    info = (key, name, version, files, tops)
    _infos[path] = info
    return info


def _hash(file: str, st: Tuple[int, int], budget: List[int]) -> Optional[str]:
    """``sha256=<urlsafe base64, unpadded>`` of ``file`` as RECORD writes it; None when over
    the limits (cached by mtime and size)."""
    cached = _hashes.get(file)
    if cached is not None and cached[:2] == st:
        return cached[2]
    if st[1] > MAX_FILE or st[1] > budget[0]:
        return None
    import base64
    import hashlib
    digest = hashlib.sha256()
    try:
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:
        return None
    budget[0] -= st[1]
    value = "sha256=" + base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode("ascii")
    _hashes[file] = (st[0], st[1], value)
    return value


def inventory() -> Dict[str, Any]:
    """The ``inventory`` op's answer (docs/protocol.md); never raises for broken files."""
    modules = _modules()
    for _, file in modules:
        if file not in _seen:
            st = _stat(file)
            if st is not None:
                _seen[file] = st
    owners: Dict[str, str] = {}                 # abs file -> dist-info path
    by_top: Dict[Tuple[str, str], str] = {}     # (root, top-level name) -> dist-info path
    for root in sorted({_root(n, f) for n, f in modules}):
        try:
            entries = [e for e in os.listdir(root) if e.endswith(".dist-info")]
        except OSError:
            continue
        for found in sorted(entries):
            path = os.path.join(root, found)
            info = _read_info(path)
            if info is None:
                continue
            for full in info[3]:
                owners.setdefault(full, path)
            for top in info[4]:
                by_top.setdefault((root, top), path)
    budget = [MAX_BYTES]
    dists: Dict[Tuple[str, str], Dict[str, Any]] = {}
    unowned = 0
    for name, file in sorted(modules):
        full = os.path.normpath(file)
        owner = owners.get(full) or by_top.get((_root(name, file), name.partition(".")[0]))
        if owner is None:
            unowned += 1
            continue
        info = _infos[owner]
        new = full not in _first
        first = _first.setdefault(full, (info[1], info[2]))
        entry = dists.get(first)
        if entry is None:
            entry = dists[first] = {"name": first[0], "version": first[1],
                                    "version_on_disk": None, "path": owner, "modules": 0,
                                    "verified": 0, "unchecked": 0, "changed": [],
                                    "changed_count": 0, "version_uncertain": False}
        if info[2] != first[1]:
            entry["version_on_disk"] = info[2]
        entry["modules"] += 1
        why = _check(full, file, info[3].get(full), budget)
        if new and why == "changed on disk since import":
            _uncertain[full] = True
        if _uncertain.get(full):
            entry["version_uncertain"] = True
        if why == "verified":
            entry["verified"] += 1
        elif why == "unchecked":
            entry["unchecked"] += 1
        else:
            entry["changed_count"] += 1
            if len(entry["changed"]) < MAX_LISTED:
                entry["changed"].append({"module": name, "file": file, "why": why})
    return {"dists": sorted(dists.values(), key=lambda d: (d["name"].lower(), d["version"])),
            "unowned": unowned, "modules": len(modules),
            "hashed_budget_left": budget[0], "limits": {"max_bytes": MAX_BYTES,
                                                        "max_file": MAX_FILE,
                                                        "max_listed": MAX_LISTED}}


def _check(full: str, file: str, recorded: Optional[str], budget: List[int]) -> str:
    st = _stat(file)
    if st is None:
        return "missing on disk"
    if _seen.get(file, st) != st:
        return "changed on disk since import"
    if not recorded or not recorded.startswith("sha256="):
        return "unchecked"
    current = _hash(file, st, budget)
    if current is None:
        return "unchecked"
    return "verified" if current == recorded else "differs from RECORD"
