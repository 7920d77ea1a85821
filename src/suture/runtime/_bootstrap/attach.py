"""What ``suture attach`` runs inside the target (see docs/live-processes.md, "Attach").

The injector (gdb, or ``sys.remote_exec`` on 3.14+) runs only a short stub at a
safe point; the stub claims the attach's one-time token and starts a new thread
that runs this file with ``runpy``, so nothing here runs inside the interrupted
thread: imports wait for import locks like any thread's would, and a slow step
delays nobody.

Globals given by the stub: ``RESULT``, the path of a JSON file to write (the
answer the injector waits for), ``TOKEN``, the claimed token (the stub renamed
the attacher's token to this name), and ``METHOD``, the injector that ran the
stub. This file:

1. refuses a Python older than 3.9 (the runtime's floor) with a clear answer;
2. does nothing at all when ``TOKEN`` is gone: the attacher gave up waiting
   and removed it, and said so (nothing may act after a reported failure);
3. imports the runtime copy next to it (the directory goes on ``sys.path``
   only while importing; ``suture.__path__`` keeps later lazy imports working),
   unless the application already imported a Suture runtime, which is then used;
4. claims ``TOKEN`` (removes it; the attacher's own removal of it is the other
   side of that race, see ``tooling/host/attach.py``): only the winner goes on;
5. starts the agent (a no-op if one runs) and writes ``RESULT`` atomically.

It never raises: every failure becomes ``{"ok": false, ...}`` in ``RESULT``.
"""

import json
import os
import sys
from typing import Any, Dict, Tuple


def _write(path: str, answer: Dict[str, Any]) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(answer, f)
    os.replace(tmp, path)


def _load_runtime(here: str) -> Tuple[Any, str]:
    if "suture.runtime._agent" in sys.modules:
        return sys.modules["suture.runtime._agent"], "already imported"
    added = here not in sys.path
    if added:
        sys.path.insert(0, here)
    try:
        from suture.runtime import _agent  # noqa: PLC0415
    finally:
        if added:
            try:
                sys.path.remove(here)
            except ValueError:
                pass
    return _agent, os.path.dirname(os.path.dirname(os.path.abspath(_agent.__file__)))


def _claim(token: str) -> bool:
    """True when this thread may go on: the token was ours to remove (or there is none)."""
    if not token:
        return True
    try:
        os.unlink(token)
    except FileNotFoundError:
        return False
    return True


def _start(agent: Any) -> str:
    """Start the process's agent: the main interpreter's. Landed in a sub-interpreter (an
    embedding host such as mod_wsgi runs no Python in its main one), start it there with
    ``_interpreters.exec`` (issue 22); the main agent then reaches this interpreter."""
    from suture.runtime import _interps  # noqa: PLC0415
    if _interps.current_id() == 0:
        return str(agent.start())
    entry = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(agent.__file__))))
    directory = agent.ensure_dir(agent.socket_dir())
    why = _interps.start_main(entry, directory)
    path = agent.socket_path(runtime_dir=directory)
    if why is not None or not os.path.exists(path):
        raise RuntimeError(f"attached in sub-interpreter {_interps.current_id()}, and the main "
                           f"interpreter's agent could not be started from there: "
                           f"{why or 'it did not listen'}")
    return str(path)


def _main(result: str, token: str, method: str) -> None:
    answer: Dict[str, Any] = {"ok": False, "pid": os.getpid(), "method": method,
                              "python": ".".join(map(str, sys.version_info[:3]))}
    abandoned = False
    try:
        if sys.version_info < (3, 9):
            abandoned = not _claim(token)
            answer["error"] = f"Python {answer['python']} is older than 3.9, the oldest Suture supports"
            answer["type"] = "UnsupportedPython"
            return
        if token and not os.path.lexists(token):
            abandoned = True   # given up before we ran: not even an import
            return
        here = os.path.dirname(os.path.abspath(__file__))
        agent, origin = _load_runtime(here)
        answer["runtime"] = origin
        if not _claim(token):
            abandoned = True   # given up while we imported (an import lock the main thread held)
            return
        answer["socket"] = _start(agent)
        answer["ok"] = True
    except BaseException as exc:  # noqa: BLE001 - the application must never see this
        answer["error"] = f"{type(exc).__name__}: {exc}"
        answer["type"] = type(exc).__name__
        answer["code"] = getattr(exc, "code", None)
    finally:
        if not abandoned:      # an abandoned attach has nobody reading: leave no file
            try:
                _write(result, answer)
            except BaseException:  # noqa: BLE001 - nobody to tell; the injector times out
                pass


_main(globals().get("RESULT", ""), globals().get("TOKEN", ""), globals().get("METHOD", ""))
