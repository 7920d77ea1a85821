"""The patch store with real processes: installed patches reach agents started later, audited."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

from suture.runtime import store
from suture.runtime.errors import UntrustedPatch
from suture.runtime.patchfile import Patch
from suture.tooling import trust
from suture.tooling.build import build_trees
from suture.tooling.build.sources import materialize

from agentutil import Targets, call, result, wait_for
from signing import signed

# Starts the agent first, imports tiny.calc only when the test writes a line to stdin,
# then writes what it observed to out.json (polled by the test).
LATE_IMPORT = r'''
import json, os, sys
import suture.agent
suture.agent.start()
if "--import-now" not in sys.argv:
    sys.stdin.readline()
from tiny import calc
with open(sys.argv[1] + ".tmp", "w") as f:
    json.dump({"value": calc.value()}, f)
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
sys.stdin.read()   # until the test closes stdin
'''


def tree(tmp: Path, tag: str, value: str) -> str:
    pkg = tmp / tag / "tiny"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("", encoding="utf-8")
    (pkg / "calc.py").write_text(f"def value():\n    return {value}\n", encoding="utf-8")
    return str(tmp / tag)


def build(tmp: Path, old: str, new: str, sign: bool = True) -> bytes:
    report = build_trees(materialize(tree(tmp, f"v{old}", old)),
                         materialize(tree(tmp, f"v{new}", new)))
    assert report.data is not None
    return signed(report.data) if sign else report.data


def install(data: bytes, allow_unsigned: bool = False) -> Patch:
    """What `suture install` does: verify against the trust policy, keep the record."""
    _, record = trust.require(data, allow_unsigned)
    return store.install(data, record)


@pytest.fixture
def state(targets: Targets, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = targets.root / "state"  # the directory Targets.env gives the targets
    monkeypatch.setenv("SUTURE_STATE_DIR", str(d))
    return d


def rows_for(pid: int, op: str) -> List[Dict[str, Any]]:
    return [r for r in store.audit_log() if r["pid"] == pid and r["op"] == op]


def outcomes(pid: int) -> List[Dict[str, Any]]:
    """The agent's auto-apply results (after the "applying" row each attempt starts with)."""
    return [r for r in rows_for(pid, "auto-apply") if r["result"] != "applying"]


def start(targets: Targets, tmp: Path, *flags: str):
    script = targets.script(LATE_IMPORT)
    out = tmp / f"out-{len(targets.procs)}.json"
    proc = targets.start([sys.executable, str(script), str(out), *flags],
                         targets.env([str(tmp / "v1")]), stdin=subprocess.PIPE)
    return proc, out, targets.wait_agent(proc.pid, proc)


@pytest.mark.slow
def test_an_installed_patch_reaches_a_module_imported_later(targets: Targets, state: Path,
                                                            tmp_path: Path):
    patch = install(build(tmp_path, "1", "2"))
    proc, out, sock = start(targets, tmp_path)
    auto = wait_for(lambda: outcomes(proc.pid), "the auto-apply audit row",
                    proc=proc)
    assert [(r["patch_id"], r["result"], r["actor_uid"]) for r in auto] \
        == [(patch.id, "pending import", os.geteuid())]
    # Each attempt starts with an "applying" row carrying the process's start time.
    first = rows_for(proc.pid, "auto-apply")[0]
    assert first["result"] == "applying" and first["detail"].startswith("start=")
    proc.stdin.write("import now\n")
    proc.stdin.flush()
    wait_for(out.exists, "the target's observation", proc=proc)
    assert json.loads(out.read_text()) == {"value": 2}
    status = result(sock, "status")
    assert [(p["id"], p["modules"]) for p in status["patches"]] \
        == [(patch.id, {"tiny.calc": "applied"})]

    # Requests over the socket are audited with the caller's uid (SO_PEERCRED).
    again = result(sock, "apply", patch=base64.b64encode(store.load_installed()[0][0]).decode())
    assert again["state"] == "already applied"
    other = build(tmp_path, "7", "8")  # its baseline is not what the process runs
    refused = call(sock, "apply", patch=base64.b64encode(other).decode())
    assert refused["ok"] is False and refused["error"]["code"] == "SUT-E201"
    reverted = result(sock, "revert", patch_id=patch.id[:12])
    assert reverted["state"] == "reverted"
    audited = [(r["op"], r["result"], r["actor_uid"]) for r in rows_for(proc.pid, "apply")
               + rows_for(proc.pid, "revert")]
    assert audited == [("apply", "already applied", os.getuid()),
                       ("apply", "refused SUT-E201", os.getuid()),
                       ("revert", "reverted", os.getuid())]
    assert rows_for(proc.pid, "apply")[1]["detail"]
    assert proc.poll() is None


@pytest.mark.slow
def test_a_refused_installed_patch_is_recorded_and_the_target_runs_on(targets: Targets,
                                                                      state: Path,
                                                                      tmp_path: Path):
    tree(tmp_path, "v1", "1")
    other = install(build(tmp_path, "7", "8"))  # baseline 7; the target runs 1
    proc, out, sock = start(targets, tmp_path, "--import-now")
    wait_for(out.exists, "the target's observation", proc=proc)
    auto = wait_for(lambda: outcomes(proc.pid), "the auto-apply audit row",
                    proc=proc)
    # The import may race the agent: refused live, or refused when the import ran.
    assert auto[0]["patch_id"] == other.id
    if auto[0]["result"] != "pending import":
        assert auto[0]["result"] == "refused SUT-E201" and auto[0]["detail"]
    assert json.loads(out.read_text()) == {"value": 1}
    assert result(sock, "hello")["pid"] == proc.pid
    assert proc.poll() is None


@pytest.mark.slow
def test_a_patch_for_a_package_that_is_not_here_is_not_applied(targets: Targets, state: Path,
                                                               tmp_path: Path):
    install(build(tmp_path, "1", "2"))
    script = targets.script("import sys, suture.agent\nsuture.agent.start()\nsys.stdin.read()\n")
    proc = targets.start([sys.executable, str(script)], targets.env(),
                         stdin=subprocess.PIPE)
    sock = targets.wait_agent(proc.pid, proc)
    # The agent serves requests only after auto-apply finished: list is its answer.
    assert result(sock, "list") == {"patches": []}
    assert rows_for(proc.pid, "auto-apply") == []


@pytest.mark.slow
def test_an_unsafe_store_is_reported_once_and_the_agent_serves(targets: Targets, state: Path,
                                                               tmp_path: Path):
    install(build(tmp_path, "1", "2"))
    os.chmod(state, 0o777)
    try:
        script = targets.script("import sys, suture.agent\nsuture.agent.start()\n"
                                "sys.stdin.read()\n")
        proc = targets.start([sys.executable, str(script)], targets.env([str(tmp_path / "v1")]),
                             stdin=subprocess.PIPE)
        sock = targets.wait_agent(proc.pid, proc)
        assert result(sock, "list") == {"patches": []}
        _, err = proc.communicate(timeout=30)  # closes stdin: the target exits
        assert f"suture: warning: installed patches not applied in pid {proc.pid}: " \
               f"refusing the patch store directory" in err
    finally:
        os.chmod(state, 0o700)


@pytest.mark.slow
def test_a_row_without_a_trust_record_is_refused_and_audited(targets: Targets, state: Path,
                                                              tmp_path: Path):
    # Written into the store by other means than `suture install` (here: the store API
    # without a record, as an older Suture or a hand-edited database would leave it).
    patch = store.install(build(tmp_path, "1", "2"))
    proc, out, sock = start(targets, tmp_path, "--import-now")
    wait_for(out.exists, "the target's observation", proc=proc)
    auto = wait_for(lambda: outcomes(proc.pid), "the auto-apply audit row",
                    proc=proc)
    assert [(r["patch_id"], r["result"]) for r in auto] == [(patch.id, "refused SUT-E110")]
    assert "no trust record" in auto[0]["detail"]
    assert json.loads(out.read_text()) == {"value": 1}
    assert result(sock, "list") == {"patches": []}
    assert proc.poll() is None


@pytest.mark.slow
def test_an_unsigned_patch_installed_for_development_is_applied_loudly(targets: Targets,
                                                                       state: Path,
                                                                       tmp_path: Path):
    unsigned = build(tmp_path, "1", "2", sign=False)
    with pytest.raises(UntrustedPatch):
        install(unsigned)
    patch = install(unsigned, allow_unsigned=True)
    proc, out, sock = start(targets, tmp_path)
    auto = wait_for(lambda: outcomes(proc.pid), "the auto-apply audit row",
                    proc=proc)
    assert [(r["patch_id"], r["result"]) for r in auto] == [(patch.id, "pending import")]
    assert "unsigned" in auto[0]["detail"]
    proc.stdin.write("import now\n")
    proc.stdin.flush()
    wait_for(out.exists, "the target's observation", proc=proc)
    assert json.loads(out.read_text()) == {"value": 2}
    _, err = proc.communicate(timeout=30)
    assert f"pid {proc.pid} applies patch {patch.short_id}" in err and "--allow-unsigned" in err


# A service that the installed patch (tiny.calc 1 -> 2) breaks, in one of several ways.
BROKEN_BY_THE_PATCH = r'''
import os, sys, threading, time
if sys.argv[1] == "renamed":   # a main thread named as after a fork off another thread
    threading.current_thread().name = "Thread-2 (_handle_workers)"
import suture.agent
suture.agent.start()
from tiny import calc
mode = sys.argv[1]
end = time.monotonic() + 20
while calc.value() != 2 and time.monotonic() < end:
    time.sleep(0.01)
if mode == "die":
    os._exit(3)                              # a nonzero exit: counted as a crash
if mode == "raise":
    raise RuntimeError("the patch broke me")   # an uncaught exception ends the process
if mode in ("stay", "renamed"):
    sys.stdin.read()
'''


def run_patched(targets: Targets, tmp: Path, mode: str, **env: str) -> Any:
    script = targets.script(BROKEN_BY_THE_PATCH)
    proc = targets.start([sys.executable, str(script), mode],
                         targets.env([str(tmp / "v1")], **env), stdin=subprocess.PIPE)
    if mode not in ("stay", "renamed"):
        proc.communicate(timeout=60)
    return proc


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["die", "raise"])
def test_a_crash_loop_marks_the_installed_patch_bad(targets: Targets, state: Path,
                                                    tmp_path: Path, mode: str):
    patch = install(build(tmp_path, "1", "2"))
    dead = [run_patched(targets, tmp_path, mode) for _ in range(3)]
    assert [p.returncode for p in dead] == [3, 3, 3] if mode == "die" else [1, 1, 1]
    # The fourth start sees three processes that died soon after applying it: refused.
    proc, out, sock = start(targets, tmp_path, "--import-now")
    wait_for(out.exists, "the target's observation", proc=proc)
    auto = wait_for(lambda: outcomes(proc.pid), "the auto-apply row", proc=proc)
    assert [r["result"] for r in auto] == ["refused SUT-E207"]
    assert json.loads(out.read_text()) == {"value": 1}
    reason = store.bad_patches()[patch.id]["reason"]
    assert reason.startswith("crash loop: processes ") and all(str(p.pid) in reason
                                                               for p in dead)
    exited = [r["result"] for r in store.audit_log() if r["op"] == "exited"]
    how = "exit status 3" if mode == "die" else "uncaught exception"
    assert exited == [how] * 3
    # The mark names each process and how it ended (`suture bad`).
    assert [(p["pid"], p["exit"]) for p in store.bad_patches()[patch.id]["processes"]] \
        == [(p.pid, how) for p in dead]


@pytest.mark.slow
def test_clean_exits_and_survivors_are_no_crash_loop(targets: Targets, state: Path,
                                                     tmp_path: Path):
    patch = install(build(tmp_path, "1", "2"))
    for _ in range(3):   # short-lived programs that end normally
        assert run_patched(targets, tmp_path, "exit").returncode == 0
    assert [r["result"] for r in store.audit_log() if r["op"] == "exited"] == ["clean"] * 3
    for _ in range(3):   # long-lived ones killed after they survived with the patch
        proc = run_patched(targets, tmp_path, "stay", SUTURE_SURVIVE_SECONDS="0.3")
        wait_for(lambda proc=proc: [r for r in store.audit_log()
                                    if r["pid"] == proc.pid and r["op"] == "survived"],
                 "the survived row", proc=proc)
        proc.kill()
        proc.wait(30)
    proc = run_patched(targets, tmp_path, "stay")
    auto = wait_for(lambda: outcomes(proc.pid), "the auto-apply row", proc=proc)
    assert [r["result"] for r in auto] == ["applied"]
    assert store.bad_patches() == {}
    assert patch.id


@pytest.mark.slow
def test_sigterm_where_the_agent_cannot_see_it_is_no_crash_loop(targets: Targets, state: Path,
                                                               tmp_path: Path):
    """On CPython 3.13+ a process forked off a thread keeps SIGTERM's default action (see
    _STALE_MAIN_AFTER_THREAD_FORK in the agent), so it dies with no exit row; three such
    terminated workers are not a crash loop. Before, SIGTERM is seen and recorded."""
    patch = install(build(tmp_path, "1", "2"))
    for _ in range(3):
        proc = run_patched(targets, tmp_path, "renamed")
        auto = wait_for(lambda proc=proc: outcomes(proc.pid), "the auto-apply row", proc=proc)
        # "pending import" when the agent got there before the script's import of tiny
        assert [r["result"] for r in auto] in (["applied"], ["pending import"])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == -signal.SIGTERM
    applying = [r["detail"] for r in store.audit_log() if r["result"] == "applying"]
    exited = [r["result"] for r in store.audit_log() if r["op"] == "exited"]
    if sys.version_info >= (3, 13):
        assert [d.endswith(";sigterm=unrecorded") for d in applying] == [True] * 3
        assert exited == []
    else:
        assert ["sigterm=unrecorded" in d for d in applying] == [False] * 3
        assert exited == ["terminated by SIGTERM"] * 3
    proc = run_patched(targets, tmp_path, "stay")
    auto = wait_for(lambda: outcomes(proc.pid), "the auto-apply row", proc=proc)
    assert [r["result"] for r in auto] == ["applied"]
    assert store.bad_patches() == {}
    assert patch.id


@pytest.mark.slow
def test_a_module_refused_at_import_is_an_audited_event(targets: Targets, state: Path,
                                                        tmp_path: Path):
    """apply said "pending import"; the module the process then imports is not the
    patch's baseline, so it runs unpatched: that goes in the audit log, with the reason."""
    data = build(tmp_path, "3", "4")           # baseline: value() returns 3
    tree(tmp_path, "v1", "1")                  # the process imports a release returning 1
    proc, out, sock = start(targets, tmp_path)
    applied = result(sock, "apply", patch=base64.b64encode(data).decode())
    assert applied["state"] == "pending import"
    proc.stdin.write("import now\n")
    proc.stdin.flush()
    wait_for(out.exists, "the target's observation", proc=proc)
    assert json.loads(out.read_text()) == {"value": 1}
    rows = wait_for(lambda: rows_for(proc.pid, "import"), "the import audit row", proc=proc)
    assert [(r["result"], r["actor_uid"]) for r in rows] == [("refused", os.geteuid())]
    assert rows[0]["detail"].startswith("tiny.calc: SUT-E201 "), rows[0]
    modules = result(sock, "status")["patches"][0]["modules"]
    assert modules["tiny.calc"].startswith("refused at import")
    proc.stdin.close()
