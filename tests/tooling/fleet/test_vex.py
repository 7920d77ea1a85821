"""suture.tooling.fleet.vex on reports of the shape `suture status --json` prints: the cases the
live test (tests/tooling/cli/test_cli_live.py) does not reach."""

from __future__ import annotations

from typing import Any, Dict, List

from suture.tooling.fleet import vex

TARGET = {"kind": "distribution", "name": "Jinja2", "from_version": "3.1.5",
          "to_version": "3.1.6"}


def report(states: List[str], unknown: int = 0, **entry: Any) -> Dict[str, Any]:
    procs = [{"pid": 100 + i, "state": s, "reason": "", "fix": None}
             for i, s in enumerate(states)]
    e: Dict[str, Any] = dict({"id": "ab" * 32, "target": TARGET, "installed": True,
                              "cves": ["CVE-2025-27516", "CVE-2024-0001"],
                              "processes": procs}, **entry)
    return {"patches": [e], "exposed": [],
            "processes": [{"pid": 900 + i, "state": "unknown"} for i in range(unknown)]}


def test_one_statement_per_cve_with_the_vulnerable_release_as_purl():
    doc = vex.document(report(["fixed"]), host="h1", now="2026-11-26T06:00:00Z")
    assert [s["vulnerability"]["name"] for s in doc["statements"]] == [
        "CVE-2024-0001", "CVE-2025-27516"]
    assert {s["products"][0]["@id"] for s in doc["statements"]} == {"pkg:pypi/jinja2@3.1.5"}
    assert doc["author"].endswith(" on h1") and doc["timestamp"] == "2026-11-26T06:00:00Z"


def test_the_id_changes_with_the_statements_only():
    a = vex.document(report(["fixed"]), host="h1", now="2026-11-26T06:00:00Z")
    b = vex.document(report(["fixed"]), host="h1", now="2026-11-27T06:00:00Z")
    c = vex.document(report(["exposed"]), host="h1", now="2026-11-26T06:00:00Z")
    assert a["@id"] == b["@id"] != c["@id"]


def test_one_exposed_process_makes_it_affected_even_if_others_are_fixed():
    (s, _) = vex.document(report(["fixed", "exposed", "pending import"]))["statements"]
    assert s["status"] == "affected" and "(pids 101)" in s["action_statement"]


def test_a_partial_patch_is_affected_with_a_restart_as_the_action():
    doc = vex.document(report(["fixed"]), partial={"ab" * 32: ["jinja2._speedups"]})
    (s, _) = doc["statements"]
    assert s["status"] == "affected"
    assert "it is partial: jinja2._speedups changed in ways that need a restart" \
        in s["action_statement"]


def test_processes_without_the_agent_are_counted_in_the_notes():
    (s, _) = vex.document(report(["fixed"], unknown=2))["statements"]
    assert s["status"] == "fixed"
    assert s["status_notes"].endswith(
        "2 Python process(es) without the Suture agent were not inspected (pids 900, 901).")


def test_patches_without_a_release_or_a_cve_make_no_statement():
    tree = dict(TARGET, kind="tree", from_version=None)
    assert vex.document(report(["exposed"], target=tree))["statements"] == []
    assert vex.document(report(["exposed"], cves=[]))["statements"] == []



def test_a_draining_process_is_affected_never_fixed():
    # issue 16: old code of the patch still runs there (a suspended generator): the one
    # rule for draining is "not protected" (docs/live-processes.md, "Status states")
    (s, _) = vex.document(report(["fixed", "draining", "pending import"]))["statements"]
    assert s["status"] == "affected" and "(pids 101)" in s["action_statement"]
    assert "still run the vulnerable code" in s["action_statement"]
