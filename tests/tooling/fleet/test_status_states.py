"""fanout's judgement of one applied patch from the agent's status answer (issue 16): the
live code check ("reverted by the application") and old frames ("draining")."""

from __future__ import annotations

from suture.tooling.fleet import fanout

PATCH = "ab" * 32
APPLIED = {"id": PATCH, "modules": {"demo": "applied"}, "live": {"demo": "verified"}}


def test_verified_and_drained_is_fixed():
    assert fanout._applied_state(APPLIED, 7, [
        {"qualname": "other:f", "where": "thread", "patch": "cd" * 32, "line": 3}]) \
        == ("fixed", "", None)


def test_reverted_by_the_application_is_exposed_and_apply_is_the_fix():
    applied = dict(APPLIED, live={"demo": "reverted by the application (SUT-E211): f's "
                                          "__code__ was replaced by the baseline's"})
    state, reason, fix = fanout._applied_state(applied, 7)
    assert state == "exposed" and "SUT-E211" in reason and "demo" in reason
    assert fix == "suture apply FILE --pid 7 (patches the reverted modules again)"


def test_old_frames_of_the_patch_make_it_draining_and_name_where():
    frames = [{"qualname": "demo:serve", "where": "thread", "thread": "worker-1",
               "patch": PATCH, "line": 12},
              {"qualname": "demo:numbers", "where": "generator", "patch": PATCH, "line": 2},
              {"qualname": "demo:handle", "where": "task", "task": "Task-3", "patch": PATCH}]
    state, reason, fix = fanout._applied_state(APPLIED, 7, frames)
    assert state == "draining" and state in fanout.UNPROTECTED
    assert reason == ("fixed for new calls; 3 frame(s) still run the old code (SUT-E212): "
                      "demo:serve line 12 in thread 'worker-1'; demo:numbers line 2 in "
                      "generator; demo:handle in task 'Task-3'")
    assert fix == "wait until they finish, or restart PID 7"
