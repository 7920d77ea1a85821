"""suture.tooling.fleet.vex on reports of the shape `suture status --json` prints: the cases the
live test (tests/tooling/cli/test_cli_live.py) does not reach. document() is a pure function
of the report, so each case is a report built here; every document made is checked against
the official OpenVEX schema (and its CycloneDX form against CycloneDX's)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from suture.tooling.fleet import vex
from vexschema import cyclonedx_errors, openvex_errors

PID = "ab" * 32          # a patch id: the sha256 of a payload
OTHER = "cd" * 32
T0 = "2026-11-26T06:00:00Z"

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


def document(rep: Dict[str, Any], **kw: Any) -> Dict[str, Any]:
    """vex.document(), checked against both schemas."""
    doc = vex.document(rep, **kw)
    if doc["statements"]:    # the schema wants one at least (the CLI warns when there is none)
        assert openvex_errors(doc) == []
    assert cyclonedx_errors(vex.cyclonedx(doc)[0]) == []
    return doc


def test_one_statement_per_cve_with_the_vulnerable_release_as_purl():
    doc = document(report(["fixed"]), host="h1", now="2026-11-26T06:00:00Z")
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
    (s, _) = document(report(["fixed", "exposed", "pending import"]))["statements"]
    assert s["status"] == "affected" and "(pids 101)" in s["action_statement"]


def test_a_partial_patch_is_affected_with_a_restart_as_the_action():
    doc = document(report(["fixed"]), partial={"ab" * 32: ["jinja2._speedups"]})
    (s, _) = doc["statements"]
    assert s["status"] == "affected"
    assert "it is partial: jinja2._speedups changed in ways that need a restart" \
        in s["action_statement"]


def test_processes_without_the_agent_are_counted_in_the_notes():
    (s, _) = document(report(["fixed"], unknown=2))["statements"]
    assert s["status"] == "not_affected"
    assert s["status_notes"].endswith(
        "2 Python process(es) without the Suture agent were not inspected (pids 900, 901).")


def test_patches_without_a_release_or_a_cve_make_no_statement():
    tree = dict(TARGET, kind="tree", from_version=None)
    assert document(report(["exposed"], target=tree))["statements"] == []
    assert document(report(["exposed"], cves=[]))["statements"] == []



def test_a_draining_process_is_affected_never_fixed():
    # issue 16: old code of the patch still runs there (a suspended generator): the one
    # rule for draining is "not protected" (docs/live-processes.md, "Status states")
    (s, _) = document(report(["fixed", "draining", "pending import"]))["statements"]
    assert s["status"] == "affected" and "(pids 101)" in s["action_statement"]
    assert "still run the vulnerable code" in s["action_statement"]


# -- what scanners match: the purl ---------------------------------------------------------

@pytest.mark.parametrize("name, version, want", [
    ("Jinja2", "3.1.5", "pkg:pypi/jinja2@3.1.5"),
    ("Typing_Extensions", "4.12.2", "pkg:pypi/typing-extensions@4.12.2"),
    # a dot stays a dot, as in Trivy's and Syft's purls (not PEP 503's "zope-interface")
    ("zope.interface", "7.2", "pkg:pypi/zope.interface@7.2"),
    ("foo", "1.0+local.1", "pkg:pypi/foo@1.0%2Blocal.1"),
    ("foo", "1!2.0", "pkg:pypi/foo@1%212.0"),
])
def test_the_product_is_the_purl_scanners_give_the_installed_release(name, version, want):
    from packageurl import PackageURL

    assert vex.purl(name, version) == want
    # the purl-spec reference implementation normalises a pypi name the same way, and
    # reads no qualifiers back (Trivy matches a product with qualifiers only when the
    # package has them all; its Python packages have none)
    assert PackageURL(type="pypi", name=name, version=version).to_string() == want
    parsed = PackageURL.from_string(want)
    assert (parsed.version, parsed.qualifiers, parsed.namespace) == (version, {}, None)


# -- not_affected only while every process has the patch and new ones get it ----------------

def test_fixed_in_memory_everywhere_and_installed_is_not_affected_by_inline_mitigation():
    (s, _) = document(report(["fixed", "pending import"]))["statements"]
    assert (s["status"], s["justification"]) == ("not_affected",
                                                 "inline_mitigations_already_exist")
    assert s["impact_statement"].startswith(
        "Fixed in memory in every running process that loads Jinja2 3.1.5 (2: pids 100, "
        f"101); Suture patch {PID} (the sha256 of the patch payload) is installed on this "
        "host, so processes started with the Suture agent apply it at start.")
    assert "action_statement" not in s


def test_a_patch_applied_by_hand_but_not_installed_is_affected():
    # new processes would not get it: the claim would not hold for them
    (s, _) = document(report(["fixed"], installed=False))["statements"]
    assert s["status"] == "affected" and "justification" not in s
    assert s["action_statement"].startswith(
        f"Suture patch {PID[:12]} was applied by hand (in pids 100) but is not installed")


def test_a_release_no_process_loads_is_not_affected_while_the_patch_is_installed():
    (s, _) = document(report(["not affected"]))["statements"]
    assert (s["status"], s["justification"]) == ("not_affected",
                                                 "inline_mitigations_already_exist")
    assert s["impact_statement"].startswith("No running process loads Jinja2 3.1.5; Suture "
                                            f"patch {PID} (the sha256")


def test_an_exposed_process_without_the_agent_makes_it_affected():
    rep = report(["fixed"])
    rep["patches"][0]["processes"].append({"pid": 555, "state": "exposed", "agent": False,
                                           "reason": "", "fix": None})
    (s, _) = document(rep)["statements"]
    assert s["status"] == "affected" and "(pids 555)" in s["action_statement"]


def test_fixed_is_never_said():
    # to a scanner "fixed" means the release itself is fixed: false for the files on disk
    for states in (["fixed"], ["pending import"], [], ["exposed"], ["draining"]):
        assert {s["status"] for s in document(report(states))["statements"]} <= {
            "affected", "not_affected"}


# -- revocation: a changed status gets a later timestamp ------------------------------------

def test_statements_keep_their_timestamp_while_their_status_holds(tmp_path: Path):
    state = tmp_path / "vex.json"
    first = document(report(["fixed"]), now=T0)
    assert [s["timestamp"] for s in first["statements"]] == [T0, T0]
    vex.save_state(first, state)
    again = document(report(["fixed", "fixed"]), now="2026-11-26T07:00:00Z",
                     previous=vex.load_state(state))
    assert [s["timestamp"] for s in again["statements"]] == [T0, T0]
    assert again["timestamp"] == "2026-11-26T07:00:00Z"


def test_a_revoked_claim_is_affected_with_a_later_timestamp(tmp_path: Path):
    state = tmp_path / "vex.json"
    claim = document(report(["fixed"]), now=T0)
    vex.save_state(claim, state)
    # reverted (or a new unpatched process) within the same second: still strictly later
    revoked = document(report(["exposed"]), now=T0, previous=vex.load_state(state))
    for old, new in zip(claim["statements"], revoked["statements"]):
        assert (old["status"], new["status"]) == ("not_affected", "affected")
        assert new["timestamp"] == "2026-11-26T06:00:01Z" > old["timestamp"]
    assert revoked["timestamp"] == "2026-11-26T06:00:01Z"
    vex.save_state(revoked, state)
    # the clock stepped back: the next change is still after the last one
    again = document(report(["fixed"]), now="2026-11-26T05:00:00Z",
                     previous=vex.load_state(state))
    assert {s["timestamp"] for s in again["statements"]} == {"2026-11-26T06:00:02Z"}
    # later, a change simply takes the time it is written
    vex.save_state(again, state)
    later = document(report(["draining"]), now="2026-11-27T00:00:00Z",
                     previous=vex.load_state(state))
    assert {s["timestamp"] for s in later["statements"]} == {"2026-11-27T00:00:00Z"}


def test_an_unreadable_state_only_costs_the_memory(tmp_path: Path):
    bad = tmp_path / "vex.json"
    bad.write_text("{not json")
    assert vex.load_state(bad) == {} and vex.load_state(tmp_path / "missing.json") == {}
    doc = document(report(["exposed"]), now=T0, previous=vex.load_state(bad))
    assert {s["timestamp"] for s in doc["statements"]} == {T0}


# -- advisories (the status report's "advisories", when it has them) ------------------------

def advisory(*procs: Dict[str, Any], vid: str = "CVE-2025-27516",
             aliases: Optional[List[str]] = None) -> Dict[str, Any]:
    return {"id": vid, "aliases": ["GHSA-cpwx-vrp4-4pq7", "PYSEC-2025-9"]
            if aliases is None else aliases, "package": "jinja2",
            "summary": "sandbox breakout through attr filter", "fixed_in": ["3.1.6"],
            "link": "https://osv.dev/vulnerability/GHSA-cpwx-vrp4-4pq7", "processes": list(procs)}


def proc(pid: int, version: str, state: str, patch: Optional[str] = None) -> Dict[str, Any]:
    return {"pid": pid, "version": version, "state": state, "patch": patch}


def by_product(doc: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    out: Dict[str, Dict[str, Any]] = {}
    for s in doc["statements"]:
        assert s["products"][0]["@id"] not in out, "one statement per (vulnerability, release)"
        out[s["products"][0]["@id"]] = s
    return out


def test_advisories_make_one_statement_per_running_release_with_aliases():
    rep = report(["fixed"], cves=["CVE-2025-27516"])
    rep["advisories"] = [advisory(proc(100, "3.1.5", "fixed in memory", PID),
                                  proc(101, "3.1.4", "exposed, no patch"),
                                  proc(102, "3.1.3", "exposed, patch available", OTHER),
                                  proc(103, "3.1.6", "not affected"))]
    got = by_product(document(rep))
    # the fixed release is not stated: the scanner knows it as well, Suture adds nothing
    assert sorted(got) == ["pkg:pypi/jinja2@3.1.3", "pkg:pypi/jinja2@3.1.4",
                           "pkg:pypi/jinja2@3.1.5"]
    for s in got.values():
        assert s["vulnerability"] == {"name": "CVE-2025-27516",
                                      "aliases": ["GHSA-cpwx-vrp4-4pq7", "PYSEC-2025-9"]}
    fixed = got["pkg:pypi/jinja2@3.1.5"]    # the patch's own statement merged into it
    assert (fixed["status"], fixed["justification"]) == ("not_affected",
                                                         "inline_mitigations_already_exist")
    assert PID in fixed["impact_statement"]
    assert got["pkg:pypi/jinja2@3.1.4"]["status"] == "affected"
    assert got["pkg:pypi/jinja2@3.1.4"]["action_statement"].startswith(
        # spelled as the patch's target names it (the advisory says "jinja2")
        "1 running process(es) (pids 101) run Jinja2 3.1.4 and no Suture patch for it is "
        "known: upgrade to Jinja2 3.1.6 and restart them.")
    assert got["pkg:pypi/jinja2@3.1.3"]["action_statement"].startswith(
        f"1 running process(es) (pids 102) run Jinja2 3.1.3 without Suture patch "
        f"{OTHER[:12]}: apply it")


def test_an_advisory_naming_a_patch_cve_by_an_alias_still_makes_one_statement():
    rep = report(["exposed"], cves=["CVE-2025-27516"])
    rep["advisories"] = [advisory(proc(100, "3.1.5", "fixed in memory", PID),
                                  vid="GHSA-cpwx-vrp4-4pq7", aliases=["CVE-2025-27516"])]
    (s,) = document(rep)["statements"]
    assert s["vulnerability"] == {"name": "GHSA-cpwx-vrp4-4pq7", "aliases": ["CVE-2025-27516"]}
    # the patch's view (pid 100 exposed there) and the advisory's disagree: affected wins,
    # so neither can hide the other's exposure
    assert s["status"] == "affected" and "justification" not in s
    assert "(pids 100)" in s["action_statement"]


@pytest.mark.parametrize("patch_state, installed, partial, says", [
    ("draining", True, None, "still runs there"),
    ("fixed", True, ["jinja2._speedups"], "is partial: jinja2._speedups changed"),
    ("fixed", False, None, "was applied by hand but is not installed"),
])
def test_fixed_in_memory_for_an_advisory_is_not_enough_when_the_patch_says_otherwise(
        patch_state, installed, partial, says):
    rep = report([patch_state], installed=installed, cves=["CVE-2025-27516"])
    rep["advisories"] = [advisory(proc(100, "3.1.5", "fixed in memory", PID))]
    (s,) = document(rep, partial={PID: partial} if partial else None)["statements"]
    assert s["status"] == "affected" and says in s["action_statement"]


def test_an_advisory_alone_fixed_by_an_installed_patch_is_not_affected():
    rep = report([], cves=[])       # the patch names no CVE: only the advisory speaks
    rep["advisories"] = [advisory(proc(100, "3.1.5", "fixed in memory", PID),
                                  proc(104, "3.1.5", "fixed in memory", PID))]
    (s,) = document(rep)["statements"]
    assert (s["status"], s["products"]) == ("not_affected",
                                            [{"@id": "pkg:pypi/jinja2@3.1.5"}])
    assert "(2: pids 100, 104)" in s["impact_statement"]


def test_a_release_partly_fixed_in_memory_is_affected():
    rep = report([], cves=[])
    rep["advisories"] = [advisory(proc(100, "3.1.5", "fixed in memory", PID),
                                  proc(101, "3.1.5", "exposed, patch available", PID))]
    (s,) = document(rep)["statements"]
    assert s["status"] == "affected" and "(pids 101)" in s["action_statement"]


def test_no_advisories_key_and_an_empty_list_change_nothing():
    rep = report(["fixed"])
    with_empty = dict(rep, advisories=[])
    assert document(rep, now=T0, host="h") == document(with_empty, now=T0, host="h")


# -- the schemas do reject what is wrong (else the checks above could not fail) -------------

def test_the_openvex_schema_check_rejects_a_broken_document():
    doc = document(report(["exposed"]))
    broken = json.loads(json.dumps(doc))
    del broken["statements"][0]["action_statement"]         # affected needs an action
    broken["statements"][1]["status"] = "patched"
    broken["timestamp"] = "26/11/2026"
    errors = openvex_errors(broken)
    assert len(errors) == 3, errors


# -- CycloneDX ------------------------------------------------------------------------------

def test_cyclonedx_has_the_same_statements_as_analysis_states():
    rep = report(["fixed"], cves=["CVE-2025-27516"])
    rep["advisories"] = [advisory(proc(100, "3.1.5", "fixed in memory", PID),
                                  proc(101, "3.1.4", "exposed, no patch"))]
    text, left_out = vex.cyclonedx(document(rep, now=T0))
    assert left_out == [] and cyclonedx_errors(text) == []
    bom = json.loads(text)
    assert bom["specVersion"] == "1.5"
    assert sorted(c["bom-ref"] for c in bom["components"]) == [
        "pkg:pypi/jinja2@3.1.4", "pkg:pypi/jinja2@3.1.5"]
    got = {v["affects"][0]["ref"]: v for v in bom["vulnerabilities"]}
    fixed, exposed = got["pkg:pypi/jinja2@3.1.5"], got["pkg:pypi/jinja2@3.1.4"]
    assert fixed["id"] == "CVE-2025-27516"
    assert [r["id"] for r in fixed["references"]] == ["GHSA-cpwx-vrp4-4pq7", "PYSEC-2025-9"]
    assert (fixed["analysis"]["state"], fixed["analysis"]["justification"]) == (
        "not_affected", "protected_at_runtime")
    assert PID in fixed["analysis"]["detail"]
    assert fixed["analysis"]["lastUpdated"].startswith("2026-11-26T06:00:00")
    assert exposed["analysis"]["state"] == "exploitable"
    assert exposed["recommendation"].startswith("1 running process(es) (pids 101)")


def test_cyclonedx_for_an_sbom_refers_to_its_components_by_bom_link():
    sbom = {"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 3,
            "serialNumber": "urn:uuid:3E671687-395B-41F5-A30F-A58921A69B79",
            "components": [
                {"bom-ref": "pkg:pypi/jinja2@3.1.5?file_path=venv%2Flib", "type": "library",
                 "name": "Jinja2", "version": "3.1.5", "purl": "pkg:pypi/Jinja2@3.1.5"},
                {"bom-ref": "b2", "type": "library", "name": "x", "components": [
                    {"bom-ref": "nested", "type": "library", "name": "jinja2",
                     "version": "3.1.5", "purl": "pkg:pypi/jinja2@3.1.5"}]}]}
    doc = document(report(["fixed"]))
    extra = dict(doc["statements"][0], products=[{"@id": "pkg:pypi/absent@1.0"}])
    doc["statements"].append(extra)
    text, left_out = vex.cyclonedx(doc, sbom=sbom)
    assert left_out == ["pkg:pypi/absent@1.0"] and cyclonedx_errors(text) == []
    bom = json.loads(text)
    assert "components" not in bom or bom["components"] == []
    head = "urn:cdx:3e671687-395b-41f5-a30f-a58921a69b79/3#"
    for v in bom["vulnerabilities"]:
        assert sorted(a["ref"] for a in v["affects"]) == [
            head + "nested", head + "pkg%3Apypi%2Fjinja2%403.1.5%3Ffile_path%3Dvenv%252Flib"]
    with pytest.raises(ValueError, match="no serialNumber"):
        vex.cyclonedx(doc, sbom=dict(sbom, serialNumber=None))


def test_a_claim_suture_can_no_longer_make_is_withdrawn_once(tmp_path: Path):
    # the patch was removed from the store: no statement would leave the old
    # not_affected as the latest word for a reader that merges documents
    state = tmp_path / "vex.json"
    vex.save_state(document(report(["fixed"]), now=T0), state)
    gone = document(report([], cves=[]), now=T0, previous=vex.load_state(state))
    assert [(s["vulnerability"]["name"], s["status"], s["timestamp"])
            for s in gone["statements"]] == [
        ("CVE-2024-0001", "under_investigation", "2026-11-26T06:00:01Z"),
        ("CVE-2025-27516", "under_investigation", "2026-11-26T06:00:01Z")]
    assert all(s["products"] == [{"@id": "pkg:pypi/jinja2@3.1.5"}] and "withdrawn" in
               s["status_notes"] for s in gone["statements"])
    bom = json.loads(vex.cyclonedx(gone)[0])
    assert {v["analysis"]["state"] for v in bom["vulnerabilities"]} == {"in_triage"}
    vex.save_state(gone, state)
    assert document(report([], cves=[]), now=T0,
                    previous=vex.load_state(state))["statements"] == []
    # an affected statement that disappears needs no withdrawal: it claimed nothing
    vex.save_state(document(report(["exposed"]), now=T0), state)
    assert document(report([], cves=[]), previous=vex.load_state(state))["statements"] == []


def test_an_advisory_about_a_dotted_name_is_spelled_as_the_installed_distribution():
    # advisories name packages canonically ("zope-interface"); scanners keep the dots
    rep = report(["fixed"], cves=["CVE-2099-1"],
                 target={"kind": "distribution", "name": "zope.interface",
                         "from_version": "7.1", "to_version": "7.2"})
    rep["advisories"] = [dict(advisory(proc(100, "7.1", "fixed in memory", PID)),
                              package="zope-interface", id="CVE-2099-1", aliases=[])]
    (s,) = document(rep)["statements"]
    assert s["products"] == [{"@id": "pkg:pypi/zope.interface@7.1"}]
    assert s["status"] == "not_affected"
