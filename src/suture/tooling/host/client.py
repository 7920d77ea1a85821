"""Host side of the agent protocol (docs/protocol.md): find a process's socket, talk to it.

One request and one response per connection. Every failure becomes a ``SutureError``
that names the PID, the socket path and what to do next; an error frame from the agent
is rebuilt as the class its code names (``SUT-E201`` becomes ``BaselineMismatch``), or
as ``AgentError`` carrying the agent's own code when this side does not know it.

Nothing here changes a target: connecting to a socket is the only contact, and a stale
socket file is left alone (only the agent that takes its name removes it).

Size: about 950 lines, over the ~500-line rule of thumb, kept whole for now: locating a
target's socket (namespaces, owners, modes), checking the peer and connecting as the
target's user all guard the same connection, and those checks read best side by side.
A later split would put the error classes and process discovery (``list_python_processes``,
``socket_candidates``) in modules of their own; issue 14 only moved this file.
"""

from __future__ import annotations

import errno
import os
import pwd
import re
import socket
import stat
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, FrozenSet, Iterator, List, Optional, Tuple, Type

from ...runtime import errors as _errors
from ...runtime import protocol
from ...runtime.errors import SutureError

__all__ = [
    # API
    "socket_path", "socket_candidates", "call", "hello", "find_agent", "list_python_processes",
    "PythonProcess", "rebuild_error",
    # errors
    "AgentError", "NoAgent", "AgentUnreachable", "AgentTimeout", "AgentPermissionDenied",
    "TargetExited", "UnsafeSocketPath", "WrongAgent", "OutcomeUnknown",
]

DEFAULT_TIMEOUT = 30.0
HELLO_TIMEOUT = 0.5
# Finding agents (ps, apply --all): a process whose every core is busy in Python threads
# answers slowly (docs/live-processes.md, "Busy processes"); a socket that accepted the
# connection but answered late is reported "busy", not "stale".
DISCOVERY_HELLO_TIMEOUT = 3.0


# -- errors ---------------------------------------------------------------------------

class AgentError(SutureError):
    """The agent reported an error this client has no class for; its code is kept."""

    code = "SUT-E613"

    def __init__(self, message: str, *, details: Optional[Dict[str, Any]] = None,
                 code: Optional[str] = None) -> None:
        super().__init__(message, details=details)
        if code:
            self.code = code

    def __reduce__(self) -> Any:
        return (_rebuild_agent_error, (self.message, self.details, self.code))


def _rebuild_agent_error(message: str, details: Dict[str, Any], code: str) -> AgentError:
    return AgentError(message, details=details, code=code)


class NoAgent(SutureError, FileNotFoundError):
    """The process does not exist, or it has no agent socket where the rules say."""

    code = "SUT-E610"


class AgentUnreachable(SutureError, ConnectionError):
    """A socket exists but no agent answers on it (stale socket, closed connection)."""

    code = "SUT-E611"


class AgentTimeout(SutureError, TimeoutError):
    """The agent did not answer in time; the request may still be running in the process."""

    code = "SUT-E612"


class AgentPermissionDenied(protocol.PeerRefused):
    """We may not talk to this agent (socket or directory permissions, or its uid check).

    Shares ``SUT-E600`` with the agent's own peer refusal: the remedy is the same.
    """


class TargetExited(SutureError, ProcessLookupError):
    """The process exited (or its PID now names another process, started later) while we
    were finding or connecting to its agent; nothing was sent."""

    code = "SUT-E614"


class UnsafeSocketPath(SutureError, PermissionError):
    """A directory, symlink or socket on the way to the agent's socket belongs to a user
    other than the process's own or root, or a directory is writable by others: another
    user could have put it there. Nothing was sent."""

    code = "SUT-E615"


class WrongAgent(SutureError, ConnectionError):
    """The socket is served by another process than the one asked about (its peer
    credentials, or its ``hello``: pid, pid namespace, start time). Nothing but a
    ``hello`` was sent."""

    code = "SUT-E616"


class OutcomeUnknown(AgentTimeout):
    """An apply/revert sent with a deadline got no answer, even a grace period past it:
    the agent commits nothing after the deadline, but one made before it may not have been
    reported. ``suture status`` says which (docs/protocol.md, "Deadline")."""

    code = "SUT-E635"


def _known_classes() -> Dict[str, Type[SutureError]]:
    by_code: Dict[str, Type[SutureError]] = {}
    pool: List[Any] = [getattr(_errors, n) for n in dir(_errors)]
    pool += [protocol.ProtocolError, protocol.PeerRefused]
    for obj in pool:
        if isinstance(obj, type) and issubclass(obj, SutureError):
            by_code.setdefault(obj.code, obj)
    return by_code


_BY_CODE = _known_classes()


def rebuild_error(err: Any, pid: Optional[int] = None) -> SutureError:
    """Turn an error dict from the wire back into the exception its code names."""
    if not isinstance(err, dict):
        return protocol.ProtocolError(
            f"The agent of PID {pid} sent an error frame without an error object: {err!r}",
            details={"pid": pid})
    message = str(err.get("message") or err.get("error") or "unknown agent error")
    raw = err.get("details")
    details: Dict[str, Any] = dict(raw) if isinstance(raw, dict) else {}
    if pid is not None:
        details["pid"] = pid
    code = str(err.get("code") or "")
    cls = _BY_CODE.get(code)
    if cls is not None and cls is not SutureError:
        return cls(message, details=details)
    details.setdefault("remote_error", err.get("error"))
    return AgentError(message, details=details, code=code or None)


# -- where the socket is ----------------------------------------------------------------

def _proc_uids(pid: int) -> List[int]:
    """Real and effective uid of ``pid`` from /proc/<pid>/status (empty if unreadable)."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("Uid:"):
                    fields = line.split()[1:3]
                    return list(dict.fromkeys(int(x) for x in fields))
    except OSError:
        pass
    return []


def _proc_environ(pid: int) -> Dict[str, str]:
    """The target's environment at exec time; empty when not ours to read."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return {}
    env: Dict[str, str] = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            env[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
    return env


def socket_candidates(pid: int, runtime_dir: Optional[str] = None) -> List[str]:
    """Every path where ``pid``'s agent may have put its socket, most specific first.

    The rules of docs/protocol.md are evaluated for the *target's* user: its uid comes
    from /proc/<pid>/status, and its own SUTURE_RUNTIME_DIR / XDG_RUNTIME_DIR from
    /proc/<pid>/environ when we may read it (else /run/user/<uid> is assumed).
    Our own $SUTURE_RUNTIME_DIR (or ``runtime_dir``) overrides everything, as in the docs.
    """
    inner, root = _namespace_view(pid)
    name = f"{inner}.sock"
    override = runtime_dir or os.environ.get("SUTURE_RUNTIME_DIR")
    if override:
        return [os.path.join(override, name)]
    return [root + os.path.join(d, name) for d in _candidate_dirs(pid)]


def _candidate_dirs(pid: int) -> List[str]:
    """The socket directories of docs/protocol.md for ``pid``, as the target sees them.

    These say where to look, not what to trust: ``call`` refuses a process it cannot
    identify before looking, and a directory another user could have made (issue 13,
    finding 1: /tmp/suture-0 created by anyone) is refused where it is resolved.
    """
    env = _proc_environ(pid)
    uids = _proc_uids(pid)
    dirs: List[str] = []
    if env.get("SUTURE_RUNTIME_DIR"):
        dirs.append(env["SUTURE_RUNTIME_DIR"])
    if 0 in uids:
        dirs.append("/run/suture")
    xdg = env.get("XDG_RUNTIME_DIR", "")
    if xdg.startswith("/"):
        dirs.append(os.path.join(xdg, "suture"))
    for uid in uids or [os.getuid()]:
        dirs.append(f"/run/user/{uid}/suture")
    for uid in uids or [os.getuid()]:
        dirs.append(f"/tmp/suture-{uid}")
    return list(dict.fromkeys(dirs))


def _namespace_view(pid: int) -> Tuple[int, str]:
    """(the pid the target sees as its own, a prefix for paths as the target sees them).

    A process in a container (another pid and mount namespace) names its socket by its
    own pid (the last ``NSpid`` of /proc/<pid>/status) under its own filesystem, which
    the node reaches through /proc/<pid>/root. Outside any container: (pid, "").
    """
    inner = pid
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    inner = int(line.split()[-1])
                    break
    except (OSError, ValueError):
        pass
    root = ""
    try:
        if os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt"):
            root = f"/proc/{pid}/root"
    except OSError:
        pass
    return inner, root


def socket_path(pid: int, runtime_dir: Optional[str] = None) -> str:
    """The socket of ``pid``'s agent: the first candidate that exists.

    A candidate we may not look into (a 0700 directory of another user) counts when
    nothing else exists, so that connecting reports the permission problem. When no
    candidate exists, the first one (where the agent would be) is returned.
    """
    candidates = socket_candidates(pid, runtime_dir)
    blocked: Optional[str] = None
    for path in candidates:
        try:
            os.stat(path)
            return path
        except PermissionError:
            blocked = blocked or path
        except OSError:
            continue
    return blocked or candidates[0]


# -- messages -------------------------------------------------------------------------

def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _who(uid: int) -> str:
    return f"uid {uid} ({_user(uid)})"


def _permission_error(pid: int, path: str, op: str, exc: BaseException) -> AgentPermissionDenied:
    me = os.geteuid()
    owner: Optional[int] = None
    what = path
    try:
        st = os.stat(path)
        owner, mode = st.st_uid, stat.S_IMODE(st.st_mode)
    except OSError:
        # We cannot even look at the socket: the directory is closed to us.
        what = os.path.dirname(path)
        try:
            st = os.stat(what)
            owner, mode = st.st_uid, stat.S_IMODE(st.st_mode)
        except OSError:
            mode = -1
    if owner is None:
        found = f"{what} cannot be reached"
        retry = "Retry as the process's user or as root"
    else:
        found = f"{what} is owned by {_who(owner)}, mode {mode:04o}"
        retry = f"Retry as that user (`sudo -u {_user(owner)} suture {op} …`) or as root"
    return AgentPermissionDenied(
        f"Cannot reach the agent of PID {pid}: {found}; you are {_who(me)}. {retry}. "
        "Nothing was sent to the process.",
        details={"pid": pid, "socket": path, "owner_uid": owner, "uid": me,
                 "errno": getattr(exc, "errno", None)})


def _no_agent(pid: int, path: str) -> NoAgent:
    if not os.path.exists(f"/proc/{pid}"):
        return NoAgent(f"No process has PID {pid} (nothing at /proc/{pid}). Check the PID with "
                       "`suture ps`.", details={"pid": pid, "socket": path, "running": False})
    return NoAgent(f"PID {pid} has no Suture agent (no socket at {path}). Start it under "
                   "`suture run`, call suture.agent.start(), or `suture attach PID`.",
                   details={"pid": pid, "socket": path, "running": True})


def _unreachable(pid: int, path: str, why: str, exc: Optional[BaseException]) -> AgentUnreachable:
    return AgentUnreachable(
        f"Cannot reach the agent of PID {pid} at {path}: {why}. The socket is stale (the agent "
        "stopped, or the process exited and the PID was reused) or the agent is overloaded; "
        f"the process state is as before. Check with `suture ps`, then restart the agent in "
        "the process (suture.agent.start()).",
        details={"pid": pid, "socket": path, "errno": getattr(exc, "errno", None)})


def _timeout(pid: int, path: str, op: str, timeout: float) -> AgentTimeout:
    return AgentTimeout(
        f"The agent of PID {pid} did not answer `{op}` within {timeout:g} s (socket {path}). "
        f"The request may still be running in the process: check with "
        f"`suture status --pid {pid}` before retrying.",
        details={"pid": pid, "socket": path, "op": op, "timeout": timeout})


# -- identity: the process that answers is the one asked about (issue 13) -------------
#
# One rule: a client connects only to a socket it can prove belongs to the process it was
# asked about, and sends nothing before it has. For every connection:
#
# 1. The target: /proc/PID/stat's start time (field 22), its uids, the pid it sees as its
#    own (NSpid) and its pid namespace are read first. No such process: NoAgent.
# 2. The path is resolved inside the target's own root (/proc/PID/root), one component at
#    a time with O_PATH|O_NOFOLLOW directory fds: an absolute symlink restarts at that
#    root, ".." stops there (openat2's RESOLVE_IN_ROOT, which Python's stdlib lacks).
#    Every directory, symlink and the socket met on the way must belong to root, to the
#    target's effective uid or to the owner of the target's root directory (a container's
#    root), and no directory may be writable by group or others unless it is sticky (then
#    the entry in it must be owned as above). So /tmp/suture-0 made by uid 65534 is
#    refused, whatever it holds. connect() goes through /proc/self/fd/<dir fd>/<name>:
#    the checked directory, and AF_UNIX's 108-byte limit holds for any depth.
# 3. After connect() and before a byte is sent, SO_PEERCRED names the process that listens
#    (as our pid namespace sees it): it must be PID itself (a forked child's agent listens
#    in the child) with one of its uids or root; PID's start time must still be the one
#    read in 1 (it did not exit and its number was not reused).
# 4. A `hello` (its own connection, checked the same way) must name the pid the target
#    sees as its own, its pid namespace and start time; only then is another op sent.
#    An agent older than these fields is checked on pid only (the rest is still 1-3).
#
# Rejected: trusting hello alone (any listener can claim any pid, and the request is
# already sent to it); the start time alone (does not say who listens); connecting by the
# path string (symlinks resolve against our root, not the container's: finding 2); a
# fallback to our own uid's directory for a process we cannot identify (finding 1: a
# directory any user may create under /tmp).
#
# A stand-in agent (a test's server answering for PIDs that are not its own) passes none
# of this: with SUTURE_TEST_UNVERIFIED_AGENTS=1 in our environment *and* a runtime
# directory of our own choosing (SUTURE_RUNTIME_DIR or runtime_dir=), steps 1, 3 and 4
# are skipped; step 2 still applies. Never set it outside tests.

UNVERIFIED_ENV = "SUTURE_TEST_UNVERIFIED_AGENTS"
_MAX_LINKS = 40          # symlinks followed in one resolution, as the kernel's limit
_PATH_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class _Target:
    """What we know of the process we were asked about, read before connecting."""

    pid: int
    verify: bool                 # False only for stand-ins (see above)
    start: str = ""              # /proc/PID/stat field 22
    uids: Tuple[int, ...] = ()   # real, effective, saved
    euid: int = -1
    gid: int = -1
    groups: Tuple[int, ...] = ()
    inner: int = 0               # the pid it sees as its own
    pidns: str = ""
    same_time_ns: bool = True    # its start time reads the same from it as from us
    root: str = ""               # where its paths resolve: "/proc/PID/root", "" = ours
    shown_root: str = ""         # how they are shown: "" when its root is ours


def _start_ticks(pid: int) -> Optional[str]:
    """Field 22 of /proc/PID/stat; None if no such process, "" if it exited (zombie)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    fields = raw[raw.rfind(b")") + 2:].split()
    if len(fields) < 20 or fields[0] in (b"Z", b"X"):
        return ""
    return fields[19].decode("ascii", "replace")


def _ns(pid: Any, kind: str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return ""


def _roots(pid: int) -> Tuple[str, str]:
    """(where the target's paths resolve, how to show them): its /proc/PID/root, shown
    only when that is not our root (a container, a chroot). A root we may not look at
    (another user's process, and we are not root) resolves in ours: the kernel's checks
    and the listener's identity decide then."""
    root = f"/proc/{pid}/root"
    try:
        mine, theirs = os.stat("/"), os.stat(root)
    except OSError:
        return "", ""
    return root, ("" if (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino)
                  else root)


def _read_target(pid: int, verify: bool) -> _Target:
    start = _start_ticks(pid)
    if start is None and not verify:
        return _Target(pid, False, inner=pid)
    if start is None:
        raise NoAgent(f"No process has PID {pid} (nothing at /proc/{pid}). Check the PID with "
                      "`suture ps`.", details={"pid": pid, "running": False})
    if not start:
        raise _exited(pid, "it has exited (a zombie waiting for its parent)")
    status: Dict[str, str] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8", errors="replace") as f:
            status = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
        uids = tuple(int(x) for x in status["Uid"].split())
        gid = int(status["Gid"].split()[1])
        groups = tuple(int(g) for g in status.get("Groups", "").split())
        nspid = status.get("NSpid", str(pid)).split()
        inner = int(nspid[-1]) if nspid else pid
    except (OSError, KeyError, IndexError, ValueError) as exc:
        if _start_ticks(pid) != start:
            raise _exited(pid, "it exited while we read /proc") from exc
        raise NoAgent(f"PID {pid} cannot be identified: /proc/{pid}/status is unreadable "
                      f"({exc}). Nothing was sent.", details={"pid": pid}) from exc
    root, shown = _roots(pid)
    return _Target(pid, verify, start=start, uids=tuple(dict.fromkeys(uids)), euid=uids[1],
                   gid=gid, groups=groups, inner=inner, pidns=_ns(pid, "pid"),
                   same_time_ns=_ns(pid, "time") == _ns("self", "time"),
                   root=root, shown_root=shown)


def _exited(pid: int, why: str) -> TargetExited:
    return TargetExited(
        f"PID {pid} is not the process it was: {why}. Nothing was sent to any process; "
        "nothing was applied or reverted. Check the PID with `suture ps`.",
        details={"pid": pid, "running": False})


def _still_there(target: _Target) -> None:
    if target.verify and _start_ticks(target.pid) != target.start:
        raise _exited(target.pid, "it exited (or its PID was reused by a newer process) "
                                  "while we connected")


# -- identity: resolving the socket's path inside the target's root ----------------------

class _Place:
    """A path to resolve inside ``root`` ("/proc/PID/root", or "" for ours), shown with
    ``shown_root`` in front."""

    def __init__(self, root: str, shown_root: str, path: str, ours: bool) -> None:
        self.root, self.shown_root, self.path, self.ours = root, shown_root, path, ours

    def shown(self) -> str:
        return self.shown_root + self.path


def _places(target: _Target, runtime_dir: Optional[str],
            anywhere: bool = False) -> List[_Place]:
    """Where to look, in order. ``anywhere``: after our override, the target's own
    directories too (``find_agent``)."""
    name = f"{target.inner}.sock"
    override = runtime_dir or os.environ.get("SUTURE_RUNTIME_DIR")
    own = [_Place(target.root, target.shown_root, os.path.join(d, name), False)
           for d in _candidate_dirs(target.pid)]
    if not override:
        return own
    # Ours to choose, so in our root; attach names a container's directory through
    # /proc/PID/root, which is the target's root.
    prefix = f"/proc/{target.pid}/root"
    if override.startswith(prefix + "/"):
        ours = _Place(prefix, prefix, os.path.join(override[len(prefix):], name), True)
    else:
        ours = _Place("", "", os.path.join(override, name), True)
    return [ours, *own] if anywhere else [ours]


def _owners(target: _Target, root_fd: int, place: _Place) -> FrozenSet[int]:
    """Who may own what is on the path: root, the target's effective uid, and the owner
    of the root it is resolved in (a container's root, mapped or not); for a directory
    of our own choosing, also ourselves."""
    owners = {0, os.fstat(root_fd).st_uid}
    if target.euid >= 0:
        owners.add(target.euid)
    if place.ours:
        owners.add(os.geteuid())
    return frozenset(owners)


def _unsafe(target: _Target, place: _Place, where: str, what: str) -> UnsafeSocketPath:
    return UnsafeSocketPath(
        f"Refusing the socket of PID {target.pid} at {place.shown()}: {where} {what}; another "
        f"user could have put it there, so it may lead to another process's agent. Nothing "
        f"was sent. Remove it (the agent recreates its directory), or give the process a "
        f"SUTURE_RUNTIME_DIR that only its user can write.",
        details={"pid": target.pid, "socket": place.shown(), "where": where})


def _check_owner(target: _Target, place: _Place, where: str, st: os.stat_result,
                 owners: FrozenSet[int]) -> None:
    if st.st_uid not in owners:
        raise _unsafe(target, place, where, f"is owned by {_who(st.st_uid)}, neither the "
                                            f"process's user nor root")


def _check_same(target: _Target, place: _Place, where: str, looked: os.stat_result,
                opened: os.stat_result) -> None:
    if (opened.st_dev, opened.st_ino) != (looked.st_dev, looked.st_ino):
        raise _unsafe(target, place, where, "was replaced while it was resolved")


def _check_dir_mode(target: _Target, place: _Place, where: str, st: os.stat_result) -> None:
    # Sticky (/tmp): others may add names but not replace ours, and what they add is
    # theirs, which _check_owner refuses on the next step.
    if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        raise _unsafe(target, place, where, f"has mode {stat.S_IMODE(st.st_mode):04o}: users "
                                            f"other than its owner may create entries in it")


def _resolve(target: _Target, place: _Place) -> Tuple[int, str]:
    """(an O_PATH fd of the directory holding the socket, the socket's name).

    Raises FileNotFoundError / NotADirectoryError (nothing there), PermissionError (not
    ours to look into), UnsafeSocketPath (see the comment above ``_Target``)."""
    root_fd = os.open(place.root or "/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    stack = [root_fd]
    try:
        owners = _owners(target, root_fd, place)
        parts = [p for p in place.path.split("/") if p not in ("", ".")]
        walked: List[str] = []
        links = 0
        while parts:
            name = parts.pop(0)
            if name == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                    walked.pop()
                continue
            walked.append(name)
            where = place.shown_root + "/" + "/".join(walked)
            st = os.stat(name, dir_fd=stack[-1], follow_symlinks=False)
            _check_owner(target, place, where, st, owners)
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > _MAX_LINKS:
                    raise _unsafe(target, place, where, f"leads through more than "
                                                        f"{_MAX_LINKS} symlinks")
                link = os.readlink(name, dir_fd=stack[-1])
                walked.pop()
                if link.startswith("/"):   # re-rooted at the target's root, not ours
                    for fd in stack[1:]:
                        os.close(fd)
                    del stack[1:], walked[:]
                parts[:0] = [p for p in link.split("/") if p not in ("", ".")]
                continue
            if not parts:
                if not stat.S_ISSOCK(st.st_mode):
                    raise FileNotFoundError(errno.ENOENT, f"{where} is not a socket")
                dir_fd = os.dup(stack[-1])
                return dir_fd, name
            if not stat.S_ISDIR(st.st_mode):
                raise NotADirectoryError(errno.ENOTDIR, f"{where} is not a directory")
            fd = os.open(name, _PATH_FLAGS | os.O_DIRECTORY, dir_fd=stack[-1])
            stack.append(fd)
            opened = os.fstat(fd)
            _check_same(target, place, where, st, opened)
            _check_dir_mode(target, place, where, opened)
        raise FileNotFoundError(errno.ENOENT, f"{place.shown()} names no socket")
    finally:
        for fd in stack:
            os.close(fd)


def _locate(target: _Target, op: str, runtime_dir: Optional[str],
            anywhere: bool = False) -> Tuple[int, str, str]:
    """(dir fd, name, the path as shown) of the first place where a safe socket exists.

    An unsafe candidate is passed over (an agent never starts in one: ensure_dir); if no
    safe one exists, its refusal is raised, else a candidate we may not look into, else
    NoAgent for the first one (where the agent would be)."""
    places = _places(target, runtime_dir, anywhere)
    refused: Optional[UnsafeSocketPath] = None
    blocked: Optional[Tuple[str, OSError]] = None
    for place in places:
        try:
            dir_fd, name = _resolve(target, place)
        except UnsafeSocketPath as exc:
            refused = refused or exc
        except (FileNotFoundError, NotADirectoryError):
            continue
        except PermissionError as exc:
            blocked = blocked or (place.shown(), exc)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                refused = refused or _unsafe(target, place, place.shown(), "loops")
            else:
                blocked = blocked or (place.shown(), exc)
        else:
            return dir_fd, name, place.shown()
    if refused is not None:
        raise refused
    if blocked is not None:
        raise _permission_error(target.pid, blocked[0], op, blocked[1])
    raise _no_agent(target.pid, places[0].shown())


# -- identity: who listens --------------------------------------------------------------

def _wrong(target: _Target, path: str, found: str) -> WrongAgent:
    return WrongAgent(
        f"The socket {path} is not the agent of PID {target.pid}: {found}. Nothing was sent "
        f"to it{' but a hello' if 'hello' in found else ''}; no process was changed. Another "
        f"process (or a symlink to its socket) holds this name: check `suture ps` and remove "
        f"the file if the process has no agent.",
        details={"pid": target.pid, "socket": path, "found": found})


def _check_peer(sock: socket.socket, target: _Target, path: str) -> None:
    """SO_PEERCRED, before anything is sent: the listener must be PID, still the same."""
    if not target.verify:
        return
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", raw)
    if pid != target.pid:
        raise _wrong(target, path, f"PID {pid} ({_who(uid)}) listens on it" if pid > 0 else
                     "its listener is in a pid namespace we cannot see")
    if uid not in target.uids and uid != 0:
        raise _wrong(target, path, f"its listener runs as {_who(uid)}, not as the process's "
                                   f"user")
    _still_there(target)


def _check_hello(target: _Target, path: str, info: Dict[str, Any]) -> None:
    """The agent's own word, after SO_PEERCRED: the pid it sees as its own, its pid
    namespace and start time must be the target's."""
    if not target.verify:
        return
    checks: List[Tuple[str, Any, Any]] = [("pid", info.get("pid"), target.inner)]
    if info.get("pidns") and target.pidns:
        checks.append(("pid namespace", info.get("pidns"), target.pidns))
    if info.get("start") and target.same_time_ns:
        checks.append(("start time", str(info.get("start")), target.start))
    for what, said, expected in checks:
        if said != expected:
            raise _wrong(target, path, f"its hello names {what} {said!r}, the process has "
                                       f"{expected!r}")
    _still_there(target)


# -- one call ---------------------------------------------------------------------------

def _verifying(runtime_dir: Optional[str]) -> bool:
    override = runtime_dir or os.environ.get("SUTURE_RUNTIME_DIR")
    return not (override and os.environ.get(UNVERIFIED_ENV) == "1")


def call(pid: int, op: str, timeout: float = DEFAULT_TIMEOUT, *,
         runtime_dir: Optional[str] = None, **fields: Any) -> Dict[str, Any]:
    """Send one ``op`` request to ``pid``'s agent and return its ``result``.

    The agent is first proven to be ``pid``'s (see "identity" above): a ``hello``
    precedes any other op. Raises the agent's error rebuilt from its code, or
    ``NoAgent``, ``TargetExited``, ``UnsafeSocketPath``, ``WrongAgent``,
    ``AgentPermissionDenied``, ``AgentUnreachable``, ``AgentTimeout``, ``ProtocolError``.
    """
    target = _read_target(pid, _verifying(runtime_dir))
    if target.verify and op != "hello":
        path, info = _request(target, "hello", timeout, runtime_dir, {})
        _check_hello(target, path, info)
    path, result = _request(target, op, timeout, runtime_dir, fields)
    if op == "hello":
        _check_hello(target, path, result)
    return result


def _request(target: _Target, op: str, timeout: float, runtime_dir: Optional[str],
             fields: Dict[str, Any], anywhere: bool = False) -> Tuple[str, Dict[str, Any]]:
    pid = target.pid
    dir_fd, name, path = _locate(target, op, runtime_dir, anywhere)
    try:
        # The directory we checked, whatever its depth: AF_UNIX paths stay short.
        via = f"/proc/self/fd/{dir_fd}/{name}"
        try:
            if os.geteuid() == 0 and target.euid > 0:
                sock = _connect_as((target.euid, target.gid, list(target.groups)), via,
                                   timeout)
            else:
                sock = _dial(via, timeout)
        except FileNotFoundError as exc:
            raise _no_agent(pid, path) from exc
        except PermissionError as exc:
            raise _permission_error(pid, path, op, exc) from exc
        except ConnectionRefusedError as exc:
            raise _unreachable(pid, path, "connection refused", exc) from exc
        except (socket.timeout, BlockingIOError) as exc:
            raise _timeout(pid, path, op, timeout) from exc
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                raise _no_agent(pid, path) from exc
            if exc.errno in (errno.EAGAIN, errno.ETIMEDOUT):
                raise _timeout(pid, path, op, timeout) from exc
            raise _unreachable(pid, path, exc.strerror or str(exc), exc) from exc
    finally:
        os.close(dir_fd)
    try:
        _check_peer(sock, target, path)
        frame = _exchange(sock, pid, path, op, timeout,
                          protocol.encode(protocol.request(op, **fields)))
    finally:
        sock.close()
    return path, _result(frame, pid, op)


def _dial(path: str, timeout: float) -> socket.socket:
    """A socket connected to ``path`` that waited in the agent's backlog up to ``timeout``.

    A socket with a Python timeout is non-blocking, and a non-blocking connect() to a
    Unix socket whose backlog is full fails at once with EAGAIN (issue 13, finding 11).
    So connect() blocks, bounded by SO_SNDTIMEO (which the kernel applies to a Unix
    connect), and EAGAIN then means "still full after the timeout"."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        wait = max(timeout, 0.001)
        sock.settimeout(None)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                        struct.pack("ll", int(wait), int((wait % 1) * 1_000_000)))
        sock.connect(path)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", 0, 0))
        sock.settimeout(timeout)
    except BaseException:
        sock.close()
        raise
    return sock


# Root talking to another user's process connects *as that user*: the socket's path comes
# from the target's own environment (SUTURE_RUNTIME_DIR / XDG_RUNTIME_DIR), so its user
# could point it, through a symlink, at a socket only root may use; connecting with the
# user's identity leaves the kernel's permission checks to refuse that. Only connect()
# runs as the user, in a forked child that drops to the user's uid, gid and groups and
# hands the connected socket back over SCM_RIGHTS; everything else is unchanged.
# The child runs a handful of system calls and _exit()s, never Python code that could
# wait on a lock another thread of this (threaded) client held at fork time.
# The path is /proc/self/fd/<dir fd>/<name> (see "identity" above): the child inherits
# the fd, and may use it although it no longer has our uid (a process may always follow
# its own fds); the kernel still checks the user's rights on that directory and socket.
# The identity checks (SO_PEERCRED, hello) run here, in the parent, on the socket it gets.
# Rejected: seteuid around connect() (process-wide: every thread would act as the user);
# a helper interpreter (the user may not be allowed to run ours: it can live under
# /root).

def _connect_as(identity: Tuple[int, int, List[int]], path: str,
                timeout: float) -> socket.socket:
    """A socket connected to ``path`` by a child running as ``identity``; connect()'s
    OSError (permission denied, refused, missing) is raised here as if ours."""
    uid, gid, groups = identity
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child, checked by its effects
        code = 1
        try:
            ours.close()
            os.setgroups(groups)
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            try:
                s = _dial(path, timeout)
            except OSError as exc:
                theirs.sendall(b"%d %s" % (exc.errno or errno.ETIMEDOUT,
                                           str(exc.strerror or exc).encode("utf-8", "replace")))
            else:
                socket.send_fds(theirs, [b"0"], [s.fileno()])
            code = 0
        finally:
            os._exit(code)
    theirs.close()
    try:
        ours.settimeout(timeout + 5)
        msg, fds, _, _ = socket.recv_fds(ours, 4096, 1)
    finally:
        ours.close()
        os.waitpid(child, 0)
    if fds:
        sock = socket.socket(fileno=fds[0])
        sock.settimeout(timeout)
        return sock
    number, _, why = msg.decode("utf-8", "replace").partition(" ")
    if not number.isdigit():
        raise OSError(errno.EIO, f"the child connecting as uid {uid} failed")
    raise OSError(int(number), why)


def _exchange(sock: socket.socket, pid: int, path: str, op: str, timeout: float,
              data: bytes) -> Dict[str, Any]:
    send_error: Optional[OSError] = None
    try:
        sock.sendall(data)
    except socket.timeout as exc:
        raise _timeout(pid, path, op, timeout) from exc
    except OSError as exc:
        # The agent may have answered (a peer refusal, a too-long line) and closed before
        # reading everything: its frame explains more than our broken pipe.
        send_error = exc
    try:
        return protocol.read_frame(sock)
    except socket.timeout as exc:
        raise _timeout(pid, path, op, timeout) from exc
    except protocol.ProtocolError as exc:
        if send_error is not None:
            raise _unreachable(pid, path, f"the connection broke while sending ({send_error})",
                               send_error) from send_error
        raise protocol.ProtocolError(
            f"The agent of PID {pid} sent no valid response to `{op}`: {exc.message}. "
            "The process state is unknown if this was apply or revert: check with "
            f"`suture status --pid {pid}`.", details={"pid": pid, "socket": path, "op": op}
        ) from exc
    except OSError as exc:
        raise _unreachable(pid, path, exc.strerror or str(exc), exc) from exc


def _result(frame: Dict[str, Any], pid: int, op: str) -> Dict[str, Any]:
    if frame.get("v") not in protocol.SUPPORTED:
        raise protocol.ProtocolError(
            f"The agent of PID {pid} answered with protocol version {frame.get('v')!r}; this "
            f"client speaks {', '.join(map(str, protocol.SUPPORTED))}. Use a Suture release "
            "that matches the agent.", details={"pid": pid, "v": frame.get("v")})
    if frame.get("ok") is True:
        result = frame.get("result")
        if not isinstance(result, dict):
            raise protocol.ProtocolError(
                f"The agent of PID {pid} answered `{op}` with a non-object result: {result!r}",
                details={"pid": pid, "op": op})
        return result
    if frame.get("ok") is False:
        raise rebuild_error(frame.get("error"), pid)
    raise protocol.ProtocolError(f"The agent of PID {pid} sent a frame without `ok`: {frame!r}",
                                 details={"pid": pid, "op": op})


def hello(pid: int, timeout: float = HELLO_TIMEOUT, *,
          runtime_dir: Optional[str] = None) -> Dict[str, Any]:
    return call(pid, "hello", timeout, runtime_dir=runtime_dir)


def find_agent(pid: int, timeout: float = HELLO_TIMEOUT, *,
               runtime_dir: Optional[str] = None) -> Tuple[str, Dict[str, Any]]:
    """(socket as shown, hello) of ``pid``'s agent wherever it listens: in ``runtime_dir``
    (or our $SUTURE_RUNTIME_DIR) first, then in the target's own directories.

    Every other call looks only where our override says (docs/protocol.md). Attach must
    not: an agent started with the target's own SUTURE_RUNTIME_DIR is hidden from a
    caller whose environment names another directory, and attach would then inject
    again into a process that has an agent. The identity checks are those of ``call``.
    """
    target = _read_target(pid, _verifying(runtime_dir))
    path, info = _request(target, "hello", timeout, runtime_dir, {}, anywhere=True)
    _check_hello(target, path, info)
    return path, info


# -- finding Python processes ----------------------------------------------------------

_PY_NAME = re.compile(r"^python(?P<ver>\d(?:\.\d+)?)?[dmut]*$")
_LIBPY = re.compile(r"libpython(?P<ver>\d\.\d+)[a-z]*\.so")


@dataclass
class PythonProcess:
    pid: int
    uid: int
    user: str
    command: str
    executable: str
    python: str                        # "3.11", "3.11.7" when the agent said, or "unknown"
    agent: bool = False
    socket: Optional[str] = None
    agent_error: Optional[str] = None  # why a socket that exists did not answer hello
    busy: bool = False                 # it accepted the connection but answered too late
    hello: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def _python_version(pid: int, exe: str) -> Tuple[bool, str]:
    """(is Python, "3.X" or "unknown"): from the executable's name, else libpython in maps."""
    m = _PY_NAME.match(os.path.basename(exe))
    if m and m.group("ver") and "." in m.group("ver"):
        return True, m.group("ver")
    try:
        with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as f:
            for line in f:
                lib = _LIBPY.search(line)
                if lib:
                    return True, lib.group("ver")
    except OSError:
        pass
    return (m is not None), "unknown"


def _iter_pids() -> Iterator[int]:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            yield int(entry)


def list_python_processes(*, check_agent: bool = True, runtime_dir: Optional[str] = None,
                          hello_timeout: float = DISCOVERY_HELLO_TIMEOUT
                          ) -> List[PythonProcess]:
    """Every Python process whose executable we may read, except this one.

    Processes of other users are skipped unless we are root: their /proc/<pid>/exe is
    closed to us, and their agent would refuse us anyway.
    """
    me = os.getpid()
    found: List[PythonProcess] = []
    for pid in _iter_pids():
        if pid == me:
            continue
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
        except OSError:
            continue   # gone, a kernel thread, or not ours to read
        exe = exe[:-len(" (deleted)")] if exe.endswith(" (deleted)") else exe
        is_py, version = _python_version(pid, exe)
        if not is_py:
            continue
        uids = _proc_uids(pid)
        uid = uids[0] if uids else -1
        proc = PythonProcess(pid=pid, uid=uid, user=_user(uid) if uid >= 0 else "?",
                             command=" ".join(argv), executable=exe, python=version)
        found.append(proc)
    if check_agent and found:
        # A hung agent costs one hello timeout; probing in parallel keeps that the total.
        with ThreadPoolExecutor(max_workers=min(32, len(found))) as pool:
            list(pool.map(lambda p: _probe(p, runtime_dir, hello_timeout), found))
    return found


def _probe(proc: PythonProcess, runtime_dir: Optional[str], timeout: float) -> None:
    path = socket_path(proc.pid, runtime_dir)
    if not os.path.exists(path):
        return
    proc.socket = path
    try:
        info = hello(proc.pid, timeout, runtime_dir=runtime_dir)
    except AgentTimeout as exc:
        # Connected, sent, no answer in time: an agent is there (a stale socket refuses
        # the connection), held up by a busy process or a long request.
        proc.busy = True
        proc.agent_error = exc.message
        return
    except SutureError as exc:
        proc.agent_error = exc.message
        return
    proc.agent = True
    proc.hello = info
    if isinstance(info.get("python"), str):
        proc.python = info["python"]
