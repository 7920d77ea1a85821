"""The benchmark scripts still run (tiny sizes, no timing assertions, no network)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"


def run(script: str, *args: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([sys.executable, str(BENCH / script), "--quick", "--json", *args],
                          capture_output=True, text=True, env=env, timeout=300, cwd=str(REPO))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.slow
def test_commit_pause_quick() -> None:
    result = run("commit_pause.py")
    assert [r["n"] for r in result["runs"]] == [1, 10]
    for r in result["runs"]:
        assert r["ops"] == r["n"]
        assert r["pause"]["n"] == 3 and r["pause"]["min"] > 0
        assert {"py_loop", "c_loop", "c_loop_cold", "revert_pause"} <= set(r)
        for s in r["spinner"].values():
            assert s["commit"]["windows"] == 2
    assert [h["heap_extra"] for h in result["heap"]] == [0, 10_000]


@pytest.mark.slow
def test_build_time_quick(tmp_path: Path) -> None:
    result = run("build_time.py", "--cache", str(tmp_path))
    (pair,) = result["pairs"]
    assert pair["pair"] == "urllib3 1.26.17 -> 1.26.18"
    assert pair["refused"] is None and pair["patch_bytes"] > 0
    assert pair["modules_compared"] == 39
    assert pair["apply"]["ops"] > 0, pair["apply"]


@pytest.mark.slow
def test_zero_downtime_quick(tmp_path: Path) -> None:
    # Real servers, short windows, a low rate (--quick: one round, a 1 s window against
    # one 1 s steady window after 0.5 s of warm-up): what is checked is behaviour, not speed.
    # The load runs --seconds-after more once the operation has ended (a restart of
    # uvicorn on a loaded 2-CPU machine took over 10 s): state is judged from those.
    out = tmp_path / "zd.json"
    env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.zero_downtime", "--quick",
                           "--servers", "fastapi-uvicorn", "--methods", "suture,restart",
                           "--seconds-after", "4", "--json", str(out)],
                          capture_output=True, text=True, env=env, timeout=300, cwd=str(REPO))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["machine"]["commit"] and result["rounds"] == 1
    suture, restart = result["results"]
    assert suture["apply"]["rc"] == 0 and suture["failed"] == 0
    assert suture["fixed_after_s"] is not None and suture["state_survived"] is True
    assert restart["failed"] > 0 and restart["state_survived"] is False
    assert restart["new_pids_after"] and restart["fixed_after_s"] is not None
    for r in (suture, restart):
        # equal windows: the same schedule length, so the same number of requests
        assert r["window"]["n"] == r["steady"]["n"] == 100, (r["window"], r["steady"])
        assert set(r["ratio"]) == {"p50", "p99", "p99.9", "max", "longest_gap"}
        assert r["stall_ms"] is not None or r["window"]["failed"] == r["window"]["n"]
    assert suture["targets"]["no_failed"] and not restart["targets"]["no_failed"]
    rows = {row["method"]: row for row in result["summary"]}
    assert rows["suture"]["runs"] == 1 and rows["suture"]["targets_met"]["no_failed"] == 1
    assert rows["restart"]["targets_met"]["no_failed"] == 0


@pytest.mark.slow
def test_peers_quick(tmp_path: Path) -> None:
    # No network here: the children run this interpreter (--no-venv), and a peer it lacks
    # (jurigged is not a dev dependency) is reported as unavailable rather than installed.
    result = run("peers.py", "--no-venv", "--cache", str(tmp_path))
    assert result["rounds"] == 1 and result["git"]["commit"]
    assert {"suture", "importlib"} <= set(result["tools"])
    assert set(result["tools"]) | set(result["unavailable"]) == {
        "suture", "jurigged", "superreload", "importlib"}
    summary = result["summary"]
    assert all(summary["suture"]["checks"].values()), summary["suture"]
    assert summary["suture"]["op_ms"]["n"] == 1 and summary["suture"]["pause_us"]["n"] == 1
    # importlib.reload re-runs the module: new functions and a new class, fresh state
    reload = summary["importlib"]["checks"]
    assert reload["module_functions"] and not reload["aliases"], reload
    assert not reload["old_instances"] and not reload["state_kept"], reload
    if "superreload" in summary:   # IPython clears the module's namespace and runs it again
        assert not summary["superreload"]["checks"]["state_kept"], summary["superreload"]


@pytest.mark.slow
def test_costs_quick() -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([sys.executable, str(BENCH / "costs.py"), "--quick", "--json"],
                          capture_output=True, text=True, env=env, timeout=300, cwd=str(REPO))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["apply"]["one"]["fleet_apply_ms"]["n"] == 3
    assert [r["processes"] for r in result["apply"]["fanout"]] == [3]
    assert result["idle"]["ratio_median"] > 0 and result["idle"]["rss_kib"]["with"] > 0


@pytest.mark.slow
@pytest.mark.skipif(sys.version_info[:2] != (3, 13),
                    reason="one run per CI: CI's time budget (ten processes under valgrind, "
                           "about 50 s of CPU)")
@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_call_cost_quick() -> None:
    result = run("call_cost.py")
    (row,) = result["results"]
    m = row["measured"]
    for variant in ("unpatched", "engine", "bare"):
        assert m[variant]["ir_per_call"] > 0, m
    assert m["engine"]["ir_per_call_same_state"] > 0, m
    # 3.13: the call site specialises for the function as loaded, and not after its
    # __code__ was swapped (its version is reset for good: docs/performance.md)
    assert "CALL_PY_EXACT_ARGS" in m["unpatched"]["call_site"], m["unpatched"]
    assert "CALL_PY_EXACT_ARGS" not in m["engine"]["call_site"], m["engine"]
    assert "CALL_PY_EXACT_ARGS" not in m["bare"]["call_site"], m["bare"]


@pytest.mark.slow
def test_patch_size_quick() -> None:
    # One pair from tests/data (offline); sizes are deterministic but not asserted here.
    result = run("patch_size.py")
    (pair,) = result["pairs"]
    assert pair["pair"] == "urllib3 1.26.17 -> 1.26.18" and pair["patch_bytes"] > 0
    parts = pair["breakdown"]["payload_json_parts"]
    assert sum(parts.values()) == pair["breakdown"]["payload_json"]
    assert result["summary"]["built"] == 1 and result["suture"]["commit"]


@pytest.mark.slow
def test_idle_quick() -> None:
    # One round on this Python; callgrind (two short runs per variant) only if installed.
    result = run("idle.py")
    assert result["commit"] and isinstance(result["dirty"], list)
    (row,) = result["results"]
    memory = row["memory"]
    for variant in ("bare", "agent", "run", "store"):
        assert memory[variant]["rss_kib"]["median"] > 0, memory[variant]
    assert memory["agent"]["modules"] > memory["bare"]["modules"]
    assert memory["agent"]["engine"] is False and memory["agent"]["sqlite3"] is False
    if shutil.which("valgrind") is not None:
        assert row["instructions"]["ratio_without_over_with"]["median"] > 0


@pytest.mark.slow
def test_latency_quick() -> None:
    # The commands as a user runs them, against a live target; --no-compile: the suite
    # does not write bytecode into the tree (the full run compiles it, as a wheel has it).
    result = run("latency.py", "--no-compile")
    assert set(result["ms"]) == {"python -c pass", "suture --version", "suture ps",
                                 "suture apply", "suture status", "suture revert"}
    for name, s in result["ms"].items():
        assert s["n"] == 2 and 0 < s["min"] <= s["median"] <= s["max"], (name, s)
    imports = result["importtime_apply"]
    assert imports["modules"] > 0 and imports["by_cumulative"]
    assert "suture.tooling.cli.host" in imports["loaded"]
    assert result["commit"] is not None and result["python"]


@pytest.mark.slow
def test_stall_quick() -> None:
    result = run("stall.py")
    assert result["config"]["rounds"] == 2 and result["variants"][0]["label"] == "src"
    kinds = {(r["scenario"], r["kind"]) for r in result["rows"]}
    for scenario in ("spinner", "asyncio"):
        assert {(scenario, k) for k in ("apply", "revert", "idle", "apply (cold)")} <= kinds
    for r in result["rows"]:
        assert r["stall"]["n"] == 2 and r["wall"]["n"] >= 2
    assert all(w["wall_ns"] > 0 for run in result["runs"] for w in run["windows"])


@pytest.mark.slow
@pytest.mark.skipif(sys.version_info < (3, 12), reason="sub-interpreters with threads: 3.12+")
def test_interpreters_quick() -> None:
    result = run("interpreters.py")
    (row,) = result["results"]
    for variant in ("bare", "agent"):
        assert row[variant]["create_ms"]["median"] > 0, row
    assert row["create_ratio_agent_over_bare"]["n"] == 1
