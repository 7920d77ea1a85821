"""What a Python process without an agent may load, told from outside (issue 16).

``suture status`` and ``apply --all`` cannot ask a process that has no agent, but a
distribution it may import is usually visible from /proc: its ``sys.path`` is mostly
derived from its interpreter and environment. Looked at, in this order:

* ``PYTHONPATH`` from /proc/PID/environ (when we may read it), relative entries against
  /proc/PID/cwd;
* the virtual environment: argv[0] (resolved against the process's ``PATH`` and cwd) whose
  ``../pyvenv.cfg`` exists, its ``lib/pythonX.Y/site-packages``, and the base prefix's
  only when ``include-system-site-packages = true``;
* the interpreter's own prefix (/proc/PID/exe, two levels up): ``lib/pythonX.Y/site-packages``
  and Debian's ``dist-packages``; the user site (``$HOME/.local/lib/pythonX.Y/site-packages``)
  outside a virtual environment;
* every ``site-packages`` / ``dist-packages`` directory of a file mapped into it
  (/proc/PID/maps: extension modules it loaded).

In each, a ``<name>-<version>.dist-info`` (or ``.egg-info``) names the installed version.
Paths are read through /proc/PID/root, so a process in a container is judged by its own
files. What this cannot see: ``sys.path`` changed at run time (``sys.path.insert`` in the
program), ``.pth`` files, zip imports, a cwd-relative script directory. Those processes are
"cannot tell", and the caller says so instead of guessing.

Nothing here contacts or changes a process.
"""

from __future__ import annotations

import os
import re
from typing import Dict, List, Optional, Tuple

__all__ = ["ppid", "descends", "site_dirs", "find_dist"]


def _read(path: str) -> Optional[bytes]:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def ppid(pid: int) -> int:
    """The parent of ``pid`` (0 if unknown)."""
    raw = _read(f"/proc/{pid}/stat")
    try:
        return int(raw[raw.rfind(b")") + 2:].split()[1]) if raw else 0
    except (ValueError, IndexError):
        return 0


def descends(pid: int, ancestor: int, depth: int = 32) -> bool:
    """Whether ``ancestor`` is a (grand)parent of ``pid``."""
    for _ in range(depth):
        pid = ppid(pid)
        if pid <= 1:
            return False
        if pid == ancestor:
            return True
    return False


def _environ(pid: int) -> Dict[str, str]:
    raw = _read(f"/proc/{pid}/environ") or b""
    env: Dict[str, str] = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            env[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
    return env


def _argv0(pid: int) -> str:
    raw = _read(f"/proc/{pid}/cmdline") or b""
    return raw.split(b"\0")[0].decode("utf-8", "replace")


def _root(pid: int) -> str:
    try:
        if os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt"):
            return f"/proc/{pid}/root"
    except OSError:
        pass
    return ""


def _cwd(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


def site_dirs(pid: int, version: str) -> List[Tuple[str, str]]:
    """(directory as the process sees it, how it was found) where ``pid`` may import
    from; ``version`` is "3.X" (or "unknown": then the prefix rules are skipped)."""
    env, cwd, root = _environ(pid), _cwd(pid), _root(pid)
    out: List[Tuple[str, str]] = []

    def add(path: str, how: str) -> None:
        if path and not os.path.isabs(path):
            path = os.path.join(cwd, path) if cwd else ""
        if path:
            out.append((os.path.normpath(path), how))

    for entry in env.get("PYTHONPATH", "").split(os.pathsep):
        if entry:
            add(entry, "PYTHONPATH")
    lib = f"lib/python{version}" if re.fullmatch(r"\d\.\d+", version) else ""
    argv0 = _argv0(pid)
    if argv0 and "/" not in argv0:
        for d in env.get("PATH", "").split(os.pathsep):
            if d and os.path.exists(root + os.path.join(d, argv0)):
                argv0 = os.path.join(d, argv0)
                break
    system_site = True
    if "/" in argv0:
        venv = os.path.dirname(os.path.dirname(os.path.join(cwd, argv0)))
        cfg = _read(root + os.path.join(venv, "pyvenv.cfg"))
        if cfg is not None:
            system_site = bool(re.search(rb"(?mi)^\s*include-system-site-packages\s*=\s*true",
                                         cfg))
            if lib:
                add(os.path.join(venv, lib, "site-packages"), f"virtual environment {venv}")
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        exe = ""
    if exe.endswith(" (deleted)"):
        exe = exe[:-len(" (deleted)")]
    if exe and lib and system_site:
        prefix = os.path.dirname(os.path.dirname(exe))
        add(os.path.join(prefix, lib, "site-packages"), f"interpreter prefix {prefix}")
        add(os.path.join(prefix, "lib", "python3", "dist-packages"), f"interpreter prefix {prefix}")
        if env.get("HOME"):
            add(os.path.join(env["HOME"], ".local", lib, "site-packages"), "user site")
    for line in (_read(f"/proc/{pid}/maps") or b"").decode("utf-8", "replace").splitlines():
        path = line.split(None, 5)[5] if len(line.split(None, 5)) == 6 else ""
        for marker in ("/site-packages/", "/dist-packages/"):
            if marker in path:
                add(path[:path.index(marker) + len(marker) - 1], "a file it mapped")
    seen: Dict[str, str] = {}
    for d, how in out:
        seen.setdefault(d, how)
    return list(seen.items())


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _metadata_version(path: str) -> Optional[str]:
    for meta in ("METADATA", "PKG-INFO"):
        raw = _read(os.path.join(path, meta))
        if raw is not None:
            m = re.search(rb"(?m)^Version:\s*(\S+)", raw)
            return m.group(1).decode("utf-8", "replace") if m else None
    return None


def find_dist(pid: int, version: str, name: str,
              dirs: Optional[List[Tuple[str, str]]] = None
              ) -> Tuple[Optional[str], str, List[str]]:
    """(installed version of distribution ``name`` where ``pid`` may import it, or None;
    where it was found and how that directory was found; the directories searched).
    ``dirs``: ``site_dirs(pid, version)``, when the caller has it already."""
    root, want = _root(pid), _canonical(name)
    dirs = site_dirs(pid, version) if dirs is None else dirs
    for d, how in dirs:
        try:
            entries = sorted(os.listdir(root + d))
        except OSError:
            continue
        for entry in entries:
            stem, dot, ext = entry.rpartition(".")
            if not dot or ext not in ("dist-info", "egg-info"):
                continue
            base = stem.split("-py")[0] if ext == "egg-info" else stem
            dist, _, _ = base.partition("-")
            if _canonical(dist) != want:
                continue
            found = _metadata_version(root + os.path.join(d, entry)) or base.partition("-")[2]
            if found:
                return found, f"{os.path.join(d, entry)} ({how})", [x for x, _ in dirs]
    return None, "", [x for x, _ in dirs]
