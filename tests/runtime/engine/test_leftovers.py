"""Objects rebuilt by a patch: references to the old object elsewhere are reported."""

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
class Policy:
    def __init__(self, retries=3):
        self.retries = retries
DEFAULT = Policy()
SESSIONS = {}
'''
V2 = V1.replace("retries=3", "retries=1")


@pytest.mark.slow
def test_old_object_still_referenced_elsewhere_is_reported_and_state_is_kept(tmp_path):
    for name, src in (("v1", V1), ("v2", V2)):
        (tmp_path / name / "lapp").mkdir(parents=True)
        (tmp_path / name / "lapp" / "__init__.py").write_text("")
        (tmp_path / name / "lapp" / "m.py").write_text(src)
    rep = build_trees(materialize(str(tmp_path / "v1")), materialize(str(tmp_path / "v2")))
    (tmp_path / "p.suture").write_bytes(rep.data)
    (tmp_path / "t.py").write_text(textwrap.dedent('''
        import json, sys
        import suture.runtime as rt
        from lapp import m
        held = {"policy": m.DEFAULT}          # a reference the patch cannot reach
        m.SESSIONS["alice"] = "token"         # in-memory state
        res = rt.apply(open(sys.argv[1], "rb").read())
        print(json.dumps({"notes": res.notes, "retries": m.DEFAULT.retries,
                          "held": held["policy"].retries, "sessions": m.SESSIONS}))
    '''))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), str(tmp_path / "v1")]))
    proc = subprocess.run([sys.executable, str(tmp_path / "t.py"), str(tmp_path / "p.suture")],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["retries"] == 1 and out["held"] == 3
    assert out["sessions"] == {"alice": "token"}
    assert out["notes"] == ["lapp.m.DEFAULT: 1 reference(s) to the old object remain (dict); "
                            "they keep seeing the old object"]
