"""Run inside gdb's own Python by ``suture attach`` (see docs/live-processes.md, "Attach").

Not imported by Suture: ``attach.py`` passes this file's text to gdb in the
environment (``python exec(...)``), so gdb, running with the target's uid, needs
to read nothing of ours. Inputs, all in the environment:

    SUTURE_PID      the target
    SUTURE_STUB     Python source to run in the target at a safe point
    SUTURE_TIMEOUT  seconds to wait for a safe point
    SUTURE_HEX      "MIN:MAX", the target's sys.hexversion must be in [MIN, MAX)
    SUTURE_TOKEN    the attach's one-time token, as a path gdb can see (optional): when
                    it is gone, another route (a queued ``sys.remote_exec`` script on
                    3.14+) claimed it first, and gdb stops before any call or at once

Output: one line ``SUTURE-RESULT <json>`` on stdout, with ``state`` one of ran, claimed,
timeout, unsupported, not-python, busy, exited, stub-failed, attach-failed, error.

The safety argument, in order:

1. ``attach`` stops every thread wherever it is: inside malloc, holding any
   lock. Nothing that allocates or takes a lock someone may hold runs now.
2. One call runs at that arbitrary point: ``Py_AddPendingCall(PyErr_CheckSignals,
   NULL)``, with only the calling thread running. It is the function CPython
   documents for asynchronous contexts (no GIL, no thread state); it touches
   only the pending-call queue's own lock, and we refuse (``busy``) when a
   thread is inside the functions that hold that lock. It queues a call that
   is harmless if it ever runs without us (checking signals is what the eval
   loop does anyway), so a timeout leaves nothing dangerous behind.
3. Breakpoints on ``PyErr_CheckSignals`` (main thread only) and
   ``PyEval_SaveThread`` (any thread). Both are safe points by CPython's own
   contract: at the first, Python signal handlers, which are arbitrary Python
   code, run; at the second the thread is about to let any other thread run
   any Python code. The queued call reaches the first from the eval loop of a
   busy main thread.
4. A main thread blocked in a system call made by CPython itself (sleep,
   socket, select, lock waits) is woken the way a signal would wake it: the
   syscall returns EINTR, and CPython's PEP 475 retry loop checks signals (the
   breakpoint) and resumes waiting for the remaining time. A syscall made by
   any other code (a third-party C extension may not retry EINTR) is left alone.
5. At the safe point, with the GIL held and no exception set, the stub runs
   in a fresh namespace via ``PyRun_String``, then breakpoints are removed and
   gdb detaches. The stub only starts a thread; the real work happens there.

The timeout is a watchdog thread that sends SIGINT to gdb itself, which
stops the target the way Ctrl-C in gdb does (the signal is not passed on). A
SIGINT really sent to the target meanwhile is passed on. The same watchdog
ends the wait early when the token is claimed by the other route.
"""

import json
import os
import threading
import time

import gdb  # type: ignore[import-not-found]  # provided by gdb

PID = int(os.environ["SUTURE_PID"])
STUB = os.environ["SUTURE_STUB"]
TIMEOUT = float(os.environ.get("SUTURE_TIMEOUT", "5"))
HEX_MIN, HEX_MAX = (int(x) for x in os.environ.get("SUTURE_HEX", "0:0").split(":"))
TOKEN = os.environ.get("SUTURE_TOKEN", "")
BEGAN = time.monotonic()
# A safe point in a sub-interpreter is taken only after this share of the timeout went by
# without one in the main interpreter: an embedding host (Apache's mod_wsgi) may never run
# Python in its main interpreter, whose agent attach.py then starts from the sub-
# interpreter it landed in (issue 22); elsewhere the main interpreter's points come first.
SUB_AFTER = 0.4

ERESTART = (-512, -513, -514, -516)  # ERESTARTSYS/NOINTR/NOHAND, ERESTART_RESTARTBLOCK
EINTR = -4
SYMBOLS = ("Py_AddPendingCall", "PyErr_CheckSignals", "PyEval_SaveThread", "PyErr_Occurred",
           "PyGILState_Check", "PyInterpreterState_Get", "PyInterpreterState_Main",
           "PyDict_New", "PyDict_SetItemString", "PyEval_GetBuiltins", "PyRun_String",
           "PyLong_AsLong", "Py_DecRef", "PyErr_Clear", "PyMem_RawMalloc", "PyMem_RawFree")
# Functions that hold the pending-call lock (names across 3.9-3.15).
LOCK_HOLDERS = ("Py_AddPendingCall", "_PyEval_AddPendingCall", "_push_pending_call",
                "_pop_pending_call", "make_pending_calls", "_make_pending_calls",
                "handle_signals", "_PyEval_MakePendingCalls", "Py_MakePendingCalls")
LIBC = ("libc.so", "libpthread.so", "ld-linux", "linux-vdso")


def ex(cmd):
    return gdb.execute(cmd, to_string=True)


def done(**result):
    print("SUTURE-RESULT " + json.dumps(result), flush=True)


def claimed():
    """True when the token is gone: the other route's stub claimed it, nothing left to do."""
    return bool(TOKEN) and not os.path.lexists(TOKEN)


def address(name):
    try:
        return int(gdb.parse_and_eval(f"(long)&{name}"))
    except gdb.error:
        return None


class Target:
    def __init__(self):
        self.addr = {name: address(name) for name in SYMBOLS}
        self.inferior = gdb.selected_inferior()
        arch = self.inferior.architecture().name()
        self.regs = {"i386:x86-64": ("$rax", "$orig_rax")}.get(arch)

    def missing(self):
        return [n for n, a in self.addr.items() if a is None]

    def call(self, signature, name, *args):
        """Call ``name`` in the target, through a cast: no debug info needed."""
        argv = ", ".join(f"({t}){int(v)}" for t, v in args)
        value = gdb.parse_and_eval(f"(({signature}){self.addr[name]:#x})({argv})")
        return None if signature.startswith("void (") else int(value)

    def cstring(self, text):
        data = text.encode("utf-8") + b"\0"
        buf = self.call("void *(*)(unsigned long)", "PyMem_RawMalloc", ("unsigned long", len(data)))
        if not buf:
            raise MemoryError("PyMem_RawMalloc returned NULL")
        self.inferior.write_memory(buf, data)
        return buf


def main_thread():
    for thread in gdb.selected_inferior().threads():
        if thread.ptid[1] == PID:
            return thread
    return None


def holds_pending_lock():
    for thread in gdb.selected_inferior().threads():
        thread.switch()
        frame, depth = gdb.newest_frame(), 0
        while frame is not None and depth < 12:
            if (frame.name() or "") in LOCK_HOLDERS:
                return True
            frame, depth = frame.older(), depth + 1
    return False


def registers_unwritable(target):
    """Why gdb cannot write this thread's registers, or None when it can; tried before
    any call.

    An inferior call saves, replaces and restores every register, the extended (XSAVE)
    state included. Some gdb releases cannot write that state on some CPUs (gdb 13 with
    AMX: a fixed-size buffer, "Couldn't write extended state status: Bad address"), and a
    call that fails half-way leaves the general registers changed: the target then sees
    a corrupted syscall return (seen: time.sleep raising errno 514). So flip one bit of a
    vector register and put it back, both while the target is stopped. gdb skips writes
    of an unchanged value, hence the flip; a refused write changes nothing (the kernel
    takes the whole state or none of it). Rejected: judging by gdb's version and the
    CPU's flags (a guess, where this is a measurement of the very operation a call needs).
    """
    if target.regs is None:
        return None  # not x86-64: no XSAVE state to write
    register = "$xmm15.v4_int32[0]"
    before = int(gdb.parse_and_eval(register))
    try:
        ex(f"set var {register} = {before ^ 1}")
    except gdb.error as exc:
        return str(exc)
    ex(f"set var {register} = {before}")
    return None


def cpython_syscall(target):
    """True when the main thread sits in a restartable syscall that CPython itself made."""
    if target.regs is None:
        return False
    rax = int(gdb.parse_and_eval(target.regs[0]))
    if rax not in ERESTART:
        return False
    frame = gdb.newest_frame()
    while frame is not None:
        lib = gdb.solib_name(frame.pc())
        if lib is None or not any(part in lib for part in LIBC):
            break
        frame = frame.older()
    if frame is None:
        return False
    lib = gdb.solib_name(frame.pc())
    if lib is None:  # the main executable: a Python built without --enable-shared
        exe = os.path.basename(gdb.current_progspace().filename or "")
        return exe.startswith("python")
    base = os.path.basename(lib)
    return base.startswith("libpython") or "/lib-dynload/" in lib


class SafePoint(gdb.Breakpoint):
    def __init__(self, addr, main_only):
        super().__init__(f"*{addr:#x}", internal=True)
        self.main_only = main_only

    def stop(self):
        return not self.main_only or gdb.selected_thread().ptid[1] == PID


def run_stub(target):
    """At a breakpoint: run STUB if this is a clean point; None when it is not."""
    if target.call("int (*)(void)", "PyGILState_Check") != 1:
        return None
    if target.call("void *(*)(void)", "PyErr_Occurred"):
        return None
    if (target.call("void *(*)(void)", "PyInterpreterState_Get")
            != target.call("void *(*)(void)", "PyInterpreterState_Main")
            and time.monotonic() - BEGAN < SUB_AFTER * TIMEOUT):
        return None
    d = target.call("void *(*)(void)", "PyDict_New")
    if not d:
        target.call("void (*)(void)", "PyErr_Clear")
        return {"state": "stub-failed", "message": "PyDict_New failed"}
    key = target.cstring("__builtins__")
    source = target.cstring("__import__('sys').hexversion")
    stub = target.cstring(STUB)
    try:
        builtins = target.call("void *(*)(void)", "PyEval_GetBuiltins")
        target.call("int (*)(void *, void *, void *)", "PyDict_SetItemString",
                    ("void *", d), ("void *", key), ("void *", builtins))
        value = target.call("void *(*)(void *, int, void *, void *)", "PyRun_String",
                            ("void *", source), ("int", 258), ("void *", d), ("void *", d))
        if not value:
            target.call("void (*)(void)", "PyErr_Clear")
            return {"state": "stub-failed", "message": "could not read sys.hexversion"}
        hexversion = target.call("long (*)(void *)", "PyLong_AsLong", ("void *", value))
        target.call("void (*)(void *)", "Py_DecRef", ("void *", value))
        if not HEX_MIN <= hexversion < HEX_MAX:
            return {"state": "unsupported", "hexversion": hexversion}
        value = target.call("void *(*)(void *, int, void *, void *)", "PyRun_String",
                            ("void *", stub), ("int", 257), ("void *", d), ("void *", d))
        if not value:
            target.call("void (*)(void)", "PyErr_Clear")
            return {"state": "stub-failed", "message": "the stub raised", "hexversion": hexversion}
        target.call("void (*)(void *)", "Py_DecRef", ("void *", value))
        return {"state": "ran", "hexversion": hexversion}
    finally:
        target.call("void (*)(void *)", "Py_DecRef", ("void *", d))
        for buf in (key, source, stub):
            target.call("void (*)(void *)", "PyMem_RawFree", ("void *", buf))


def wait_for_safe_point(target, woke):
    lock, state = threading.Lock(), {"waiting": False, "fired": None}
    finished = threading.Event()
    stops = []

    def on_stop(event):
        stops.append(event)

    def on_exit(event):
        stops.append(event)

    def watchdog():
        # Fires only while the target runs (`continue`): a breakpoint being handled, or
        # a stub being run, is never interrupted; the next wait is.
        end = time.monotonic() + TIMEOUT
        while not finished.wait(0.02):
            why = ("claimed" if claimed() else
                   "timeout" if time.monotonic() >= end else None)
            if why is None:
                continue
            with lock:
                if state["waiting"]:
                    state["fired"] = why
                    os.kill(os.getpid(), 2)  # gdb's Ctrl-C: stops the target, not passed on
                    return

    breakpoints = [SafePoint(target.addr["PyErr_CheckSignals"], True),
                   SafePoint(target.addr["PyEval_SaveThread"], False)]
    gdb.events.stop.connect(on_stop)
    gdb.events.exited.connect(on_exit)
    dog = threading.Thread(target=watchdog, daemon=True)
    dog.start()
    command, started = "continue", time.monotonic()
    try:
        while True:
            stops.clear()
            with lock:
                state["waiting"] = True
            try:
                ex(command)
            finally:
                with lock:
                    state["waiting"] = False
            if any(isinstance(e, gdb.ExitedEvent) for e in stops):
                return {"state": "exited"}
            if state["fired"]:
                return {"state": state["fired"], "waited": round(time.monotonic() - started, 3)}
            hit = [e for e in stops if isinstance(e, gdb.BreakpointEvent)]
            signal = [e for e in stops if isinstance(e, gdb.SignalEvent)]
            if hit:
                for bp in breakpoints:
                    bp.enabled = False
                # No breakpoint and no signal may interrupt the calls below.
                ex("handle SIGINT nostop noprint pass")
                where = ("PyEval_SaveThread"
                         if hit[0].breakpoints[0].number == breakpoints[1].number
                         else "PyErr_CheckSignals")
                result = run_stub(target)
                if result is not None:
                    result.update(where=where, woke=woke,
                                  waited=round(time.monotonic() - started, 3))
                    return result
                ex("handle SIGINT stop print nopass")
                for bp in breakpoints:
                    bp.enabled = True
                command = "continue"
            elif signal and signal[0].stop_signal == "SIGINT":
                command = "signal SIGINT"  # someone else's Ctrl-C for the target: pass it on
            else:
                command = "continue"
    finally:
        finished.set()
        for bp in breakpoints:
            try:
                bp.delete()
            except (gdb.error, RuntimeError):
                pass


def main():
    for setting in ("pagination off", "confirm off", "auto-load off", "debuginfod enabled off",
                    "print thread-events off", "print inferior-events off"):
        try:
            ex(f"set {setting}")
        except gdb.error:
            pass
    try:
        ex(f"attach {PID}")
    except gdb.error as exc:
        return done(state="attach-failed", message=str(exc))
    try:
        if claimed():
            return done(state="claimed")
        ex("handle all nostop noprint pass")
        ex("handle SIGINT stop print nopass")
        target = Target()
        missing = target.missing()
        if missing:
            return done(state="not-python", missing=missing)
        if holds_pending_lock():
            return done(state="busy")
        main = main_thread()
        if main is None:
            return done(state="error", message="the main thread is gone (the process is exiting)")
        main.switch()
        unwritable = registers_unwritable(target)
        if unwritable:
            return done(state="registers-unwritable", message=unwritable)
        ex("set scheduler-locking on")  # this call runs at an arbitrary point: nobody else moves
        try:
            queued = target.call("int (*)(void *, void *)", "Py_AddPendingCall",
                                 ("void *", target.addr["PyErr_CheckSignals"]), ("void *", 0))
        finally:
            ex("set scheduler-locking replay")
        woke = False
        if cpython_syscall(target):
            ex(f"set var {target.regs[1]} = -1")  # not in a syscall any more: no restart
            ex(f"set var {target.regs[0]} = {EINTR}")
            woke = True
        result = wait_for_safe_point(target, woke)
        result["queued"] = queued == 0
        return done(**result)
    except gdb.error as exc:
        return done(state="error", message=str(exc))
    finally:
        try:
            ex("detach")
        except gdb.error:
            pass


main()
