"""Issue 18, items 1-3: `suture status` reports exposure from what processes run, joined
with public advisories, not only from the patches it knows.

Three real processes with the agent, on real urllib3 releases (the wheels in tests/data):
one on 1.26.17 that gets the CVE-2023-45803 patch by hand, one on 1.26.17 that does not,
one on 1.26.18 (the fix). Advisory data comes from a mirror file in PyPI's format
(tests/data/advisories-urllib3.json) or, in the second variant, from the live registry.
`suture status --json`, its exit code and `suture metrics` must agree; after `revert`
the first process is exposed again.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

import livecli
import urllib3live
from livecli import SRC, cli, patch_id
from vexschema import openvex_errors
from suture.tooling.fleet import advisories
from suture.tooling.host import client

pytestmark = pytest.mark.slow

rundir, state = livecli.rundir, livecli.state

DATA, CVE = urllib3live.DATA, urllib3live.CVE
MIRROR = DATA / "advisories-urllib3.json"
ALIASES = ["CVE-2023-45803", "GHSA-g4mx-q9vg-27p4", "PYSEC-2023-212"]

@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    return urllib3live.releases(tmp_path_factory)


@pytest.fixture
def start(rundir: str, tmp_path: Path) -> Iterator[Any]:
    with urllib3live.targets(rundir, tmp_path) as run:
        yield run


def status(rundir: str, pids: List[int], source: str) -> Dict[str, Any]:
    args = [a for pid in pids for a in ("--pid", str(pid))]
    r = cli(rundir, "status", "--json", "--advisories", source, *args)
    assert r.returncode in (0, 2), r.stderr
    report = json.loads(r.stdout)
    assert report["exit_code"] == r.returncode
    return report


def states(report: Dict[str, Any], cve: str = CVE) -> Dict[int, Any]:
    """pid -> (state, patch, version) of advisory ``cve``."""
    (adv,) = [a for a in report["advisories"] if a["id"] == cve]
    return {r["pid"]: (r["state"], r["patch"], r["version"]) for r in adv["processes"]}


def metric(text: str, state: str, cve: str = CVE) -> float:
    m = re.search(r'^suture_advisory_processes\{advisory="%s",package="urllib3",state="%s"\} '
                  r"(\S+)$" % (re.escape(cve), re.escape(state)), text, re.M)
    assert m, text
    return float(m.group(1))


def exposed_metric(text: str, cve: str = CVE) -> float:
    m = re.search(r'^suture_exposed_processes\{cve="%s"\} (\S+)$' % re.escape(cve), text, re.M)
    assert m, text
    return float(m.group(1))


def vex(rundir: str, out: Path) -> Dict[Any, Dict[str, Any]]:
    """`suture vex` (every process of ``rundir``), checked against the OpenVEX schema:
    (vulnerability, purl) -> statement."""
    r = cli(rundir, "vex", "-o", str(out))
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    assert openvex_errors(doc) == []
    return {(st["vulnerability"]["name"], p["@id"]): st
            for st in doc["statements"] for p in st["products"]}


def test_three_processes_from_a_mirror_file_status_metrics_and_vex_agree(
        releases: Dict[str, Any], start: Any, rundir: str, state: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    patched, unpatched, fixed = (start(releases["old"]), start(releases["old"]),
                                 start(releases["new"]))
    pids = [patched.pid, unpatched.pid, fixed.pid]
    ident = patch_id(releases["patch"])

    # Before any patch: both 1.26.17 processes are exposed and no patch is known here.
    report = status(rundir, pids, str(MIRROR))
    (adv,) = report["advisories"]                    # PYSEC and GHSA merged, withdrawn dropped
    assert adv["id"] == CVE and adv["aliases"] == ALIASES
    assert adv["package"] == "urllib3" and adv["fixed_in"] == ["1.26.18", "2.0.7"]
    assert adv["link"] and "303" in adv["summary"]
    assert states(report) == {patched.pid: ("exposed, no patch", None, "1.26.17"),
                              unpatched.pid: ("exposed, no patch", None, "1.26.17"),
                              fixed.pid: ("not affected", None, "1.26.18")}
    assert report["exit_code"] == 2
    by_pid = {p["pid"]: p for p in report["processes"]}
    assert by_pid[fixed.pid]["state"] == "ok" and by_pid[patched.pid]["state"] == "exposed"
    (dist,) = [d for d in by_pid[patched.pid]["inventory"]["dists"] if d["name"] == "urllib3"]
    assert dist["version"] == "1.26.17" and dist["changed_count"] == 0
    assert dist["verified"] == dist["modules"] > 10           # every loaded file hashed

    # By hand to the first: fixed in memory there; the second may take the same patch.
    r = cli(rundir, "apply", str(releases["patch"]), "--pid", str(patched.pid))
    assert r.returncode == 0, r.stdout + r.stderr
    report = status(rundir, pids, str(MIRROR))
    assert states(report) == {patched.pid: ("fixed in memory", ident, "1.26.17"),
                              unpatched.pid: ("exposed, patch available", ident, "1.26.17"),
                              fixed.pid: ("not affected", None, "1.26.18")}
    assert report["exit_code"] == 2
    # the advisory's row, and the hand-applied patch's own (issue 16): the same process
    assert {x["pid"] for x in report["exposed"]} == {unpatched.pid}
    assert {x.get("advisory") for x in report["exposed"]} == {CVE, None}
    assert status(rundir, [patched.pid, fixed.pid], str(MIRROR))["exit_code"] == 0

    # `suture metrics` (every process of this runtime dir) says the same.
    monkeypatch.setenv("SUTURE_ADVISORIES", str(MIRROR))
    r = cli(rundir, "metrics")
    assert r.returncode == 0, r.stderr
    assert metric(r.stdout, "fixed in memory") == 1
    assert metric(r.stdout, "exposed, patch available") == 1
    assert metric(r.stdout, "exposed, no patch") == 0
    assert metric(r.stdout, "not affected") == 1
    assert exposed_metric(r.stdout) == 1
    # `suture vex` too: the release both 1.26.17 processes load is affected while one runs
    # it unpatched (the advisory's other ids as aliases); the fixed release is not listed.
    statements = vex(rundir, tmp_path / "vex-1.json")
    old_release = statements[(CVE, "pkg:pypi/urllib3@1.26.17")]
    assert old_release["status"] == "affected"
    assert set(old_release["vulnerability"].get("aliases", [])) == set(ALIASES) - {CVE}
    assert (CVE, "pkg:pypi/urllib3@1.26.18") not in statements

    # Reverted: the first runs the vulnerable code again, and says so.
    r = cli(rundir, "revert", ident, "--pid", str(patched.pid))
    assert r.returncode == 0, r.stdout + r.stderr
    report = status(rundir, pids, str(MIRROR))
    after = states(report)
    assert after[patched.pid][0].startswith("exposed") and after[fixed.pid][0] == "not affected"
    assert status(rundir, [patched.pid, fixed.pid], str(MIRROR))["exit_code"] == 2
    r = cli(rundir, "metrics")
    assert exposed_metric(r.stdout) == 2 and metric(r.stdout, "fixed in memory") == 0
    again = vex(rundir, tmp_path / "vex-2.json")[(CVE, "pkg:pypi/urllib3@1.26.17")]
    assert again["status"] == "affected" and again["timestamp"] >= old_release["timestamp"]
    text = cli(rundir, "status", "--advisories", str(MIRROR), "--pid", str(patched.pid))
    assert text.returncode == 2 and f"advisory {CVE}" in text.stdout
    assert "exposed, no patch" in text.stdout and "no patch known" in text.stdout


def test_the_live_registry_variant(releases: Dict[str, Any], start: Any, rundir: str,
                                   state: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUTURE_CACHE_DIR", str(tmp_path / "cache"))
    probe = advisories.lookup([("urllib3", "1.26.17"), ("urllib3", "1.26.18")],
                              advisories.Source("pypi", cache=tmp_path / "cache"))
    if probe.errors:
        pytest.skip("PyPI's advisory data for urllib3 1.26.17/1.26.18 cannot be had from "
                    f"here: {sorted(probe.errors.values())[0]}")
    patched, unpatched, fixed = (start(releases["old"]), start(releases["old"]),
                                 start(releases["new"]))
    pids = [patched.pid, unpatched.pid, fixed.pid]
    r = cli(rundir, "apply", str(releases["patch"]), "--pid", str(patched.pid))
    assert r.returncode == 0, r.stdout + r.stderr
    report = status(rundir, pids, "pypi")
    assert report["exit_code"] == 2       # the unpatched one at least
    got = states(report)
    assert got[patched.pid][0] == "fixed in memory"
    assert got[unpatched.pid][0] == "exposed, patch available"
    assert got[fixed.pid][0] == "not affected"
    (adv,) = [a for a in report["advisories"] if a["id"] == CVE]
    assert set(ALIASES) <= set(adv["aliases"])
    # the cache now answers offline
    assert states(status(rundir, pids, "cache")) == got


def test_inventory_tells_files_changed_since_import_and_files_not_in_their_record(
        releases: Dict[str, Any], start: Any, rundir: str, tmp_path: Path) -> None:
    root = tmp_path / "site"
    shutil.copytree(releases["old"], root)
    # edited before the process starts: it runs the edit, which its RECORD does not list
    with open(root / "urllib3" / "fields.py", "a") as f:
        f.write("\n# edited in place\n")
    target = start(root)
    first = client.call(target.pid, "inventory", 10.0, runtime_dir=rundir)
    (dist,) = [d for d in first["dists"] if d["name"] == "urllib3"]
    assert dist["version"] == "1.26.17" and dist["version_on_disk"] is None
    assert [(c["module"], c["why"]) for c in dist["changed"]] == [
        ("urllib3.fields", "differs from RECORD")]
    # replaced under the running process: the disk moved on, the process did not
    time.sleep(0.01)     # a new mtime even on a coarse clock (the size changes anyway)
    with open(root / "urllib3" / "filepost.py", "a") as f:
        f.write("\n# upgraded under the process\n")
    second = client.call(target.pid, "inventory", 10.0, runtime_dir=rundir)
    (dist,) = [d for d in second["dists"] if d["name"] == "urllib3"]
    assert sorted((c["module"], c["why"]) for c in dist["changed"]) == [
        ("urllib3.fields", "differs from RECORD"),
        ("urllib3.filepost", "changed on disk since import")]
    assert dist["changed_count"] == 2 and dist["verified"] == dist["modules"] - 2


SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run `suture status` as another uid")
@pytest.mark.skipif(not os.path.exists(SYSTEM_PYTHON), reason="needs a system Python that "
                    "another uid can run")
def test_a_user_is_told_which_python_processes_it_could_not_inspect() -> None:
    import tempfile

    import click
    import packaging

    base = Path(tempfile.mkdtemp(prefix="suture-hidden-"))   # pytest's tmp_path is 0700
    try:
        _run_as_nobody(base, click, packaging)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _run_as_nobody(tmp_path: Path, click: Any, packaging: Any) -> None:
    # suture and its two imports for `status`, where uid 65534 can read them
    lib = tmp_path / "lib"
    for src in (SRC / "suture", Path(click.__file__).parent, Path(packaging.__file__).parent):
        shutil.copytree(src, lib / src.name, ignore=shutil.ignore_patterns("__pycache__"))
    for p in [tmp_path, *tmp_path.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    for own in ("state", "run"):
        (tmp_path / own).mkdir(mode=0o700)
        os.chown(tmp_path / own, 65534, 65534)
    mine = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                            stdin=subprocess.PIPE)      # root's: closed to uid 65534
    try:
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONPATH": str(lib),
               "SUTURE_STATE_DIR": str(tmp_path / "state"), "SUTURE_ADVISORIES": "off",
               "SUTURE_RUNTIME_DIR": str(tmp_path / "run"), "HOME": str(tmp_path)}
        runs = [subprocess.run([SYSTEM_PYTHON, "-m", "suture", "status", *extra], env=env,
                               cwd="/", capture_output=True, text=True, timeout=120,
                               user=65534, group=65534, extra_groups=[])
                for extra in (["--json"], [])]
    finally:
        mine.kill()
        mine.wait()
    as_json, text = runs
    assert as_json.returncode == 0, as_json.stderr
    hidden = {p["pid"]: p for p in json.loads(as_json.stdout)["hidden"]}
    assert mine.pid in hidden and "run as root" in hidden[mine.pid]["reason"]
    assert "could not be inspected" in text.stdout and f"{mine.pid}" in text.stdout
    assert "other users' not visible" in text.stdout


def test_an_upgrade_under_a_running_process_keeps_the_version_it_runs(
        releases: Dict[str, Any], start: Any, rundir: str, tmp_path: Path) -> None:
    root = tmp_path / "site"
    shutil.copytree(releases["old"], root)
    target = start(root)
    before = client.call(target.pid, "inventory", 10.0, runtime_dir=rundir)
    (dist,) = [d for d in before["dists"] if d["name"] == "urllib3"]
    assert (dist["version"], dist["version_on_disk"], dist["changed_count"]) == (
        "1.26.17", None, 0)
    # `pip install -U` as it does it: the old files and dist-info go, the new ones come
    time.sleep(0.01)
    shutil.rmtree(root / "urllib3")
    shutil.rmtree(root / "urllib3-1.26.17.dist-info")
    shutil.copytree(releases["new"] / "urllib3", root / "urllib3")
    shutil.copytree(releases["new"] / "urllib3-1.26.18.dist-info",
                    root / "urllib3-1.26.18.dist-info")
    after = client.call(target.pid, "inventory", 10.0, runtime_dir=rundir)
    (dist,) = [d for d in after["dists"] if d["name"] == "urllib3"]
    assert (dist["version"], dist["version_on_disk"]) == ("1.26.17", "1.26.18")
    assert dist["changed_count"] == dist["modules"] and dist["verified"] == 0
    assert {c["why"] for c in dist["changed"]} == {"changed on disk since import"}
    assert target.observed() == "1.26.17"          # and it does run the old release


def test_the_live_registry_answers_for_the_latest_release(tmp_path: Path) -> None:
    # What does work through a proxy that passes only project pages: the latest release's
    # advisories, read from the project page when the per-release page answers 404.
    import urllib.request
    try:
        with urllib.request.urlopen(f"{advisories.PYPI_URL}/urllib3/json", timeout=10) as r:
            latest = json.loads(r.read())["info"]["version"]
    except OSError as exc:
        pytest.skip(f"PyPI is unreachable from here: {exc}")
    found = advisories.lookup([("urllib3", latest)],
                              advisories.Source("pypi", cache=tmp_path))
    if any("unreachable" in e for e in found.errors.values()):
        pytest.skip(f"PyPI became unreachable: {found.errors}")
    assert not found.errors, found.errors
    assert isinstance(found.found[("urllib3", latest)], list)
    assert (tmp_path / "urllib3" / f"{latest}.json").exists()


# The agent of a Suture from before issue 18: the same target without the inventory op.
OLD_AGENT = urllib3live.TARGET.replace(
    "import suture.agent\n",
    'from suture.runtime import _agent\ndel _agent._HANDLERS["inventory"]\nimport suture.agent\n', 1)
assert OLD_AGENT != urllib3live.TARGET


def test_an_agent_without_inventory_is_judged_from_its_imported_distributions(
        releases: Dict[str, Any], rundir: str, tmp_path: Path) -> None:
    with urllib3live.targets(rundir, tmp_path) as run:
        target = run(releases["old"], OLD_AGENT)
        report = status(rundir, [target.pid], str(MIRROR))
    (p,) = report["processes"]
    assert p["inventory"]["source"] == "dists"
    assert [(d["name"], d["version"]) for d in p["inventory"]["dists"]
            if d["name"] == "urllib3"] == [("urllib3", "1.26.17")]
    assert states(report) == {target.pid: ("exposed, no patch", None, "1.26.17")}
    assert report["exit_code"] == 2


def test_a_patch_synced_from_a_feed_is_a_patch_available(
        releases: Dict[str, Any], start: Any, rundir: str, state: Path) -> None:
    target = start(releases["old"])
    report = status(rundir, [target.pid], str(MIRROR))
    assert states(report) == {target.pid: ("exposed, no patch", None, "1.26.17")}
    ident = patch_id(releases["patch"])
    mirror = state / "feeds" / "acme-0123456789ab" / "patches"   # as `suture sync` lays it
    mirror.mkdir(parents=True)
    shutil.copy(releases["patch"], mirror / f"{ident}.suture")
    report = status(rundir, [target.pid], str(MIRROR))
    assert states(report) == {target.pid: ("exposed, patch available", ident, "1.26.17")}
    (x,) = [x for p in report["processes"] for x in p["exposed"]]
    assert "synced to acme-0123456789ab" in x["reason"] and x["fix"].startswith(
        f"suture apply FILE --pid {target.pid}")


def test_an_upgrade_before_the_first_inventory_leaves_the_release_unknown_not_fixed(
        releases: Dict[str, Any], start: Any, rundir: str, tmp_path: Path) -> None:
    root = tmp_path / "site"
    shutil.copytree(releases["old"], root)
    target = start(root)              # its agent noted the files' size and mtime at start
    time.sleep(0.01)
    shutil.rmtree(root / "urllib3")
    shutil.rmtree(root / "urllib3-1.26.17.dist-info")
    shutil.copytree(releases["new"] / "urllib3", root / "urllib3")
    shutil.copytree(releases["new"] / "urllib3-1.26.18.dist-info",
                    root / "urllib3-1.26.18.dist-info")
    report = status(rundir, [target.pid], str(MIRROR))
    (dist,) = [d for p in report["processes"] for d in p["inventory"]["dists"]
               if d["name"] == "urllib3"]
    assert dist["version_uncertain"] and dist["version"] == "1.26.18"
    # not "not affected" by what the disk says: unknown, and said so
    assert all(r["pid"] != target.pid for a in report["advisories"] for r in a["processes"])
    (err,) = [e for e in report["advisory_errors"] if e["package"] == "urllib3"]
    assert err["version"] == "unknown (on disk: 1.26.18)" and err["pids"] == [target.pid]
    assert "restart it" in err["reason"]
    assert target.observed() == "1.26.17"
