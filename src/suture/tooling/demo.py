"""``suture demo``: live-patch a vulnerable example service, step by step, then revert.

The example is notesvc, a tiny HTTP notes and file service shipped as package
data: ``demo_app/v1`` has a path traversal bug in ``/files/<name>``,
``demo_app/v2`` fixes it in one function body. The story starts v1, exploits it,
builds the v1 -> v2 patch with the real builder, applies it under traffic,
checks that the exploit is blocked and the in-memory state survived, reverts,
and applies again. Every step checks what it shows, so the demo doubles as a
smoke test: ``run`` returns 1 as soon as something does not behave as told.

Design notes:

* Both trees are copied to a temporary directory before anything else. The
  installed package may be read-only or zipped, and importing from it would
  leave ``__pycache__`` there; building from the copy also guarantees that the
  patch baseline is byte for byte the code that runs.
* The HTTP side (``_Client``, ``_Traffic``) knows only a URL, and the patching
  side (``_InProcessTarget``) exchanges patch bytes and plain dicts (what
  ``Result.to_dict`` gives), which is what an agent socket carries. Running the
  app in its own process behind an agent replaces the target class only.
* No network beyond 127.0.0.1, and proxies from the environment are ignored:
  the demo must work offline on a fresh machine.
"""

from __future__ import annotations

import difflib
import importlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import click

from ..runtime import SutureError

__all__ = ["run"]

APP = "notesvc"
HELLO = b"Hello from notesvc! This file is public.\n"
SECRET = b"db_password=hunter2  (this file is NOT public)\n"
EXPLOIT = "/files/..%2Fsecret.txt"
WARMUP_REQUESTS = 25   # load-thread responses to see before applying, and again after
_TIMEOUT = 10.0


class _Failed(Exception):
    """A step did not behave as the story says; ``run`` prints it and returns 1."""


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise _Failed(message)


# -- output ---------------------------------------------------------------------

class _Story:
    def __init__(self, fast: bool, steps: int) -> None:
        self.fast = fast
        self.steps = steps
        self.n = 0

    def step(self, title: str) -> None:
        self.n += 1
        if self.n > 1:
            self.pause()
        click.echo()
        click.echo(click.style(f"[{self.n}/{self.steps}] {title}", bold=True))

    def say(self, text: str = "", dim: bool = False) -> None:
        click.echo(click.style("  " + text, dim=True) if dim else "  " + text)

    def ok(self, text: str) -> None:
        click.echo("  " + click.style("ok", fg="green", bold=True) + "  " + text)

    def bad(self, text: str) -> None:
        click.echo("  " + click.style("!!", fg="red", bold=True) + "  " + text)

    def pause(self) -> None:
        if not self.fast:
            time.sleep(0.6)  # cosmetic only: lets a reader follow; --fast skips it


def _short(data: bytes, limit: int = 60) -> str:
    text = data.decode("utf-8", "replace").strip()
    return repr(text if len(text) <= limit else text[:limit] + "...")


# -- the HTTP side: knows a URL and nothing else ---------------------------------

class _Response:
    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


class _Client:
    """Plain HTTP requests to the service; counts the responses it got."""

    def __init__(self, url: str, session: str = "") -> None:
        self.url = url
        self.session = session
        self.responses = 0
        # An empty ProxyHandler: http_proxy from the environment must not catch 127.0.0.1.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def get(self, path: str) -> _Response:
        return self._request("GET", path, None)

    def post(self, path: str, obj: Any) -> _Response:
        return self._request("POST", path, json.dumps(obj).encode())

    def _request(self, method: str, path: str, data: Optional[bytes]) -> _Response:
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if self.session:
            req.add_header("X-Session", self.session)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with self._opener.open(req, timeout=_TIMEOUT) as resp:
                out = _Response(resp.status, resp.read())
        except urllib.error.HTTPError as exc:
            with exc:
                out = _Response(exc.code, exc.read())
        self.responses += 1
        return out


class _Traffic:
    """A client thread that keeps using the service normally and counts failures."""

    def __init__(self, url: str, session: str) -> None:
        self.client = _Client(url, session)
        self.failures: List[str] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="demo-traffic", daemon=True)

    @property
    def requests(self) -> int:
        with self._cond:
            return self.client.responses

    def start(self) -> None:
        self._thread.start()

    def wait_for(self, n: int) -> bool:
        """Wait until ``n`` requests were answered (or the thread stopped)."""
        deadline = time.monotonic() + _TIMEOUT
        with self._cond:
            while self.client.responses < n and self._thread.is_alive():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return self.client.responses >= n

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(_TIMEOUT)

    def _loop(self) -> None:
        checks: List[Tuple[str, Callable[[_Response], bool]]] = [
            ("/files/hello.txt", lambda r: r.status == 200 and r.body == HELLO),
            ("/notes", lambda r: r.status == 200 and r.json().get("user") == "alice"),
        ]
        i = 0
        while not self._stop.is_set():
            path, good = checks[i % len(checks)]
            i += 1
            try:
                resp = self.client.get(path)
                if not good(resp):
                    self.failures.append(f"GET {path} -> {resp.status} {_short(resp.body)}")
            except Exception as exc:  # any failure is the finding; record it and go on
                self.failures.append(f"GET {path} -> {type(exc).__name__}: {exc}")
            with self._cond:
                self._cond.notify_all()


# -- the patching side: this process, through suture.runtime ----------------------

class _InProcessTarget:
    """notesvc on a thread of this process, patched through ``suture.runtime``."""

    def __init__(self, app_root: Path, files_root: Path) -> None:
        self.app_root = app_root
        self.files_root = files_root
        self.where = f"this process (PID {os.getpid()})"
        self._server: Any = None
        self._applied: List[str] = []

    def start(self) -> str:
        _check(APP not in sys.modules, f"a module named {APP!r} is already imported in this "
                                       f"process ({sys.modules.get(APP)!r}); the demo needs "
                                       "that name")
        sys.path.insert(0, str(self.app_root))
        importlib.invalidate_caches()
        server_mod = importlib.import_module(APP + ".server")
        expected = self.app_root / APP / "server.py"
        _check(os.path.samefile(server_mod.__file__, expected),
               f"imported {APP} from {server_mod.__file__}, not from {expected}")
        self._server = server_mod.start(str(self.files_root))
        return str(self._server.url)

    def apply(self, data: bytes) -> Dict[str, Any]:
        from .. import runtime

        result = runtime.apply(data).to_dict()
        if result["state"] == "applied":
            self._applied.append(result["patch"])
        return result

    def revert(self, patch_id: str) -> Dict[str, Any]:
        from .. import runtime

        result = runtime.revert(patch_id).to_dict()
        self._applied.remove(result["patch"])
        return result

    def status(self) -> Dict[str, Any]:
        from .. import runtime

        return runtime.status()

    def close(self) -> None:
        """Stop the server and leave this interpreter as the demo found it."""
        from .. import runtime

        try:
            for patch_id in reversed(self._applied):
                runtime.revert(patch_id)
            self._applied.clear()
            if self._server is not None:
                self._server.stop()
                self._server = None
        finally:
            for name in [m for m in sys.modules if m == APP or m.startswith(APP + ".")]:
                del sys.modules[name]
            if str(self.app_root) in sys.path:
                sys.path.remove(str(self.app_root))


