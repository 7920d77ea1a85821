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
* notesvc runs as a separate Python process, started the way ``suture run``
  starts a program (``_AgentTarget``), and is patched only through its agent
  socket with ``client.call``, as ``suture apply --pid`` would. Its agent uses a
  runtime directory, a state directory (patch store, audit log) and a config
  directory inside the demo's temporary directory, never the user's: the demo's
  applies and reverts are not the host's history, must not show in its audit log,
  ``suture status`` or metrics, and the host's installed patches must not be applied
  to the demo's service at its start.
  The HTTP side (``_Client``, ``_Traffic``) knows only a URL; hits and sessions
  live in the other process and are read through ``GET /stats``.
* The target is stopped in a ``finally`` (SIGTERM, wait, SIGKILL as a last
  resort), so no process outlives the demo, whether it passes or fails.
* No network beyond 127.0.0.1, and proxies from the environment are ignored:
  the demo must work offline on a fresh machine.

Size: about 600 lines, over the ~500-line rule of thumb: the demo is one linear
story, read top to bottom, plus its small HTTP client and traffic thread.
"""

from __future__ import annotations

import base64
import difflib
import http.client
import json
import os
import shutil
import subprocess
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

from ...runtime import SutureError
from ...runtime.errors import UntrustedPatch
from ...runtime.patchfile import (PAYLOAD_TYPE, canonical_json, payload_json, read_envelope,
                                  seal)

__all__ = ["run"]

APP = "notesvc"
HELLO = b"Hello from notesvc! This file is public.\n"
SECRET = b"db_password=hunter2  (this file is NOT public)\n"
EXPLOIT = "/files/..%2Fsecret.txt"
TRAFFIC_REQUESTS = 25  # client-thread responses to see before applying, and again after
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
            time.sleep(0.5)  # cosmetic only: lets a reader follow; --fast skips it


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


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
            except (OSError, ValueError, http.client.HTTPException) as exc:
                # Refused or dropped connections, timeouts, broken responses: record, go on.
                self.failures.append(f"GET {path} -> {type(exc).__name__}: {exc}")
            with self._cond:
                self._cond.notify_all()


# -- the patching side: another process, through its agent ------------------------

class _AgentTarget:
    """notesvc v1 in a separate Python process started the way ``suture run`` starts one
    (bootstrap dir first on PYTHONPATH, SUTURE_AGENT=1), patched through its agent socket
    with ``client.call`` like ``suture apply --pid`` does.

    The agent's runtime directory (socket and bootstrap copy) is private to the demo:
    ``<work>/run``, passed to the target as SUTURE_RUNTIME_DIR and to every call, so
    the user's own runtime directory is never read or written. So are its state and
    config directories (``<work>/state``, ``<work>/config``): the agent audits every
    apply and revert in the state directory's store, and applies that store's patches
    when it starts.
    """

    def __init__(self, app_root: Path, files_root: Path, work: Path) -> None:
        self.app_root = app_root
        self.files_root = files_root
        self.work = work
        self.runtime_dir = str(work / "run")
        self.pid = 0
        self.socket = ""
        self.returncode: Optional[int] = None
        self._proc: Optional["subprocess.Popen[bytes]"] = None
        self._out = work / "target.out"
        self._err = work / "target.err"

    def start(self) -> str:
        from ...runtime import _agent
        from ...runtime._bootstrap import prepare
        from ..host.run import environment

        _agent.ensure_dir(self.runtime_dir)
        bootstrap = prepare(os.path.join(self.runtime_dir, "bootstrap"))
        base = dict(os.environ)
        base["PYTHONPATH"] = str(self.app_root)  # the v1 copy, and nothing of the caller's
        base["SUTURE_RUNTIME_DIR"] = self.runtime_dir
        base["SUTURE_STATE_DIR"] = str(self.work / "state")
        base["SUTURE_CONFIG_DIR"] = str(self.work / "config")
        base["PYTHONUNBUFFERED"] = "1"
        env = environment(base, bootstrap)
        with open(self._out, "wb") as out, open(self._err, "wb") as err:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", APP, str(self.files_root)], cwd=str(self.work),
                env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        self.pid = self._proc.pid
        url = self._wait(self._url, "print the URL it listens on")
        self._wait(self._hello, "answer hello on its agent socket")
        return url

    def _wait(self, probe: Callable[[], Optional[str]], what: str) -> str:
        assert self._proc is not None
        deadline = time.monotonic() + _TIMEOUT
        while True:
            found = probe()
            if found:
                return found
            if self._proc.poll() is not None:
                raise _Failed(f"{APP} (PID {self.pid}) exited with code {self._proc.returncode} "
                              f"before it could {what}; its stderr: {self._stderr()!r}")
            if time.monotonic() > deadline:
                raise _Failed(f"{APP} (PID {self.pid}) did not {what} within {_TIMEOUT:g} s; "
                              f"its stderr: {self._stderr()!r}")
            time.sleep(0.02)

    def _url(self) -> Optional[str]:
        text = self._out.read_text(encoding="utf-8", errors="replace")
        for line in text.splitlines():
            head, sep, url = line.rpartition(" listening on ")
            if sep and url.startswith("http://127.0.0.1:"):
                return url.strip()
        return None

    def _hello(self) -> Optional[str]:
        from ..host import client

        path = client.socket_path(self.pid, self.runtime_dir)
        if not os.path.exists(path):
            return None
        try:
            info = client.hello(self.pid, 2.0, runtime_dir=self.runtime_dir)
        except (client.NoAgent, client.AgentUnreachable, client.AgentTimeout):
            return None  # bound but not yet listening: try again
        _check(info.get("pid") == self.pid,
               f"the agent at {path} says it is PID {info.get('pid')}, not {self.pid}")
        self.socket = path
        return path

    def _stderr(self) -> str:
        try:
            return self._err.read_text(encoding="utf-8", errors="replace").strip()[-500:]
        except OSError:
            return ""

    def _call(self, op: str, **fields: Any) -> Dict[str, Any]:
        from ..host import client

        return client.call(self.pid, op, runtime_dir=self.runtime_dir, **fields)

    def apply(self, data: bytes) -> Dict[str, Any]:
        return self._call("apply", patch=base64.b64encode(data).decode("ascii"),
                          wait_quiescent=None)

    def revert(self, patch_id: str) -> Dict[str, Any]:
        return self._call("revert", patch_id=patch_id)

    def status(self) -> Dict[str, Any]:
        return self._call("status")

    def close(self) -> None:
        """Stop the target: SIGTERM, wait, SIGKILL as a last resort. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(_TIMEOUT / 2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(_TIMEOUT / 2)
        self.returncode = proc.returncode


# -- the story ----------------------------------------------------------------------

def _copy_tree(src: Any, dest: Path) -> None:
    """Copy a package-data directory (a Traversable: a real or a zipped directory)."""
    dest.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        if item.name == "__pycache__" or item.name.endswith(".pyc"):
            continue
        if item.is_dir():
            _copy_tree(item, dest / item.name)
        else:
            (dest / item.name).write_bytes(item.read_bytes())


def _bundled_app() -> Any:
    return resources.files("suture.tooling.demo") / "demo_app"


def _edited(data: bytes) -> bytes:
    """``data`` with its summary changed and its signatures kept: still a well-formed patch,
    as an attacker who edits a signed file would produce."""
    envelope, payload = read_envelope(data)
    body = json.loads(payload_json(envelope, payload))
    body["meta"]["summary"] += " (edited)"
    resealed = seal(canonical_json(body), envelope["payloadType"] != PAYLOAD_TYPE)
    envelope["payload"] = resealed["payload"]
    return canonical_json(envelope) + b"\n"


class _Demo:
    """The seven steps; each one checks what it shows and raises ``_Failed`` if not."""

    def __init__(self, story: _Story, work: Path) -> None:
        self.story = story
        self.work = work
        self.v1 = self.v2 = self.public = work
        self.target: Optional[_AgentTarget] = None
        self.traffic: Optional[_Traffic] = None
        self.client = _Client("")
        self.data = b""
        self.patch_id = ""

    def tell(self) -> None:
        self.prepare()
        self.start()
        self.exploit(expect_leak=True)
        self.build()
        self.apply_under_traffic()
        self.check_fixed()
        self.revert()
        self.apply_again_and_stop()

    def close(self) -> None:
        try:
            if self.traffic is not None:
                self.traffic.stop()
        finally:
            if self.target is not None:
                self.target.close()

    def prepare(self) -> None:
        app = self.work / "app"
        _copy_tree(_bundled_app(), app)
        self.v1, self.v2 = app / "v1", app / "v2"
        for tree in (self.v1, self.v2):
            _check((tree / APP / "files.py").is_file(),
                   f"the bundled example app is incomplete: {tree / APP} has no files.py")
        self.public = self.work / "data" / "public"
        self.public.mkdir(parents=True)
        (self.public / "hello.txt").write_bytes(HELLO)
        (self.public.parent / "secret.txt").write_bytes(SECRET)

    # 1
    def start(self) -> None:
        s, c = self.story, self.client
        s.step(f"Start {APP} v1 (vulnerable) and use it")
        self.target = t = _AgentTarget(self.v1, self.public, self.work)
        c.url = t.start()
        s.say(f"started like `suture run python -m {APP}`: PID {t.pid}, agent loaded at startup")
        s.say(f"agent socket: {t.socket}")
        s.say(f"{APP} serves {self.public} at {c.url}")
        r = c.post("/login", {"user": "alice"})
        _check(r.status == 200 and "session" in r.json(),
               f"POST /login should return a session, got {r.status} {_short(r.body)}")
        c.session = r.json()["session"]
        s.ok(f"POST /login as alice        -> 200, session {c.session[:8]}...")
        r = c.post("/notes", {"text": "buy milk"})
        _check(r.status == 201, f"POST /notes should return 201, got {r.status} {_short(r.body)}")
        s.ok("POST /notes 'buy milk'      -> 201")
        r = c.get("/files/hello.txt")
        _check(r.status == 200 and r.body == HELLO,
               f"GET /files/hello.txt should serve hello.txt, got {r.status} {_short(r.body)}")
        s.ok(f"GET /files/hello.txt        -> 200 {_short(r.body, 30)}")
        stats = c.get("/stats").json()
        _check(stats == {"hits": c.responses, "sessions": 1},
               f"GET /stats should count {c.responses} hits and 1 session, got {stats}")
        s.ok(f"GET /stats                  -> {json.dumps(stats)}")
        s.say(f"the hit counter and the session table live only in the memory of PID "
              f"{self.target.pid}", dim=True)

    # 2 and 6
    def exploit(self, expect_leak: bool) -> None:
        s, c = self.story, self.client
        if expect_leak:
            s.step("Exploit the path traversal bug")
            s.say(f"secret.txt sits next to the served directory: {self.public.parent}")
        r = c.get(EXPLOIT)
        if expect_leak:
            _check(r.status == 200 and r.body == SECRET,
                   f"GET {EXPLOIT} should leak secret.txt on v1, got {r.status} {_short(r.body)}")
            s.bad(f"GET {EXPLOIT} -> 200 {_short(r.body)}")
            s.bad("exploit works: the secret leaked")
        else:
            _check(r.status == 403,
                   f"GET {EXPLOIT} should be refused with 403 on v2, got {r.status} "
                   f"{_short(r.body)}")
            s.ok(f"GET {EXPLOIT} -> 403 {_short(r.body)}")

    # 3
    def build(self) -> None:
        from ..build import build

        s = self.story
        s.step("Build the patch v1 -> v2 with the real builder")
        rel = f"{APP}/files.py"
        old = (self.v1 / rel).read_text(encoding="utf-8").splitlines()
        new = (self.v2 / rel).read_text(encoding="utf-8").splitlines()
        s.say(f"the fix, in {rel}:")
        for line in list(difflib.unified_diff(old, new, f"v1/{rel}", f"v2/{rel}", lineterm=""))[2:]:
            color = "green" if line.startswith("+") else "red" if line.startswith("-") else None
            s.say("  " + (click.style(line, fg=color) if color else line))
        report = build(str(self.v1), str(self.v2),
                       summary="notesvc: /files/ refuses names outside the served directory")
        assert report.patch is not None and report.data is not None  # build() raises otherwise
        rows = report.changes()
        s.say("change report:")
        for row in rows:
            where = f"{row['module']}:{row['qualname']}" if row["module"] else row["qualname"]
            s.say(f"  {row['verdict']:<8} {row['kind']:<20} {where}")
        _check(bool(rows) and all(r["verdict"] == "live" for r in rows),
               f"every change of the demo patch should be live, got {rows}")
        s.say("live: the running process can take it as it is (here, one function body "
              "changes)", dim=True)
        self.data, self.patch_id = self.sign_and_verify(report.data), report.patch.id
        s.ok(f"patch {self.patch_id[:12]}: {len(self.data)} bytes, "
             f"{_n(len(rows), 'change')}, all live, signed and verified")

    def sign_and_verify(self, data: bytes) -> bytes:
        """Sign as a publisher would, and verify as `suture apply` does on a host whose
        trust policy (the demo's own, in its temporary directory) trusts that key."""
        from ..trust import add_key, keygen, load_policy, load_private_key, require, sign

        s = self.story
        key, pub, keyid = keygen(self.work / "publisher", "demo-publisher")
        policy = str(self.work / "config" / "trust.toml")
        add_key(pub.read_text(), path=policy)
        signed = sign(data, load_private_key(key))
        _, record = require(signed, policy=load_policy(policy))
        s.say(f"signed with the publisher key {keyid[:12]}; this host's trust policy accepts "
              f"{record['signers'][0]['name']}")
        try:
            require(_edited(signed), policy=load_policy(policy))
        except UntrustedPatch:
            s.ok("a copy edited after signing (its summary changed) is refused: the signature "
                 "does not match its bytes")
        else:
            raise _Failed("a patch edited after signing was accepted")
        return signed


    # 4
    def apply_under_traffic(self) -> None:
        s = self.story
        assert self.target is not None
        s.step("Apply the patch while a client keeps sending requests")
        self.traffic = t = _Traffic(self.client.url, self.client.session)
        t.start()
        _check(t.wait_for(TRAFFIC_REQUESTS),
               f"the client thread got only {t.requests} responses in {_TIMEOUT:g} s")
        result = self.target.apply(self.data)
        returned = t.requests
        _check(t.wait_for(returned + TRAFFIC_REQUESTS),
               f"after apply the client thread got only {t.requests} responses")
        t.stop()
        _check(result["state"] == "applied",
               f"apply through the agent should report 'applied', got {result}")
        modules = ", ".join(f"{m} {st}" for m, st in sorted(result["modules"].items()))
        s.ok(f"agent of PID {self.target.pid}: apply -> {result['state']} "
             f"({modules}; {_n(result['ops'], 'op')})")
        s.ok(f"commit pause: {result['pause_ns'] / 1000:.1f} us "
             "(one C call; no other thread runs Python meanwhile)")
        _check(not t.failures, f"{len(t.failures)} of {t.requests} client requests failed "
                               f"while patching, first: {t.failures[:3]}")
        s.ok(f"client thread: {t.requests} requests ({returned} before apply returned, "
             f"{t.requests - returned} after), 0 failed")

    # 5
    def check_fixed(self) -> None:
        s, c = self.story, self.client
        assert self.traffic is not None
        s.step("The exploit is blocked; the service and its state carried on")
        self.exploit(expect_leak=False)
        s.ok("exploit blocked")
        r = c.get("/files/hello.txt")
        _check(r.status == 200 and r.body == HELLO,
               f"GET /files/hello.txt should still serve, got {r.status} {_short(r.body)}")
        s.ok(f"GET /files/hello.txt -> 200 {_short(r.body, 30)}")
        r = c.get("/notes")
        _check(r.status == 200 and r.json() == {"user": "alice", "notes": ["buy milk"]},
               f"alice's session should survive the patch, got {r.status} {_short(r.body)}")
        s.ok(f"GET /notes -> 200 {json.dumps(r.json())}")
        stats = c.get("/stats").json()
        sent = c.responses + self.traffic.client.responses
        _check(stats == {"hits": sent, "sessions": 1},
               f"GET /stats should count all {sent} requests and 1 session, got {stats}")
        s.ok(f"GET /stats -> {json.dumps(stats)}: every one of the {sent} requests counted")
        s.ok("state intact: same session table, same hit counter, no restart")

    # 6
    def revert(self) -> None:
        s = self.story
        assert self.target is not None
        s.step("Inspect, then revert")
        st = self.target.status()
        for p in st["patches"]:
            modules = ", ".join(f"{m} {v}" for m, v in sorted(p["modules"].items()))
            s.say(f"agent status: patch {p['id'][:12]} ({p['describe']}): {modules}, "
                  f"{_n(p['ops'], 'op')}")
        s.say(f"old code still running: {len(st['active']) or 'none'}")
        _check([p["id"] for p in st["patches"]] == [self.patch_id],
               f"status should list exactly patch {self.patch_id[:12]}, got {st['patches']}")
        result = self.target.revert(self.patch_id)
        _check(result["state"] == "reverted", f"revert should report 'reverted', got {result}")
        s.ok(f"agent of PID {self.target.pid}: revert -> reverted "
             f"({result['pause_ns'] / 1000:.1f} us pause)")
        r = self.client.get(EXPLOIT)
        _check(r.status == 200 and r.body == SECRET,
               f"after revert the v1 behaviour should be back, got {r.status} {_short(r.body)}")
        s.bad(f"GET {EXPLOIT} -> 200 {_short(r.body)}")
        s.ok("reverted exactly: v1 behaviour is back, bug included")
        _check(self.target.status()["patches"] == [], "status should list no patch after revert")

    # 7
    def apply_again_and_stop(self) -> None:
        s = self.story
        assert self.target is not None
        s.step("Apply again, then shut down")
        result = self.target.apply(self.data)
        _check(result["state"] == "applied", f"re-apply should report 'applied', got {result}")
        s.ok(f"agent of PID {self.target.pid}: apply -> applied "
             f"({result['pause_ns'] / 1000:.1f} us pause)")
        self.exploit(expect_leak=False)
        pid = self.target.pid
        self.target.close()
        code = self.target.returncode
        _check(code is not None, f"{APP} (PID {pid}) did not exit")
        how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        s.ok(f"{APP} (PID {pid}) stopped ({how}); the patch lived only in its memory")


def run(fast: bool = False) -> int:
    """Tell the live-patch story on notesvc; 0 if every step behaved, else 1."""
    story = _Story(fast, steps=7)
    click.echo(click.style("Suture demo: fix a path traversal bug in a running service, "
                           "with no restart", bold=True))
    work = Path(tempfile.mkdtemp(prefix="suture-demo-"))
    demo = _Demo(story, work)
    try:
        demo.tell()
    except (_Failed, SutureError, OSError) as exc:
        # Expected ways to fail: a step misbehaved, Suture refused, or the service or
        # the temporary directory could not be reached. Anything else is a bug: traceback.
        what = str(exc) if isinstance(exc, (_Failed, SutureError)) else \
            f"{type(exc).__name__}: {exc}"
        click.echo()
        click.echo(click.style(f"demo FAILED at step {story.n}: {what}", fg="red", bold=True),
                   err=True)
        return 1
    finally:
        demo.close()
        shutil.rmtree(work, ignore_errors=True)
    click.echo()
    click.echo(click.style("Demo passed: the fix went live under traffic, kept every session "
                           "and counter, and came off again exactly.", fg="green", bold=True))
    bundled = _bundled_app()
    if isinstance(bundled, Path):
        click.echo("Build the same patch yourself:")
        click.echo(f"  suture build {bundled / 'v1'} {bundled / 'v2'} -o {APP}.suture")
        click.echo(f"  suture inspect {APP}.suture")
    return 0
