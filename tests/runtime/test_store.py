"""The local patch store and audit log (suture.runtime.store) and its CLI commands."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from suture.runtime import store
from suture.runtime.errors import PatchFormatError, UnknownPatch
from suture.tooling.build import build_trees
from suture.tooling.cli import main
from suture.tooling.build.sources import materialize

from signing import signed


def make_patch(tmp: Path, name: str = "tiny", body: str = "2") -> bytes:
    for tag, value in (("v1", "1"), ("v2", body)):
        pkg = tmp / f"{name}-{body}-{tag}" / name
        pkg.mkdir(parents=True)
        (pkg / "__init__.py").write_text("", encoding="utf-8")
        (pkg / "calc.py").write_text(f"def value():\n    return {value}\n", encoding="utf-8")
    report = build_trees(materialize(str(tmp / f"{name}-{body}-v1")),
                         materialize(str(tmp / f"{name}-{body}-v2")))
    assert report.data is not None
    return report.data


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "state"
    monkeypatch.setenv("SUTURE_STATE_DIR", str(d))
    return d


@pytest.mark.parametrize("env, uid, expect", [
    ({"SUTURE_STATE_DIR": "/x/s", "XDG_STATE_HOME": "/xdg"}, 0, "/x/s"),
    ({"XDG_STATE_HOME": "/xdg"}, 0, "/var/lib/suture"),
    ({"XDG_STATE_HOME": "/xdg"}, 1000, "/xdg/suture"),
    ({"XDG_STATE_HOME": "relative"}, 1000, "/home/u/.local/state/suture"),
    ({}, 1000, "/home/u/.local/state/suture"),
])
def test_state_directory_follows_the_documented_order(env, uid, expect):
    assert store._default_dir(env, uid, "/home/u") == expect


def test_reading_a_missing_store_creates_nothing(state: Path):
    assert store.installed() == [] and store.load_installed() == [] and store.audit_log() == []
    assert not state.exists()


def test_install_list_load_remove_round_trip(state: Path, tmp_path: Path):
    data = make_patch(tmp_path)
    patch = store.install(data)               # no trust record: agents will not apply it
    assert store.load_installed() == [(data, None)]
    record = {"signers": [{"name": "k", "keyid": "ab"}]}
    assert store.install(signed(data), record).id == patch.id  # again: data and record refreshed
    rows = store.installed()
    assert [r["id"] for r in rows] == [patch.id]
    assert rows[0]["target_name"] == patch.target["name"] and rows[0]["cves"] == []
    assert rows[0]["trust"] == record
    assert store.load_installed() == [(signed(data), record)]  # Ed25519 is deterministic
    assert store.remove(patch.id[:10]) == patch.id
    assert store.installed() == []


def test_the_store_is_private_and_in_wal_mode(state: Path, tmp_path: Path):
    store.install(make_patch(tmp_path))
    assert (state.stat().st_mode & 0o777) == 0o700
    assert (Path(store.db_path()).stat().st_mode & 0o077) == 0
    with sqlite3.connect(store.db_path()) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_install_refuses_a_corrupt_file_and_stores_nothing(state: Path):
    with pytest.raises(PatchFormatError):
        store.install(b"hello")
    assert store.installed() == []


def test_remove_refuses_unknown_and_ambiguous_ids(state: Path, tmp_path: Path):
    with pytest.raises(UnknownPatch, match=r"^no installed patch has the id 'feed'"):
        store.remove("feed")
    a = store.install(make_patch(tmp_path, body="2"))
    b = store.install(make_patch(tmp_path, body="3"))
    with pytest.raises(UnknownPatch, match=r"^the prefix '' |^give a patch id"):
        store.remove("")
    with pytest.raises(UnknownPatch, match=r"^no installed patch has the id 'zz'"):
        store.remove("zz")
    assert {a.id, b.id} == {r["id"] for r in store.installed()}


def test_a_group_writable_state_directory_is_refused(state: Path, tmp_path: Path):
    store.install(make_patch(tmp_path))
    os.chmod(state, 0o770)
    try:
        with pytest.raises(store.StoreError, match=r"^refusing the patch store directory .* "
                                                   r"mode 0770 lets other users write it"):
            store.load_installed()
    finally:
        os.chmod(state, 0o700)


def test_a_symlinked_database_is_refused(state: Path, tmp_path: Path):
    state.mkdir(mode=0o700)
    (tmp_path / "elsewhere.db").write_bytes(b"")
    os.symlink(tmp_path / "elsewhere.db", state / "store.db")
    with pytest.raises(store.StoreError, match=r"is a symlink"):
        store.installed()


def test_audit_rows_come_back_oldest_first_and_limit_keeps_the_newest(state: Path):
    for i in range(5):
        store.audit("apply", f"p{i}", "applied", 100 + i, 1000, detail="d" if i == 4 else "")
    rows = store.audit_log()
    assert [r["pid"] for r in rows] == [100, 101, 102, 103, 104]
    assert [r["seq"] for r in store.audit_log(limit=2)] == [4, 5]
    last = rows[-1]
    assert (last["op"], last["patch_id"], last["result"], last["actor_uid"], last["detail"]) \
        == ("apply", "p4", "applied", 1000, "d")


def test_cli_install_list_remove_audit(state: Path, tmp_path: Path):
    f = tmp_path / "fix.suture"
    f.write_bytes(signed(make_patch(tmp_path)))
    runner = CliRunner()
    got = runner.invoke(main, ["install", str(f), "--json"])
    assert got.exit_code == 0, got.output
    pid = json.loads(got.output)["id"]
    got = runner.invoke(main, ["list"])
    assert got.exit_code == 0 and pid[:12] in got.output
    assert [p["id"] for p in json.loads(runner.invoke(main, ["list", "--json"]).output)
            ["patches"]] == [pid]
    got = runner.invoke(main, ["remove", pid[:8], "--json"])
    assert got.exit_code == 0 and json.loads(got.output) == {"removed": pid}
    got = runner.invoke(main, ["remove", pid[:8], "--json"])
    assert got.exit_code == 1 and json.loads(got.output)["error"]["code"] == "SUT-E300"
    entries = json.loads(runner.invoke(main, ["audit", "--json"]).output)["entries"]
    assert [(e["op"], e["patch_id"], e["actor_uid"]) for e in entries] \
        == [("install", pid, os.getuid()), ("remove", pid, os.getuid())]
    got = runner.invoke(main, ["audit", "--limit", "1"])
    assert got.exit_code == 0 and "remove" in got.output and "install" not in got.output


def test_cli_install_refuses_a_corrupt_file(state: Path, tmp_path: Path):
    f = tmp_path / "bad.suture"
    f.write_bytes(b"hello")
    got = CliRunner().invoke(main, ["install", str(f), "--json"])
    assert got.exit_code == 1 and json.loads(got.output)["error"]["code"] == "SUT-E100"


def test_cli_status_exits_1_when_the_store_cannot_be_read(state: Path, tmp_path: Path):
    store.install(make_patch(tmp_path))
    os.chmod(state, 0o770)
    try:
        got = CliRunner().invoke(main, ["status", "--json"])
    finally:
        os.chmod(state, 0o700)
    assert got.exit_code == 1
    assert json.loads(got.output)["error"]["code"] == "SUT-E620"


# ---------------------------------------------------------------- the audit hash chain

def _rows(n: int) -> None:
    for i in range(n):
        store.audit("apply", f"p{i}", "applied", 100 + i, 1000, detail=f"d{i}")


def _db(state: Path) -> sqlite3.Connection:
    return sqlite3.connect(str(state / "store.db"), isolation_level=None)


def test_audit_rows_form_a_hash_chain_that_verifies(state: Path):
    _rows(4)
    rows = store.audit_log()
    assert rows[0]["prev"] == store.GENESIS
    assert [r["prev"] for r in rows[1:]] == [r["hash"] for r in rows[:-1]]
    report = store.verify_audit()
    assert report["ok"] and report["chained"] == 4 and report["head"] == rows[-1]["hash"]
    assert store.verify_audit(head=rows[1]["hash"])["ok"]


@pytest.mark.parametrize("tamper, seq, problem", [
    ("UPDATE audit SET result = 'refused' WHERE seq = 2", 2, "edited"),
    ("UPDATE audit SET detail = 'x' WHERE seq = 4", 4, "edited"),
    ("DELETE FROM audit WHERE seq = 2", 3, "removed or the rows were reordered"),
    ("UPDATE audit SET seq = 100 WHERE seq = 2; UPDATE audit SET seq = 2 WHERE seq = 3; "
     "UPDATE audit SET seq = 3 WHERE seq = 100", 2, "reordered"),
    ("INSERT INTO audit (at, actor_uid, pid, op, patch_id, result, detail) "
     "VALUES (1, 0, 1, 'apply', 'evil', 'applied', '')", 5, "inside the chain"),
])
def test_audit_verify_finds_edited_removed_reordered_and_inserted_rows(
        state: Path, tamper: str, seq: int, problem: str):
    _rows(4)
    with _db(state) as db:
        db.executescript(tamper)
    report = store.verify_audit()
    assert not report["ok"]
    assert any(p["seq"] == seq and problem in p["problem"] for p in report["problems"]), report


def test_audit_verify_with_a_recorded_head_finds_removed_newest_rows(state: Path):
    _rows(3)
    head = store.verify_audit()["head"]
    with _db(state) as db:
        db.execute("DELETE FROM audit WHERE seq = 3")
    assert store.verify_audit()["ok"]          # a shorter chain is still a chain...
    report = store.verify_audit(head=head)     # ...but not the one recorded
    assert not report["ok"] and "not in the chain" in report["problems"][0]["problem"]


def test_a_store_from_before_the_chain_keeps_its_rows_and_chains_new_ones(state: Path):
    state.mkdir(mode=0o700)
    with _db(state) as db:
        db.execute("CREATE TABLE audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, at REAL, "
                   "actor_uid INT, pid INT, op TEXT, patch_id TEXT, result TEXT, detail TEXT)")
        db.execute("INSERT INTO audit (at, actor_uid, pid, op, patch_id, result, detail) "
                   "VALUES (1.5, 0, 7, 'install', 'old', 'installed', '')")
    os.chmod(state / "store.db", 0o600)
    assert store.audit_log()[0]["hash"] is None      # reading does not migrate
    _rows(2)
    report = store.verify_audit()
    assert report["ok"] and (report["before_chain"], report["chained"]) == (1, 2)


def test_cli_audit_verify_exit_codes(state: Path):
    _rows(2)
    runner = CliRunner()
    got = runner.invoke(main, ["audit", "verify"])
    assert got.exit_code == 0 and "intact: 2 chained entries" in got.output
    with _db(state) as db:
        db.execute("UPDATE audit SET pid = 1 WHERE seq = 1")
    got = runner.invoke(main, ["audit", "verify", "--json"])
    assert got.exit_code == 2
    assert json.loads(got.output)["problems"][0]["seq"] == 1
    assert runner.invoke(main, ["audit", "verify", "--bogus"]).exit_code == 64


def test_concurrent_writers_from_many_processes_keep_one_valid_chain(state: Path):
    import subprocess
    import sys

    src = Path(store.__file__).resolve().parents[2]
    code = ("import sys; from suture.runtime import store\n"
            "for i in range(25): store.audit('apply', f'w{sys.argv[1]}-{i}', 'applied', "
            "int(sys.argv[1]), 0)\n")
    env = dict(os.environ, PYTHONPATH=str(src))
    procs = [subprocess.Popen([sys.executable, "-c", code, str(n)], env=env) for n in range(8)]
    assert [p.wait(timeout=120) for p in procs] == [0] * 8
    report = store.verify_audit()
    assert report["ok"] and report["chained"] == 200, report["problems"][:3]
