"""``suture prove``: a real target process in its own virtual environment, a real patch,
the real `suture run`, `apply` and `revert` (tooling/prove).

The environment is a venv made here whose site-packages point at the vulnerable release
of a small package (and at this suite's pytest, for the pytest runner); Suture is not
installed in it, as in a user's application environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path
from typing import Dict

import pytest

from signing import signed
from suture.tooling.build import build_trees
from suture.tooling.build.sources import materialize

VULNERABLE = '''
class Joiner:
    def __init__(self, root):
        self.root = root

    def join(self, name):
        return self.root + "/" + name


DEFAULT = Joiner("/srv")


def safe_join(name):
    return DEFAULT.join(name)
'''
FIXED = VULNERABLE.replace('''    def join(self, name):
        return''', '''    def join(self, name):
        if ".." in name.split("/"):
            return None
        return''')
UNRELATED = VULNERABLE.replace('"/" + name', '"/" + str(name)')

CHECK = '''
import tinyjoin
assert tinyjoin.safe_join("a/b") == "/srv/a/b"
assert tinyjoin.safe_join("../etc/passwd") is None, "traversal"
'''
TEST = '''
import tinyjoin


def test_traversal_refused():
    assert tinyjoin.safe_join("../etc/passwd") is None


def test_plain_names_still_join():
    assert tinyjoin.DEFAULT.join("x") == "/srv/x"
'''


def _release(root: Path, text: str) -> Path:
    (root / "tinyjoin").mkdir(parents=True)
    (root / "tinyjoin" / "__init__.py").write_text(text)
    return root


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    d = tmp_path_factory.mktemp("prove")
    old = _release(d / "v1", VULNERABLE)
    env = d / "venv"
    venv.EnvBuilder(with_pip=False).create(env)
    site = next(env.glob("lib/python*/site-packages"))
    (site / "tinyjoin-old.pth").write_text(
        f"{old}\n{Path(pytest.__file__).resolve().parents[1]}\n")
    out: Dict[str, Path] = {"python": env / "bin" / "python", "tests": d / "tests"}
    (d / "tests").mkdir()
    (d / "tests" / "check.py").write_text(CHECK)
    (d / "tests" / "test_tinyjoin.py").write_text(TEST)
    for name, text in (("fix", FIXED), ("unrelated", UNRELATED)):
        new = _release(d / name, text)
        report = build_trees(materialize(str(old)), materialize(str(new)))
        assert report.data is not None
        (d / f"{name}.suture").write_bytes(signed(report.data))
        (d / f"{name}-unsigned.suture").write_bytes(report.data)
        out[name] = d / f"{name}.suture"
        out[f"{name}-unsigned"] = d / f"{name}-unsigned.suture"
    return out


def prove(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUTURE_TEST")}
    return subprocess.run([sys.executable, "-m", "suture", "prove", *args], cwd=str(cwd),
                          capture_output=True, text=True, timeout=300, env=env)


def test_a_fix_fails_live_passes_after_apply_and_fails_after_revert(world, tmp_path):
    run = prove(str(world["fix"]), "--python", str(world["python"]), "--cwd",
                str(world["tests"]), "--usage", "import tinyjoin; tinyjoin.safe_join('a')",
                "--json", "--logs", str(tmp_path / "logs"), "--", "pytest", "-q", "-p",
                "no:cacheprovider", "test_tinyjoin.py", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    proof = json.loads(run.stdout)
    steps = proof["steps"]
    assert proof["outcome"] == "proven", proof
    assert steps["before"]["where"] == "live process" and steps["before"]["passed"] is False
    assert steps["apply"]["outcome"] == "applied"
    assert steps["after"]["passed"] is True and steps["after"]["rc"] == 0
    assert steps["revert"]["outcome"] == "reverted" and steps["reverted"]["passed"] is False
    # one process the whole time, which imported the package before the patch and kept
    # using it throughout without an error
    target = steps["target"]
    assert target["pid"] == steps["start"]["pid"]
    assert target["imported"] == ["tinyjoin"] and target["failed"] == {}
    assert target["usage"]["calls"] > 0 and target["usage"]["errors"] == 0
    assert "1 failed, 1 passed" in (tmp_path / "logs" / "before.log").read_text()
    assert "2 passed" in (tmp_path / "logs" / "after.log").read_text()


def test_a_patch_that_does_not_fix_is_not_proven_and_says_where(world, tmp_path):
    run = prove(str(world["unrelated"]), "--python", str(world["python"]), "--cwd",
                str(world["tests"]), "--", "check.py", cwd=tmp_path)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "NOT PROVEN: the tests fail in the patched process" in run.stdout
    assert "  before    failed (live process)" in run.stdout
    assert "  apply     applied" in run.stdout


def test_tests_that_pass_on_the_vulnerable_code_prove_nothing(world, tmp_path):
    (tmp_path / "always.py").write_text("print('ok')\n")
    run = prove(str(world["fix"]), "--python", str(world["python"]), "--cwd", str(tmp_path),
                "--", "always.py", cwd=tmp_path)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "prove nothing" in run.stdout and "apply " not in run.stdout


def test_the_patch_must_be_trusted_here_as_for_apply(world, tmp_path):
    argv = [str(world["fix-unsigned"]), "--python", str(world["python"]), "--cwd",
            str(world["tests"]), "--before", "sibling", "--json", "--", "check.py"]
    run = prove(*argv, cwd=tmp_path)
    assert run.returncode == 2, run.stdout + run.stderr
    proof = json.loads(run.stdout)
    assert proof["steps"]["trust"]["trusted"] is False
    assert "start" not in proof["steps"], "no process is started for an untrusted patch"
    assert "not trusted here" in proof["why"], proof
    run = prove(*argv[:-2], "--allow-unsigned", "--", "check.py", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    proof = json.loads(run.stdout)
    assert proof["outcome"] == "proven"
    assert proof["steps"]["before"] == {**proof["steps"]["before"], "where": "sibling process",
                                        "passed": False}


def test_a_test_command_that_is_neither_pytest_nor_a_script_is_a_usage_error(world, tmp_path):
    run = prove(str(world["fix"]), "--python", str(world["python"]), "--", "make", "test",
                cwd=tmp_path)
    assert run.returncode == 64 and "SCRIPT.py" in run.stderr
