"""``suture attach PID``: load the agent into a Python process started without Suture.

The design, its safety argument and its limits are in docs/live-processes.md
("Attach"); the part that runs inside gdb is ``_gdb_inject.py``, the part that
runs inside the target is ``runtime/_bootstrap/attach.py``. Here, in order:

1. look before touching: the process exists, runs CPython 3.9-3.15 as far as
   /proc tells, has no agent yet, nobody traces it, and we may act on it;
2. choose the identity: the target's own uid, gid and groups. Run as root
   against another user's process, everything below (files and ptrace) is
   done by a forked child or a gdb that has dropped to that identity, never
   with more;
3. publish the bootstrap directory (runtime copy + ``attach.py``) in the
   target's own runtime directory, through /proc/<pid>/root when the target
   lives in another mount namespace (a container);
4. create the attach's one-time token, then inject a short stub at a safe
   point, bounded by ``timeout``: first ``sys.remote_exec`` when this Python and
   the target are the same 3.14+, for ``REMOTE_EXEC_WAIT`` (it runs only in the
   main thread), then gdb, which gets in through any thread; the first stub to
   claim the token starts the bootstrap, any other does nothing;
5. wait for the answer file the stub's thread writes, then say hello to the
   new agent over its socket.

Every refusal is a ``SutureError`` saying what blocked and what to do; the
target is left as it was. Giving up removes the token, so what stays queued
(a signal check from gdb, a ``sys.remote_exec`` script) does nothing.
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

SUPPORTED = (0x03090000, 0x03100000)   # sys.hexversion in [3.9, 3.16)
DEFAULT_TIMEOUT = 10.0
# How long sys.remote_exec's script gets before gdb is tried (within the timeout). It
# runs at the main thread's next eval-breaker check: within microseconds when that
# thread runs Python, never while it is blocked (sleep, accept(), a lock wait) or in a
# C call; waiting longer only delays the gdb route, which gets in through any thread.
REMOTE_EXEC_WAIT = 0.3
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
                                    f"CPython 3.9 to 3.15", details={"pid": pid,
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


# -- the stub, the token and the answer -----------------------------------------------

def _stub(attach_py: str, result: str, token: str, method: str, stub_file: str = "") -> str:
    """The source a route runs at a safe point: claim the token, then start a thread.

    The claim renames the attacher's token to ``token + ".run"``. A rename is atomic, so
    of the two routes and the attacher giving up (which removes the token) exactly one
    wins and the others do nothing: a script that ``sys.remote_exec`` queued and that
    runs after attach reported a failure, or after gdb got in, is a no-op. The stub runs
    in whichever thread reached the safe point, so it does no more than that rename and
    a thread start (``os`` and ``_thread`` are always imported). ``stub_file`` is
    ``sys.remote_exec``'s script, which removes itself when it runs: removing it
    earlier would make a late run print "Can't open debugger script" on the target's
    stderr.
    """
    claimed = token + ".run"
    inner = (f"import runpy\nrunpy.run_path({attach_py!r}, init_globals={{'RESULT': {result!r}, "
             f"'TOKEN': {claimed!r}, 'METHOD': {method!r}}}, run_name='__suture_attach__')\n")
    lines = ["import os"]
    # ``sys.remote_exec`` runs in the main thread, in whatever interpreter that thread is
    # in: a sub-interpreter means a program whose main thread is inside ``interp.exec``,
    # so the main interpreter runs a program and its agent cannot be started from there
    # (docs/interpreters.md): leave the token for the gdb route. (gdb takes a point in a
    # sub-interpreter only where the main interpreter runs nothing, checked in C;
    # ``_interpreters.is_running(0)`` says True for the main interpreter whatever runs.)
    here = "True"
    if method == "remote_exec":
        here = ("sys.version_info < (3, 13) or __import__('_interpreters')"
                ".get_current()[0] == 0")
    lines.append(f"import sys\ntry:\n    _suture_here = {here}\n"
                 f"except Exception:\n    _suture_here = True")
    if stub_file:
        lines.append(f"try:\n    os.unlink({stub_file!r})\nexcept OSError:\n    pass")
    lines.append(f"try:\n    _suture_here and os.rename({token!r}, {claimed!r})\n"
                 f"except OSError:\n    pass\n"
                 f"else:\n    if _suture_here:\n        import _thread\n"
                 f"        _thread.start_new_thread(exec, ({inner!r}, {{}}))")
    return "\n".join(lines) + "\n"


def _wait_claim(pid: int, host_token: str, until: float) -> bool:
    """Wait until a stub has claimed the token (it is gone); False at ``until``."""
    while True:
        if not os.path.lexists(host_token):
            return True
        if time.monotonic() >= until or not os.path.exists(f"/proc/{pid}"):
            return False
        time.sleep(0.01)


def _give_up(identity: _Identity, host_path: str) -> bool:
    """Remove a token as the target's user: True when we did, so nobody will act on it;
    False when a stub (``.token``) or the bootstrap (``.token.run``) took it first."""
    def remove() -> bool:
        try:
            os.unlink(host_path)
        except FileNotFoundError:
            return False
        return True
    return _as_user(identity, remove)


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

def _gdb(gdb: str, pid: int, identity: _Identity, stub: str, timeout: float,
         host_token: str) -> Dict[str, Any]:
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "_gdb_inject.py"), encoding="utf-8") as f:
        script = f.read()
    env = dict(_gdb_env(), SUTURE_GDB_SCRIPT=script, SUTURE_PID=str(pid),
               SUTURE_STUB=stub, SUTURE_TIMEOUT=f"{timeout:g}",
               SUTURE_HEX=f"{SUPPORTED[0]}:{SUPPORTED[1]}", SUTURE_TOKEN=host_token)
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


def _remote_exec_usable(version: str) -> bool:
    """PEP 768's ``sys.remote_exec`` works only between two CPythons of the same X.Y (a
    3.14 caller refuses a 3.15 target and the reverse), 3.14 or newer."""
    if not hasattr(sys, "remote_exec") or version == "unknown":
        return False
    return tuple(map(int, version.split(".")[:2])) == sys.version_info[:2]


def _remote_exec(pid: int, identity: _Identity, stub_file: str) -> Optional[str]:
    """Queue ``stub_file`` in ``pid`` with ``sys.remote_exec``: None when queued, else why
    not (remote debugging disabled in the target, ptrace refused...)."""
    def call() -> None:
        sys.remote_exec(pid, stub_file)  # type: ignore[attr-defined,unused-ignore]
    try:
        _as_user(identity, call)
    except AttachError as exc:   # raised in the child that dropped to the target's user
        return str(exc.details.get("error", {}).get("message") or exc.message)
    except (OSError, RuntimeError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _explain(pid: int, result: Dict[str, Any], timeout: float, queued: bool) -> SutureError:
    """The error for a gdb result; ``queued``: a sys.remote_exec script waits in the
    target too (a no-op once the token is removed, which the caller does next)."""
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
                                 f"supports CPython 3.9 to 3.15. Nothing was changed.",
                                 details=details)
    if state == "registers-unwritable":
        return NoInjector(
            f"this gdb cannot write the registers of PID {pid} on this CPU ({message.strip()}), "
            f"so it cannot call into the process safely; nothing was changed. gdb 13 has this "
            f"bug on CPUs with AMX: use gdb 14 or newer (scripts/get-gdb.sh makes one), or "
            f"start the program under `suture run`"
            + (" (sys.remote_exec's script did not run in time either: the main thread did "
               "not reach a safe point)." if queued else "."),
            details=details)
    if state == "timeout":
        return AttachTimeout(
            f"PID {pid} reached no safe point within {timeout:g} s: its main thread is in a "
            f"long call outside the interpreter (a C extension, or blocked in one Suture does "
            f"not interrupt) and no other thread ran Python code. Nothing was changed (one "
            f"harmless signal check stays queued"
            + ("; so does sys.remote_exec's script, which will find its token gone and do "
               "nothing" if queued else "")
            + "). Retry later or with a longer --timeout.",
            details=details)
    if state == "exited":
        return AttachError(f"PID {pid} exited while Suture was attaching", details=details)
    if state == "busy":
        return AttachError(f"PID {pid} was busy in its pending-call queue at every try; "
                           f"retry", details=details)
    return AttachError(f"attaching to PID {pid} failed ({state}): {message}", details=details)


# -- the command -----------------------------------------------------------------------

def _inject(pid: int, identity: _Identity, gdb: Optional[str], stub_file: str, gdb_stub: str,
            host_token: str, timeout: float) -> Tuple[Dict[str, Dict[str, Any]],
                                                       Optional[SutureError]]:
    """Run the routes until a stub claims the token, within ``timeout``.

    Returns (what each route did, None) once the token is claimed, or (..., the error
    to report) when no stub claimed it: the caller then removes the token (and may
    still find it claimed at the last moment). ``stub_file`` is set when
    sys.remote_exec may be tried.
    """
    deadline = time.monotonic() + timeout
    routes: Dict[str, Dict[str, Any]] = {}
    queued = False
    if stub_file:
        why = _remote_exec(pid, identity, stub_file)
        queued = why is None
        routes["remote_exec"] = {"state": "queued"} if queued else {"state": "refused",
                                                                     "message": why}
        if queued:
            t0 = time.monotonic()
            until = deadline if gdb is None else min(deadline, t0 + min(REMOTE_EXEC_WAIT,
                                                                        timeout / 3))
            if _wait_claim(pid, host_token, until):
                routes["remote_exec"].update(state="ran", waited=round(time.monotonic() - t0, 3))
                return routes, None
            routes["remote_exec"]["waited"] = round(time.monotonic() - t0, 3)
    if gdb is None:
        if not os.path.exists(f"/proc/{pid}"):
            return routes, AttachError(f"PID {pid} exited while Suture was attaching",
                                       details={"pid": pid, "routes": routes})
        if queued:
            return routes, AttachTimeout(
                f"PID {pid} reached no safe point within {timeout:g} s: sys.remote_exec runs "
                f"its script only in the main thread, which is blocked (sleep, accept(), a "
                f"lock wait, a C call), and gdb, which gets in through any thread and wakes "
                f"a blocked main thread, is not installed (apt install gdb / dnf install "
                f"gdb). Nothing was changed: the queued script will find its token gone and "
                f"do nothing. Retry later, or with a longer --timeout.",
                details={"pid": pid, "routes": routes})
        return routes, NoInjector(
            f"gdb is not installed, and PID {pid} refused sys.remote_exec "
            f"({routes['remote_exec']['message']}); install gdb (apt install gdb / dnf install "
            f"gdb) or start the program under `suture run`",
            details={"pid": pid, "routes": routes})
    error: Optional[SutureError] = None
    try:
        for attempt in range(4):
            outcome = _gdb(gdb, pid, identity, gdb_stub,
                           max(deadline - time.monotonic(), 0.1), host_token)
            if outcome.get("state") != "busy":
                break
            time.sleep(0.1 * (attempt + 1))
    except AttachError as exc:
        outcome, error = {"state": "failed", "message": exc.message}, exc
    routes["gdb"] = outcome
    if not os.path.lexists(host_token):
        return routes, None     # gdb's stub claimed it, or remote_exec's did meanwhile
    if outcome.get("state") == "ran":
        error = AttachError(
            f"the stub ran in PID {pid} but could not claim its token {host_token} (can the "
            f"process rename files in its runtime directory?). Nothing was changed.",
            details={"pid": pid, "routes": routes})
    elif error is None:
        error = _explain(pid, outcome, timeout, queued)
    # gdb failed early (a gdb that cannot write registers...): the queued script may still
    # run before the deadline, so wait for it rather than give up now.
    if queued and _wait_claim(pid, host_token, deadline):
        return routes, None
    return routes, error


def attach(pid: int, timeout: float = DEFAULT_TIMEOUT, *,
           runtime_dir: Optional[str] = None) -> Attached:
    """Load the agent into ``pid``; see the module docstring. Raises ``AttachError``."""
    started = time.monotonic()
    status = _status(pid)
    identity = _identity(pid, status)
    _, version = _python(pid)
    # Already attached? Looked for where the agent may be, not only where our own
    # $SUTURE_RUNTIME_DIR says: an agent started with the target's own directory is
    # hidden from a caller whose environment names another, and gdb would be run again
    # into a process that has an agent (issue 18). An agent that accepts but does not
    # answer in time (busy, or applying installed patches at its start) is there too.
    try:
        path, info = client.find_agent(pid, timeout, runtime_dir=runtime_dir)
        return Attached(pid, "already", socket=path, python=str(info.get("python", version)))
    except client.AgentTimeout as exc:
        return Attached(pid, "already", socket=str(exc.details.get("socket", "")),
                        python=version, details={
                            "busy": f"its agent did not answer hello within {timeout:g} s "
                                    f"(a busy process); `suture ps` shows it once it answers",
                            "hello_error": exc.to_dict()})
    except SutureError:
        pass
    _check_tracer(pid, status)
    _check_yama(pid, identity)
    gdb = shutil.which("gdb")
    remote = _remote_exec_usable(version)
    if gdb is None and not remote:
        raise NoInjector("gdb is not installed, and attaching needs it unless this Python "
                         "and the target are the same Python 3.14 or newer (sys.remote_exec) "
                         "(apt install gdb / dnf install gdb); or start the program under "
                         "`suture run`", details={"pid": pid, "python": version})

    prefix = _root_prefix(pid)
    env = client._proc_environ(pid)
    directory = runtime_dir or _agent._default_dir(env, identity.uid)
    content = _bootstrap.bundle()
    name = f"attach-{pid}-{os.urandom(6).hex()}"
    result_path = os.path.join(directory, name + ".json")
    token = os.path.join(directory, name + ".token")
    stub_path = os.path.join(directory, name + ".py") if remote else ""

    def publish() -> str:
        """As the target's user: the bootstrap directory, the token, remote_exec's script."""
        host_dir = _agent.ensure_dir(prefix + directory)
        boot = _bootstrap.publish(os.path.join(host_dir, "bootstrap"), content)
        attach_py = os.path.join(boot[len(prefix):], "attach.py")
        files = [(token, "")]
        if stub_path:
            files.append((stub_path, _stub(attach_py, result_path, token, "remote_exec",
                                           stub_path)))
        for path, text in files:
            fd = os.open(prefix + path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                         0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
        return attach_py

    attach_py = _as_user(identity, publish)
    host_token = prefix + token
    try:
        routes, error = _inject(pid, identity, gdb, stub_path,
                                _stub(attach_py, result_path, token, "gdb"), host_token, timeout)
    except BaseException:
        _give_up(identity, host_token)   # never leave a token a late script could claim
        raise
    if error is not None:
        if _give_up(identity, host_token):
            error.details.setdefault("routes", routes)
            raise error
        # else a stub claimed it at the last moment: its bootstrap runs, wait for it

    # The stub only started a thread; its answer follows within moments.
    wait = max(timeout, 5.0)
    try:
        answer = _wait_answer(prefix + result_path, time.monotonic() + wait)
    except BaseException:   # Ctrl-C: the bootstrap must not start an agent nobody awaits
        _give_up(identity, host_token + ".run")
        raise
    if answer is None:
        stopped = _give_up(identity, host_token + ".run")
        raise AttachTimeout(
            f"the bootstrap in PID {pid} did not answer within {wait:g} s (its thread was "
            f"started, and may wait for an import lock the main thread holds); "
            + ("it will stop before starting an agent: nothing was changed. Retry later."
               if stopped else
               "it was starting the agent when time ran out: check `suture ps`."),
            details={"pid": pid, "routes": routes, "stopped": stopped})
    if not answer.get("ok"):
        _give_up(identity, host_token + ".run")   # unclaimed when it failed before the claim
        cls = UnsupportedTarget if answer.get("type") == "UnsupportedPython" else AttachError
        raise cls(f"the agent did not start in PID {pid}: {answer.get('error')}",
                  details={"pid": pid, "answer": answer, "routes": routes})
    method = str(answer.get("method") or ("gdb" if "gdb" in routes else "remote_exec"))
    details: Dict[str, Any]
    if method == "gdb":
        details = {k: v for k, v in routes.get("gdb", {}).items() if k != "state"}
        tried = routes.get("remote_exec")
        if tried:
            details["fallback"] = (
                f"sys.remote_exec's script had not run within {tried.get('waited', 0):g} s"
                if tried["state"] == "queued" else
                f"sys.remote_exec refused: {tried.get('message')}")
    else:
        details = {"where": "sys.remote_exec",
                   "waited": routes.get("remote_exec", {}).get("waited", 0.0)}
        if routes.get("gdb", {}).get("state") == "ran":
            # gdb woke the blocked main thread and ran its stub there; the stub's first
            # bytecode let the pending script run (and claim the token) before it.
            details["gdb"] = {k: v for k, v in routes["gdb"].items() if k != "state"}
            details["fallback"] = "its script ran once gdb had woken the main thread"
    socket_file = str(answer.get("socket", ""))
    host_socket = prefix + socket_file
    # The answer file says the agent listens; the hello proves that socket is PID's own.
    # The agent applies the host's installed patches before it serves its first request
    # (runtime/_agent.py, _auto_apply), which can take longer than a discovery hello in a
    # busy process: so the hello gets --timeout, like every other wait of an attach, and
    # a hello that does not come in time means "attached, busy", not a failure (the agent
    # runs, and has maybe applied patches: reporting failure would be false).
    try:
        info = client.hello(pid, timeout,
                            runtime_dir=os.path.dirname(host_socket) if socket_file else None)
    except client.AgentTimeout as exc:
        info = {}
        details["busy"] = (
            f"the agent started but did not answer hello within {timeout:g} s: it applies "
            f"the installed patches before its first request, or the process is busy; "
            f"`suture ps` shows it once it answers")
        details["hello_error"] = exc.to_dict()
    return Attached(pid, "attached", method, round(time.monotonic() - started, 3), host_socket,
                    str(info.get("python", answer.get("python", version))), details=details)
