"""``suture attach PID``: load the agent into a Python process started without Suture.

The design, its safety argument and its limits are in docs/live-processes.md
("Attach"); the part that runs inside gdb is ``_gdb_inject.py``, the part that
runs inside the target is ``runtime/_bootstrap/attach.py``. Here, in order:

1. look before touching: the process exists, runs CPython 3.9-3.14 as far as
   /proc tells, has no agent yet, nobody traces it, and we may act on it;
2. choose the identity: the target's own uid, gid and groups. Run as root
   against another user's process, everything below (files and ptrace) is
   done by a forked child or a gdb that has dropped to that identity, never
   with more;
3. publish the bootstrap directory (runtime copy + ``attach.py``) in the
   target's own runtime directory, through /proc/<pid>/root when the target
   lives in another mount namespace (a container);
4. inject a two-line stub at a safe point (gdb; ``sys.remote_exec`` when both
   this Python and the target are 3.14+), bounded by ``timeout``;
5. wait for the answer file the stub's thread writes, then say hello to the
   new agent over its socket.

Every refusal is a ``SutureError`` saying what blocked and what to do; the
target is left as it was (a timeout leaves at most one queued no-op call).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar

from ...runtime import _agent, _bootstrap, _bounded
from ...runtime.errors import SutureError
from . import client

__all__ = ["attach", "Attached", "AttachError", "AttachRefused", "NoInjector",
           "UnsupportedTarget", "AttachTimeout", "SUPPORTED"]

SUPPORTED = (0x03090000, 0x030F0000)   # sys.hexversion in [3.9, 3.15)
DEFAULT_TIMEOUT = 10.0
_GDB_GRACE = 20.0                      # beyond the safe-point timeout, for gdb to start and detach
_T = TypeVar("_T")


class AttachError(SutureError):
    """``suture attach`` did not load the agent; the target runs on unchanged."""

    code = "SUT-E630"


class AttachRefused(AttachError, PermissionError):
    """Not allowed: another user's process, ptrace forbidden, already traced, mixed uids."""

    code = "SUT-E631"


class NoInjector(AttachError):
    """No way in: gdb is missing (or has no Python) and ``sys.remote_exec`` is unavailable."""

    code = "SUT-E632"


class UnsupportedTarget(AttachError, ValueError):
    """Not CPython, or a version Suture does not support."""

    code = "SUT-E633"


class AttachTimeout(AttachError, TimeoutError):
    """The target reached no safe point in time; nothing was changed."""

    code = "SUT-E634"


@dataclass
class Attached:
    pid: int
    outcome: str                    # "attached" or "already"
    method: str = ""                # "gdb", "remote_exec", or "" when already
    seconds: float = 0.0
    socket: str = ""
    python: str = ""
    details: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


# -- looking at the target -------------------------------------------------------------

@dataclass
class _Identity:
    uid: int
    gid: int
    groups: List[int]


def _status(pid: int) -> Dict[str, str]:
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8", errors="replace") as f:
            return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    except FileNotFoundError:
        raise AttachError(f"no process has PID {pid}", details={"pid": pid}) from None
    except OSError as exc:
        raise AttachError(f"cannot read /proc/{pid}/status: {exc}", details={"pid": pid}) from exc


def _identity(pid: int, status: Dict[str, str]) -> _Identity:
    uids = [int(x) for x in status.get("Uid", "").split()]
    gids = [int(x) for x in status.get("Gid", "").split()]
    groups = [int(x) for x in status.get("Groups", "").split()]
    if not uids or not gids:
        raise AttachError(f"cannot read the identity of PID {pid}", details={"pid": pid})
    if len(set(uids)) != 1 or len(set(gids)) != 1:
        raise AttachRefused(
            f"PID {pid} runs with mixed identities (uids {uids[:3]}, gids {gids[:3]}: a setuid "
            f"or setgid program). Attaching would mean acting with more than one identity; "
            f"Suture refuses. Start it under `suture run` instead.",
            details={"pid": pid, "uids": uids, "gids": gids})
    me = os.geteuid()
    if me != 0 and uids[0] != me:
        raise AttachRefused(
            f"PID {pid} belongs to {client._who(uids[0])}; only that user or root may attach "
            f"to it (you are uid {me})", details={"pid": pid, "uid": uids[0], "you": me})
    return _Identity(uids[0], gids[0], groups)


def _check_tracer(pid: int, status: Dict[str, str]) -> None:
    tracer = int(status.get("TracerPid", "0") or 0)
    if tracer:
        try:
            with open(f"/proc/{tracer}/comm", encoding="utf-8") as f:
                name = f.read().strip()
        except OSError:
            name = "?"
        raise AttachRefused(f"PID {pid} is already traced by PID {tracer} ({name}): a debugger "
                            f"is attached. Detach it first.",
                            details={"pid": pid, "tracer": tracer, "tracer_name": name})


def _check_yama(pid: int, identity: _Identity) -> None:
    try:
        with open("/proc/sys/kernel/yama/ptrace_scope", encoding="utf-8") as f:
            scope = int(f.read().strip() or 0)
    except (OSError, ValueError):
        return
    if scope >= 3 or (scope >= 1 and identity.uid != 0):
        why = ("no process may be traced" if scope >= 3 else
               "only a parent process (or CAP_SYS_PTRACE, which Suture does not keep when "
               "acting as the target's user) may trace another")
        raise AttachRefused(
            f"kernel.yama.ptrace_scope is {scope}: {why}. Start the program under "
            f"`suture run`, or have an administrator lower ptrace_scope.",
            details={"pid": pid, "ptrace_scope": scope})


def _python(pid: int) -> Tuple[str, str]:
    """(executable, "3.X" or "unknown"); refuses what is plainly not a supported CPython."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except PermissionError as exc:
        raise AttachRefused(f"may not inspect PID {pid}: {exc.strerror}",
                            details={"pid": pid}) from exc
    except OSError as exc:
        raise AttachError(f"cannot inspect PID {pid}: {exc.strerror or exc}",
                          details={"pid": pid}) from exc
    is_py, version = client._python_version(pid, exe)
    if not is_py:
        raise UnsupportedTarget(f"PID {pid} does not look like Python (executable {exe})",
                                details={"pid": pid, "executable": exe})
    if version != "unknown":
        major, minor = (int(x) for x in version.split(".")[:2])
        if not SUPPORTED[0] <= (major << 24 | minor << 16) < SUPPORTED[1]:
            raise UnsupportedTarget(f"PID {pid} runs Python {version}; Suture supports "
                                    f"CPython 3.9 to 3.14", details={"pid": pid,
                                                                     "python": version})
    return exe, version


def _root_prefix(pid: int) -> str:
    """'' when the target sees our mounts, else /proc/<pid>/root (a container)."""
    try:
        same = os.stat("/proc/self/ns/mnt").st_ino == os.stat(f"/proc/{pid}/ns/mnt").st_ino
    except OSError:
        same = True
    return "" if same else f"/proc/{pid}/root"


# -- acting as the target's user -------------------------------------------------------

def _dropping(identity: _Identity) -> bool:
    return os.geteuid() == 0 and identity.uid != 0


def _as_user(identity: _Identity, work: Callable[[], _T]) -> _T:
    """Run ``work`` with the target's identity: in a forked child when we are root."""
    if not _dropping(identity):
        return work()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child, checked by its effects
        code = 1
        try:
            os.close(read)
            os.umask(0o077)
            os.setgroups(identity.groups)
            os.setresgid(identity.gid, identity.gid, identity.gid)
            os.setresuid(identity.uid, identity.uid, identity.uid)
            try:
                answer: Dict[str, Any] = {"ok": True, "value": work()}
            except SutureError as exc:
                answer = {"ok": False, "error": exc.to_dict()}
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                answer = {"ok": False, "error": {"message": f"{type(exc).__name__}: {exc}"}}
            with os.fdopen(write, "w", encoding="utf-8") as f:
                json.dump(answer, f)
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, encoding="utf-8") as f:
        raw = f.read()
    os.waitpid(child, 0)
    try:
        answer = json.loads(raw)
    except ValueError:
        raise AttachError("the helper acting as the target's user died") from None
    if not answer["ok"]:
        err = answer["error"]
        raise AttachError(f"as uid {identity.uid}: {err.get('message')}",
                          details={"uid": identity.uid, "error": err})
    return answer["value"]  # type: ignore[no-any-return]


def _gdb_env() -> Dict[str, str]:
    """gdb's whole environment: ours would leak to the target's user and steer gdb."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
            "HOME": "/", "TERM": "dumb"}


# -- the stub and the answer -----------------------------------------------------------

def _stub(attach_py: str, result: str, stub_file: str = "") -> str:
    inner = (f"import runpy\nrunpy.run_path({attach_py!r}, init_globals={{'RESULT': {result!r}, "
             f"'STUB': {stub_file!r}}}, run_name='__suture_attach__')\n")
    return f"import _thread\n_thread.start_new_thread(exec, ({inner!r}, {{}}))\n"


def _wait_answer(path: str, deadline: float) -> Optional[Dict[str, Any]]:
    while True:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.02)
            continue
        with os.fdopen(fd, "rb") as f:
            raw = f.read(65536)
        try:
            os.unlink(path)
        except OSError:
            pass
        try:   # the target wrote it: untrusted, like any frame
            answer = _bounded.loads(raw, error=AttachError, what="the answer file",
                                    max_bytes=65536)
        except AttachError as exc:
            return {"ok": False, "error": exc.message}
        return answer if isinstance(answer, dict) else {"ok": False, "error": "bad answer"}


# -- injectors -------------------------------------------------------------------------

def _gdb(pid: int, identity: _Identity, stub: str, timeout: float) -> Dict[str, Any]:
    gdb = shutil.which("gdb")
    if gdb is None:
        raise NoInjector("gdb is not installed, and attaching before Python 3.14 needs it "
                         "(apt install gdb / dnf install gdb); or start the program under "
                         "`suture run`", details={"pid": pid})
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "_gdb_inject.py"), encoding="utf-8") as f:
        script = f.read()
    env = dict(_gdb_env(), SUTURE_GDB_SCRIPT=script, SUTURE_PID=str(pid),
               SUTURE_STUB=stub, SUTURE_TIMEOUT=f"{timeout:g}",
               SUTURE_HEX=f"{SUPPORTED[0]}:{SUPPORTED[1]}")
    kwargs: Dict[str, Any] = {}
    if _dropping(identity):
        kwargs = {"user": identity.uid, "group": identity.gid,
                  "extra_groups": identity.groups}
    argv = [gdb, "-nx", "-nh", "-batch", "-ex",
            "python exec(__import__('os').environ['SUTURE_GDB_SCRIPT'])"]
    # Own session: a Ctrl-C meant for `suture attach` must not reach gdb mid-injection.
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            cwd="/", **kwargs)
    try:
        out, err = proc.communicate(timeout=timeout + _GDB_GRACE)
    except subprocess.TimeoutExpired:
        # SIGTERM makes gdb detach (removing its breakpoints); SIGKILL would not.
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise AttachError(f"gdb hung while attached to PID {pid} and was killed; check the "
                              f"process (breakpoints may remain in it)",
                              details={"pid": pid}) from None
        raise AttachError(f"gdb did not finish within {timeout + _GDB_GRACE:g} s and was "
                          f"stopped; the target was detached", details={"pid": pid}) from None
    for line in out.splitlines():
        if line.startswith("SUTURE-RESULT "):
            result: Dict[str, Any] = json.loads(line[len("SUTURE-RESULT "):])
            return result
    tail = "\n".join((err or out).strip().splitlines()[-5:])
    if "Python scripting is not supported" in (err + out):
        raise NoInjector("this gdb was built without Python; Suture needs gdb with Python "
                         "scripting", details={"pid": pid})
    raise AttachError(f"gdb failed (exit {proc.returncode}): {tail}",
                      details={"pid": pid, "stderr": err[-4000:]})


def _remote_exec(pid: int, identity: _Identity, stub_file: str) -> Dict[str, Any]:
    """Python 3.14's PEP 768 path. Untested here: no 3.14 on the build machines yet."""
    def call() -> Dict[str, Any]:
        sys.remote_exec(pid, stub_file)  # type: ignore[attr-defined]
        return {"state": "queued", "where": "sys.remote_exec"}
    try:
        return _as_user(identity, call)
    except (PermissionError, OSError, RuntimeError) as exc:
        raise AttachRefused(f"sys.remote_exec({pid}) failed: {exc}",
                            details={"pid": pid}) from exc


def _explain(pid: int, result: Dict[str, Any], timeout: float) -> SutureError:
    state = result.get("state")
    message = str(result.get("message", ""))
    details = dict(result, pid=pid)
    if state == "attach-failed":
        if "not permitted" in message:
            return AttachRefused(
                f"the kernel refused to let gdb trace PID {pid} ({message.strip()}). Usual "
                f"causes: the process is not dumpable (prctl PR_SET_DUMPABLE 0), a container "
                f"without CAP_SYS_PTRACE or without a shared pid namespace, or a security "
                f"module (Yama, SELinux, AppArmor). Nothing was changed.", details=details)
        return AttachError(f"gdb could not attach to PID {pid}: {message}", details=details)
    if state == "not-python":
        return UnsupportedTarget(
            f"PID {pid} has no CPython runtime that Suture can drive (missing symbols: "
            f"{', '.join(result.get('missing', []))}): not CPython, or a build without "
            f"exported symbols. Nothing was changed.", details=details)
    if state == "unsupported":
        hv = int(result.get("hexversion", 0))
        return UnsupportedTarget(f"PID {pid} runs Python {hv >> 24}.{(hv >> 16) & 255}; Suture "
                                 f"supports CPython 3.9 to 3.14. Nothing was changed.",
                                 details=details)
    if state == "registers-unwritable":
        return NoInjector(
            f"this gdb cannot write the registers of PID {pid} on this CPU ({message.strip()}), "
            f"so it cannot call into the process safely; nothing was changed. gdb 13 has this "
            f"bug on CPUs with AMX: use gdb 14 or newer (scripts/get-gdb.sh makes one), Python "
            f"3.14's sys.remote_exec, or start the program under `suture run`.",
            details=details)
    if state == "timeout":
        return AttachTimeout(
            f"PID {pid} reached no safe point within {timeout:g} s: its main thread is in a "
            f"long call outside the interpreter (a C extension, or blocked in one Suture does "
            f"not interrupt) and no other thread ran Python code. Nothing was changed (one "
            f"harmless signal check stays queued). Retry later or with a longer --timeout.",
            details=details)
    if state == "exited":
        return AttachError(f"PID {pid} exited while Suture was attaching", details=details)
    if state == "busy":
        return AttachError(f"PID {pid} was busy in its pending-call queue at every try; "
                           f"retry", details=details)
    return AttachError(f"attaching to PID {pid} failed ({state}): {message}", details=details)


# -- the command -----------------------------------------------------------------------

def attach(pid: int, timeout: float = DEFAULT_TIMEOUT, *,
           runtime_dir: Optional[str] = None) -> Attached:
    """Load the agent into ``pid``; see the module docstring. Raises ``AttachError``."""
    started = time.monotonic()
    status = _status(pid)
    identity = _identity(pid, status)
    _, version = _python(pid)
    try:
        info = client.hello(pid, runtime_dir=runtime_dir)
        return Attached(pid, "already", socket=client.socket_path(pid, runtime_dir),
                        python=str(info.get("python", version)))
    except SutureError:
        pass
    _check_tracer(pid, status)
    _check_yama(pid, identity)

    prefix = _root_prefix(pid)
    env = client._proc_environ(pid)
    directory = runtime_dir or _agent._default_dir(env, identity.uid)
    content = _bootstrap.bundle()
    nonce = os.urandom(6).hex()
    result_name = f"attach-{pid}-{nonce}.json"
    use_remote = (hasattr(sys, "remote_exec") and version != "unknown"
                  and tuple(map(int, version.split(".")[:2])) >= (3, 14))
    stub_name = f"attach-{pid}-{nonce}.py" if use_remote else ""

    def publish() -> str:
        host_dir = _agent.ensure_dir(prefix + directory)
        boot = _bootstrap.publish(os.path.join(host_dir, "bootstrap"), content)
        return boot[len(prefix):]

    boot = _as_user(identity, publish)
    attach_py = os.path.join(boot, "attach.py")
    result_path = os.path.join(directory, result_name)
    stub_path = os.path.join(directory, stub_name) if stub_name else ""
    stub = _stub(attach_py, result_path, stub_path)

    if use_remote:
        def write_stub() -> None:
            fd = os.open(prefix + stub_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(stub)
        _as_user(identity, write_stub)
        outcome = _remote_exec(pid, identity, stub_path)
        method = "remote_exec"
    else:
        for attempt in range(4):
            outcome = _gdb(pid, identity, stub, timeout)
            if outcome.get("state") != "busy":
                break
            time.sleep(0.1 * (attempt + 1))
        method = "gdb"
        if outcome.get("state") != "ran":
            raise _explain(pid, outcome, timeout)

    # The stub only started a thread; its answer follows within moments.
    answer = _wait_answer(prefix + result_path, time.monotonic() + max(timeout, 5.0))
    if answer is None:
        raise AttachTimeout(
            f"the bootstrap in PID {pid} did not answer within {max(timeout, 5.0):g} s "
            + ("(sys.remote_exec runs it at the next safe point; it may still attach later)"
               if use_remote else "(it was started; check `suture ps`)"),
            details={"pid": pid, "method": method, "injector": outcome})
    if not answer.get("ok"):
        cls = UnsupportedTarget if answer.get("type") == "UnsupportedPython" else AttachError
        raise cls(f"the agent did not start in PID {pid}: {answer.get('error')}",
                  details={"pid": pid, "answer": answer})
    socket_file = str(answer.get("socket", ""))
    host_socket = prefix + socket_file
    info = client.hello(pid, runtime_dir=os.path.dirname(host_socket) if socket_file else None)
    return Attached(pid, "attached", method, round(time.monotonic() - started, 3), host_socket,
                    str(info.get("python", answer.get("python", version))),
                    details={k: v for k, v in outcome.items() if k != "state"})
