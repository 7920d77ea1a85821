"""A cumulative patch (same target, same baseline) replaces the applied one in one commit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from suture.tooling.build import build_trees
from suture.tooling.build.sources import materialize

SRC = Path(__file__).resolve().parents[3] / "src"

V1 = '''
LIMIT = 100
def check(path):
    return ".." not in path
def size_ok(n):
    return n < LIMIT
'''
V2 = V1.replace('return ".." not in path', 'return ".." not in path and not path.startswith("/")')
V3 = V2.replace("LIMIT = 100", "LIMIT = 10") + '''
def helper():
    return "v3"
'''

SCRIPT = textwrap.dedent('''
    import json, sys
    import suture.runtime as rt
    import capp.m as m
    codes = (m.check.__code__, m.size_ok.__code__)
    def observe():
        return [m.check("/etc"), m.check("a/../b"), m.size_ok(50), hasattr(m, "helper")]
    out = {"v1": observe()}
    a = rt.load_patch(open(sys.argv[1], "rb").read())
    c = rt.load_patch(open(sys.argv[2], "rb").read())
    rt.apply(a)
    out["a"] = observe()
    res = rt.apply(c)
    out["c"] = observe()
    out["notes"] = res.notes
    out["applied"] = [p["id"] for p in rt.status()["patches"]]
    out["ids"] = [a.id, c.id]
    rt.revert(c.id)
    out["reverted"] = observe()
    out["same_code"] = (m.check.__code__, m.size_ok.__code__) == codes and all(
        x is y for x, y in zip((m.check.__code__, m.size_ok.__code__), codes))
    out["applied_after"] = rt.status()["patches"]
    try:
        rt.revert(a.id)
    except rt.UnknownPatch as exc:
        out["revert_a"] = exc.code
    print(json.dumps(out))
''')


def _tree(root: Path, source: str) -> Path:
    (root / "capp").mkdir(parents=True)
    (root / "capp" / "__init__.py").write_text("")
    (root / "capp" / "m.py").write_text(source)
    return root


@pytest.mark.slow
def test_cumulative_patch_replaces_the_applied_one_and_reverts_to_the_original(tmp_path):
    v1, v2, v3 = (_tree(tmp_path / n, s) for n, s in (("v1", V1), ("v2", V2), ("v3", V3)))
    a = build_trees(materialize(str(v1)), materialize(str(v2)))
    c = build_trees(materialize(str(v1)), materialize(str(v3)))
    (tmp_path / "a.suture").write_bytes(a.data)
    (tmp_path / "c.suture").write_bytes(c.data)
    (tmp_path / "t.py").write_text(SCRIPT)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), str(v1)]))
    proc = subprocess.run([sys.executable, str(tmp_path / "t.py"), str(tmp_path / "a.suture"),
                           str(tmp_path / "c.suture")], capture_output=True, text=True,
                          env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["v1"] == [True, False, True, False]
    assert out["a"] == [False, False, True, False]
    assert out["c"] == [False, False, False, True]
    assert out["applied"] == [out["ids"][1]]
    assert any("replaced patch" in n for n in out["notes"])
    assert out["reverted"] == out["v1"]
    assert out["same_code"] is True
    assert out["applied_after"] == []
    assert out["revert_a"] == "SUT-E300"
