"""Audit (issue 13, findings 9 and 10): no apply goes unrecorded, no missing chain passes.

Promises attacked here (docs/security.md, "Tamper-evident audit"):
* an apply or revert whose row the target's own store cannot take (corrupt, unreadable) is
  recorded in the store of the user running `suture`, and the command says so; when no
  store takes it, the command says that loudly and exits 1;
* `suture audit verify` never calls a missing, empty or chainless log "intact", and a
  store deleted and recreated since a head was recorded is not intact against that head;
* a store written by a newer Suture (schema version above ours) is refused by every
  reader and writer, the CLI's and the agent's, and never migrated: its bytes stay as
  they were.

Real target processes, a real CLI subprocess, a real second user (uid 65534) for root.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, Iterator, List

import pytest
from click.testing import CliRunner

from suture.runtime import store
from suture.tooling.build import build_trees
from suture.tooling.cli import main
from suture.tooling.build.sources import materialize

from agentutil import Targets, call, result, wait_for
from signing import signed

SRC = Path(__file__).resolve().parents[2] / "src"
NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"

# Imports tiny.calc (v1 from its sys.path), starts the agent, waits on stdin.
APP = r'''
import sys
sys.path[:0] = sys.argv[1:]
from tiny import calc
import suture.agent
suture.agent.start()
print("ready", flush=True)
sys.stdin.read()
'''


def tree(root: Path, tag: str, value: str) -> Path:
    pkg = root / tag / "tiny"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("", encoding="utf-8")
    (pkg / "calc.py").write_text(f"def value():\n    return {value}\n", encoding="utf-8")
    return root / tag


def patch_file(root: Path, old: str, new: str) -> Path:
    report = build_trees(materialize(str(tree(root, f"v{old}", old))),
                         materialize(str(tree(root, f"v{new}", new))))
    assert report.data is not None and report.patch is not None
    path = root / f"fix-{old}-{new}.suture"
    path.write_bytes(signed(report.data))
    return path


def corrupt_store(directory: Path) -> Path:
    """A store.db that is not a database, in a directory that passes every ownership check."""
    directory.mkdir(mode=0o700, exist_ok=True)
    db = directory / "store.db"
    db.write_bytes(b"this is not an SQLite database, and the store is unusable\n" * 64)
    db.chmod(0o600)
    return db


def cli(env: Dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "suture", *args], capture_output=True,
                          text=True, env=env, timeout=60)


def cli_env(state: Path, **extra: str) -> Dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(SRC), SUTURE_STATE_DIR=str(state))
    env.update(extra)
    return env


def rows_of(db: Path) -> List[Dict[str, object]]:
    with sqlite3.connect(str(db)) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM audit ORDER BY seq")]


def start_app(targets: Targets, root: Path) -> subprocess.Popen:
    script = targets.script(APP)
    proc = targets.start([sys.executable, str(script), str(root / "v1")], targets.env(),
                         stdin=subprocess.PIPE)
    line = proc.stdout.readline()
    assert line == "ready\n", (line, proc.stderr.read() if proc.poll() is not None else "")
    targets.wait_agent(proc.pid, proc)
    return proc


# ---------------------------------------------------------------- finding 9: applies with no record

@pytest.mark.slow
def test_apply_and_revert_a_target_with_a_corrupt_store_are_recorded_in_the_operators(
        targets: Targets, tmp_path: Path):
    theirs = corrupt_store(targets.root / "state")       # the store Targets.env gives targets
    fix, other = patch_file(tmp_path, "1", "2"), patch_file(tmp_path, "7", "8")
    proc = start_app(targets, tmp_path)
    ours = tmp_path / "operator"
    env = cli_env(ours, SUTURE_RUNTIME_DIR=str(targets.rundir))

    done = cli(env, "apply", str(fix), "--pid", str(proc.pid), "--json")
    assert done.returncode == 0, (done.stdout, done.stderr)
    row = json.loads(done.stdout)["processes"][0]
    assert row["outcome"] == "applied"
    audit = row["audit"]
    assert audit["recorded"] is False and audit["code"] == "SUT-E620"
    assert audit["store"] == str(theirs) and audit["peer_uid"] == os.getuid()
    assert audit["fallback"] == {"recorded": True, "store": str(ours / "store.db")}
    assert f"warning: PID {proc.pid}: not recorded in the process's own audit log" \
        in done.stderr

    refused = cli(env, "apply", str(other), "--pid", str(proc.pid))
    assert refused.returncode == 2, (refused.stdout, refused.stderr)
    reverted = cli(env, "revert", json.loads(done.stdout)["patch"], "--pid", str(proc.pid))
    assert reverted.returncode == 0, (reverted.stdout, reverted.stderr)
    assert f"warning: PID {proc.pid}: not recorded in the process's own audit log, its " \
           f"store {theirs}" in reverted.stderr

    got = [(r["op"], r["pid"], r["actor_uid"], r["result"]) for r in rows_of(ours / "store.db")]
    assert got == [("apply", proc.pid, os.getuid(), "applied"),
                   ("apply", proc.pid, os.getuid(), "refused SUT-E201"),
                   ("revert", proc.pid, os.getuid(), "reverted")]
    detail = rows_of(ours / "store.db")[0]["detail"]
    assert f"not recorded by pid {proc.pid} in its own store {theirs}" in str(detail)
    assert "not a database" in str(detail)
    assert store.GENESIS == rows_of(ours / "store.db")[0]["prev"]
    assert proc.poll() is None


@pytest.mark.slow
def test_an_apply_that_no_store_can_record_exits_1_and_says_so(targets: Targets,
                                                              tmp_path: Path):
    corrupt_store(targets.root / "state")
    # Ours cannot be created: `apply` reads it first (marks: none, as there is no store)
    # and only then finds, when it writes, that its directory cannot be made. A store that
    # cannot be read at all stops `apply` before any process is contacted (exit 1).
    (tmp_path / "not-a-dir").write_text("")
    ours = tmp_path / "not-a-dir" / "state"
    fix = patch_file(tmp_path, "1", "2")
    proc = start_app(targets, tmp_path)
    env = cli_env(ours, SUTURE_RUNTIME_DIR=str(targets.rundir))
    done = cli(env, "apply", str(fix), "--pid", str(proc.pid), "--json")
    assert done.returncode == 1, (done.stdout, done.stderr)
    row = json.loads(done.stdout)["processes"][0]
    assert row["outcome"] == "applied"                 # it happened: only the record is lost
    assert row["audit"]["fallback"]["recorded"] is False
    assert row["audit"]["fallback"]["code"] == "SUT-E620"
    assert f"error: PID {proc.pid}: applied but recorded in NO audit log" in done.stderr
    patch_id = json.loads(done.stdout)["patch"]
    done = cli(env, "revert", patch_id, "--pid", str(proc.pid))
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert f"error: PID {proc.pid}: reverted but recorded in NO audit log" in done.stderr


@pytest.mark.slow
def test_an_agent_whose_store_works_says_so_and_nothing_is_copied(targets: Targets,
                                                                 tmp_path: Path):
    fix = patch_file(tmp_path, "1", "2")
    proc = start_app(targets, tmp_path)
    ours = tmp_path / "operator"
    done = cli(cli_env(ours, SUTURE_RUNTIME_DIR=str(targets.rundir)), "apply", str(fix),
               "--pid", str(proc.pid), "--json")
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout)["processes"][0]
    assert row["result"]["audit"] == {"recorded": True} and row["audit"] is None
    assert "warning" not in done.stderr and not ours.exists()


# -- root acting on another user's process: the target's store is that user's --------------

def _owned(path: Path) -> Path:
    path.mkdir(mode=0o700)
    os.chown(path, NOBODY, NOBODY)
    return path


@pytest.fixture
def nobody_base() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("running a target as uid 65534 needs root")
    if not os.path.exists(SYSTEM_PYTHON) or subprocess.run(
            [SYSTEM_PYTHON, "-c", "import sys; assert sys.version_info >= (3, 9)"]).returncode:
        pytest.skip("needs a system Python 3.9+ that uid 65534 can run")
    root = Path(tempfile.mkdtemp(prefix="suture-audit-"))
    try:
        root.chmod(0o755)
        shutil.copytree(SRC / "suture", root / "lib" / "suture",
                        ignore=shutil.ignore_patterns("__pycache__", "tooling"))
        tree(root, "v1", "1")
        (root / "app.py").write_text(APP)
        for p in root.rglob("*"):
            p.chmod(0o755 if p.is_dir() else 0o644)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.parametrize("broken", ["corrupt", "unreadable"])
def test_root_applying_to_a_users_process_whose_store_fails_records_in_roots_store(
        nobody_base: Path, tmp_path: Path, broken: str):
    run, state = _owned(nobody_base / "run"), _owned(nobody_base / "state")
    db = state / "store.db"
    if broken == "corrupt":
        db.write_bytes(b"garbage" * 512)
        os.chown(db, NOBODY, NOBODY)
    else:   # root's file, 0600: the ownership check passes (root), the open does not
        db.write_bytes(b"")
    db.chmod(0o600)
    proc = subprocess.Popen(
        ["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups",
         SYSTEM_PYTHON, str(nobody_base / "app.py"), str(nobody_base / "lib"),
         str(nobody_base / "v1")],
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "SUTURE_RUNTIME_DIR": str(run),
             "SUTURE_STATE_DIR": str(state)},
        cwd="/", stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        assert proc.stdout.readline() == "ready\n", proc.stderr.read()
        wait_for(lambda: (run / f"{proc.pid}.sock").exists(), "the agent's socket", proc=proc)
        fix = patch_file(tmp_path, "1", "2")
        ours = tmp_path / "root-state"
        env = cli_env(ours)
        env.pop("SUTURE_RUNTIME_DIR", None)   # found from the target's environment
        done = cli(env, "apply", str(fix), "--pid", str(proc.pid), "--json")
        assert done.returncode == 0, (done.stdout, done.stderr)
        row = json.loads(done.stdout)["processes"][0]
        assert row["outcome"] == "applied"
        assert row["audit"]["recorded"] is False and row["audit"]["uid"] == NOBODY
        assert row["audit"]["peer_uid"] == NOBODY          # root connected as the user
        assert row["audit"]["store"] == str(db)
        assert ("not a database" if broken == "corrupt" else "unable to open") \
            in row["audit"]["why"], row["audit"]
        assert row["audit"]["fallback"]["recorded"] is True
        got = rows_of(ours / "store.db")
        assert [(r["op"], r["pid"], r["actor_uid"], r["result"]) for r in got] \
            == [("apply", proc.pid, 0, "applied")]
        assert f"peer uid {NOBODY}" in str(got[0]["detail"])
        assert "warning: PID" in done.stderr
    finally:
        proc.kill()
        proc.communicate()


# ------------------------------------------------------- finding 10: "no chain" is not intact

@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "state"
    monkeypatch.setenv("SUTURE_STATE_DIR", str(d))
    return d


def _runner() -> CliRunner:
    try:
        return CliRunner(mix_stderr=False)   # click 8.1 (Python 3.9)
    except TypeError:
        return CliRunner()                   # click 8.2+: stderr is always its own


def verify(*args: str):
    got = _runner().invoke(main, ["audit", "verify", *args])
    return got.exit_code, got.stdout, got.stderr


@pytest.mark.parametrize("make, why", [
    ("missing", "there is no store"),
    ("no table", "the store has no audit table"),
    ("empty", "the audit log is empty"),
])
def test_audit_verify_says_no_chain_when_there_is_none_and_exits_3(state: Path, make: str,
                                                                   why: str):
    if make == "no table":
        state.mkdir(mode=0o700)
        with sqlite3.connect(str(state / "store.db")) as db:
            db.execute("CREATE TABLE other (x)")
        (state / "store.db").chmod(0o600)
    elif make == "empty":
        store.mark_bad("p", "a mark writes no audit row", 0)   # the store and its tables
        assert store.audit_log() == []
    code, out, err = verify()
    assert code == 3 and out == ""
    assert err.startswith(f"NO AUDIT CHAIN here: {why} ({state / 'store.db'}); nothing was "
                          f"verified")
    code, out, _ = verify("--json")
    report = json.loads(out)
    assert code == 3 and (report["state"], report["ok"], report["why"]) == ("no chain", False, why)
    code, _, err = verify("--head", "ab" * 32)
    assert code == 3 and "the recorded head abababababababab... is not in the chain" in err


def test_a_recreated_store_is_not_intact_against_the_old_head_and_shows_where_it_starts(
        state: Path):
    for i in range(3):
        store.audit("apply", f"p{i}", "applied", 100 + i, 0)
    head = store.verify_audit()["head"]
    shutil.rmtree(state)                                   # deleted ...
    store.audit("install", "new", "installed", 200, 0)     # ... and the next write recreates it
    code, out, err = verify("--head", head)
    assert code == 2 and out == ""
    assert f"the recorded head {head[:16]}... is not in the chain (rows removed since it was " \
           f"recorded, or the store was deleted and recreated: this chain starts at entry 1" \
           in err
    code, out, _ = verify()
    assert code == 0 and "chain started " in out and "(entry 1, install by uid 0)" in out
    report = json.loads(verify("--json")[1])
    assert report["state"] == "intact" and report["started"]["op"] == "install"
    shown = CliRunner().invoke(main, ["audit"])
    assert shown.exit_code == 0 and "installed  (chain starts here)" in shown.output


def test_a_log_of_only_pre_chain_entries_is_no_chain(state: Path):
    state.mkdir(mode=0o700)
    with sqlite3.connect(str(state / "store.db")) as db:
        db.execute("CREATE TABLE audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, at REAL, "
                   "actor_uid INT, pid INT, op TEXT, patch_id TEXT, result TEXT, detail TEXT)")
        db.execute("INSERT INTO audit (at, actor_uid, pid, op, patch_id, result, detail) "
                   "VALUES (1.5, 0, 7, 'install', 'old', 'installed', '')")
    (state / "store.db").chmod(0o600)
    code, _, err = verify()
    assert code == 3 and "its 1 entries were all written before the chain existed" in err


# ---------------------------------------------------------------- finding 10: a newer schema

FUTURE = 99   # a schema version no Suture of this age knows

def future_store(directory: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """A store written by "a newer Suture": ours, with a higher schema version, holding a
    patch for the targets' module (so an agent that read it would apply it)."""
    with monkeypatch.context() as m:
        m.setenv("SUTURE_STATE_DIR", str(directory))
        store.install(patch_file(tmp_path, "1", "2").read_bytes(), {"unsigned": True})
        store.audit("install", "x", "installed", 1, 0)
    with sqlite3.connect(str(directory / "store.db")) as db:
        db.execute(f"PRAGMA user_version = {FUTURE}")
    db.close()
    assert sorted(os.listdir(directory)) == ["store.db"]
    return (directory / "store.db").read_bytes()


@pytest.mark.slow
def test_a_store_from_a_newer_suture_is_refused_by_the_cli_and_never_migrated(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    state = tmp_path / "state"
    before = future_store(state, tmp_path, monkeypatch)
    env = cli_env(state)
    fix = patch_file(tmp_path / "again", "1", "2")
    for args in (["list"], ["audit"], ["audit", "verify"], ["install", str(fix)],
                 ["remove", "abc"], ["bad"]):
        done = cli(env, *args)
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        assert done.stderr.startswith(
            f"error: refusing the patch store {state / 'store.db'}: it was written by a newer "
            f"Suture (schema version {FUTURE}; this Suture knows up to "
            f"{store.SCHEMA_VERSION}). Nothing was read or changed."), (args, done.stderr)
        assert "[SUT-E621]" in done.stderr
    done = cli(env, "list", "--json")
    assert json.loads(done.stdout)["error"]["code"] == "SUT-E621"
    assert (state / "store.db").read_bytes() == before


@pytest.mark.slow
def test_a_store_from_a_newer_suture_is_refused_by_an_agent_starting_up(
        targets: Targets, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    state = targets.root / "state"
    before = future_store(state, tmp_path, monkeypatch)
    script = targets.script(APP)
    proc = targets.start([sys.executable, str(script), str(tmp_path / "v1")], targets.env(),
                         stdin=subprocess.PIPE)
    assert proc.stdout.readline() == "ready\n"
    sock = targets.wait_agent(proc.pid, proc)
    # Auto-apply ran before the first request: the hello answers after it.
    assert result(sock, "hello")["pid"] == proc.pid
    # Requests are served; their audit rows are refused like the read, and the answer says so.
    reply = call(sock, "revert", patch_id="0" * 12)
    assert reply["ok"] is False and reply["error"]["code"] == "SUT-E300"
    audit = reply["error"]["details"]["audit"]
    assert audit["recorded"] is False and audit["code"] == "SUT-E621"
    proc.stdin.close()
    proc.wait(timeout=20)
    err = proc.stderr.read()
    assert (f"suture: warning: installed patches not applied in pid {proc.pid}: refusing the "
            f"patch store {state / 'store.db'}: it was written by a newer Suture") in err
    assert (state / "store.db").read_bytes() == before
    with sqlite3.connect(str(state / "store.db")) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == FUTURE
