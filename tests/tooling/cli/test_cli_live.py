"""ps / apply / status / revert end to end: the real agent in a real target process.

The target imports a v1 package, starts its agent with ``suture.agent.start()`` and keeps
writing what an alias of the patched function returns to a file; the CLI runs as a
subprocess, and the tests watch the file change.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import pytest

import livecli
from livecli import PKG, Target, cli, patch_id
from vexschema import cyclonedx_errors, openvex_errors

pytestmark = pytest.mark.slow

# The live targets' fixtures (tests/livecli.py), used by name.
versions, rundir, start_target = livecli.versions, livecli.rundir, livecli.start_target
dists, state = livecli.dists, livecli.state


def rows(out: subprocess.CompletedProcess) -> List[Dict[str, object]]:
    assert out.stdout, out.stderr
    return json.loads(out.stdout)["processes"]  # type: ignore[no-any-return]


def test_apply_status_ps_revert_change_the_running_target(
        versions: Dict[str, Path], rundir: str, start_target: Callable[..., Target]) -> None:
    target = start_target(versions["v1"])
    assert target.observed() == "old"
    patch, patch_id = str(versions["patch"]), str(versions["id"])

    out = cli(rundir, "apply", patch, "--pid", str(target.pid), "--json")
    assert out.returncode == 0, out.stderr
    [row] = rows(out)
    assert (row["pid"], row["outcome"], row["code"]) == (target.pid, "applied", None)
    target.wait_for("new")

    out = cli(rundir, "apply", patch, "--pid", str(target.pid), "--json")
    assert out.returncode == 0 and rows(out)[0]["outcome"] == "already applied"

    out = cli(rundir, "status", "--pid", str(target.pid), "--json")
    assert out.returncode == 0, out.stderr
    [row] = rows(out)
    assert row["state"] == "ok"
    [applied] = row["applied"]  # type: ignore[misc]
    assert (applied["id"], applied["cves"], applied["modules"]) == (
        patch_id, ["CVE-2099-8"], {PKG: "applied"})
    [entry] = json.loads(out.stdout)["patches"]   # applied by hand, not installed
    assert (entry["id"], entry["installed"], entry["processes"]) == (
        patch_id, False, [{"pid": target.pid, "state": "fixed", "reason": "", "fix": None}])

    out = cli(rundir, "ps", "--json")
    assert out.returncode == 0, out.stderr
    [mine] = [p for p in json.loads(out.stdout)["processes"] if p["pid"] == target.pid]
    assert mine["agent"] is True and mine["patches"] == [patch_id]
    assert mine["python"] == "{}.{}.{}".format(*sys.version_info[:3])

    out = cli(rundir, "revert", patch_id[:12], "--pid", str(target.pid), "--json")
    assert out.returncode == 0, out.stderr
    assert rows(out)[0]["outcome"] == "reverted"
    target.wait_for("old")

    out = cli(rundir, "revert", patch_id[:12], "--pid", str(target.pid), "--json")
    assert out.returncode == 2
    assert rows(out)[0]["code"] == "SUT-E300"


def test_apply_all_refuses_a_process_running_other_code_and_patches_the_rest(
        versions: Dict[str, Path], rundir: str, start_target: Callable[..., Target]) -> None:
    good = start_target(versions["v1"])
    other = start_target(versions["other"])
    out = cli(rundir, "apply", str(versions["patch"]), "--all", "--json")
    assert out.returncode == 2, out.stderr
    by_pid = {r["pid"]: r for r in rows(out)}
    assert by_pid[good.pid]["outcome"] == "applied"
    assert (by_pid[other.pid]["outcome"], by_pid[other.pid]["code"]) == ("refused", "SUT-E201")
    good.wait_for("new")
    assert other.observed() == "someone else's"


def test_module_not_yet_imported_is_pending_and_counts_as_protected(
        versions: Dict[str, Path], rundir: str, start_target: Callable[..., Target]) -> None:
    target = start_target(versions["v1"], imported=False)
    out = cli(rundir, "apply", str(versions["patch"]), "--pid", str(target.pid), "--json")
    assert out.returncode == 0, out.stderr
    assert rows(out)[0]["outcome"] == "pending import"
    out = cli(rundir, "status", "--pid", str(target.pid))
    assert out.returncode == 0, out.stderr   # the import hook patches it when imported
    assert re.search(rf"^ +{target.pid}  pending import +{PKG} not imported yet; patched when "
                     "imported$", out.stdout, re.M), out.stdout


def test_apply_pid_and_all_follow_one_rule_for_who_is_affected(
        dists: Dict[str, Path], rundir: str, tmp_path: Path,
        start_target: Callable[..., Target]) -> None:
    # Before issue 18, --pid sent the patch to a process without the distribution and
    # answered "pending import" (its agent waits for an import that will never be of the
    # baseline), while --all said it does not use it. Now both: not installed is "not
    # affected" (skipped, exit 0, nothing sent); another release is refused by its agent
    # (SUT-E201, both releases named, exit 2); "pending import" only where the baseline
    # release is installed and not imported yet.
    empty = tmp_path / "no-dist"
    empty.mkdir()
    without = start_target(empty, imported=False)            # no sutlivedemo at all
    other = start_target(dists["2.0"], imported=False)       # another release
    lazy = start_target(dists["1.0"], imported=False)        # the baseline, not imported
    fix = str(dists["fix"])
    expected = {
        without.pid: ("skipped", f"not affected: {PKG} is not installed here"),
        other.pid: ("refused", f"this process runs {PKG} 2.0"),
        lazy.pid: ("pending import", f"{PKG} will be checked against the baseline and "
                                     "verified when imported"),
    }
    def outcome(row: Dict[str, Any]) -> Tuple[str, str]:
        if row["outcome"] == "refused":
            assert row["code"] == "SUT-E201", row
            message = row["error"]["message"]
            assert f"The patch's baseline is {PKG} 1.0" in message, row
            return "refused", expected[other.pid][1] if expected[other.pid][1] in message \
                else message
        return row["outcome"], row["reason"]

    for pid, code in ((without.pid, 0), (other.pid, 2)):
        out = cli(rundir, "apply", fix, "--pid", str(pid), "--json")
        assert out.returncode == code, out.stdout + out.stderr
        ((row),) = rows(out)
        assert outcome(row) == expected[pid], row
        # nothing was applied there: the agent has no patch
        assert livecli.client.call(pid, "status", 10, runtime_dir=rundir)["patches"] == []
    out = cli(rundir, "apply", fix, "--all", "--json")
    assert out.returncode == 2, out.stdout + out.stderr   # the other release's refusal
    got = {r["pid"]: outcome(r) for r in rows(out) if r["pid"] in expected}
    assert got[lazy.pid][1].endswith(expected[lazy.pid][1]), got   # after the pause
    assert {**got, lazy.pid: expected[lazy.pid]} == expected, got
    out = cli(rundir, "apply", fix, "--pid", str(without.pid))
    assert re.search(rf"^ +{without.pid}  skipped +not affected: {PKG} is not installed "
                     "here$", out.stdout, re.M), out.stdout


def report(rundir: str, *args: str) -> Tuple[int, Dict[str, Any]]:
    out = cli(rundir, "status", "--json", *args)
    assert out.stdout, out.stderr
    doc = json.loads(out.stdout)
    assert doc["exit_code"] == out.returncode
    return out.returncode, doc


def states(doc: Dict[str, Any], patch_id: str) -> Dict[int, Tuple[str, str]]:
    [entry] = [p for p in doc["patches"] if p["id"] == patch_id]
    return {r["pid"]: (r["state"], r["reason"]) for r in entry["processes"]}



def test_status_names_processes_exposed_to_an_installed_patch_until_it_is_applied(
        dists: Dict[str, Path], rundir: str, state: Path,
        start_target: Callable[..., Target]) -> None:
    exposed = start_target(dists["1.0"])                  # imported, no patch
    lazy = start_target(dists["1.0"], imported=False)     # installed, not imported yet
    other = start_target(dists["2.0"])                    # another release
    fix, fid = dists["fix"], patch_id(dists["fix"])
    # Installed after the agents started: they do not apply it on their own.
    out = cli(rundir, "install", str(fix))
    assert out.returncode == 0, out.stderr

    out = cli(rundir, "status")
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert f"patch {fid[:12]}  {PKG} 1.0\u21921.1  CVE-2099-101" in lines
    assert re.search(rf"^ +{exposed.pid}  exposed +runs {PKG} 1\.0 \(imported\) without this "
                     r"patch$", out.stdout, re.M), out.stdout
    assert f"fix: suture apply FILE --pid {exposed.pid}" in out.stdout
    assert re.search(rf"^ +{lazy.pid}  exposed +runs {PKG} 1\.0 \(not imported yet\)",
                     out.stdout, re.M), out.stdout
    assert re.search(rf"^ +{other.pid}  not affected +runs {PKG} 2\.0; the patch is for 1\.0$",
                     out.stdout, re.M), out.stdout
    assert re.search(rf"^  PID {exposed.pid} \(.*\): CVE-2099-101 \(patch {fid[:12]}\)$",
                     out.stdout, re.M), out.stdout

    code, doc = report(rundir)
    assert code == 2
    assert sorted((x["pid"], x["patch"], tuple(x["cves"])) for x in doc["exposed"]) == sorted(
        [(exposed.pid, fid, ("CVE-2099-101",)), (lazy.pid, fid, ("CVE-2099-101",))])
    [entry] = doc["patches"]
    assert (entry["id"], entry["installed"], entry["cves"]) == (fid, True, ["CVE-2099-101"])
    assert entry["target"]["from_version"] == "1.0"
    mine = states(doc, fid)
    assert mine[exposed.pid][0] == "exposed" and mine[lazy.pid][0] == "exposed"
    assert mine[other.pid][0] == "not affected"
    procs = {p["pid"]: p for p in doc["processes"]}
    assert procs[exposed.pid]["state"] == "exposed"
    assert procs[exposed.pid]["exposed"][0]["fix"] == f"suture apply FILE --pid {exposed.pid}"
    assert procs[other.pid]["state"] == "ok" and procs[other.pid]["dists"] == {PKG: "2.0"}
    # Every other Python process on this machine has no agent in our runtime dir: listed,
    # not inspected, and without effect on the exit code.
    assert all(p["state"] == "unknown" for pid, p in procs.items()
               if pid not in (exposed.pid, lazy.pid, other.pid))

    for target in (exposed, lazy):
        out = cli(rundir, "apply", str(fix), "--pid", str(target.pid))
        assert out.returncode == 0, out.stdout + out.stderr
    exposed.wait_for("new")

    code, doc = report(rundir)
    assert code == 0 and doc["exposed"] == []
    mine = states(doc, fid)
    assert mine[exposed.pid] == ("fixed", "")
    assert mine[lazy.pid] == ("pending import",
                              f"{PKG} not imported yet; patched when imported")
    assert mine[other.pid][0] == "not affected"
    out = cli(rundir, "status", "--pid", str(exposed.pid))
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(rf"^ +{exposed.pid}  fixed$", out.stdout, re.M), out.stdout
    assert out.stdout.splitlines()[-1].startswith("nothing exposed (1 process asked")


def test_status_only_another_release_is_not_affected_and_exits_0(
        dists: Dict[str, Path], rundir: str, state: Path,
        start_target: Callable[..., Target]) -> None:
    other = start_target(dists["2.0"])
    assert cli(rundir, "install", str(dists["fix"])).returncode == 0
    code, doc = report(rundir, "--pid", str(other.pid))
    assert code == 0
    assert states(doc, patch_id(dists["fix"])) == {
        other.pid: ("not affected", f"runs {PKG} 2.0; the patch is for 1.0")}
    assert [(p["pid"], p["state"]) for p in doc["processes"]] == [(other.pid, "ok")]


def test_status_exits_1_when_a_process_cannot_be_asked_and_2_when_another_is_exposed(
        dists: Dict[str, Path], rundir: str, state: Path,
        start_target: Callable[..., Target]) -> None:
    fine = start_target(dists["2.0"])
    exposed = start_target(dists["1.0"])
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        assert cli(rundir, "install", str(dists["fix"])).returncode == 0
        code, doc = report(rundir, "--pid", str(fine.pid), "--pid", str(sleeper.pid))
        assert code == 1
        procs = {p["pid"]: p for p in doc["processes"]}
        assert procs[fine.pid]["state"] == "ok"
        assert procs[sleeper.pid]["state"] == "error"
        assert procs[sleeper.pid]["error"]["code"] == "SUT-E610"
        out = cli(rundir, "status", "--pid", str(sleeper.pid))
        assert out.returncode == 1
        assert re.search(rf"^ +{sleeper.pid}  SUT-E610 PID {sleeper.pid} has no Suture agent",
                         out.stdout, re.M), out.stdout

        code, doc = report(rundir, "--pid", str(exposed.pid), "--pid", str(sleeper.pid))
        assert code == 2    # exposure wins over "could not be asked"
        assert [x["pid"] for x in doc["exposed"]] == [exposed.pid]
    finally:
        sleeper.kill()
        sleeper.wait()


def test_status_credits_a_cumulative_patch_that_replaced_an_installed_one(
        dists: Dict[str, Path], rundir: str, state: Path,
        start_target: Callable[..., Target]) -> None:
    fix, cumulative = dists["fix"], dists["cumulative"]
    for path in (fix, cumulative):
        assert cli(rundir, "install", str(path)).returncode == 0
    # Started after both were installed: its agent applies 1.0->1.1, then 1.0->1.2,
    # which replaces it (same baseline) in one commit.
    target = start_target(dists["1.0"])
    target.wait_for("newer")
    code, doc = report(rundir, "--pid", str(target.pid))
    assert code == 0, doc
    [proc] = doc["processes"]
    assert [a["id"] for a in proc["applied"]] == [patch_id(cumulative)]
    state_of_fix, why = states(doc, patch_id(fix))[target.pid]
    assert state_of_fix == "fixed"
    assert why.startswith(f"by cumulative patch {patch_id(cumulative)[:12]} ")
    assert states(doc, patch_id(cumulative))[target.pid] == ("fixed", "")

    # The older patch applied by hand replaces the cumulative one: 1.0->1.2's CVEs are
    # open again, and the older one does not count as covering it.
    out = cli(rundir, "apply", str(fix), "--pid", str(target.pid))
    assert out.returncode == 0, out.stdout + out.stderr
    target.wait_for("new")
    code, doc = report(rundir, "--pid", str(target.pid))
    assert code == 2
    assert states(doc, patch_id(fix))[target.pid] == ("fixed", "")
    assert states(doc, patch_id(cumulative))[target.pid][0] == "exposed"
    assert doc["exposed"] == [{"pid": target.pid, "patch": patch_id(cumulative),
                               "cves": ["CVE-2099-101", "CVE-2099-102"]}]


def test_status_cannot_tell_who_needs_a_patch_built_from_directories(
        versions: Dict[str, Path], rundir: str, state: Path,
        start_target: Callable[..., Target]) -> None:
    target = start_target(versions["v1"])
    assert cli(rundir, "install", str(versions["patch"])).returncode == 0
    code, doc = report(rundir, "--pid", str(target.pid))
    assert code == 0
    [(got, why)] = states(doc, str(versions["id"])).values()
    assert got == "unknown" and "not built from a released version" in why
    assert cli(rundir, "apply", str(versions["patch"]), "--pid", str(target.pid)).returncode == 0
    code, doc = report(rundir, "--pid", str(target.pid))
    assert code == 0 and states(doc, str(versions["id"])) == {target.pid: ("fixed", "")}


# -- suture vex: the same view, as OpenVEX for scanners -----------------------------------

def vex_document(rundir: str, *args: str) -> Dict[str, Any]:
    out = cli(rundir, "vex", *args)
    assert out.returncode == 0, out.stderr
    doc: Dict[str, Any] = json.loads(out.stdout)
    assert doc["@context"] == "https://openvex.dev/ns/v0.2.0"
    assert doc["@id"].startswith("urn:suture:vex:") and doc["version"] == 1
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", doc["timestamp"])
    assert openvex_errors(doc) == []
    return doc


def vex_statements(rundir: str) -> Dict[str, Dict[str, Any]]:
    by_cve: Dict[str, Dict[str, Any]] = {}
    for s in vex_document(rundir)["statements"]:
        assert s["products"] == [{"@id": f"pkg:pypi/{PKG}@1.0"}]
        assert s["status"] in ("affected", "not_affected")
        by_cve[s["vulnerability"]["name"]] = s
    return by_cve


def test_vex_says_affected_then_not_affected_then_revokes_it_with_a_later_timestamp(
        dists: Dict[str, Path], rundir: str, state: Path, tmp_path: Path,
        start_target: Callable[..., Target]) -> None:
    exposed = start_target(dists["1.0"])
    other = start_target(dists["2.0"])
    out = cli(rundir, "install", str(dists["fix"]))
    assert out.returncode == 0, out.stderr
    fid = patch_id(dists["fix"])

    (s,) = vex_statements(rundir).values()
    assert s["vulnerability"]["name"] == "CVE-2099-101" and s["status"] == "affected"
    assert s["action_statement"].startswith(
        f"1 running process(es) (pids {exposed.pid}) run {PKG} 1.0 without Suture patch "
        f"{fid[:12]}: apply it")
    first = s["timestamp"]

    out = cli(rundir, "apply", str(dists["fix"]), "--pid", str(exposed.pid))
    assert out.returncode == 0, out.stdout + out.stderr
    (s,) = vex_statements(rundir).values()
    assert (s["status"], s["justification"]) == ("not_affected",
                                                 "inline_mitigations_already_exist")
    assert s["impact_statement"].startswith(
        f"Fixed in memory in every running process that loads {PKG} 1.0 (1: pids "
        f"{exposed.pid}); Suture patch {fid} (the sha256 of the patch payload) is installed")
    # as a pid, not as digits inside the patch's sha256 (CI: pid 8614 in "...718614d6...")
    assert not re.search(rf"(?<![0-9a-f]){other.pid}(?![0-9a-f])", s["impact_statement"])
    claimed = s["timestamp"]
    assert claimed > first
    (again,) = vex_statements(rundir).values()       # nothing changed: the same claim
    assert again["timestamp"] == claimed

    # CycloneDX from the same statements, for an SBOM that lists the release
    sbom = tmp_path / "sbom.cdx.json"
    sbom.write_text(json.dumps({
        "bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
        "serialNumber": "urn:uuid:3e671687-395b-41f5-a30f-a58921a69b79",
        "components": [{"bom-ref": "r1", "type": "library", "name": PKG, "version": "1.0",
                        "purl": f"pkg:pypi/{PKG}@1.0"}]}))
    out = cli(rundir, "vex", "--format", "cyclonedx", "--sbom", str(sbom))
    assert out.returncode == 0, out.stderr
    assert cyclonedx_errors(out.stdout) == []
    (v,) = json.loads(out.stdout)["vulnerabilities"]
    assert (v["id"], v["analysis"]["state"], v["affects"]) == (
        "CVE-2099-101", "not_affected",
        [{"ref": "urn:cdx:3e671687-395b-41f5-a30f-a58921a69b79/1#r1"}])

    out = cli(rundir, "revert", fid[:12], "--pid", str(exposed.pid), "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    (s,) = vex_statements(rundir).values()
    assert s["status"] == "affected" and "justification" not in s
    assert s["timestamp"] > claimed            # "latest statement wins" revokes the claim

    out = cli(rundir, "apply", str(dists["fix"]), "--pid", str(exposed.pid))
    assert out.returncode == 0, out.stdout + out.stderr
    exposed.proc.kill()
    exposed.proc.wait()
    (s,) = vex_statements(rundir).values()
    assert (s["status"], s["justification"]) == ("not_affected",
                                                 "inline_mitigations_already_exist")
    assert s["impact_statement"].startswith(f"No running process loads {PKG} 1.0; Suture "
                                            f"patch {fid}")


def test_vex_without_statements_warns_and_bad_sboms_are_usage_errors(
        rundir: str, state: Path, tmp_path: Path) -> None:
    out = cli(rundir, "vex")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["statements"] == []
    assert "no statement" in out.stderr and "the OpenVEX schema wants at least one" in out.stderr
    assert json.loads((state / "vex.json").read_text())["statements"] == {}

    not_json = tmp_path / "sbom.json"
    not_json.write_text("{")
    no_serial = tmp_path / "noserial.json"
    no_serial.write_text(json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.5"}))
    for args, says in [(["--sbom", str(no_serial)], "--sbom needs --format cyclonedx"),
                       (["--format", "cyclonedx", "--sbom", str(not_json)], "as JSON"),
                       (["--format", "cyclonedx", "--sbom", str(tmp_path)], "directory"),
                       (["--format", "cyclonedx", "--sbom", str(no_serial)],
                        "no serialNumber")]:
        out = cli(rundir, "vex", *args)
        assert out.returncode == 64, (args, out.stdout, out.stderr)
        assert says in out.stderr and out.stdout == "", (args, out.stderr)


# -- suture metrics: the same view for Prometheus ------------------------------------------

def scrape(rundir: str, *args: str) -> Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    out = cli(rundir, "metrics", *args)
    assert out.returncode == 0, out.stderr
    text = out.stdout if not args else Path(args[-1]).read_text()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_follow_the_exposure_of_processes(
        dists: Dict[str, Path], rundir: str, state: Path, tmp_path: Path,
        start_target: Callable[..., Target]) -> None:
    exposed = start_target(dists["1.0"])
    start_target(dists["2.0"])
    assert cli(rundir, "install", str(dists["fix"])).returncode == 0
    fid = patch_id(dists["fix"])[:12]

    m = scrape(rundir)
    assert m[("suture_exposed_processes", (("cve", "CVE-2099-101"),))] == 1
    assert m[("suture_processes", (("state", "exposed"),))] == 1
    assert m[("suture_processes", (("state", "ok"),))] == 1
    assert m[("suture_patch_processes", (("patch", fid), ("state", "not affected")))] == 1
    assert m[("suture_operations_total", (("op", "install"), ("result", "installed")))] == 1
    assert m[("suture_apply_pause_seconds_count", ())] == 0

    assert cli(rundir, "apply", str(dists["fix"]), "--pid", str(exposed.pid)).returncode == 0
    prom = tmp_path / "suture.prom"
    m = scrape(rundir, "--textfile", str(prom))
    assert m[("suture_exposed_processes", (("cve", "CVE-2099-101"),))] == 0
    assert m[("suture_processes", (("state", "exposed"),))] == 0
    assert m[("suture_patch_processes", (("patch", fid), ("state", "fixed")))] == 1
    assert m[("suture_operations_total", (("op", "apply"), ("result", "applied")))] == 1
    assert m[("suture_apply_pause_seconds_count", ())] == 1
    assert 0 < m[("suture_apply_pause_seconds_sum", ())] < 0.1
    assert m[("suture_apply_pause_seconds_bucket", (("le", "+Inf"),))] == 1


def test_a_refusal_for_another_release_names_the_baseline_and_the_running_release(
        dists: Dict[str, Path], rundir: str, tmp_path: Path,
        start_target: Callable[..., Target]) -> None:
    # Issue 18: SUT-E201 said "does not match the baseline" and left the user to find out
    # which release the process runs. 0.9's code is neither 1.0 (the baseline) nor 1.1.
    older = start_target(livecli.write_dist(tmp_path / "0.9", "older", "0.9"))
    fix = dists["fix"]
    out = cli(rundir, "apply", str(fix), "--pid", str(older.pid), "--json")
    assert out.returncode == 2, out.stdout + out.stderr
    [row] = rows(out)
    assert (row["outcome"], row["code"]) == ("refused", "SUT-E201"), row
    assert (f"The patch's baseline is {PKG} 1.0; this process runs {PKG} 0.9 (the installed "
            f"metadata): it needs a patch built from {PKG} 0.9.") in row["error"]["message"], row
    assert (row["error"]["details"]["baseline_version"],
            row["error"]["details"]["running_version"]) == ("1.0", "0.9")
    out = cli(rundir, "apply", str(fix), "--pid", str(older.pid))
    assert f"{PKG} 1.0" in out.stdout + out.stderr and f"{PKG} 0.9" in out.stdout + out.stderr
    assert older.observed() == "older"


def test_the_running_release_is_the_one_imported_when_the_package_says_it(
        dists: Dict[str, Path], rundir: str, tmp_path: Path,
        start_target: Callable[..., Target]) -> None:
    # The metadata on disk says 1.0 (installed over the process, say), but the package
    # imported says 0.9 in memory: the message names what runs.
    root = livecli.write_dist(tmp_path / "0.9", "older", "1.0")
    init = root / PKG / "__init__.py"
    init.write_text(init.read_text() + "__version__ = '0.9'\n")
    older = start_target(root)
    out = cli(rundir, "apply", str(dists["fix"]), "--pid", str(older.pid), "--json")
    [row] = rows(out)
    assert row["code"] == "SUT-E201", row
    assert f"this process runs {PKG} 0.9 (its __version__)" in row["error"]["message"], row
