"""The live process that ``suture prove`` patches (tooling/prove/__init__.py).

Runs under ``suture run`` in the *target's* Python (any environment with the vulnerable
release installed; Suture itself need not be installed there: the runtime comes from the
bootstrap directory). The prover copies this file into a private directory and runs it
from there, so nothing else of Suture lands on the target's ``sys.path``.

It imports the modules that the patch touches, keeps calling a usage snippet on a
background thread (when given one), and serves one control socket in its main thread:
each request runs the tests *in this process* (``pytest.main`` or ``runpy``), so they
exercise whatever code is live here, patched or not. Test modules stay imported between
runs, as a long-lived program's own modules would: names they imported from the package
before the patch must see the fix too.

argv: CONTROL_SOCKET WORK_DIR MODULES(comma-separated) [USAGE_SNIPPET]
Stdlib only (plus pytest, from the target's own environment, when asked to run it).
"""

import importlib
import json
import os
import runpy
import socket
import sys
import threading
import time
import traceback
from typing import Any, Dict, List

usage: Dict[str, Any] = {"calls": 0, "errors": 0, "last_error": ""}


def keep_using(snippet: str) -> None:
    code = compile(snippet, "<usage>", "exec")
    kept: Dict[str, Any] = {}   # one namespace for all calls: objects may live across a patch
    while True:
        try:
            exec(code, kept)
            usage["calls"] += 1
        except Exception as exc:
            usage["errors"] += 1
            usage["last_error"] = f"{type(exc).__name__}: {exc}"
        time.sleep(0.01)


def run_tests(req: Dict[str, Any]) -> Dict[str, Any]:
    """Run the entry's tests here; output goes to req['log'] (fd-level, as pytest captures)."""
    cwd, env, argv = req["cwd"], req.get("env") or {}, req["args"]
    saved = (os.getcwd(), dict(os.environ), list(sys.argv), list(sys.path))
    log = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    out, err = os.dup(1), os.dup(2)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(log, 1)
    os.dup2(log, 2)
    started = time.monotonic()
    try:
        os.chdir(cwd)
        os.environ.update(env)
        if req["runner"] == "pytest":
            pytest = importlib.import_module("pytest")   # the target's own
            rc = int(pytest.main(list(argv)))
        else:
            sys.argv = list(argv)
            sys.path.insert(0, os.path.dirname(os.path.abspath(argv[0])))
            try:
                runpy.run_path(argv[0], run_name="__main__")
                rc = 0
            except SystemExit as exc:
                rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
        rc = 99
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(out, 1)
        os.dup2(err, 2)
        for fd in (out, err, log):
            os.close(fd)
        os.chdir(saved[0])
        os.environ.clear()
        os.environ.update(saved[1])
        sys.argv[:] = saved[2]
        sys.path[:] = saved[3]
    return {"rc": rc, "seconds": round(time.monotonic() - started, 3)}


def main(argv: List[str]) -> None:
    ctl, modules = argv[0], [m for m in argv[2].split(",") if m]
    imported: List[str] = []
    failed: Dict[str, str] = {}
    for name in modules:
        try:
            importlib.import_module(name)
            imported.append(name)
        except Exception as exc:  # optional dependencies of the package may be missing
            failed[name] = f"{type(exc).__name__}: {exc}"
    if len(argv) > 3 and argv[3]:
        threading.Thread(target=keep_using, args=(argv[3],), name="usage", daemon=True).start()
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(ctl + ".tmp")
    srv.listen(1)
    os.rename(ctl + ".tmp", ctl)
    while True:
        conn, _ = srv.accept()
        with conn:
            req = json.loads(conn.makefile().readline())
            answer: Dict[str, Any]
            if req["op"] == "run":
                answer = run_tests(req)
            elif req["op"] == "info":
                answer = {"pid": os.getpid(), "imported": imported, "failed": failed,
                          "usage": dict(usage)}
            else:
                answer = {"bye": True}
            conn.sendall(json.dumps(answer).encode() + b"\n")
            if req["op"] == "quit":
                srv.close()
                return


if __name__ == "__main__":
    main(sys.argv[1:])
