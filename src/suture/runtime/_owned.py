"""Open a file only one's own user (or root) can have written: open first, then check.

Configuration that decides what runs in other people's processes (``trust.toml``: which
keys may sign patches; ``daemon.toml``: which feeds are synced and installed) must not be
chosen by another local user. Checking the path with ``lstat`` and then opening it by
name (issue 13, finding 4) leaves a window in which the file, or any directory above it,
can be swapped; and a file is only as safe as the directories that hold it.

So ``open_owned``, like sudo for sudoers:

1. resolves the directory once (``realpath``), then walks it down from ``/`` opening
   each component with ``O_NOFOLLOW | O_DIRECTORY`` relative to the one above
   (``dir_fd``), and checks each *opened* directory with ``fstat``: owned by this user or
   root, and not writable by group or others, unless it is owned by root and sticky
   (``/tmp``: others may add entries there but not rename or remove ours, and the next
   component is checked to be ours). A component that became a symlink after
   ``realpath`` is refused. When the given path went through symlinks, the directories
   holding those links are checked the same way (they decide where the path leads);
2. opens the file relative to the last directory with ``O_NOFOLLOW | O_NONBLOCK`` (a
   symlink fails with ELOOP, a FIFO does not block), and checks the *opened* file with
   ``fstat``: a regular file, owned by this user or root, not writable by group or others;
3. returns that open file: what is checked is exactly what is read.

Group-writable is refused even for one's own group (sudo allows only root's group; a
user-private group is still a group). Rejected: ``openat2(RESOLVE_NO_SYMLINKS)`` (Linux
5.6+, no Python binding); ``os.access`` (checks the real uid, and is a check by path).

Stdlib only, so that the runtime (store and agent directories) can reuse it; the caller
passes its own error class (one ``SutureError`` subclass per file it protects).
"""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO, List, Optional, Type

from .errors import SutureError

__all__ = ["open_owned", "check_dir", "check_file"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_LINK_ERRNOS = (errno.ELOOP, errno.EMLINK)   # O_NOFOLLOW met a symlink (EMLINK: FreeBSD)
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


def check_file(st: os.stat_result, path: str, what: str, risk: str,
               error: Type[SutureError], euid: int) -> None:
    """The opened file: a regular file of this user or root that others may not write."""
    if not stat.S_ISREG(st.st_mode):
        raise error(f"refusing {what} {path}: it is not a regular file",
                    details={"path": path})
    if st.st_uid not in (euid, 0):
        raise error(f"refusing {what} {path}: it is owned by uid {st.st_uid}, not by this "
                    f"user ({euid}) or root", details={"path": path, "owner": st.st_uid})
    if st.st_mode & 0o022:
        raise error(f"refusing {what} {path}: mode {stat.S_IMODE(st.st_mode):04o} lets other "
                    f"users {risk}. Run `chmod go-w {path}`.",
                    details={"path": path, "mode": stat.S_IMODE(st.st_mode)})


def check_dir(st: os.stat_result, directory: str, path: str, what: str,
              error: Type[SutureError], euid: int) -> None:
    """A directory above the file: of this user or root, and only they may change it."""
    if st.st_uid not in (euid, 0):
        raise error(f"refusing {what} {path}: the directory {directory} is owned by uid "
                    f"{st.st_uid}, not by this user ({euid}) or root, and its owner could "
                    f"replace the file", details={"path": path, "directory": directory,
                                                  "owner": st.st_uid})
    if st.st_mode & 0o022 and not (st.st_uid == 0 and st.st_mode & stat.S_ISVTX):
        mode = stat.S_IMODE(st.st_mode)
        raise error(f"refusing {what} {path}: the directory {directory} has mode {mode:04o}, "
                    f"so other users could replace the file. Run `chmod go-w {directory}`.",
                    details={"path": path, "directory": directory, "mode": mode})


def _symlink_holders(path: str) -> List[str]:
    """The directories holding a symlink met while resolving ``path``'s directory."""
    holders: List[str] = []
    current = "/"
    for part in os.path.dirname(path).split("/"):
        if not part:
            continue
        nxt = os.path.join(current, part)
        if os.path.islink(nxt):
            holders.append(current)
            nxt = os.path.realpath(nxt)
        current = nxt
    return holders


def _walk(directory: str, path: str, what: str, error: Type[SutureError], euid: int) -> int:
    """An fd of ``directory`` (absolute, no symlinks), each component opened and checked."""
    fd = os.open("/", _DIR_FLAGS)
    try:
        check_dir(os.fstat(fd), "/", path, what, error, euid)
        walked = ""
        for part in directory.split("/"):
            if not part:
                continue
            walked += "/" + part
            try:
                nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno in _LINK_ERRNOS or os.path.islink(walked):
                    raise error(f"refusing {what} {path}: the directory {walked} became a "
                                f"symlink while it was checked",
                                details={"path": path, "directory": walked}) from exc
                raise
            os.close(fd)
            fd = nxt
            check_dir(os.fstat(fd), walked, path, what, error, euid)
        return fd
    except BaseException:
        os.close(fd)
        raise


def open_owned(path: str, what: str, risk: str, error: Type[SutureError],
               euid: Optional[int] = None) -> BinaryIO:
    """``path`` opened for reading once it and every directory above it are safe (see the
    module docstring). Raises ``error`` for an unsafe file or directory, FileNotFoundError
    when there is no file, other OSError as they come."""
    euid = os.geteuid() if euid is None else euid
    path = os.path.abspath(path)
    for holder in _symlink_holders(path):
        os.close(_walk(os.path.realpath(holder), path, what, error, euid))
    dir_fd = _walk(os.path.realpath(os.path.dirname(path)), path, what, error, euid)
    try:
        try:
            fd = os.open(os.path.basename(path), _FILE_FLAGS, dir_fd=dir_fd)
        except OSError as exc:
            # Decided by the open's own error, not by a second look at the path: the
            # path may have changed back in between (seen in the swap test).
            if exc.errno in _LINK_ERRNOS:
                raise error(f"refusing {what} {path}: it is a symlink",
                            details={"path": path}) from exc
            raise
    finally:
        os.close(dir_fd)
    try:
        check_file(os.fstat(fd), path, what, risk, error, euid)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
