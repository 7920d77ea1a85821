"""Issue 22, the tooling's half: a process's interpreters in `suture status`, exposure,
VEX, metrics, `suture ps` and the apply/revert rows.

These are the tooling's own functions fed the agent's answers in the shape
docs/protocol.md and the issue's design give them (``interpreters``, ``uninspectable``,
module states ``refused in interpreter N: ...``, apply/revert ``interpreters``): the
judgement and its rendering are what is tested. Real processes with sub-interpreters are
in tests/agent/test_interpreters.py.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional

import pytest

from suture.runtime.errors import SutureError
from suture.runtime.patchfile import ModulePatch, Patch, Source
from suture.tooling.cli import host as cli_host
from suture.tooling.fleet import fanout, metrics, vex

PATCH_ID = "ab" * 32
PATCH = Patch(target={"kind": "distribution", "name": "demo_pkg", "from_version": "1.0",
                      "to_version": "1.1"},
              modules=(ModulePatch("demo_pkg.core", "modify", Source.of("x = 1\n"),
                                   Source.of("x = 2\n")),),
              meta={"cves": ["CVE-2099-1"]}, id=PATCH_ID)
APPLIED = {"id": PATCH_ID, "target": dict(PATCH.target), "modules": {"demo_pkg.core": "applied"},
           "live": {"demo_pkg.core": "verified"}}
LEGACY = {"interpreter": 3, "whence": "legacy capi",
          "reason": "it was running code when the agent tried to start one in it"}


def interpreters(*reach: str) -> List[Dict[str, Any]]:
    return [{"id": i, "main": i == 0, "whence": "runtime" if i == 0 else "capi",
             "reach": r, "reason": "" if r != "unreachable" else LEGACY["reason"],
             "patches": [PATCH_ID] if r != "unreachable" else []}
            for i, r in enumerate(reach)]


def judged(answer: Dict[str, Any], dists: Optional[Dict[str, Any]] = None,
           pid: int = 4242) -> Dict[str, Any]:
    """The report `fanout.status()` builds for one process with this agent answer (the
    same steps: judge_process, then the top-level lists and exit code)."""
    by_id = {PATCH.id: {"id": PATCH.id, "target": dict(PATCH.target), "cves": ["CVE-2099-1"],
                        "installed": True, "processes": []}}
    proc: Dict[str, Any] = {"pid": pid, "state": "ok", "command": "python app.py",
                            "reason": "", "error": None, "applied": [], "active": [],
                            "dists": {}, "exposed": []}
    dists = {"demo_pkg": "1.0"} if dists is None else dists
    fanout.judge_process(proc, answer, dists, {n: True for n in dists}, [PATCH], by_id)
    exposed = [dict({"pid": proc["pid"], "patch": x["patch"], "cves": x["cves"]},
                    **{k: x[k] for k in ("advisory", "interpreter") if k in x})
               for x in proc["exposed"]]
    return {"store": "/nonexistent/store.db", "patches": list(by_id.values()),
            "processes": [proc], "exposed": exposed, "advisories": [], "hidden": [],
            "restart_debt": [], "advisory_errors": [],
            "exit_code": fanout.status_exit_code([proc])}


def row_of(report: Dict[str, Any]) -> Dict[str, Any]:
    [entry] = report["patches"]
    [row] = entry["processes"]
    return row  # type: ignore[no-any-return]


# -- status: the judgement -------------------------------------------------------------

def test_every_interpreter_answered_and_has_the_patch_is_fixed():
    report = judged({"patches": [APPLIED], "interpreters": interpreters("self", "agent"),
                     "uninspectable": []})
    [proc] = report["processes"]
    assert (proc["state"], proc["interpreter_count"], report["exit_code"]) == ("ok", 2, 0)
    assert [i["id"] for i in proc["interpreters"]] == [0, 1]
    assert row_of(report)["state"] == "fixed"


def test_an_old_agent_that_says_nothing_of_interpreters_is_judged_as_before():
    report = judged({"patches": [APPLIED]})
    [proc] = report["processes"]
    assert (proc["state"], proc["interpreter_count"], proc["uninspectable"]) == ("ok", None, [])
    assert row_of(report)["state"] == "fixed"


def test_an_uninspectable_interpreter_makes_a_fixed_patch_exposed_and_names_it():
    report = judged({"patches": [APPLIED], "uninspectable": [LEGACY],
                     "interpreters": interpreters("self", "agent", "agent", "unreachable")})
    [proc] = report["processes"]
    assert (proc["state"], report["exit_code"], proc["interpreter_count"]) == ("exposed", 2, 4)
    why = ("not fully inspectable: interpreter 3 (legacy capi): it was running code when the "
           "agent tried to start one in it")
    row = row_of(report)
    assert row["state"] == "exposed" and row["uninspectable"] == [3]
    assert row["reason"] == f"applied in every interpreter that answered; {why}"
    assert row["fix"].startswith("restart PID 4242") and "make interpreter 3 reachable" in row["fix"]
    assert proc["exposed"] == [{"patch": PATCH_ID, "cves": ["CVE-2099-1"], "reason": why,
                                "fix": row["fix"], "interpreter": 3}]
    assert report["exposed"] == [{"pid": 4242, "patch": PATCH_ID, "cves": ["CVE-2099-1"],
                                  "interpreter": 3}]
    assert proc["reason"] == why


def test_each_uninspectable_interpreter_gets_its_row_and_the_main_exposure_stays():
    other = {"interpreter": 5, "whence": None, "reason": ""}
    report = judged({"patches": [], "uninspectable": [LEGACY, other]})
    [proc] = report["processes"]
    reasons = [(x.get("interpreter"), x["reason"]) for x in proc["exposed"]]
    # the patch is missing in the main interpreter too: that row, then one per interpreter
    assert [x.get("interpreter") for x in proc["exposed"]] == [None, 3, 5]
    assert proc["exposed"][0]["reason"] == "runs demo_pkg 1.0 (imported) without this patch"
    assert reasons[2] == (5, "not fully inspectable: interpreter 5: its agent did not answer")
    assert "interpreters 3, 5 reachable" in proc["exposed"][0]["fix"]
    assert row_of(report)["state"] == "exposed"


def test_no_known_patch_concerns_the_process_still_exposed_with_a_null_patch():
    report = judged({"patches": [], "uninspectable": [LEGACY]}, dists={})
    [proc] = report["processes"]
    # not seen in the interpreters asked is not "not affected": one was not asked
    assert row_of(report)["state"] == "unknown"
    assert "not fully inspectable: interpreter 3" in row_of(report)["reason"]
    assert (proc["state"], report["exit_code"]) == ("exposed", 2)
    [x] = proc["exposed"]
    assert (x["patch"], x["cves"], x["interpreter"]) == (None, [], 3)
    assert report["exposed"] == [{"pid": 4242, "patch": None, "cves": [], "interpreter": 3}]


def test_a_patch_refused_in_another_interpreter_is_exposed_and_apply_is_the_fix():
    merged = dict(APPLIED, modules={"demo_pkg.core": "refused in interpreter 2: not applied"})
    report = judged({"patches": [merged], "interpreters": interpreters("self", "agent", "agent"),
                     "uninspectable": []})
    [proc] = report["processes"]
    row = row_of(report)
    assert (row["state"], proc["state"], report["exit_code"]) == ("exposed", "exposed", 2)
    assert row["reason"] == "demo_pkg.core refused in interpreter 2: not applied"
    assert row["fix"].startswith("suture apply FILE --pid 4242 (applies it in every interpreter")


def test_a_refusal_at_import_still_says_restart():
    refused = dict(APPLIED, modules={"demo_pkg.core": "refused: SUT-E201 not the baseline"})
    state, _, fix = fanout._applied_state(refused, 7)
    assert state == "exposed" and fix is not None and fix.startswith("restart PID 7")


def test_old_frames_in_a_sub_interpreter_are_named_with_it():
    frames = [{"qualname": "demo_pkg.core:serve", "where": "thread", "thread": "w",
               "patch": PATCH_ID, "line": 3, "interpreter": 2},
              {"qualname": "demo_pkg.core:loop", "where": "thread", "thread": "m",
               "patch": PATCH_ID, "interpreter": 0}]
    state, reason, _ = fanout._applied_state(APPLIED, 7, frames)
    assert state == "draining"
    assert "demo_pkg.core:serve line 3 in thread 'w' of interpreter 2" in reason
    assert "demo_pkg.core:loop in thread 'm';" not in reason and reason.endswith("thread 'm'")


@pytest.mark.parametrize("answer, dists", [
    ({"patches": [APPLIED], "uninspectable": [LEGACY]}, None),
    ({"patches": [dict(APPLIED, modules={"demo_pkg.core": "refused in interpreter 2: not "
                                                          "applied"})]}, None),
    ({"patches": [], "uninspectable": [LEGACY]}, {}),
])
def test_no_fixed_anywhere_for_such_a_process(answer: Dict[str, Any],
                                              dists: Optional[Dict[str, Any]]) -> None:
    report = judged(answer, dists)
    assert report["exit_code"] == 2
    assert all(r["state"] != "fixed" for e in report["patches"] for r in e["processes"])
    # VEX: never not_affected while such a process may run the release: affected where it
    # has it; where its main interpreter does not see it, the interpreter that could not be
    # asked might: under_investigation (no claim), and a note names the process
    doc = vex.document(report, host="h", now="2030-01-01T00:00:00Z")
    [s] = doc["statements"]
    assert s["status"] == ("affected" if dists is None else "under_investigation"), s
    if answer.get("uninspectable"):
        assert ("1 process(es) have an interpreter Suture could not inspect (pids 4242); "
                "they count as exposed.") in s["status_notes"]
    # metrics: the process counts as exposed
    text = metrics.render(report, [], [])
    assert 'suture_processes{state="exposed"} 1' in text
    assert 'suture_processes{state="ok"} 0' in text


def test_vex_names_the_uninspectable_processes_and_says_restart():
    report = judged({"patches": [APPLIED], "uninspectable": [LEGACY]})
    [s] = vex.document(report, host="h", now="2030-01-01T00:00:00Z")["statements"]
    assert s["status"] == "affected"
    assert ("1 running process(es) (pids 4242) have demo_pkg 1.0 and an interpreter Suture "
            "could not inspect") in s["action_statement"]
    assert "restart them on demo_pkg 1.1" in s["action_statement"]


def test_metrics_count_uninspectable_processes_and_interpreters():
    report = judged({"patches": [APPLIED], "uninspectable": [LEGACY, dict(LEGACY, interpreter=4)]})
    text = metrics.render(report, [], [])
    assert "suture_uninspectable_processes 1" in text.splitlines()
    assert "suture_uninspectable_interpreters 2" in text.splitlines()
    assert 'suture_exposed_processes{cve="CVE-2099-1"} 1' in text
    assert 'suture_patch_processes{patch="ababababab' in text
    assert re.search(r'suture_patch_processes\{patch="abababababab",state="exposed"\} 1', text)
    # and the null-patch form: no CVE, but the process is exposed and counted
    text = metrics.render(judged({"patches": [], "uninspectable": [LEGACY]}, dists={}), [], [])
    assert 'suture_processes{state="exposed"} 1' in text
    assert "suture_uninspectable_interpreters 1" in text.splitlines()


# -- status: the text ---------------------------------------------------------------------

def test_status_text_lists_the_interpreter_and_the_fix(capsys: pytest.CaptureFixture[str]):
    cli_host._render_status(judged({"patches": [], "uninspectable": [LEGACY]}, dists={}))
    out = capsys.readouterr().out
    assert "not fully inspectable (counted as exposed):" in out
    assert ("not fully inspectable: interpreter 3 (legacy capi): it was running code when the "
            "agent tried to start one in it") in out
    assert "fix: restart PID 4242" in out
    assert "EXPOSED: 1 process" in out
    assert "PID 4242 (python app.py): no CVE listed (interpreter 3 not inspectable)" in out
    assert "nothing exposed" not in out

    cli_host._render_status(judged({"patches": [APPLIED], "uninspectable": [LEGACY]}))
    out = capsys.readouterr().out
    assert ("PID 4242 (python app.py): CVE-2099-1 (interpreter 3 not inspectable, patch "
            "abababababab)") in out
    assert re.search(r"4242  exposed +applied in every interpreter that answered; not fully "
                     r"inspectable: interpreter 3", out), out


# -- apply / revert rows ----------------------------------------------------------------

VERDICTS = [{"id": 0, "state": "applied", "code": None, "message": ""},
            {"id": 1, "state": "applied", "code": None, "message": ""},
            {"id": 2, "state": "pending import", "code": None, "message": ""}]


def test_an_apply_row_lists_each_interpreters_verdict():
    result = {"state": "applied", "modules": {"demo_pkg.core": "applied"},
              "interpreters": VERDICTS}
    assert fanout._summary(result) == ("demo_pkg.core: applied; interpreters: 0 applied, "
                                       "1 applied, 2 pending import")
    assert fanout.interpreter_verdicts(None) == "" and fanout._summary({}) == ""


def test_a_refusal_in_one_interpreter_is_a_refused_row_with_every_verdict():
    verdicts = [{"id": 0, "state": "rolled back", "code": None, "message": ""},
                {"id": 2, "state": "refused", "code": "SUT-E201", "message": "not the baseline"}]
    exc = SutureError("interpreter 2: Refused patch abababababab: not the baseline.",
                      details={"interpreters": verdicts})
    exc.code = "SUT-E201"
    row = fanout._error_row(7, exc)
    assert row.outcome == "failed"      # a plain SutureError is not a refusal class...
    assert row.reason.endswith("(interpreters: 0 rolled back, 2 refused SUT-E201)")
    assert row.to_dict()["interpreters"] == verdicts
    unreachable = SutureError("interpreter 3: it was running code",
                              details={"interpreters": [dict(verdicts[0]), {
                                  "id": 3, "state": "unreachable", "code": "SUT-E219",
                                  "message": "it was running code"}]})
    unreachable.code = "SUT-E219"
    row = fanout._error_row(7, unreachable)
    # ...but SUT-E219 is, by its code, whichever class the client rebuilt
    assert (row.outcome, row.code) == ("refused", "SUT-E219")
    assert row.reason.endswith("(interpreters: 0 rolled back, 3 unreachable SUT-E219)")
    assert fanout.exit_code([row]) == 2


def test_a_partial_revert_is_not_a_success():
    verdicts = [{"id": 0, "state": "reverted", "code": None, "message": ""},
                {"id": 1, "state": "unreachable", "code": "SUT-E219", "message": "busy"}]
    result = {"state": "partial", "interpreters": verdicts}
    row = fanout.Row(7, "partial", reason=fanout._summary(result), result=result,
                     interpreters=verdicts)
    assert row.reason == "interpreters: 0 reverted, 1 unreachable SUT-E219"
    assert fanout.exit_code([row]) == 2
    assert fanout.exit_code([fanout.Row(8, "reverted"), row]) == 2
    assert "partial" not in fanout.OK_OUTCOMES


def test_apply_rows_render_the_verdicts(capsys: pytest.CaptureFixture[str]):
    result = {"state": "applied", "interpreters": VERDICTS}
    rows = [fanout.Row(123, "applied", reason=fanout._summary(result), result=result,
                       interpreters=VERDICTS),
            fanout.Row(124, "partial", reason="interpreters: 0 reverted, 1 unreachable SUT-E219")]
    cli_host._render_rows(rows, "apply to")
    out = capsys.readouterr().out
    assert re.search(r"^ +123  applied +interpreters: 0 applied, 1 applied, 2 pending import$",
                     out, re.M), out
    assert "partial: an interpreter of the process could not be reached" in out


# -- ps -----------------------------------------------------------------------------------

@pytest.mark.parametrize("hello, count", [
    ({"interpreters": 3, "interpreter": 0}, 3), ({}, None), ({"interpreters": None}, None),
    ({"interpreters": True}, None), ({"interpreters": "3"}, None)])
def test_ps_takes_the_interpreter_count_from_hello(hello: Dict[str, Any],
                                                   count: Optional[int]) -> None:
    assert fanout._interpreter_count(hello) == count
