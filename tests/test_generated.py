"""Generated cases: random v1 -> v2 edits to small packages, checked like the hard cases.

tests/generated/gen.py makes, for each seed, a package with 1-3 modules and 1-4 edits
(see its docstring) plus a driver that observes every public callable through every
route. Each case is checked exactly like tests/cases (tests/test_cases.py, whose
``run_case`` runs it): fresh v1, fresh v2 and patched (apply, revert, apply) in one
subprocess each; the patched run must observe v1, v2, v1, v2 phase by phase. Cases with a
deliberately refused edit must be refused by the builder with the right exit code, and a
patch forced past the builder must be refused by the engine with no change to the process.

A case whose expect.json says ``builder_may_refuse`` (a module-level ``del``, issue 15 (f))
passes if the builder refuses with that code, and is checked as applied otherwise.

SUTURE_GEN_CASES=N runs seeds 0..N-1 (default 60). A failure names the seed and the
directory holding the case; ``python tests/generated/gen.py SEED OUTDIR`` writes it again.
Thousands of seeds, in parallel, tabulated by edit kind: ``python tests/generated/gen.py
--sweep N`` (docs/generated.md).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

from suture.tooling.build import BuildRefused, build_trees
from suture.tooling.build.sources import materialize
from test_cases import run_case

_GEN = Path(__file__).parent / "generated" / "gen.py"
_spec = importlib.util.spec_from_file_location("suture_tests_gen", _GEN)
gen = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = gen
_spec.loader.exec_module(gen)  # type: ignore[union-attr]

N = int(os.environ.get("SUTURE_GEN_CASES", "60"))
EXIT_CODES = {"SUT-E203": 3, "SUT-E204": 4}


def _diff(want: Dict[str, Any], got: Dict[str, Any], limit: int = 6) -> str:
    keys = [k for k in list(want) + [k for k in got if k not in want]
            if want.get(k, "<missing>") != got.get(k, "<missing>")]
    lines = [f"  {k!r}:\n    expected {json.dumps(want.get(k, '<missing>'))[:300]}\n"
             f"    got      {json.dumps(got.get(k, '<missing>'))[:300]}" for k in keys[:limit]]
    if len(keys) > limit:
        lines.append(f"  ... and {len(keys) - limit} more")
    return "\n".join(lines)


def _run(d: Path, mode: str, patch: Path, where: str) -> Dict[str, Any]:
    try:
        return run_case(d, d / "v1", mode, patch)
    except AssertionError as exc:  # a crash (e.g. apply refused): say which case
        pytest.fail(f"{exc}\n{where}")


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(N))
def test_generated(seed: int, tmp_path: Path) -> None:
    try:
        case, d, v1, v2 = gen.find_case(seed, tmp_path, run_case)
    except AssertionError as exc:
        pytest.fail(f"seed {seed}: a fresh run failed (generator bug?), cases in {tmp_path}\n{exc}")
    where = (f"seed {seed} (sub-seed {case.sub}), case written to {d}\n"
             f"reproduce: python tests/generated/gen.py {seed} OUTDIR\n"
             f"edits: {case.describe()}\nexpect: {json.dumps(case.expect)}")
    for i in (1, 2, 3):
        assert v1[i] == v1[0] and v2[i] == v2[0], \
            f"generator bug: observe() is not stable across phases\n{where}"

    old, new = materialize(str(d / "v1")), materialize(str(d / "v2"))
    patch_file = tmp_path / "case.suture"
    if case.expect["outcome"] == "refused":
        try:
            build_trees(old, new, refuse=True)
        except BuildRefused as exc:
            assert exc.exit_code == EXIT_CODES[case.expect["code"]], \
                f"wrong exit code {exc.exit_code}: {exc}\n{where}"
        except Exception as exc:
            pytest.fail(f"the builder failed: {exc!r}\n{where}")
        else:
            pytest.fail(f"the builder did not refuse\n{where}")
        patch_file.write_bytes(build_trees(old, new, refuse=False).data)
        got = _run(d, "refused", patch_file, where)
        assert got["refused"] == case.expect["code"], f"{got['events']}\n{where}"
        for i, phase in enumerate(got["phases"]):
            if phase != v1[i]:
                pytest.fail(f"a refused patch changed the process (phase {i})\n"
                            f"{_diff(v1[i], phase)}\n{where}", pytrace=False)
        return

    try:
        report = build_trees(old, new, refuse=True)
    except BuildRefused as exc:
        if exc.code == case.expect.get("builder_may_refuse"):
            return   # (f) module-level ``del``: refused today (SUT-E204) or applied, both fine
        pytest.fail(f"the builder refused an edit it should accept: {exc}\n{where}")
    except Exception as exc:
        pytest.fail(f"the builder failed: {exc!r}\n{where}")
    bad: List[Dict[str, str]] = [c for c in report.changes()
                                 if c["verdict"] not in ("live", "caveat")]
    assert not bad, f"unexpected verdicts {bad}\n{where}"
    patch_file.write_bytes(report.data)

    got = _run(d, "patched", patch_file, where)
    assert len(got["phases"]) == 4, f"{got}\n{where}"
    for i, (label, want) in enumerate([("before apply", v1[0]),
                                       ("after apply: must behave like a fresh v2", v2[1]),
                                       ("after revert: must behave like v1", v1[2]),
                                       ("after re-apply", v2[3])]):
        if got["phases"][i] != want:
            pytest.fail(f"{label}\n{_diff(want, got['phases'][i])}\n{where}", pytrace=False)
