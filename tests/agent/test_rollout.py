"""Safe rollout (issue 5): `suture apply --health --watch` reverts everywhere and marks the
patch bad when the health check fails or a process dies; marked patches are refused by
`suture apply` and by agents applying the store, until `suture bad clear`.

The targets are real services: an HTTP health endpoint that calls the code the patch
changes, and optionally a watchdog that kills its process when that code turns bad.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from suture.runtime import store
from suture.runtime.patchfile import load
from suture.tooling.fleet import rollout
from suture.tooling.build import build_trees
from suture.tooling.build.sources import materialize

from agentutil import Targets, result, wait_for
from signing import signed

GOOD = "def healthy():\n    return True\n"
BROKEN = "def healthy():\n    return False   # a fix with a bug\n"

SERVICE = r'''
import http.server, os, sys, threading, time
import suture.agent
suture.agent.start()
from svc import core

class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if core.healthy() else 503)
        self.end_headers()
    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
threading.Thread(target=server.serve_forever, daemon=True).start()
if "--watchdog" in sys.argv:
    def watchdog():
        while core.healthy():
            time.sleep(0.01)
        os._exit(3)          # the bad code made this process die
    threading.Thread(target=watchdog, daemon=True).start()
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
sys.stdin.read()
'''


def tree(root: Path, body: str) -> Path:
    (root / "svc").mkdir(parents=True)
    (root / "svc" / "__init__.py").write_text("")
    (root / "svc" / "core.py").write_text(body)
    return root


@pytest.fixture
def host(targets: Targets, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("SUTURE_STATE_DIR", str(targets.root / "state"))
    v1 = tree(tmp_path / "v1", GOOD)
    report = build_trees(materialize(str(v1)), materialize(str(tree(tmp_path / "v2", BROKEN))))
    assert report.data is not None
    patch = tmp_path / "fix.suture"
    patch.write_bytes(signed(report.data))
    return targets, v1, patch, load(patch.read_bytes()).id


def start(targets: Targets, v1: Path, *flags: str) -> Tuple[Any, str, str]:
    out = targets.root / f"port-{len(targets.procs)}"
    proc = targets.start([sys.executable, str(targets.script(SERVICE)), str(out), *flags],
                         targets.env([str(v1)]), stdin=subprocess.PIPE)
    sock = targets.wait_agent(proc.pid, proc)
    wait_for(out.exists, "the service's port", proc=proc)
    return proc, sock, f"http://127.0.0.1:{out.read_text()}/health"


def suture(targets: Targets, *args: str) -> Tuple[int, Dict[str, Any]]:
    done = subprocess.run([sys.executable, "-m", "suture", *args, "--json"],
                          env=targets.env(), capture_output=True, text=True, timeout=120)
    try:
        return done.returncode, json.loads(done.stdout)
    except ValueError:
        pytest.fail(f"no JSON from suture {args}: {done.stdout!r} {done.stderr!r}")


def status_of(url: str) -> int:
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=10) \
                as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def pid_args(*procs: Any) -> List[str]:
    return [a for p in procs for a in ("--pid", str(p.pid))]


@pytest.mark.slow
def test_a_failing_health_check_reverts_everywhere_and_marks_the_patch_bad(host):
    targets, v1, patch, pid = host
    (a, sock_a, url_a), (b, sock_b, url_b) = start(targets, v1), start(targets, v1)
    assert status_of(url_a) == status_of(url_b) == 200
    rc, out = suture(targets, "apply", str(patch), *pid_args(a, b), "--health", url_a,
                     "--watch", "10", "--health-interval", "0.2")
    assert rc == 3, out
    assert [r["outcome"] for r in out["processes"]] == ["applied", "applied"]
    watch = out["watch"]
    assert watch["result"] == "failed" and "HTTP 503" in watch["reason"], watch
    assert watch["checks"] == 1 and watch["marked_bad"] is True
    assert sorted(r["outcome"] for r in watch["reverted"]) == ["reverted", "reverted"]
    for sock, url in ((sock_a, url_a), (sock_b, url_b)):
        assert result(sock, "list") == {"patches": []}
        assert status_of(url) == 200
    assert list(store.bad_patches()) == [pid]
    assert [(r["op"], r["result"]) for r in store.audit_log() if r["op"] == "watch"] \
        == [("watch", "failed")]

    # Marked bad: `suture apply` refuses it before contacting anyone...
    rc, out = suture(targets, "apply", str(patch), *pid_args(a))
    assert rc == 2 and out["error"]["code"] == "SUT-E207", out
    assert "suture bad clear" in out["error"]["message"]
    # ... installing it warns, and an agent started later does not apply it.
    rc, out = suture(targets, "install", str(patch))
    assert rc == 0 and out["bad"]["reason"].startswith("health check failed")
    c, sock_c, url_c = start(targets, v1)
    auto = wait_for(lambda: [r for r in store.audit_log()
                             if r["pid"] == c.pid and r["op"] == "auto-apply"
                             and r["result"] != "applying"],
                    "the new agent's auto-apply row", proc=c)
    assert [r["result"] for r in auto] == ["refused SUT-E207"]
    assert status_of(url_c) == 200 and result(sock_c, "list") == {"patches": []}

    # A human clears the mark: the patch may be applied again.
    rc, out = suture(targets, "bad", "clear", pid[:10])
    assert rc == 0 and out == {"cleared": pid}
    assert suture(targets, "bad")[1]["bad"] == []
    rc, out = suture(targets, "apply", str(patch), *pid_args(a))
    assert rc == 0 and out["processes"][0]["outcome"] == "applied", out
    assert status_of(url_a) == 503


@pytest.mark.slow
def test_a_process_that_dies_during_the_watch_reverts_the_others(host):
    targets, v1, patch, pid = host
    a, sock_a, url_a = start(targets, v1)
    b, _, _ = start(targets, v1, "--watchdog")
    rc, out = suture(targets, "apply", str(patch), *pid_args(a, b), "--watch", "10",
                     "--health-interval", "0.1")
    assert rc == 3, json.dumps(out, indent=1)
    assert out["watch"]["died"] == [b.pid] and "died" in out["watch"]["reason"]
    assert [r["pid"] for r in out["watch"]["reverted"]] == [a.pid]
    assert out["watch"]["reverted"][0]["outcome"] == "reverted"
    assert b.wait(10) == 3
    assert result(sock_a, "list") == {"patches": []} and status_of(url_a) == 200
    assert list(store.bad_patches()) == [pid]


@pytest.mark.slow
def test_a_passing_watch_keeps_the_patch_and_is_audited(host):
    targets, v1, patch, pid = host
    a, sock_a, _ = start(targets, v1)
    rc, out = suture(targets, "apply", str(patch), *pid_args(a), "--health",
                     f"test -d {v1}", "--watch", "0.5", "--health-interval", "0.1")
    assert rc == 0, out
    assert out["watch"]["result"] == "passed" and out["watch"]["checks"] >= 3
    assert result(sock_a, "list")["patches"] == [pid]
    assert [(r["op"], r["result"]) for r in store.audit_log() if r["op"] == "watch"] \
        == [("watch", "passed")]
    assert store.bad_patches() == {}


def test_health_checks_say_why_they_failed(tmp_path: Path):
    assert rollout.HealthCheck("true").run() is None
    why = rollout.HealthCheck("echo nope >&2; exit 4").run()
    assert why == "`echo nope >&2; exit 4` exited 4: nope"
    assert "did not finish within 0.2 s" in rollout.HealthCheck("sleep 5", 0.2).run()
    # Nothing listens on port 9 of loopback here: refused, said as such.
    assert rollout.HealthCheck("http://127.0.0.1:9/", 2).run().startswith(
        "GET http://127.0.0.1:9/: ")


def test_start_time_names_one_live_process():
    assert isinstance(rollout.start_time(os.getpid()), int)
    assert rollout.start_time(os.getpid()) == rollout.start_time(os.getpid())
    assert rollout.start_time(2 ** 22 + 12345) is None
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    wait_for(lambda: rollout.start_time(child.pid) is None, "the child to exit")
    assert os.path.exists(f"/proc/{child.pid}")   # a zombie: exited, not yet reaped
    child.wait()
