"""Host side of the agent protocol (docs/protocol.md): find a process's socket, talk to it.

One request and one response per connection. Every failure becomes a ``SutureError``
that names the PID, the socket path and what to do next; an error frame from the agent
is rebuilt as the class its code names (``SUT-E201`` becomes ``BaselineMismatch``), or
as ``AgentError`` carrying the agent's own code when this side does not know it.

Nothing here changes a target: connecting to a socket is the only contact, and a stale
socket file is left alone (only the agent that takes its name removes it).
"""

from __future__ import annotations

import errno
import os
import pwd
import re
import socket
import stat
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple, Type

from ..runtime import errors as _errors
from ..runtime import protocol
from ..runtime.errors import SutureError

__all__ = [
    # API
    "socket_path", "socket_candidates", "call", "hello", "list_python_processes",
    "PythonProcess", "rebuild_error",
    # errors
    "AgentError", "NoAgent", "AgentUnreachable", "AgentTimeout", "AgentPermissionDenied",
]

DEFAULT_TIMEOUT = 30.0
HELLO_TIMEOUT = 0.5


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
    return [root + os.path.join(d, name) for d in dict.fromkeys(dirs)]


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


# -- one call ---------------------------------------------------------------------------

def call(pid: int, op: str, timeout: float = DEFAULT_TIMEOUT, *,
         runtime_dir: Optional[str] = None, **fields: Any) -> Dict[str, Any]:
    """Send one ``op`` request to ``pid``'s agent and return its ``result``.

    Raises the agent's error rebuilt from its code, or ``NoAgent``,
    ``AgentPermissionDenied``, ``AgentUnreachable``, ``AgentTimeout``, ``ProtocolError``.
    """
    path = socket_path(pid, runtime_dir)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        try:
            identity = _identity(pid) if os.geteuid() == 0 else None
            if identity is not None and identity[0] != 0:
                sock.close()
                sock = _connect_as(identity, path, timeout)
            else:
                sock.connect(path)
        except FileNotFoundError as exc:
            raise _no_agent(pid, path) from exc
        except PermissionError as exc:
            raise _permission_error(pid, path, op, exc) from exc
        except ConnectionRefusedError as exc:
            raise _unreachable(pid, path, "connection refused", exc) from exc
        except socket.timeout as exc:
            raise _timeout(pid, path, op, timeout) from exc
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                raise _no_agent(pid, path) from exc
            raise _unreachable(pid, path, exc.strerror or str(exc), exc) from exc
        frame = _exchange(sock, pid, path, op, timeout, protocol.encode(protocol.request(op, **fields)))
    finally:
        sock.close()
    return _result(frame, pid, op)


# Root talking to another user's process connects *as that user*: the socket's path comes
# from the target's own environment (SUTURE_RUNTIME_DIR / XDG_RUNTIME_DIR), so its user
# could point it, through a symlink, at a socket only root may use; connecting with the
# user's identity leaves the kernel's permission checks to refuse that. Only connect()
# runs as the user, in a forked child that drops to the user's uid, gid and groups and
# hands the connected socket back over SCM_RIGHTS; everything else is unchanged.
# The child runs a handful of system calls and _exit()s, never Python code that could
# wait on a lock another thread of this (threaded) client held at fork time.
# Rejected: seteuid around connect() (process-wide: every thread would act as the user);
# a helper interpreter (the user may not be allowed to run ours: it can live under
# /root); a peer-pid check after connecting (the connection, and our first bytes,
# already reached whatever listens there).

def _identity(pid: int) -> Optional[Tuple[int, int, List[int]]]:
    """Effective uid, gid and groups of ``pid`` (None when /proc does not say)."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8", errors="replace") as f:
            status = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
        return (int(status["Uid"].split()[1]), int(status["Gid"].split()[1]),
                [int(g) for g in status.get("Groups", "").split()])
    except (OSError, KeyError, IndexError, ValueError):
        return None


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
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(timeout)
            try:
                s.connect(path)
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
                          hello_timeout: float = HELLO_TIMEOUT) -> List[PythonProcess]:
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
    except SutureError as exc:
        proc.agent_error = exc.message
        return
    proc.agent = True
    proc.hello = info
    if isinstance(info.get("python"), str):
        proc.python = info["python"]
