"""The hard-case corpus, checked differentially in fresh interpreters (tests/cases/README.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import pytest
from packaging.specifiers import SpecifierSet

from suture.tooling.build import BuildRefused, build_trees
from suture.tooling.build.sources import materialize

CASES = Path(__file__).parent / "cases"
SRC = Path(__file__).resolve().parents[1] / "src"
CASE_DIRS = sorted(p for p in CASES.iterdir() if p.is_dir() and (p / "expect.json").exists())


def python_skip(expect: Dict[str, Any]) -> str:
    """Why this interpreter does not run the case ("" if it does): expect.json's
    ``"python"`` is a version specifier (``">=3.15"``) for syntax or semantics that exist
    only there (PEP 810's ``lazy import``)."""
    spec = expect.get("python")
    here = "%d.%d" % sys.version_info[:2]
    if spec and here not in SpecifierSet(spec):
        return f"the case needs Python {spec} (expect.json); this is {here}"
    return ""


def run_case(case: Path, root: Path, mode: str, patch: Path = None) -> Dict[str, Any]:
    extra = json.loads((case / "expect.json").read_text()).get("env", {})
    env = dict(os.environ, PYTHONPATH=str(SRC), PYTHONDONTWRITEBYTECODE="1", **extra)
    args = [sys.executable, str(CASES / "_runner.py"), str(case), str(root), mode]
    if patch is not None:
        args.append(str(patch))
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60,
                          cwd=str(case))
    assert proc.stdout.strip(), f"runner printed nothing; stderr:\n{proc.stderr}"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "crash" not in report, f"{mode} run crashed:\n{report['crash']}\n{proc.stderr}"
    return report


def build_case(case: Path, tmp_path: Path, expect: Dict[str, Any], refuse: bool = True):
    hooks = case / expect["hooks"] if expect.get("hooks") else None
    return build_trees(materialize(str(case / "v1")), materialize(str(case / "v2")),
                       hooks=hooks, refuse=refuse)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASE_DIRS, ids=[p.name for p in CASE_DIRS])
def test_case(case: Path, tmp_path: Path) -> None:
    expect = json.loads((case / "expect.json").read_text())
    if python_skip(expect):
        pytest.skip(python_skip(expect))
    patch_file = tmp_path / "case.suture"
    if expect["outcome"] == "refused" and expect.get("refused_by") != "engine":
        with pytest.raises(BuildRefused) as info:
            build_case(case, tmp_path, expect)
        assert info.value.exit_code == {"SUT-E203": 3, "SUT-E204": 4}[expect["code"]]
        report = build_case(case, tmp_path, expect, refuse=False)
    else:
        report = build_case(case, tmp_path, expect)
    verdicts = {c["qualname"]: c["verdict"] for c in report.changes()}
    for qualname, verdict in expect.get("verdicts", {}).items():
        assert verdicts.get(qualname) == verdict, (qualname, report.changes())
    patch_file.write_bytes(report.data)

    v1 = run_case(case, case / "v1", "fresh")["phases"]
    v2 = run_case(case, case / "v2", "fresh")["phases"]
    assert v1 != v2, "v1 and v2 observe the same: the case proves nothing"
    if expect["outcome"] == "refused":
        got = run_case(case, case / "v1", "refused", patch_file)
        assert got["refused"] == expect["code"], got["events"]
        assert got["phases"] == v1, "a refused patch changed the process"
        return
    got = run_case(case, case / "v1", "patched", patch_file)
    assert got["phases"][0] == v1[0], "before apply"
    assert got["phases"][1] == v2[1], "after apply: must behave like a fresh fixed process"
    assert got["phases"][2] == v1[2], "after revert: must behave like the vulnerable version"
    assert got["phases"][3] == v2[3], "after re-apply"
