"""One process, several interpreters (issue 22; docs/interpreters.md).

Each interpreter has its own modules and function objects, so a patch applied in one
leaves the others on the old code. Suture's answer: **an agent per interpreter, one public
endpoint per process.** Every interpreter that imports the runtime runs its own agent
thread (the engine must run inside the interpreter that owns the functions). The main
interpreter's agent listens on ``<pid>.sock``, as before; a sub-interpreter's agent on
``<pid>.i<ID>.sock`` in the same 0700 directory. Clients only ever talk to ``<pid>.sock``:
the main agent forwards ``status``, ``apply``, ``revert``, ``list`` and ``dists`` to every
other interpreter and answers for the process (``fan``).

Under ``suture run`` every interpreter starts its agent while it is created, and is never
entered. Where a sub-interpreter has no agent because it existed before ``suture attach``,
the main agent starts one in it with ``_interpreters.exec``: only on 3.13+ and only in an
interpreter made through the C API (mod_wsgi, uWSGI), see ``ENTERS`` and ``ENTERABLE``.
Any other such interpreter is *unreachable*, and the process is reported not fully
inspectable (``uninspectable``), which counts as exposed.

What "applied" means for the process: every interpreter applied (or holds the patch
pending import). One refusal, or one interpreter that cannot be reached, and the
interpreters that committed are reverted: the process keeps the old code everywhere and
the request fails with that interpreter's reason (all or nothing, per process).

Standard library only; importing this module does nothing.
"""

from __future__ import annotations

import _socket as socket   # not socket.py: an idle agent's memory (_agent, "Memory")
import os
import struct
import sys
import threading
import time

from . import protocol

TYPE_CHECKING = False
if TYPE_CHECKING:   # not at run time: typing costs an idle agent 1.6 MiB (issue 19)
    from typing import Any, Callable, Dict, List, Optional, Tuple

    Handler = Callable[[Dict[str, Any]], Dict[str, Any]]

__all__ = ["current_id", "listed", "socket_name", "fan", "FANNED"]

FANNED = ("status", "apply", "revert", "list", "dists")
START_GRACE = 2.0              # seconds an interpreter being created may take to listen
# Interpreters Suture may enter to start an agent (3.13+: ENTERS): those made through the
# C API (mod_wsgi, uWSGI). Not those of _interpreters / concurrent.interpreters ("stdlib",
# "xi"): their owner runs code in them with exec, which fails while ours runs.
ENTERABLE = ("legacy capi", "capi")
CALL_TIMEOUT = 60.0            # a forwarded request without a deadline
STATUS_TIMEOUT = 10.0
_WHENCE = {"WHENCE_UNKNOWN": "unknown", "WHENCE_RUNTIME": "runtime",
           "WHENCE_LEGACY_CAPI": "legacy capi", "WHENCE_CAPI": "capi", "WHENCE_XI": "xi",
           "WHENCE_STDLIB": "stdlib"}


_found: List[Any] = []


def _module() -> Any:
    """CPython's interpreters module of this version, or None (another implementation).
    Looked up once (the agent does it at start): a failed import searches sys.path again
    each time, which fails in a process out of file descriptors."""
    if not _found:
        mod = None
        for name in ("_interpreters", "_xxsubinterpreters"):
            try:
                mod = __import__(name)
                break
            except ImportError:
                continue
        _found.append(mod)
    return _found[0]


def current_id() -> int:
    """This interpreter's id; 0 is the main interpreter (and the answer where CPython
    cannot tell, which then has a single interpreter as far as Suture can see)."""
    mod = _module()
    if mod is None:
        return 0
    try:
        cur = mod.get_current()
        return int(cur[0] if isinstance(cur, tuple) else cur)
    except Exception:  # noqa: BLE001 - treated as the main interpreter
        return 0


def running_here() -> Optional[bool]:
    """Whether code runs in this interpreter's main thread state (an ``exec``, a script);
    None if CPython cannot say."""
    mod = _module()
    try:
        return bool(mod.is_running(current_id())) if mod is not None else None
    except Exception:  # noqa: BLE001
        return None


def background(target: Callable[..., Any], name: str, *args: Any) -> None:
    """Start a short-lived helper thread: a daemon in the main interpreter, a plain thread
    in a sub-interpreter (isolated ones allow no daemon thread: RuntimeError on 3.12+)."""
    threading.Thread(target=target, name=name, args=args, daemon=current_id() == 0).start()


def starts_its_own() -> bool:
    """Whether each new interpreter starts its own agent: this process runs with Suture's
    start-up (``suture run``'s sitecustomize, ``SUTURE_AGENT=1``), which sub-interpreters
    import with ``site``."""
    return os.environ.get("SUTURE_AGENT") == "1"


def _whence(mod: Any, code: Any) -> str:
    for attr, name in _WHENCE.items():
        if getattr(mod, attr, object()) == code:
            return name
    return "unknown"


def listed() -> Optional[List[Tuple[int, str]]]:
    """Every interpreter of the process as (id, whence), main first; None when this Python
    cannot list them. ``whence`` (3.13+) says who made it: "stdlib" (``_interpreters``,
    ``concurrent.interpreters``), "legacy capi" (``Py_NewInterpreter``: mod_wsgi, uWSGI),
    "capi", "xi"; "unknown" before 3.13."""
    mod = _module()
    if mod is None:
        return _listed_by_capi()
    out: List[Tuple[int, str]] = []
    try:
        for item in mod.list_all():
            if isinstance(item, tuple):
                out.append((int(item[0]), _whence(mod, item[1])))
            else:
                out.append((int(item), "unknown"))
    except Exception:  # noqa: BLE001 - cannot list: the caller says so
        return None
    out.sort(key=lambda t: (t[0] != 0, t[0]))
    if out and out[0][0] == 0 and out[0][1] == "unknown":
        out[0] = (0, "runtime")
    return out


def _listed_by_capi() -> Optional[List[Tuple[int, str]]]:
    """Without an interpreters module (a build without ``_xxsubinterpreters``): the ids
    from ``PyInterpreterState_Head``/``Next``/``GetID`` through ctypes; None if that
    cannot be done either."""
    try:
        import ctypes
        api = ctypes.pythonapi
        vp = ctypes.c_void_p
        api.PyInterpreterState_Head.restype = vp
        api.PyInterpreterState_Next.restype, api.PyInterpreterState_Next.argtypes = vp, [vp]
        api.PyInterpreterState_GetID.restype = ctypes.c_int64
        api.PyInterpreterState_GetID.argtypes = [vp]
        out: List[Tuple[int, str]] = []
        interp = api.PyInterpreterState_Head()
        while interp:
            out.append((int(api.PyInterpreterState_GetID(interp)), "unknown"))
            interp = api.PyInterpreterState_Next(interp)
    except Exception:  # noqa: BLE001 - no ctypes, no C API: cannot list
        return None
    out.sort(key=lambda t: (t[0] != 0, t[0]))
    return out


def socket_name(pid: int, iid: int) -> str:
    """The file name of interpreter ``iid``'s agent in process ``pid``."""
    return f"{pid}.sock" if iid == 0 else f"{pid}.i{iid}.sock"


def call(path: str, frame: Dict[str, Any], timeout: float,
         pid: Optional[int] = None) -> Dict[str, Any]:
    """Send ``frame`` to the agent at ``path`` and return its answer frame. The socket must
    be served by process ``pid`` (default: this very process) as our uid (SO_PEERCRED).
    Raises OSError / ValueError."""
    want = os.getpid() if pid is None else pid
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,  # type: ignore[attr-defined]
                              struct.calcsize("3i"))
        peer, uid, _gid = struct.unpack("3i", raw)
        if peer != want or uid != os.geteuid():
            raise ValueError(f"{path} is served by pid {peer} uid {uid}, not by pid {want}")
        sock.sendall(protocol.encode(frame))
        return protocol.read_frame(sock)
    finally:
        sock.close()


def _start_code(entry: str, runtime_dir: str, by_main: bool = True) -> str:
    return (f"import sys\n"
            f"_p = {entry!r}\n"
            f"_added = _p not in sys.path\n"
            f"if _added:\n    sys.path.insert(0, _p)\n"
            f"try:\n    from suture.runtime import _agent as _suture_agent\n"
            f"finally:\n"
            f"    if _added:\n        sys.path.remove(_p)\n"
            + ("_suture_agent._started_by_main = True\n" if by_main else "") +
            f"_suture_agent.start({runtime_dir!r})\n"
            f"del _p, _added, _suture_agent\n")


# Entering an interpreter that another thread is serving from: a real mod_wsgi daemon died
# (SIGSEGV) in 3 of 4 runs on 3.12 while the main interpreter ran ``run_string`` in the
# application's interpreter under load; none in 120 ``_interpreters.exec`` calls on 3.13.
# Before 3.12, ``run_string`` refuses an interpreter with more than one thread state.
# So Suture enters another interpreter only on 3.13+; elsewhere it is unreachable.
ENTERS = sys.version_info >= (3, 13)
_NO_ENTRY = ("Suture enters another interpreter only on CPython 3.13+ (on 3.12, "
             "run_string into an interpreter that is serving crashed a mod_wsgi daemon; "
             "earlier versions refuse an interpreter with several threads)")


def start_main(entry: str, runtime_dir: str) -> Optional[str]:
    """From a sub-interpreter (``suture attach`` landed in one: an embedding host such as
    mod_wsgi runs no Python in its main interpreter): start the main interpreter's agent,
    the process's endpoint; None when started, else why not."""
    mod = _module()
    run = getattr(mod, "exec", None) if ENTERS else None
    if run is None:
        return _NO_ENTRY
    try:
        failed = run(0, _start_code(entry, runtime_dir, by_main=False))
    except Exception as exc:  # noqa: BLE001 - "interpreter already running"...
        return f"{type(exc).__name__}: {exc}"
    if failed is not None:
        return str(getattr(failed, "formatted", None) or getattr(failed, "msg", None) or failed)
    return None


def start_in(iid: int, runtime_dir: str) -> Optional[str]:
    """Start an agent in interpreter ``iid`` (one that has none); None when started, else
    why not. Runs on the calling thread, inside that interpreter, for as long as the start
    takes (it starts a thread there and returns)."""
    mod = _module()
    if mod is None:
        return "this Python cannot run code in another interpreter"
    suture = sys.modules.get("suture")
    where = getattr(suture, "__file__", None)
    if not where:
        return "the runtime's location is unknown"
    entry = os.path.dirname(os.path.dirname(os.path.abspath(where)))
    run = getattr(mod, "exec", None) if ENTERS else None
    if run is None:
        return _NO_ENTRY
    try:
        failed = run(iid, _start_code(entry, runtime_dir))
    except Exception as exc:  # noqa: BLE001 - "interpreter already running", threads...
        return f"{type(exc).__name__}: {exc}"
    if failed is not None:   # 3.13+: exec returns what the code raised
        return str(getattr(failed, "formatted", None) or getattr(failed, "msg", None)
                   or failed)
    return None


_STOP_CODE = ("import sys\n_suture_agent = sys.modules.get('suture.runtime._agent')\n"
              "if _suture_agent is not None:\n    _suture_agent.stop(5.0)\n"
              "del _suture_agent\n")


def stop_others(runtime_dir: str) -> None:
    """At the process's exit, from the main interpreter: have every sub-interpreter's agent
    end its thread now, before CPython finalizes those interpreters (3.13 waited for ever
    at exit on a sub-interpreter's thread still serving). Never raises."""
    if not runtime_dir or "_interpreters" not in sys.modules and \
            "_xxsubinterpreters" not in sys.modules:
        return    # no interpreter module imported here: none was created by anyone
    mod = _module()
    run = getattr(mod, "exec", None) or getattr(mod, "run_string", None)
    try:
        for sub in others(runtime_dir) or []:
            if not os.path.exists(sub.path):
                continue
            # Stopped and joined inside that interpreter: the thread has ended when this
            # returns (a thread of any interpreter that wants its GIL once the process
            # finalizes waits for ever on 3.13, and the interpreter's end waits for it).
            try:
                if run is not None and run(sub.iid, _STOP_CODE) is None:
                    continue
            except Exception:  # noqa: BLE001 - it runs code: ask its agent instead
                pass
            try:
                call(sub.path, protocol.request("stop"), 1.0)
            except (OSError, ValueError):
                pass
    except BaseException:  # noqa: BLE001 - exiting anyway
        pass


# ---------------------------------------------------------------- the main agent's side

class _Other:
    """One other interpreter as the main agent sees it for one request."""

    def __init__(self, iid: int, whence: str, path: str) -> None:
        self.iid, self.whence, self.path = iid, whence, path
        self.reason = ""

    def alive(self) -> bool:
        found = listed()
        return found is None or any(iid == self.iid for iid, _ in found)

    def reach(self, runtime_dir: str) -> Optional[bool]:
        """True: its agent is there (or was started now). None: the interpreter is gone
        (destroyed meanwhile): nothing runs there any more. False: ``reason`` says why not.
        """
        if os.path.exists(self.path):
            return True
        if starts_its_own():
            # Under `suture run` every interpreter starts its agent while it is created:
            # one without a socket yet is being created (wait a little) or destroyed.
            deadline = time.monotonic() + START_GRACE
            while time.monotonic() < deadline:
                if os.path.exists(self.path):
                    return True
                if not self.alive():
                    return None
                time.sleep(0.02)
            self.reason = (f"no agent: it started none within {START_GRACE:g} s (it cannot "
                           f"run threads, or Suture's start-up is not on its path)")
            return False
        if self.whence not in ENTERABLE:
            # Its owner runs code in it with exec, which fails while another exec runs
            # there: entering it to start an agent made the application's own calls fail.
            self.reason = (f"no agent (it existed before the attach), and Suture does not "
                           f"enter an interpreter made by {self.whence or 'an unknown owner'}"
                           f": restart the process under `suture run`")
            return False
        why = start_in(self.iid, runtime_dir)
        if why is None and os.path.exists(self.path):
            return True
        if not self.alive():
            return None
        self.reason = (f"no agent, and none could be started in it: {why}" if why
                       else "no agent, and the one started in it did not listen")
        return False

    def ask(self, frame: Dict[str, Any], timeout: float) -> Optional[Dict[str, Any]]:
        """Its answer frame; None when the interpreter was destroyed meanwhile. Raises
        OSError/ValueError when it could not be asked."""
        try:
            return call(self.path, frame, timeout)
        except (OSError, ValueError):
            if not self.alive():
                return None
            raise


def others(runtime_dir: str) -> Optional[List[_Other]]:
    """The process's interpreters other than this (main) one; None if they cannot be
    listed."""
    found = listed()
    if found is None:
        return None
    me = os.getpid()
    return [_Other(iid, whence, os.path.join(runtime_dir, socket_name(me, iid)))
            for iid, whence in found if iid != 0]


def _timeout(frame: Dict[str, Any], default: float) -> float:
    import time
    deadline = frame.get("deadline")
    if isinstance(deadline, (int, float)) and not isinstance(deadline, bool):
        return max(1.0, float(deadline) - time.time() + 5.0)
    return default


def _error_of(answer: Dict[str, Any]) -> Dict[str, Any]:
    err = answer.get("error")
    return err if isinstance(err, dict) else {"code": "SUT-E999", "message": str(answer)}


def fan(op: str, frame: Dict[str, Any], local: Handler, runtime_dir: str,
        undo: Optional[Handler] = None) -> Dict[str, Any]:
    """Answer ``op`` for the whole process: ``local`` (this interpreter's handler) here,
    the same request forwarded to every other interpreter's agent, and one answer.
    ``undo``: this interpreter's revert handler, for an apply that must be rolled back."""
    subs = others(runtime_dir)
    if not subs:
        out = local(frame)
        if op == "status":
            out["interpreters"] = [{"id": 0, "main": True, "whence": "runtime",
                                    "reach": "self", "reason": "", "patches": _ids(out)}]
            # Not knowing whether other interpreters exist is not knowing they do not.
            out["uninspectable"] = [] if subs is not None else [{
                "interpreter": None, "whence": None,
                "reason": "this Python cannot list its interpreters (no _interpreters or "
                          "_xxsubinterpreters module, no ctypes): any sub-interpreter "
                          "is unseen"}]
        return out
    if op == "apply":
        return _apply(frame, local, subs, runtime_dir, undo)
    if op == "revert":
        return _revert(frame, local, subs, runtime_dir)
    out = local(frame)
    timeout = STATUS_TIMEOUT
    answers: List[Tuple[_Other, Optional[Dict[str, Any]]]] = []
    for sub in subs:
        answer = None
        reached = sub.reach(runtime_dir)
        if reached is None:
            continue                  # destroyed meanwhile: nothing runs there
        if reached:
            try:
                reply = sub.ask(frame, timeout)
                if reply is None:
                    continue          # destroyed while we asked
                if reply.get("ok") is True and isinstance(reply.get("result"), dict):
                    answer = reply["result"]
                else:
                    err = _error_of(reply)
                    sub.reason = f"its agent answered {err.get('code')}: {err.get('message')}"
            except (OSError, ValueError) as exc:
                sub.reason = f"its agent could not be asked: {exc}"
        answers.append((sub, answer))
    if op == "status":
        return merge_status(out, answers)
    if op == "list":
        ids = list(out.get("applied") or [])
        for _sub, a in answers:
            for pid_ in (a or {}).get("applied") or []:
                if pid_ not in ids:
                    ids.append(pid_)
        out["applied"] = ids
        return out
    if op == "dists":
        # A distribution a sub-interpreter runs counts though the main interpreter lacks it
        # (its own sys.path); several releases in one process: every one in ``versions``.
        loaded = dict(out.get("loaded") or {})
        dists = dict(out.get("dists") or {})
        versions = {name: [v] for name, v in dists.items()}
        modules = dict(out.get("modules") or {})
        for _sub, a in answers:
            for name, was in ((a or {}).get("loaded") or {}).items():
                loaded[name] = bool(loaded.get(name)) or bool(was)
            for name, version in ((a or {}).get("dists") or {}).items():
                dists.setdefault(name, version)
                if version not in versions.setdefault(name, []):
                    versions[name].append(version)
            for name, was in ((a or {}).get("modules") or {}).items():
                modules[name] = bool(modules.get(name)) or bool(was)
        out["loaded"], out["dists"] = loaded, dists
        out["versions"] = {n: v for n, v in versions.items() if len(v) > 1}
        if "modules" in out:
            out["modules"] = modules
        return out
    return out


def summary(verdicts: Any) -> str:
    """``interpreters: 0 applied, 1 refused SUT-E201; `` for an audit row's detail, or ""
    (a process with one interpreter)."""
    if not isinstance(verdicts, list) or not verdicts:
        return ""
    parts = [f"{v.get('id')} {v.get('state')}" + (f" {v['code']}" if v.get("code") else "")
             for v in verdicts if isinstance(v, dict)]
    return f"interpreters: {', '.join(parts)}; "


def _ids(status: Dict[str, Any]) -> List[str]:
    return [str(p.get("id")) for p in status.get("patches") or [] if isinstance(p, dict)]


def merge_status(main: Dict[str, Any],
                 answers: List[Tuple[_Other, Optional[Dict[str, Any]]]]) -> Dict[str, Any]:
    """The process's status from each interpreter's, conservatively (docs/interpreters.md):
    a patch that some interpreter with an agent lacks, or refused, has that interpreter's
    modules ``refused in interpreter N: ...``, which every reader calls exposed."""
    import copy
    per: List[Tuple[int, Dict[str, Dict[str, Any]]]] = [
        (0, {str(p.get("id")): p for p in main.get("patches") or [] if isinstance(p, dict)})]
    rows = [{"id": 0, "main": True, "whence": "runtime", "reach": "self", "reason": "",
             "patches": _ids(main)}]
    uninspectable = []
    active = [dict(a, interpreter=0) for a in main.get("active") or [] if isinstance(a, dict)]
    for sub, answer in answers:
        if answer is None:
            rows.append({"id": sub.iid, "main": False, "whence": sub.whence,
                         "reach": "unreachable", "reason": sub.reason, "patches": []})
            uninspectable.append({"interpreter": sub.iid, "whence": sub.whence,
                                  "reason": sub.reason})
            continue
        per.append((sub.iid, {str(p.get("id")): p for p in answer.get("patches") or []
                              if isinstance(p, dict)}))
        rows.append({"id": sub.iid, "main": False, "whence": sub.whence, "reach": "agent",
                     "reason": "", "patches": _ids(answer)})
        active += [dict(a, interpreter=sub.iid) for a in answer.get("active") or []
                   if isinstance(a, dict)]
    merged: Dict[str, Dict[str, Any]] = {}
    for _iid, patches in per:
        for pid_, p in patches.items():
            merged.setdefault(pid_, copy.deepcopy(p))
    lacking: Dict[Tuple[str, str], List[int]] = {}   # (patch, module) -> interpreters
    for pid_, entry in merged.items():
        modules = entry.get("modules")
        if not isinstance(modules, dict):
            continue
        live = entry.get("live") if isinstance(entry.get("live"), dict) else None
        for iid, patches in per:
            there = patches.get(pid_)
            for name in list(modules):
                if there is None:
                    lacking.setdefault((pid_, name), []).append(iid)
                    continue
                state = str((there.get("modules") or {}).get(name, "missing"))
                if state.startswith("refused") and not str(modules[name]).startswith(
                        "refused"):
                    modules[name] = f"refused in interpreter {iid}: {state}"
                elif modules[name] == "pending import" and state != "pending import" \
                        and not state.startswith("refused") and state != "missing":
                    # Imported and patched there, not imported yet here: the process runs
                    # the fix wherever it runs the module.
                    modules[name] = state
                    theirs_live = (there.get("live") or {}).get(name)
                    if live is not None and theirs_live is not None:
                        live[name] = theirs_live
                theirs = (there.get("live") or {}).get(name)
                if live is not None and theirs is not None and theirs != "verified" \
                        and live.get(name) == "verified":
                    live[name] = f"{theirs} (interpreter {iid})"
    for (pid_, name), ids in lacking.items():
        which = (f"interpreter {ids[0]}" if len(ids) == 1
                 else f"interpreters {', '.join(map(str, ids))}")
        merged[pid_]["modules"][name] = f"refused in {which}: the patch is not applied there"
    out = dict(main)
    out["patches"] = list(merged.values())
    out["active"] = active
    out["interpreters"] = rows
    out["uninspectable"] = uninspectable
    return out


def _unreachable(message: str) -> Dict[str, Any]:
    return {"error": "InterpreterUnreachable", "code": "SUT-E219", "message": message}


def _verdict(iid: int, result: Optional[Dict[str, Any]] = None,
             error: Optional[Dict[str, Any]] = None, state: str = "") -> Dict[str, Any]:
    if error is not None:
        return {"id": iid, "state": state or "refused", "code": error.get("code"),
                "message": str(error.get("message", ""))}
    return {"id": iid, "state": state or str((result or {}).get("state", "")), "code": None,
            "message": ""}


def _apply(frame: Dict[str, Any], local: Handler, subs: List[_Other], runtime_dir: str,
           undo_here: Optional[Handler]) -> Dict[str, Any]:
    out = local(frame)            # a refusal here raises: nothing was sent anywhere else
    patch_id = str(out.get("patch", ""))
    verdicts = [_verdict(0, out)]
    committed: List[Optional[_Other]] = [None] if out.get("state") != "already applied" else []
    failure: Optional[Tuple[int, Dict[str, Any]]] = None
    timeout = _timeout(frame, CALL_TIMEOUT)
    for sub in subs:
        reached = sub.reach(runtime_dir)
        if reached is None:
            continue                  # destroyed meanwhile: nothing runs there
        if not reached:
            verdicts.append(_verdict(sub.iid, error=_unreachable(sub.reason),
                                     state="unreachable"))
            failure = (sub.iid, _unreachable(sub.reason))
            break
        try:
            reply = sub.ask(frame, timeout)
        except (OSError, ValueError) as exc:
            why = _unreachable(f"its agent could not be asked: {exc}")
            verdicts.append(_verdict(sub.iid, error=why, state="unreachable"))
            failure = (sub.iid, why)
            break
        if reply is None:
            continue                  # destroyed while it was asked
        if reply.get("ok") is True and isinstance(reply.get("result"), dict):
            verdicts.append(_verdict(sub.iid, reply["result"]))
            if reply["result"].get("state") != "already applied":
                committed.append(sub)
            continue
        err = _error_of(reply)
        verdicts.append(_verdict(sub.iid, error=err))
        failure = (sub.iid, err)
        break
    if failure is None:
        out["interpreters"] = verdicts
        if out.get("state") == "already applied" and any(
                v["state"] in ("applied", "pending import") for v in verdicts[1:]):
            out["state"] = "applied"   # new in some interpreter (one created since)
        return out
    # All or nothing per process: undo the interpreters that committed, newest first.
    for done in reversed(committed):
        undo = protocol.request("revert", patch_id=patch_id, force=True)
        iid = 0 if done is None else done.iid
        state = "rolled back"
        try:
            if done is None:
                if undo_here is None:
                    raise RuntimeError("no revert handler here")
                undo_here(undo)
            else:
                reply = done.ask(undo, CALL_TIMEOUT)
                if reply is None:
                    state = "gone"    # destroyed meanwhile: nothing runs there
                elif reply.get("ok") is not True:
                    state = f"NOT rolled back: {_error_of(reply).get('message')}"
        except Exception as undo_failed:  # noqa: BLE001 - said in the answer
            state = f"NOT rolled back: {undo_failed}"
        for v in verdicts:
            if v["id"] == iid:
                v["state"] = state
    iid, err = failure
    from .errors import rebuilt
    refusal = rebuilt(err)
    refusal.message = (f"interpreter {iid}: {refusal.message}; the patch was applied in no "
                   f"interpreter of this process (all or nothing: docs/interpreters.md)")
    refusal.details["interpreters"] = verdicts
    refusal.details["interpreter"] = iid
    raise refusal


def _revert(frame: Dict[str, Any], local: Handler, subs: List[_Other],
            runtime_dir: str) -> Dict[str, Any]:
    from .errors import SutureError
    patch_id = str(frame.get("patch_id") or "")
    verdicts: List[Dict[str, Any]] = []
    out: Optional[Dict[str, Any]] = None
    first_error: Optional[SutureError] = None
    try:
        out = local(frame)
        verdicts.append(_verdict(0, out))
    except SutureError as exc:
        first_error = exc
        verdicts.append(_verdict(0, error={"code": exc.code, "message": exc.message}))
    timeout = _timeout(frame, CALL_TIMEOUT)
    partial = False
    for sub in subs:
        if not os.path.exists(sub.path):   # no agent: it cannot hold a patch of ours
            continue
        try:
            reply = sub.ask(frame, timeout)
        except (OSError, ValueError) as exc:
            partial = True
            verdicts.append(_verdict(sub.iid, error=_unreachable(str(exc)),
                                     state="unreachable"))
            continue
        if reply is None:
            continue                  # destroyed meanwhile
        if reply.get("ok") is True and isinstance(reply.get("result"), dict):
            verdicts.append(_verdict(sub.iid, reply["result"]))
            if out is None:
                out = dict(reply["result"])
            continue
        err = _error_of(reply)
        if err.get("code") != "SUT-E300":      # "not applied here" is what we want anyway
            partial = True
        verdicts.append(_verdict(sub.iid, error=err))
    if out is None:
        assert first_error is not None
        first_error.details["interpreters"] = verdicts
        raise first_error
    out = dict(out, patch=out.get("patch", patch_id))
    if partial or first_error is not None and first_error.code != "SUT-E300":
        out["state"] = "partial"
    out["interpreters"] = verdicts
    return out
