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
from suture.tooling.sources import materialize


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
    patch = store.install(data)
    assert store.install(data).id == patch.id  # twice is a no-op
    rows = store.installed()
    assert [r["id"] for r in rows] == [patch.id]
    assert rows[0]["target_name"] == patch.target["name"] and rows[0]["cves"] == []
    assert store.load_installed() == [data]
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
    f.write_bytes(make_patch(tmp_path))
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
