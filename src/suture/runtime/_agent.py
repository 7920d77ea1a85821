"""The agent: one daemon thread blocked in accept() on a Unix socket (docs/protocol.md).

Constraints, because this runs inside other people's processes:
* standard library only; importing this module does nothing (no thread, no
  socket, no fork hook): ``start()`` is the only switch;
* the thread sleeps in ``accept()`` when idle: no polling, no timers;
* no exception ever leaves the thread: a request that fails becomes an error
  frame, a connection that misbehaves is dropped, and the loop goes on;
* it never writes into the application's working directory: the socket lives
  in a per-user runtime directory (``socket_dir()``);
* it serves one connection at a time. Applying a patch is serialised by the
  engine anyway, and a second thread per connection would be a second thing
  to reason about in every target.

Access control is the directory (0700, ours), the socket (0600) and, checked
on every connection before a byte is read, the peer's uid (SO_PEERCRED): only
our own effective uid or root. The first two can be loosened by mistake (a
chmod, a shared volume); the third cannot.

Fork: ``start()`` registers one set of fork hooks. Before: take the fork guard (see
"Forking programs"). In the child: a forked child has no agent thread (threads do not
survive fork) but holds copies of the parent's listening socket; it closes its copies
(close, never shutdown: shutdown acts on the shared socket and would stop the parent's
agent), leaves the parent's socket file alone, and starts a fresh agent on
``<its pid>.sock``. Exits: see "Exits" (atexit, os._exit, SIGTERM).

Size: about 1,200 lines, over the ~500-line rule of thumb. Its parts share the agent's
private state (the agent object, the lock, the fork guard, the list of patches not yet
survived) and its audit helpers (``_record``, ``_warn``, ``_outcome``): serving requests,
applying installed patches at start (``_auto_apply``), crash-loop detection, and (issue
16) forking programs, exits and dead sockets. The split that keeps them
apart without an import circle moves the audit helpers into a module of their own and
auto-apply with crash loops into another that the agent imports; not done in issue 14,
whose runtime work was the engine.
"""

from __future__ import annotations

import _socket as socket   # not socket.py: see "Memory" below
import errno
import os
import stat
import struct
import sys
import threading
import time

import _signal as signal   # type: ignore   # not signal.py (no stubs): see "Memory" below

from . import _enginelock, _inherit, _interps, _switching, protocol
from .errors import InternalError, SutureError, explain, os_cause, os_failure
from .protocol import PeerRefused, ProtocolError

TYPE_CHECKING = False
if TYPE_CHECKING:   # not at run time: typing costs an idle agent 1.6 MiB (issue 19)
    from typing import Any, Callable, Dict, List, Optional, Tuple

__all__ = ["start", "stop", "running", "socket_dir", "socket_path", "AgentStartError",
           "THREAD_NAME"]

# Memory (issue 19): this module loads into every process started under ``suture run``,
# and an idle agent should cost it under 2 MiB. What it imports at start is the floor:
# threading, struct, and the C modules _socket and _signal rather than socket.py and
# signal.py, which add enum, selectors and a dozen more modules (0.5-1.2 MiB, by version)
# for wrappers the agent does not need: _socket's sockets have every method used here but
# accept() (``_accept()`` plus a wrap, in _serve), and _signal returns plain ints where
# signal.py returns enums (compared here by value). typing is imported only by the type
# checker. Everything else loads when first needed, under the fork guard (_load).

THREAD_NAME = "suture-agent"
# While a request is served: each blocking call (recv, send, a file read, an import, the
# audit store) gives the GIL away, and with N threads busy in Python code winning it back
# takes about N x the switch interval. 5 ms (the default) x 50 threads made a hello take
# 2 s; 0.1 ms keeps each wait near 5 ms (docs/live-processes.md, "Busy processes").
SERVE_SWITCH_INTERVAL = 0.0001
_OPS = ("hello", "status", "apply", "revert", "list", "dists", "inherit")


class AgentStartError(SutureError, OSError):
    """The agent cannot start: unsafe or unusable runtime directory, or no SO_PEERCRED."""

    code = "SUT-E602"


# ---------------------------------------------------------------- where the socket is

def _default_dir(environ: Any, euid: int) -> str:
    """The directory rule of docs/protocol.md, as a pure function of (environment, uid)."""
    explicit = environ.get("SUTURE_RUNTIME_DIR")
    if explicit:
        return str(explicit)
    if euid == 0:
        return "/run/suture"
    xdg = environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg):
        return os.path.join(xdg, "suture")
    return f"/tmp/suture-{euid}"


def socket_dir() -> str:
    """Where agents of this user put their sockets (not created here)."""
    return _default_dir(os.environ, os.geteuid())


def socket_path(pid: Optional[int] = None, runtime_dir: Optional[str] = None) -> str:
    """``<dir>/<pid>.sock`` for ``pid`` (default: this process)."""
    return os.path.join(runtime_dir or socket_dir(),
                        f"{os.getpid() if pid is None else int(pid)}.sock")


def ensure_dir(path: str) -> str:
    """Create ``path`` 0700 if missing; refuse one that another user could tamper with.

    Checked with lstat, so a symlink planted at a predictable name such as
    /tmp/suture-1000 is refused rather than followed. An existing directory
    must be ours and not writable by group or others; we do not chmod a
    directory we did not create.
    """
    euid = os.geteuid()
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
        try:
            os.mkdir(path, 0o700)
            os.chmod(path, 0o700)  # the umask may have removed bits; never adds any here
        except FileExistsError:
            pass
        st = os.lstat(path)
    except OSError as exc:
        raise AgentStartError(f"cannot create the Suture runtime directory {path}: {exc}. "
                              f"Set SUTURE_RUNTIME_DIR to a directory you own.",
                              details={"path": path}) from exc
    if not stat.S_ISDIR(st.st_mode):
        raise AgentStartError(f"refusing to use {path} as the Suture runtime directory: it is "
                              f"not a directory (a symlink or a file). Remove it or set "
                              f"SUTURE_RUNTIME_DIR.", details={"path": path})
    if st.st_uid != euid:
        raise AgentStartError(f"refusing to use {path} as the Suture runtime directory: it is "
                              f"owned by uid {st.st_uid}, this process runs as uid {euid}. "
                              f"Remove it or set SUTURE_RUNTIME_DIR to a directory you own.",
                              details={"path": path, "owner": st.st_uid, "uid": euid})
    if st.st_mode & 0o022:
        raise AgentStartError(f"refusing to use {path} as the Suture runtime directory: mode "
                              f"{stat.S_IMODE(st.st_mode):04o} lets other users write into it. "
                              f"Run `chmod 700 {path}` or set SUTURE_RUNTIME_DIR.",
                              details={"path": path, "mode": stat.S_IMODE(st.st_mode)})
    return path


def _clear_stale(path: str) -> None:
    """Remove a socket file left at our name by a dead process; refuse anything else."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise AgentStartError(f"refusing to start the agent: {path} exists and is not a socket. "
                              f"Remove it.", details={"path": path})
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except OSError:
        pass  # nobody listens: a dead process with our pid number left it
    else:
        # Same pid number, still alive: another pid namespace sharing this directory.
        raise AgentStartError(f"refusing to start the agent: {path} is served by a live process "
                              f"(another pid namespace shares this directory?). Give each "
                              f"container its own SUTURE_RUNTIME_DIR.", details={"path": path})
    finally:
        probe.close()
    os.unlink(path)


# ---------------------------------------------------------------- the agent itself

def _peer(conn: socket.socket) -> Tuple[int, int]:
    """(pid, uid) of the peer (SO_PEERCRED)."""
    raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,  # type: ignore[attr-defined]
                          struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", raw)
    return int(pid), int(uid)


def _send_all(conn: socket.socket, data: bytes) -> None:
    # MSG_NOSIGNAL: an application that restored SIGPIPE's default action must not
    # be killed because a client hung up before reading its answer.
    flags = getattr(socket, "MSG_NOSIGNAL", 0)
    view = memoryview(data)
    while view:
        sent = conn.send(view, flags)
        view = view[sent:]


def _unexpected(exc: BaseException) -> SutureError:
    """An exception no step named: an OSError behind it (EMFILE while importing, ENOSPC...)
    is reported as what it is (SUT-E640); anything else is our bug (SUT-E999)."""
    cause = os_cause(exc, absent=True)
    if cause is not None:
        return os_failure(cause, None, "serving the request",
                          state="The request did not complete; check the process with "
                                "`suture status --pid PID`.")
    return _internal(exc)


def _internal(exc: BaseException) -> InternalError:
    return InternalError(f"Suture bug; process state unknown; please report: "
                         f"{type(exc).__name__}: {exc}",
                         details={"type": type(exc).__name__, "message": str(exc)})


class _Agent:
    def __init__(self, path: str, sock: socket.socket) -> None:
        self.path = path
        self.sock = sock
        self.pid = os.getpid()
        self.euid = os.geteuid()
        st = os.lstat(path)
        self.ident = (st.st_dev, st.st_ino)
        self.stopping = False
        self.conn: Optional[socket.socket] = None
        self.ready = threading.Event()   # set once the start-up applies are done (_serve)
        # A sub-interpreter's agent (issue 22): isolated ones allow no daemon thread
        # (3.12+), and one left running would stop Py_EndInterpreter; so a plain thread
        # there, stopped by threading's shutdown of that interpreter before it joins its
        # threads (``start`` registers ``stop`` for it).
        self.thread = threading.Thread(target=self._serve, name=THREAD_NAME,
                                       daemon=_interp == 0)

    def __repr__(self) -> str:
        state = "stopping" if self.stopping else "serving"
        return f"<suture agent pid={self.pid} {state} {self.path}>"

    # -- loop
    def _serve(self) -> None:
        backoff = threading.Event()  # never set: wait() is a sleep that needs no import
        if not self.stopping:
            _auto_apply()  # patch store: before the first request, never raises
            if not _started_by_main:   # else the main agent, busy starting us, forwards them
                _inherit_patches(os.path.dirname(self.path))  # by hand to ancestors
                if _interp == 0:
                    _inherit.publish(os.path.dirname(self.path))   # for our sub-interpreters
            # What each loaded module's file is now, to tell an upgrade under the running
            # process later (``inventory``); one stat per module, never raises.
            try:
                _load(("suture.runtime._inventory",))
                from . import _inventory
                _inventory.note_loaded()
            except BaseException:  # noqa: BLE001 - bookkeeping must not stop the agent
                pass
        self.ready.set()
        while not self.stopping:
            try:
                # _socket's accept: the new descriptor (close-on-exec, blocking: the
                # listening socket has no timeout), wrapped as socket.py's accept() does.
                fd, _ = self.sock._accept()  # type: ignore[attr-defined]
                conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fd)
            except OSError as exc:
                if self.stopping or exc.errno in (errno.EBADF, errno.EINVAL):
                    return  # stop() shut the socket down, or it is gone: end quietly
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    backoff.wait(0.1)  # out of resources: do not spin at 100% CPU
                continue
            except BaseException:  # noqa: BLE001 - nothing may escape into the application
                continue
            self.conn = conn
            try:
                # Lowered before the first request's imports too: in a busy process each
                # file read of an import waits for the GIL ("Busy processes").
                with _switching.lowered(SERVE_SWITCH_INTERVAL):
                    self._handle(conn)
            except BaseException:  # noqa: BLE001 - a failed send: drop the connection
                pass
            finally:
                self.conn = None
                try:
                    conn.close()
                except OSError:
                    pass

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(protocol.READ_TIMEOUT)
        plain = False   # the canonical hello: read and answered without json (protocol.py)
        try:
            peer, uid = _peer(conn)
            # The main interpreter's agent forwarding a request to this sub-interpreter's
            # agent (runtime/_interps.py): it audits the request for the whole process.
            forwarded = _interp != 0 and peer == self.pid
            if uid not in (0, self.euid):
                reply = protocol.error(PeerRefused(
                    f"peer uid {uid} is not allowed", details={"uid": uid,
                                                              "allowed": sorted({0, self.euid})}))
            else:
                try:
                    line = protocol.read_line(conn, protocol.MAX_LINE)
                except socket.timeout as exc:
                    raise ProtocolError(f"no complete request within "
                                        f"{protocol.READ_TIMEOUT:g} s") from exc
                if line == protocol.HELLO_REQUEST:
                    plain, frame = True, {"v": protocol.VERSION, "op": "hello"}
                else:
                    _load(_REQUEST_MODULES)
                    frame = protocol.parse(line, protocol.MAX_LINE)
                reply = self._dispatch(frame, uid, forwarded)
        except (ConnectionError, BrokenPipeError):
            return  # the peer went away: nobody to answer
        except SutureError as exc:
            reply = protocol.error(exc)
        except Exception as exc:  # noqa: BLE001 - becomes SUT-E640 or SUT-E999 on the wire
            reply = protocol.error(_unexpected(exc))
        data = b""
        if plain:
            try:
                data = protocol.encode_plain(reply)
            except Exception:  # noqa: BLE001 - not plain data: written by json below
                data = b""
        if not data:
            _load(_REQUEST_MODULES)
            try:
                data = protocol.encode(reply)
            except Exception as exc:  # noqa: BLE001 - e.g. a result that is not JSON
                data = protocol.encode(protocol.error(_internal(exc)))
        conn.settimeout(protocol.READ_TIMEOUT)  # a peer that never reads must not wedge us
        _send_all(conn, data)

    def _dispatch(self, frame: Dict[str, Any], uid: int,
                  forwarded: bool = False) -> Dict[str, Any]:
        bad = protocol.check_version(frame)
        if bad is not None:
            raise bad
        op = frame.get("op")
        if op == "stop" and forwarded:
            # The main interpreter's agent, at the process's exit: end this thread while
            # the process still runs (3.13 hung at exit on a sub-interpreter's thread).
            self.stopping = True
            self.unlink()
            return protocol.ok({"stopped": True})
        handler = _HANDLERS.get(op) if isinstance(op, str) else None
        if handler is None:
            raise ProtocolError(f"unknown op {op!r}; this agent knows {', '.join(_OPS)}",
                                details={"ops": list(_OPS)})
        _load(_OP_MODULES.get(str(op), ()))   # under the fork guard: see "Forking programs"
        if _interp == 0 and op in _interps.FANNED:
            # The process's one endpoint: every other interpreter answers too (_interps).
            local, directory = handler, os.path.dirname(self.path)

            def handler(frame: Dict[str, Any]) -> Dict[str, Any]:
                return _interps.fan(str(op), frame, local, directory, _op_revert)
        try:
            if op in _AUDITED and not forwarded:
                return protocol.ok(_audited(op, handler, frame, uid))
            return protocol.ok(handler(frame))
        finally:
            if op in _AUDITED and _interp == 0:
                # What sub-interpreters created from now on inherit (_inherit.publish).
                _inherit.publish(os.path.dirname(self.path))

    # -- lifecycle
    def begin(self) -> None:
        # Started with SIGTERM blocked, which a new thread inherits (and so do the threads
        # it starts: the survival timer): the kernel then never picks the agent's threads
        # for a SIGTERM sent to the process, and a Python handler for it (ours, or the
        # application's) is not left waiting for the main thread to notice it.
        try:
            before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        except (ValueError, OSError, AttributeError):
            before = {signal.SIGTERM}
        try:
            if _interp != 0:
                # Stopped, not joined: threading joins it right after (joining it here as
                # well waited out the whole timeout on 3.13 when the interpreter ended).
                threading._register_atexit(_stop_unjoined)  # type: ignore[attr-defined]
            self.thread.start()
        finally:
            if signal.SIGTERM not in before:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})

    def end(self, timeout: Optional[float]) -> None:
        self.stopping = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes accept() on Linux
        except OSError:
            pass
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(timeout)
        try:
            self.sock.close()
        except OSError:
            pass
        self.unlink()

    def unlink(self) -> None:
        """Remove our socket file, only if it is still ours (same pid, same inode)."""
        if os.getpid() != self.pid:
            return
        try:
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == self.ident:
                os.unlink(self.path)
        except OSError:
            pass

    def abandon(self) -> None:
        """In a forked child: close our copies of the parent's sockets, touch nothing else."""
        for s in (self.sock, self.conn):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass


# ---------------------------------------------------------------- requests

def _pid_namespace() -> str:
    """``pid:[inode]`` of this process's pid namespace, "" when /proc does not say."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _op_hello(frame: Dict[str, Any]) -> Dict[str, Any]:
    # pid (as this process sees itself), pidns and start let a client prove that the
    # process that answers is the one it was asked about (docs/protocol.md, "Identity").
    version = getattr(sys.modules.get("suture"), "__version__", "unknown")
    from . import _freethreaded
    # sys.version's first word is what platform.python_version() returns on CPython
    # (platform costs an idle agent 1 MiB: issue 19).
    return {"pid": os.getpid(), "python": sys.version.split()[0],
            "implementation": sys.implementation.name, "agent": version,
            "protocol": list(protocol.SUPPORTED), "uid": os.geteuid(),
            "argv": list(getattr(sys, "argv", [])), "executable": sys.executable,
            "pidns": _pid_namespace(), "start": _start_ticks("self"),
            # which interpreter answers (0: the main one, the process's endpoint) and how
            # many the process has (null: this Python cannot list them); issue 22
            "interpreter": _interp, "interpreters": _count_interpreters(),
            # a free-threaded build: answered, never patched (SUT-E218; _freethreaded)
            "free_threaded": _freethreaded.probe()["free_threaded"]}


def _count_interpreters() -> Optional[int]:
    found = _interps.listed()
    return None if found is None else len(found)


def _op_status(frame: Dict[str, Any]) -> Dict[str, Any]:
    from .. import runtime
    old_calls = frame.get("old_calls")
    if old_calls is not None:
        if not isinstance(old_calls, bool):
            raise ProtocolError(f"'old_calls' must be true (start counting calls into replaced "
                                f"code), false (stop) or absent, not {old_calls!r}")
        _load((_ENGINE,))
        runtime.count_old_calls(old_calls)   # why not, if it cannot: in the status below
    # Without the engine when nothing was ever applied here (runtime.status): a host-wide
    # `suture status` leaves idle agents idle (issue 19).
    return runtime.status()


def _op_apply(frame: Dict[str, Any]) -> Dict[str, Any]:
    import base64
    import binascii

    from .. import runtime
    patch = frame.get("patch")
    if not isinstance(patch, str):
        raise ProtocolError("apply needs 'patch': the patch file in base64")
    try:
        data = base64.b64decode(patch.encode("ascii"), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError(f"'patch' is not valid base64: {exc}") from exc
    wait = frame.get("wait_quiescent")
    if wait is not None and (isinstance(wait, bool) or not isinstance(wait, (int, float))
                             or wait < 0):
        raise ProtocolError(f"'wait_quiescent' must be null or a number of seconds >= 0, "
                            f"not {wait!r}")
    # Set by the tooling when only keys restricted to the patch's distribution trust it:
    # membership in that distribution must then be proven here (_members). Absent: a
    # client that checked no restriction (the socket admits only this uid and root).
    restricted_to = frame.get("restricted_to")
    if restricted_to is not None and (not isinstance(restricted_to, str) or not restricted_to):
        raise ProtocolError(f"'restricted_to' must be null or a distribution name, "
                            f"not {restricted_to!r}")
    _watch_imports()
    patch_ = runtime.load_patch(data)
    out = runtime.apply(patch_, wait_quiescent=None if wait is None else float(wait),
                        restricted=restricted_to is not None,
                        deadline=_deadline(frame)).to_dict()
    # Kept for the processes this one starts later (_inherit); the target goes into the
    # audit row (_audited), so that `suture status` still knows it once we have exited.
    _inherit.remember(data, restricted_to is not None, str(out.get("patch", "")),
                      str(out.get("state", "")))
    out["target"] = dict(patch_.target)
    return out


def _deadline(frame: Dict[str, Any]) -> Optional[float]:
    """apply/revert's optional ``deadline``: epoch seconds after which the client no longer
    waits, so nothing may be committed (docs/protocol.md, "Deadline")."""
    deadline = frame.get("deadline")
    if deadline is None:
        return None
    if isinstance(deadline, bool) or not isinstance(deadline, (int, float)) or deadline <= 0:
        raise ProtocolError(f"'deadline' must be null or epoch seconds, not {deadline!r}")
    return float(deadline)


def _watch_imports() -> None:
    """Have every refusal at import (a pending module that is not the patch's baseline)
    recorded in the audit log: the process then runs that module unpatched. Registered
    when the agent first applies a patch; imports the engine, under the fork guard."""
    _load(_ENGINE_MODULES)
    from .engine import on_import_refused, on_reverted
    on_import_refused(_import_refused)
    on_reverted(_reverted)


def _import_refused(module: str, patch_id: str, code: str, message: str) -> None:
    # On the importing thread, under the engine lock: the row is written by a thread of
    # its own, so that the import does not wait for the store.
    uid = os.geteuid()
    _interps.background(_record, "suture-audit", "import", patch_id, "refused", uid,
                        f"{module}: {code} {message}")


def _reverted(module: str, patch_id: str, code: str, message: str) -> None:
    # status() found the module's live code no longer the fixed code (SUT-E211): the
    # process runs old code there again. Recorded once per finding, off the status thread.
    uid = os.geteuid()
    _interps.background(_record, "suture-audit", "verify", patch_id,
                        "reverted by the application", uid, f"{module}: {code} {message}")


def _op_revert(frame: Dict[str, Any]) -> Dict[str, Any]:
    from .. import runtime
    patch_id = frame.get("patch_id")
    if not isinstance(patch_id, str) or not patch_id:
        raise ProtocolError("revert needs 'patch_id': a patch id or a unique prefix")
    force = frame.get("force", False)
    if not isinstance(force, bool):
        raise ProtocolError("revert's 'force' must be true or false")
    return runtime.revert(patch_id, force, _deadline(frame)).to_dict()


def _op_list(frame: Dict[str, Any]) -> Dict[str, Any]:
    from .. import runtime
    return {"patches": runtime.applied()}


def _op_dists(frame: Dict[str, Any]) -> Dict[str, Any]:
    names = frame.get("names")
    if names is not None and (not isinstance(names, list)
                              or not all(isinstance(n, str) for n in names)):
        raise ProtocolError("'names' must be a list of distribution names, or absent")
    modules = frame.get("modules")
    if modules is not None and (not isinstance(modules, list)
                                or not all(isinstance(m, str) for m in modules)):
        raise ProtocolError("'modules' must be a list of module names, or absent")
    answer = _dists(names)
    if modules is not None:   # a patch's modules: which this process has imported
        answer["modules"] = {m: m in sys.modules for m in modules}
    return answer


def _op_inventory(frame: Dict[str, Any]) -> Dict[str, Any]:
    from . import _inventory
    return _inventory.inventory()


_HANDLERS: Dict[str, Callable[[Dict[str, Any]], Dict[str, Any]]] = {
    "hello": _op_hello, "status": _op_status, "apply": _op_apply, "revert": _op_revert,
    "list": _op_list, "dists": _op_dists, "inherit": _inherit.op_inherit,
    "inventory": _op_inventory,
}


def _top_level(dist: Any) -> List[str]:
    """Import names a distribution provides (3.9: top_level.txt, else its RECORD)."""
    text = None
    try:
        text = dist.read_text("top_level.txt")
    except Exception:  # noqa: BLE001 - broken metadata must not fail the request
        text = None
    if text:
        return [line.strip() for line in text.splitlines() if line.strip()]
    names = set()
    for f in (dist.files or ()):
        parts = f.parts
        if not parts:
            continue
        if len(parts) == 1:
            if parts[0].endswith(".py"):
                names.add(parts[0][:-3])
            elif ".cpython-" in parts[0] or parts[0].endswith((".so", ".pyd")):
                names.add(parts[0].split(".")[0])
        elif not parts[0].endswith((".dist-info", ".egg-info", ".data")) and parts[0] != "..":
            names.add(parts[0])
    return sorted(names)


def _dists(names: Optional[List[str]]) -> Dict[str, Any]:
    """Versions of installed distributions and whether one of their modules is imported.

    Everything is caught: a broken METADATA in someone's site-packages must not
    fail the request, let alone the process. A distribution whose import names
    cannot be found reports ``loaded: null``.
    """
    import importlib.metadata as md

    from ._members import canonical as _canonical  # one normalisation for dist names

    found: Dict[str, Any] = {}  # key (requested name, or the installed name) -> Distribution
    if names is None:
        for dist in md.distributions():
            try:
                key = dist.metadata["Name"]
            except Exception:  # noqa: BLE001
                continue
            if key and key not in found:
                found[key] = dist
    else:
        for name in names:
            try:
                found[name] = md.distribution(name)
            except Exception:  # noqa: BLE001 - not installed, or unreadable
                continue
    tops: Dict[str, List[str]] = {}
    # packages_distributions() reads every distribution's metadata: for named ones, their
    # own top_level.txt/RECORD (_top_level) says the same at a fraction of the cost (in a
    # process whose cores are busy, each file read costs a wait for the GIL: seconds).
    if sys.version_info >= (3, 10) and names is None:
        try:
            for top, owners in md.packages_distributions().items():
                for owner in owners:
                    tops.setdefault(_canonical(owner), []).append(top)
        except Exception:  # noqa: BLE001
            tops = {}
    versions: Dict[str, str] = {}
    loaded: Dict[str, Optional[bool]] = {}
    for key, dist in found.items():
        try:
            versions[key] = str(dist.version)
        except Exception:  # noqa: BLE001
            continue
        try:
            canon = _canonical(str(dist.metadata["Name"]))
            modules = tops.get(canon) or _top_level(dist)
            loaded[key] = any(m in sys.modules for m in modules) if modules else None
        except Exception:  # noqa: BLE001
            loaded[key] = None
    return {"dists": versions, "loaded": loaded}


# ---------------------------------------------------------------- patch store and audit log
#
# Everything here is best effort and never raises: the store is an SQLite file
# that may be missing, locked, unreadable or refused as unsafe (store.py), and
# none of that may break the target or change an apply's outcome. A failure to
# read the store leaves one line on stderr; a failure to write the audit row of
# an apply or revert is reported in the answer (``audit``), for the client to
# record elsewhere (the apply itself happened, or was refused, either way).

_AUDITED = ("apply", "revert")


# What the agent imports, and when (issue 19). An idle agent imports nothing beyond what
# start() needs (socket, threading, signal, struct, protocol, errors, _inherit,
# _enginelock): the engine, the patch reader, the store and sqlite3, json and the rest
# load when a request or a start-up apply needs them, on the agent thread, through
# _load(), which imports under the fork guard (see "Forking programs": a fork waits for
# the import to finish, so no child inherits a module's import lock held by a thread it
# does not have). Each list names what the code outside the engine lock then imports;
# what the engine imports inside its own functions runs under the engine lock, which a
# fork waits for too.
_ENGINE = "suture.runtime.engine"
_REQUEST_MODULES = protocol.FRAME_MODULES
_PATCH_MODULES = ("base64", "binascii", "suture.runtime.patchfile")
_STORE_MODULES = ("sqlite3", "suture.runtime.store")
_ENGINE_MODULES = _PATCH_MODULES + _STORE_MODULES + (_ENGINE,)
_OP_MODULES: Dict[str, Tuple[str, ...]] = {
    "hello": ("suture.runtime._freethreaded",),
    "status": ("suture.runtime._freethreaded",),   # the engine if it is loaded already
    "apply": _ENGINE_MODULES + ("importlib.util",),
    "revert": _ENGINE_MODULES,
    "dists": ("importlib.metadata", "suture.runtime._members"),
    "inherit": ("base64",),
    "inventory": ("suture.runtime._inventory", "base64", "csv", "hashlib"),
}


_loading: List[float] = []     # monotonic start of each _load in progress (this process)
_loaded = [0.0]                # seconds spent in finished _load calls (this process)


def _load(names: Tuple[str, ...]) -> None:
    """Import ``names`` under the fork guard (those not imported yet). An ImportError is
    the caller's, as it would be from an import statement. The time it takes is not
    counted against ``wait_ready``'s bound."""
    missing = [n for n in names if n not in sys.modules]
    if not missing:
        return
    began = time.monotonic()
    _loading.append(began)
    try:
        with _guarded():
            for name in missing:
                try:
                    __import__(name)
                except ImportError:
                    if name != "sqlite3":
                        raise
                    # No sqlite3 in this Python: the store reports it (StoreError) when used.
    finally:
        _loading.remove(began)
        _loaded[0] += time.monotonic() - began


def _load_seconds() -> float:
    """Seconds spent in _load so far in this process, those in progress included."""
    now = time.monotonic()
    return _loaded[0] + sum(now - began for began in list(_loading))


def _bad_patches() -> Dict[str, Dict[str, Any]]:
    """The store's bad marks, read under the fork guard; {} if it cannot be read."""
    try:
        with _guarded():
            from . import store
            return store.bad_patches()
    except BaseException:  # noqa: BLE001 - no store: nothing is marked bad that we can see
        return {}


def _outcome(exc: BaseException) -> str:
    from .errors import RolledBack
    if isinstance(exc, SutureError) and not isinstance(exc, (RolledBack, InternalError)):
        return f"refused {exc.code}"
    return f"failed {getattr(exc, 'code', 'SUT-E999')}"


def _warn(message: str) -> None:
    try:
        sys.stderr.write(f"suture: warning: {message}\n")
    except BaseException:  # noqa: BLE001 - a closed stderr is not worth breaking the target
        pass


def _record(op: str, patch_id: str, result: str, uid: int,
            detail: str = "") -> Optional[Dict[str, Any]]:
    """Append an audit row; None when written, else why not (the ``audit`` field of
    docs/protocol.md: data for the client, which records it in its own store)."""
    try:
        with _guarded():   # SQLite is not fork-safe, nor an import: see "Forking programs"
            from . import store
            store.audit(op, patch_id, result, os.getpid(), uid, detail[:2000])
        return None
    except BaseException as exc:  # noqa: BLE001 - an audit row is not worth breaking the target
        return _unrecorded(exc, uid)


def _unrecorded(exc: BaseException, uid: int) -> Dict[str, Any]:
    """Why an audit row was not written, as JSON data: the error's code and message, the
    errno of the OSError under it (EACCES, ENOSPC...), the store's path, the peer's uid."""
    number = None
    cause: Optional[BaseException] = exc
    while cause is not None and number is None:
        if isinstance(cause, OSError) and isinstance(cause.errno, int):
            number = cause.errno
        cause = cause.__cause__
    details = getattr(exc, "details", None)
    path = details.get("path") if isinstance(details, dict) else None
    return {"recorded": False, "why": str(getattr(exc, "message", exc))[:2000],
            "code": getattr(exc, "code", None) if isinstance(exc, SutureError) else None,
            "error": type(exc).__name__, "errno": number,
            "errno_name": errno.errorcode.get(number) if number is not None else None,
            "store": path if isinstance(path, str) else None, "pid": os.getpid(),
            "uid": os.geteuid(), "peer_uid": uid}


def _frame_patch_id(op: str, frame: Dict[str, Any]) -> str:
    """The patch a failed request named, as far as it can be read; "" if not."""
    try:
        if op == "revert":
            return str(frame.get("patch_id") or "")
        import base64

        from .patchfile import patch_id, payload_json, read_envelope
        envelope, payload = read_envelope(base64.b64decode(
            str(frame.get("patch")).encode("ascii"), validate=True))
        return patch_id(payload_json(envelope, payload))
    except Exception:  # noqa: BLE001
        return ""


def _audited(op: str, handler: Callable[[Dict[str, Any]], Dict[str, Any]],
             frame: Dict[str, Any], uid: int) -> Dict[str, Any]:
    """Run an apply/revert request and append its outcome, with the peer's uid, to the log.

    The answer says whether the row was written: ``audit`` in the result, or in the
    error's details when the request failed (docs/protocol.md). A row this process could
    not write (its store corrupt, unreadable, full, too new) is then the client's to
    record in its own store; dropping it silently would leave a change recorded nowhere.
    """
    try:
        out = handler(frame)
    except BaseException as exc:
        details = getattr(exc, "details", None)
        missed = _record(op, _frame_patch_id(op, frame), _outcome(exc), uid,
                         _interps.summary(details.get("interpreters")
                                          if isinstance(details, dict) else None) + str(exc))
        if missed is not None and isinstance(exc, SutureError):
            exc.details["audit"] = missed
        raise
    missed = _record(op, str(out.get("patch", "")), str(out.get("state", "")), uid,
                     _interps.summary(out.get("interpreters")) + _hand_detail(op, out))
    out["audit"] = missed if missed is not None else {"recorded": True}
    return out


def _hand_detail(op: str, out: Dict[str, Any]) -> str:
    """The detail of a successful apply's row: our parent and the patch's target, which
    `suture status` reads to judge the processes a gone process's parent starts later
    (tooling/fleet/fanout.py, ``_gone_hand_patches``)."""
    import json
    if op != "apply" or not isinstance(out.get("target"), dict):
        return ""
    return (f"by hand; ppid={os.getppid()}; target="
            f"{json.dumps(out['target'], sort_keys=True, separators=(',', ':'))}")


def _inherit_patches(runtime_dir: str) -> None:
    """At agent start, after the store: apply what our ancestors were patched with by hand
    (runtime/_inherit.py). On the agent thread, so the application is not delayed."""
    try:
        _inherit.from_ancestors(runtime_dir, _record, _warn, _watch_imports, _outcome,
                                _load, _bad_patches, own_main=_interp != 0)
    except BaseException as exc:  # noqa: BLE001 - never break the target
        _warn(f"patches of the ancestors of pid {os.getpid()} not inherited: {exc}")


def _concerns(patch: Any) -> bool:
    """Whether a module of ``patch`` is imported here, or importable (top-level lookup only).

    find_spec on a top-level name runs the finders but executes nothing. A
    package that only becomes importable later (sys.path changed at run time)
    is missed: that process gets the patch with `suture apply`.
    """
    import importlib.util
    for m in patch.modules:
        top = m.name.split(".")[0]
        if top in sys.modules:
            return True
        try:
            if importlib.util.find_spec(top) is not None:
                return True
        except Exception:  # noqa: BLE001 - a broken finder means "not here"
            continue
    return False


def _auto_apply() -> None:
    """Apply every installed patch that concerns this process; audit each outcome.

    Runs on the agent thread, so interpreter start is not delayed and the
    application's threads keep running. A module not imported yet becomes
    "pending import" and is patched when imported; a refusal (the process runs
    another version) is recorded and swallowed.

    Only rows with a trust record are applied: ``suture install`` verified their
    signatures against the host's trust policy before writing them (the runtime
    cannot check Ed25519 with the standard library). A row without one was not
    written by ``suture install`` (an older Suture, or the database edited by
    hand) and is refused, recorded, and left for ``suture install`` to verify.
    A patch marked bad on this host (a process died or failed its health check
    after it) is refused the same way until a human clears the mark.

    A patch this process already runs is skipped without a row: a forked child got it
    from its parent's memory (it never applied anything itself, so it leaves no
    "applying" row for the crash-loop count), or it was applied before the agent
    started. Everything but the apply itself runs under the fork guard (see "Forking
    programs" below); the apply runs under the engine lock, which forks wait for too.
    """
    if _fork_unguarded:
        # This child was forked while the parent's agent used the store and the guard
        # could not be had in time: SQLite's process-wide state (its mutexes, its lock
        # bookkeeping) may be a half-done copy, where a call can hang for ever.
        _warn(f"installed patches not applied in forked pid {os.getpid()}: it was forked "
              f"while its parent's agent was using the patch store; it runs with what it "
              f"inherited ({', '.join(_applied_ids()) or 'no patch'})")
        return
    with _guarded():
        try:
            from . import store
            if store.nothing_installed():
                return   # decided without sqlite3, the patch reader or the engine (issue 19)
            blocked = store.write_blocked()
            rows = store.load_installed()
            bad = store.bad_patches() if rows else {}
        except BaseException as exc:  # noqa: BLE001 - never break the target
            _warn(f"installed patches not applied in pid {os.getpid()}: {exc}")
            return
        if not rows:
            return
        if blocked is not None:
            # The store was read without writing (store._read); say why writes will fail
            # and that the patches still apply, so that a full disk is not mistaken for a fix.
            name, what, remedy = explain(blocked)
            _warn(f"pid {os.getpid()}: the Suture state directory {blocked.filename} cannot be "
                  f"written: {what} ({name}). Its {len(rows)} installed patch(es) were read "
                  f"read-only and are applied; audit rows, crash-loop marks and `suture "
                  f"install` fail there. To fix: {remedy}.")
        uid = os.geteuid()
        try:
            from .. import runtime
            from .errors import MarkedBad, UntrustedPatch
        except BaseException:  # noqa: BLE001
            return
    for data, trust in rows:
        try:
            with _guarded():
                patch = runtime.load_patch(data)
                if not _concerns(patch):
                    continue
            # Outside the guard: applied_ids() takes the engine lock (never both at once).
            if patch.id in _applied_ids():
                continue    # inherited through fork, or applied before the agent started
            with _guarded():
                if trust is None:
                    raise UntrustedPatch(
                        f"installed patch {patch.short_id} has no trust record (not written "
                        f"by `suture install`); not applied. Install it again with "
                        f"`suture install`", details={"patch_id": patch.id})
                if patch.id in bad:
                    raise MarkedBad(f"installed patch {patch.short_id} is marked bad on this "
                                    f"host ({bad[patch.id]['reason']}); not applied until "
                                    f"`suture bad clear {patch.short_id}`",
                                    details={"patch_id": patch.id})
                loop = _crash_loop(store, patch.id)
                if loop is not None:
                    store.mark_bad(patch.id, loop[0], uid, processes=loop[1])
                    raise MarkedBad(f"installed patch {patch.short_id} is now marked bad on "
                                    f"this host ({loop[0]}); not applied until "
                                    f"`suture bad clear {patch.short_id}`",
                                    details={"patch_id": patch.id})
                if trust.get("unsigned"):
                    _warn(f"pid {os.getpid()} applies patch {patch.short_id} "
                          f"({patch.describe()}), which no trusted key signed: it was "
                          f"installed with --allow-unsigned (development only)")
                # Written first: a process the patch kills at once must still leave a trace.
                # Once per process: the main interpreter's agent counts crash loops.
                if _interp == 0:
                    _record("auto-apply", patch.id, "applying", uid,
                            f"start={_start_ticks(os.getpid())}"
                            + (f";{_SIGTERM_UNRECORDED}" if _sigterm_unobservable else ""))
                    _survival.append(patch.id)
                _watch_imports()
            result = runtime.apply(patch, restricted=bool(trust.get("restricted_to")))
        except BaseException as exc:  # noqa: BLE001 - a refusal is recorded, never raised
            with _guarded():
                import base64
                refused_id = _frame_patch_id("apply", {"patch": base64.b64encode(data)
                                                       .decode("ascii")})
                _record("auto-apply", refused_id, _outcome(exc), uid, str(exc))
                if refused_id in _survival:
                    _survival.remove(refused_id)        # refused: the process runs without it
            continue
        with _guarded():
            _record("auto-apply", result.patch_id, result.state, uid,
                    ("unsigned (installed with --allow-unsigned)" if trust.get("unsigned")
                     else "") + (f"; interpreter {_interp}" if _interp else ""))
            if result.state not in _APPLIED and result.patch_id in _survival:
                _survival.remove(result.patch_id)   # nothing of it runs here
    if _survival:
        _arm_survival(uid)


def _applied_ids() -> List[str]:
    if _ENGINE not in sys.modules:
        return []   # nothing was ever applied here: the engine need not load for that
    try:
        from .. import runtime
        return list(runtime.applied())
    except BaseException:  # noqa: BLE001
        return []


# ---------------------------------------------------------------- crash loops
#
# Under a supervisor that restarts a dying process, a patch that makes its process die
# soon after the agent applied it from the store would be applied again on every restart.
# So each agent leaves a trace: an "applying" row before it applies (with the process's
# start time, so a reused pid is not taken for it; written first, because a patch may kill
# its process before the result is recorded), the result row, then "survived" once it has
# run SURVIVE seconds with the patch, or "exited" if it ends before: "clean" (exit status
# 0, by the interpreter or os._exit), "exit status N" (os._exit(N)), "uncaught
# exception", or "terminated by SIGTERM" (our default handler, see "Exits" below).
# Before applying an installed patch, an agent reads the patch's last CRASH_LOOP
# "applying" rows of other processes: if every one of those processes is dead and none
# was refused the patch, survived it or ended well (exit status 0 or SIGTERM), the patch
# is marked bad (as `suture apply --watch` does), with each process and how it ended
# (``processes`` of the mark, shown by `suture bad`), and not applied. A human clears the
# mark with `suture bad clear`.
#
# Only real crashes count: a process killed by another signal (SIGKILL, SIGSEGV, SIGABRT:
# no row can be written, so "no exit recorded"), an uncaught exception, a nonzero
# os._exit. A forked child that inherited a patch in its parent's memory writes no
# "applying" row (_auto_apply skips what runs already), so a pre-fork server whose
# workers exit by os._exit(0) or SIGTERM counts nothing (issue 16, situation 7).
# Known limit: the interpreter's own exit status (sys.exit(3)) is not visible to atexit
# handlers, so such an exit is recorded "clean".
#
# Rejected: a heartbeat file per process (more writes, and a crash still leaves it to be
# interpreted); marking a fork child's "applying" row as inherited (a child that inherited
# the patch applies nothing, so it writes no row at all); wrapping os._exit only while
# patches are under survival watch (the socket must go at every os._exit); watching
# from outside (`suture daemon`, a later issue) cannot see processes started under
# `suture run` on hosts without it; counting "applying" rows of
# fork children (a fork pool of 3+ workers that exit with os._exit before SURVIVE
# seconds, as multiprocessing's maxtasksperchild does, looked like a crash loop and
# turned protection off for the whole host).

CRASH_LOOP = 3
_APPLIED = ("applied", "pending import")
_ENDED_WELL = ("clean", "terminated by SIGTERM")   # "exited" results that are no crash
NO_EXIT = "no exit recorded: killed by a signal or lost"
_SIGTERM_UNRECORDED = "sigterm=unrecorded"   # see _STALE_MAIN_AFTER_THREAD_FORK
_survival: List[str] = []   # patches this process applied from the store, not yet survived


def _survive_seconds() -> float:
    try:
        return max(0.1, float(os.environ.get("SUTURE_SURVIVE_SECONDS", "60")))
    except ValueError:
        return 60.0


def _start_ticks(pid: Any) -> str:
    """The start time of ``pid`` (/proc/PID/stat field 22), "" if it is gone or a zombie.

    ``pid`` may be "self": in a container whose /proc is the node's, /proc/<our pid>
    names another process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        fields = stat[stat.rfind(b")") + 2:].split()
        return "" if fields[0] in (b"Z", b"X") else fields[19].decode("ascii")
    except (OSError, IndexError, UnicodeDecodeError):
        return ""


def _crash_loop(store: Any, patch_id: str) -> Optional[Tuple[str, List[Dict[str, Any]]]]:
    """(reason, processes) when the patch's last CRASH_LOOP appliers all crashed soon after
    applying it, else None. ``processes``: pid, start ticks, and ``exit``, the result of its
    "exited" row or None (no row: killed by a signal or lost)."""
    rows = store.audit_for(patch_id, ("auto-apply", "survived", "exited"))
    me = os.getpid()
    apps = [r for r in rows if r["op"] == "auto-apply" and r["result"] == "applying"
            and r["pid"] != me][:CRASH_LOOP]
    if len(apps) < CRASH_LOOP:
        return None
    processes: List[Dict[str, Any]] = []
    for app in apps:
        later = [r for r in rows if r["pid"] == app["pid"] and r["seq"] > app["seq"]]
        ended_well = any(r["op"] == "survived"
                         or (r["op"] == "exited" and r["result"] in _ENDED_WELL)
                         or (r["op"] == "auto-apply" and r["result"] not in _APPLIED)
                         for r in later)
        detail = str(app.get("detail") or "")
        start = detail.partition("start=")[2].partition(";")[0]
        alive = bool(start) and _start_ticks(int(app["pid"])) == start
        exits = [r["result"] for r in later if r["op"] == "exited"]
        # A process whose SIGTERM has its default action may have ended well unseen.
        unseen = not exits and _SIGTERM_UNRECORDED in detail.split(";")
        if ended_well or alive or unseen:
            return None
        processes.append({"pid": int(app["pid"]), "start": start, "applied_at": app["at"],
                          "exit": exits[-1] if exits else None})
    processes.reverse()   # oldest first
    named = ", ".join(f"{p['pid']} ({p['exit'] or NO_EXIT})" for p in processes)
    return (f"crash loop: processes {named} died within {_survive_seconds():g} s of "
            f"applying it from the store"), processes


def _arm_survival(uid: int) -> None:
    pid = os.getpid()

    def survived() -> None:
        if os.getpid() != pid:
            return
        for patch_id in _take_survival():
            _record("survived", patch_id, "ok", uid)

    timer = threading.Timer(_survive_seconds(), survived)
    timer.name, timer.daemon = "suture-survival", True
    timer.start()


def _take_survival() -> List[str]:
    """Empty the survival list and return what it held (each row written once, whether
    the timer or an exit path gets there first)."""
    with _guarded():
        taken = list(_survival)
        del _survival[:]
    return taken


def _record_exit(result: Optional[str] = None) -> None:
    """Say how this process ends, for patches not yet survived: ``result``, or at
    interpreter exit "uncaught exception" (the main thread's exception has set
    sys.last_value (PyErr_Print) by the time atexit handlers run) or "clean". A signal
    other than SIGTERM leaves no row at all."""
    if not _survival:
        return
    if result is None:
        result = "uncaught exception" if getattr(sys, "last_value", None) is not None \
            else "clean"
    uid = os.geteuid()
    for patch_id in _take_survival():
        _record("exited", patch_id, result, uid)


# ---------------------------------------------------------------- forking programs
#
# A fork copies the whole process but only the forking thread. Whatever the agent thread
# was doing at that instant is copied half done, and nobody finishes it in the child:
# * SQLite (the store) keeps process-wide state: static mutexes (held inside
#   sqlite3_open, which releases the GIL) and its own record of the file locks its
#   connections hold. A child forked while the parent's agent was inside the store
#   stalled in sqlite3.connect, or waited out the busy timeout on a lock nobody held and
#   wrote no row (issue 16, situation 6: 4, 12, 12, 1, 6 and 6 of 12 workers of a
#   pre-fork program ran unpatched, with no audit row and an empty status);
# * an import on the agent thread leaves its module lock held by a thread that does not
#   exist in the child (see _load);
# * the survival list may be between two updates.
# So the agent does all of that under ``_guard``, and a before-fork hook takes it: a fork
# waits until the agent's current store call, import or bookkeeping step is done (each is
# bounded: store writes by store.BUSY_TIMEOUT), so the child always gets a consistent
# copy. The apply itself runs under the engine lock, which forks already wait for
# (docs/engine.md#fork): a child forked before the parent's apply applies the patch
# itself (its own agent, _auto_apply), one forked after it has it in memory and skips it.
#
# Lock order: the agent never waits for the engine lock while holding the guard, and no
# code holding the engine lock waits for the guard (_import_refused writes its row from a
# thread of its own). Either order of the two before-fork hooks is then deadlock-free.
# The hook waits at most _GUARD_WAIT: a store hung beyond it (a dead NFS mount) must not
# hang the application's fork; that child then leaves the store alone (_fork_unguarded).
#
# Rejected: having the child skip the store and trust its parent (a child forked before
# the parent's apply would then never get the patch); making the child's agent re-create
# SQLite's state (it is C state of the shared library, out of reach); taking the engine
# lock for the store too (status, applies and pending imports would wait for audit rows).

_guard = threading.RLock()
_GUARD_WAIT = 10.0
_fork_holds: Dict[int, bool] = {}   # forking thread ident -> its before-hook got the guard
_fork_unguarded = False             # in a child: forked without the guard (see above)


class _guarded:
    """``with _guarded():`` holds the fork guard, or goes on without it after _GUARD_WAIT
    (best effort: a store call must not wait for ever either)."""

    def __enter__(self) -> bool:
        self.lock = _guard
        self.held = self.lock.acquire(timeout=_GUARD_WAIT)
        return self.held

    def __exit__(self, *exc: Any) -> None:
        if self.held:
            self.lock.release()


def _before_fork() -> None:
    me = threading.get_ident()
    _fork_holds[me] = False   # set first: a signal handler may interrupt the wait
    _fork_holds[me] = _guard.acquire(timeout=_GUARD_WAIT)
    _fork_sigterm[me] = _hold_sigterm()
    _fork_off_main[me] = _STALE_MAIN_AFTER_THREAD_FORK and me != threading.main_thread().ident


def _after_fork_in_parent() -> None:
    me = threading.get_ident()
    if _fork_holds.pop(me, False):
        _guard.release()
    _release_sigterm(_fork_sigterm.pop(me, False))


# While our SIGTERM handler is installed (see "Exits"), SIGTERM is blocked in the forking
# thread across the fork: CPython clears the signals its C handler caught in a new child
# before the child runs any Python (_PySignal_AfterFork), so a SIGTERM sent to a worker
# the instant it was forked (multiprocessing's terminate() after a respawn; seen in a
# fork-and-kill loop) was lost and the worker ran on; with the default action the kernel
# would have killed it. Blocked, it stays pending in the kernel until the child's hook
# unblocks it, and then kills it through our handler. An application's own handler is
# not ours to change; an application that blocks SIGTERM itself keeps it blocked.
_fork_sigterm: Dict[int, bool] = {}   # forking thread ident -> we blocked SIGTERM

# CPython 3.13 and later (seen on 3.13.0, 3.14 and 3.15.2): the C signal handler flags a
# caught signal on the thread state of the main thread the interpreter started with
# (_PyRuntime.main_tstate), which a fork never updates. In a child forked from another
# thread (multiprocessing's pool respawns workers from its _handle_workers thread) that
# thread state is gone: a Python handler then never runs from the eval loop, only when a
# blocking call the signal interrupts checks for signals itself. With our handler in
# place, a pool's terminate() sent SIGTERM to a worker running Python code, the handler
# never ran, the worker then waited on the pool's queue for ever, and so did the pool
# (CI, 3.13 and 3.14; tests/agent/test_forking.py). With the default action the kernel
# kills the worker, as it would without Suture. So in such a child, and in any process
# forked from one (the flag is copied with the memory), SIGTERM keeps its default action:
# its socket file is then left for prune_dead_sockets (`suture ps`, the next agent in
# the directory), and its exit is not recorded ("sigterm=unrecorded" in its "applying"
# rows, which _crash_loop does not count as crashes).
_STALE_MAIN_AFTER_THREAD_FORK = sys.version_info >= (3, 13)
_fork_off_main: Dict[int, bool] = {}   # forking thread ident -> not the main thread
_sigterm_unobservable = False          # see above: never install _on_sigterm here


def _hold_sigterm() -> bool:
    try:
        if signal.getsignal(signal.SIGTERM) is not _on_sigterm:
            return False
        return signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    except (ValueError, OSError, AttributeError):
        return False


def _release_sigterm(held: bool) -> None:
    if held:
        try:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        except (ValueError, OSError, AttributeError):
            pass


# ---------------------------------------------------------------- exits
#
# A socket file must not outlive its process, and a process that applied a patch from
# the store says how it ended (crash loops). Python runs code at three of the ways a
# process ends, and the agent uses each:
# * interpreter exit: an atexit handler (_at_exit);
# * os._exit(n), how multiprocessing's fork workers and pre-fork servers' workers end:
#   start() wraps os._exit once per process (children inherit the wrapper). Code that
#   saved a reference to the original before start() (``from os import _exit``) bypasses
#   it: such an exit then looks like a kill;
# * SIGTERM with its default action: when start() runs on the main thread and SIGTERM's
#   handler is SIG_DFL, it installs _on_sigterm, which removes the socket, records the
#   rows, restores SIG_DFL and sends SIGTERM again, so the process still dies by SIGTERM
#   (same wait status, no atexit handlers, as before). An application's own handler is
#   never replaced; one installed later replaces ours (its exit path is then its own).
#   Python runs the handler when the main thread next runs bytecode: a main thread stuck
#   in C code delays the death until it returns (supervisors escalate to SIGKILL).
# SIGKILL, a crash in C and the OOM killer run nothing: `suture ps` and agents starting
# in the same directory remove the sockets they left (prune_dead_sockets).

_exit_hooks = False


def _ending(result: Optional[str]) -> None:
    """This process ends now: remove our socket, record how (``result``; None at
    interpreter exit). Never raises."""
    try:
        agent = _agent
        if agent is not None and agent.pid == os.getpid():
            agent.stopping = True
            agent.unlink()
            if _interp == 0:   # the process ends: its interpreters' files go too
                directory = os.path.dirname(agent.path)
                try:
                    mine = [n for n in os.listdir(directory)
                            if n.startswith(f"{agent.pid}.i") and n.endswith(".sock")]
                except OSError:
                    mine = []
                for name in mine + [os.path.basename(_inherit.held_path(directory))]:
                    try:
                        os.unlink(os.path.join(directory, name))
                    except OSError:
                        pass
        _record_exit(result)
    except BaseException:  # noqa: BLE001 - exiting anyway
        pass


def _install_exit_hooks() -> None:
    global _exit_hooks
    if _exit_hooks:
        return
    _exit_hooks = True
    import atexit
    atexit.register(_at_exit)
    real_exit = os._exit

    def _exit(status: int) -> None:
        if type(status) is int:
            _ending("clean" if status == 0 else f"exit status {status}")
        real_exit(status)

    _exit.__wrapped__ = real_exit   # type: ignore[attr-defined]
    _exit.__doc__ = real_exit.__doc__
    os._exit = _exit   # type: ignore[assignment]


def _sigterm_handler(install: bool) -> None:
    """Install _on_sigterm where SIGTERM has its default action, or put the default back
    where ours is installed; only on the main thread (Python's rule), never over an
    application's own handler."""
    try:
        # get_ident, not current_thread(): that makes a _DummyThread, which stays for
        # ever, for a thread threading did not start (gdb's attach runs us on one).
        if threading.get_ident() != threading.main_thread().ident:
            return
        current = signal.getsignal(signal.SIGTERM)
        if install and current == signal.SIG_DFL and not _sigterm_unobservable:
            signal.signal(signal.SIGTERM, _on_sigterm)
        elif not install and current is _on_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
    except (ValueError, OSError, AttributeError):
        pass   # no SIGTERM here, or not settable: the default stays


def _on_sigterm(signum: int, frame: Any) -> None:
    if signal.getsignal(signal.SIGTERM) is not _on_sigterm:
        # Called by an application handler that chains to the one it replaced (``prev =
        # signal.signal(SIGTERM, mine)``, then ``if callable(prev): prev(...)``). Without
        # the agent, ``prev`` was SIG_DFL, which is not callable: nothing ran there, and the
        # application's own shutdown went on. Do the same: neither die here nor drop the
        # socket of a process that may run for a while yet.
        return
    _ending("terminated by SIGTERM")
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


# ---------------------------------------------------------------- sockets left behind

def prune_dead_sockets(runtime_dir: Optional[str] = None) -> List[str]:
    """Remove ``<pid>.sock`` files in the runtime directory that no process serves any
    more; returns the paths removed. Never raises.

    Only what is provably dead from here: a file of our uid, a socket, whose pid does not
    exist in our pid namespace or started after the file was made (a reused pid), AND on
    which connect() is refused (no listener: a process in another pid namespace sharing
    the directory still accepts, whatever its number means here). A live agent is never
    connected to: the pid check comes first.
    """
    removed: List[str] = []
    directory = runtime_dir or socket_dir()
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    euid, me = os.geteuid(), os.getpid()
    boot = _boot_time()
    for name in names:
        stem, dot, ext = name.partition(".")
        # <pid>.sock, and <pid>.i<ID>.sock and <pid>.held of its interpreters (issue 22)
        sub = ext[1:-5] if ext.startswith("i") and ext.endswith(".sock") else ""
        if (ext not in ("sock", "held") and not sub.isdigit()) or not stem.isdigit() \
                or int(stem) == me:
            continue
        path = os.path.join(directory, name)
        if ext == "held":
            try:
                st = os.lstat(path)
                if stat.S_ISREG(st.st_mode) and st.st_uid == euid \
                        and _pid_gone(int(stem), st.st_ctime, boot):
                    os.unlink(path)
                    removed.append(path)
            except OSError:
                pass
            continue
        try:
            st = os.lstat(path)
            if not stat.S_ISSOCK(st.st_mode) or st.st_uid != euid:
                continue
            if not _pid_gone(int(stem), st.st_ctime, boot) or _listening(path):
                continue
            again = os.lstat(path)
            if (again.st_dev, again.st_ino) == (st.st_dev, st.st_ino):
                os.unlink(path)
                removed.append(path)
        except OSError:
            continue
    return removed


def _boot_time() -> Optional[float]:
    try:
        with open("/proc/stat", "rb") as f:
            return float(next(int(line.split()[1]) for line in f if line.startswith(b"btime ")))
    except (OSError, ValueError, StopIteration, IndexError):
        return None


def _pid_gone(pid: int, made: float, boot: Optional[float]) -> bool:
    """No process ``pid`` here, or the one that has the number started after ``made``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        pass   # EPERM: it exists
    try:
        ticks = int(_start_ticks(pid) or "0")
        if boot is None or not ticks:
            return False
        started = boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return False
    return started > made + 1.0   # /proc's second and tick resolution


def _listening(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.setblocking(False)
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except OSError:
        return True    # EAGAIN (a full backlog) or anything else: not provably dead
    finally:
        probe.close()
    return True


# ---------------------------------------------------------------- public switch

_lock = threading.Lock()
_agent: Optional[_Agent] = None
_dir_arg: Optional[str] = None     # what start() was given, reused by forked children
_fork_hook = False
_interp = 0     # this interpreter's id (0: the main one); set by start() (issue 22)
_started_by_main = False   # set by the main interpreter's agent when it starts us (_interps)


def running() -> Optional[str]:
    """The socket path of this process's agent, or None."""
    agent = _agent
    return agent.path if agent is not None and agent.pid == os.getpid() else None


def start(runtime_dir: Optional[str] = None, forked: bool = False) -> str:
    """Start the agent (idempotent) and return its socket path.

    Raises ``AgentStartError`` when the runtime directory is unsafe or the
    platform has no SO_PEERCRED; nothing is left running then. ``forked``: called by
    the fork hook in a new child (sockets of dead siblings are not pruned then: that
    would slow down every fork).
    """
    global _agent, _dir_arg, _fork_hook, _sigterm_unobservable, _interp
    with _lock:
        if _agent is not None and _agent.pid == os.getpid():
            if _agent.thread.is_alive():
                return _agent.path
            _agent.end(0)  # its thread is gone (cannot happen by design): free the name
        if not hasattr(socket, "SO_PEERCRED") or not hasattr(socket, "AF_UNIX"):
            raise AgentStartError(f"the agent needs Unix sockets with SO_PEERCRED (Linux); "
                                  f"{sys.platform} has none, so it cannot check who connects")
        directory = ensure_dir(runtime_dir or socket_dir())
        # One agent per interpreter (issue 22): a sub-interpreter's on <pid>.i<ID>.sock,
        # reached only through the main interpreter's, the process's endpoint (_interps).
        _interp = _interps.current_id()
        path = os.path.join(directory, _interps.socket_name(os.getpid(), _interp))
        _clear_stale(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # Bound under a temporary name and renamed once listening: a client that sees
        # <pid>.sock can connect at once (between bind() and listen() it would be
        # refused; seen in tests/agent/test_run.py). The directory is 0700 anyway; chmod
        # here instead of changing the process-wide umask under the app.
        temp = f"{path}.{os.getpid()}.tmp"
        try:
            try:
                os.unlink(temp)
            except FileNotFoundError:
                pass
            sock.bind(temp)
            os.chmod(temp, 0o600)
            # The kernel's maximum: clients wait in the backlog while one request runs
            # (docs/protocol.md, "Framing"); with listen(8), the 9th concurrent client
            # was refused at once (issue 13, finding 11).
            sock.listen(socket.SOMAXCONN)
            os.rename(temp, path)
            agent = _Agent(path, sock)
        except BaseException as exc:   # nothing may stay behind: no file nobody serves
            sock.close()
            for leftover in (temp, path):
                try:
                    os.unlink(leftover)
                except OSError:
                    pass
            if not isinstance(exc, OSError):
                raise
            raise AgentStartError(f"cannot listen on {path}: {exc}",
                                  details={"path": path}) from exc
        # The engine lock's fork hooks, now, on this thread, and before ours, not lazily on
        # the agent thread's first apply: a fork whose before-hooks ran before the engine
        # registered its own would not wait for the apply that follows, and the child
        # would inherit the engine lock held by a thread it does not have (seen: a worker
        # hung in status()). Without importing the engine (issue 19): _enginelock.
        _enginelock.register_fork_hooks()
        # typing, now, on this thread, before the application's code runs: imported first on
        # the agent thread (the engine needs it), it sits half-initialized in sys.modules
        # for milliseconds, and dataclasses reads it from there without importing it (its
        # ClassVar check): a dataclass the application defined meanwhile failed with
        # "partially initialized module 'typing'" (CI, 3.14: multiprocessing.pool ->
        # traceback -> _colorize's dataclasses, in a fork-pool test). Loading it aside and
        # publishing it whole does not work on 3.12+, where typing's C half imports
        # "typing" while the module runs. It costs an idle agent about 1.6 MiB (issue 19).
        if "typing" not in sys.modules:
            import typing  # noqa: F401
        if not _fork_hook and _interp == 0:
            # Before the agent thread starts: its first store call must already be
            # guarded against a fork from the application's threads.
            os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                                after_in_child=_after_fork_in_child)
            _inherit.register_fork_wait(running, wait_ready)  # after ours: waits for it
            _fork_hook = True
        try:
            agent.begin()
        except BaseException as exc:
            # No thread (an isolated sub-interpreter of 3.9-3.11 allows none): no socket
            # either, or clients would wait on one nobody serves.
            agent.stopping = True
            try:
                sock.close()
            except OSError:
                pass
            agent.unlink()
            raise AgentStartError(f"cannot start the agent's thread: {exc}",
                                  details={"path": path}) from exc
        _agent, _dir_arg = agent, runtime_dir
        if _interp != 0:
            # Exits, signals and sockets left behind are the process's: the main
            # interpreter's agent keeps them (signals reach only that one anyway).
            return agent.path
        _install_exit_hooks()
        if not forked and _STALE_MAIN_AFTER_THREAD_FORK \
                and threading.main_thread().name != "MainThread":
            # Forked off a thread before an agent ran here (threading renames no thread
            # it makes the main one after such a fork): see _STALE_MAIN_AFTER_THREAD_FORK.
            _sigterm_unobservable = True
        _sigterm_handler(install=True)
        if not forked:
            prune_dead_sockets(directory)   # a fork child leaves that to its parent's kind
        return agent.path


START_WAIT = 5.0


def wait_ready(timeout: float = START_WAIT) -> bool:
    """Wait up to ``timeout`` s until the agent has applied, at its start, the installed
    patches and those its ancestors were patched with by hand; True if it has.

    The bootstrap of a new interpreter (``suture run``, a spawned or exec-ed child) calls
    it before the application's own code runs: the patches are then in place, or pending
    import, before the application imports anything, instead of landing while it already
    runs (a spawn pool's worker runs its first task within milliseconds). Bounded: a busy
    or hung ancestor delays the start by at most ``timeout`` (its inheritance then goes on
    on the agent thread). The time the agent spends importing what the applies need (the
    engine, the patch reader, the store: ``_load``) is not counted: an idle agent no
    longer imports them in ``start()``, before this wait, as it did (issue 19), and a
    child must not start unpatched because its own imports were slow (a loaded host, a
    fork child of a process that never used the engine). After a fork only when an
    ancestor beyond the parent has an agent (``_inherit._wait_after_fork``: the child has
    its parent's patches in memory); never by ``suture attach`` (the process runs
    already)."""
    agent = _agent
    if agent is None or agent.pid != os.getpid():
        return False
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline + _load_seconds() - time.monotonic()
        if remaining <= 0:
            return agent.ready.is_set()
        if agent.ready.wait(remaining):
            return True


def stop(timeout: Optional[float] = 5.0) -> None:
    """Stop the agent: close the socket, remove its file, join the thread."""
    global _agent
    with _lock:
        agent, _agent = _agent, None
    if agent is None:
        return
    if agent.pid != os.getpid():  # inherited through fork: not ours to remove
        agent.abandon()
        return
    agent.end(timeout)
    if _interp == 0:
        _sigterm_handler(install=False)


def _stop_unjoined() -> None:
    stop(0)


def _at_exit() -> None:
    _ending(None)
    _interps.stop_others(os.path.dirname(_agent.path) if _agent is not None else "")


def _after_fork_in_child() -> None:
    global _agent, _lock, _guard, _fork_unguarded, _sigterm_unobservable
    sigterm = False
    try:
        _lock = threading.Lock()  # the parent may have held it at fork time
        # A new guard rather than a release: if the before-hook timed out, a thread that
        # does not exist here holds the old one.
        me = threading.get_ident()
        _fork_unguarded = not _fork_holds.pop(me, False)
        _fork_holds.clear()
        _guard = threading.RLock()
        sigterm = _fork_sigterm.pop(me, False)
        _fork_sigterm.clear()
        if _fork_off_main.pop(me, False):
            _sigterm_unobservable = True
            _sigterm_handler(install=False)   # before a held SIGTERM is let through
        _fork_off_main.clear()
        del _survival[:]          # the parent's trace to leave, not ours
        del _loading[:]           # the parent's imports: not this child's wait
        _loaded[0] = 0.0
        inherited, _agent = _agent, None
        if inherited is not None:  # else stopped before the fork: the child gets none
            inherited.abandon()
            start(_dir_arg, forked=True)
    except BaseException as exc:  # noqa: BLE001 - never break the child
        try:
            sys.stderr.write(f"suture: agent not restarted in forked child {os.getpid()}: "
                             f"{exc}\n")
        except BaseException:  # noqa: BLE001
            pass
    finally:
        _release_sigterm(sigterm)   # a SIGTERM sent meanwhile is delivered now
