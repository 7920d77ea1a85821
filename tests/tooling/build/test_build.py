"""suture build / inspect: determinism, exit codes, partial patches, JSON."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from suture.runtime import patchfile
from suture.tooling.build import BuildRefused, build_trees
from suture.tooling.build.sources import materialize

SRC = Path(__file__).resolve().parents[3] / "src"
CASES = Path(__file__).resolve().parents[2] / "cases"


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(SRC))
    return subprocess.run([sys.executable, "-m", "suture", *args], capture_output=True,
                          text=True, env=env, cwd=str(cwd), timeout=120)


def tree(root: Path, files: dict) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def test_building_twice_gives_the_same_bytes_and_the_id_is_the_payload_sha256(tmp_path):
    case = CASES / "09_constants_regex"
    first = build_trees(materialize(str(case / "v1")), materialize(str(case / "v2")),
                        cves=["CVE-2099-2", "CVE-2099-1"])
    second = build_trees(materialize(str(case / "v1")), materialize(str(case / "v2")),
                         cves=["CVE-2099-1", "CVE-2099-2"])
    assert first.data == second.data
    _, payload = patchfile.read_envelope(first.data)
    assert first.patch.id == hashlib.sha256(payload).hexdigest()
    assert first.patch.meta["cves"] == ["CVE-2099-1", "CVE-2099-2"]


def test_restart_required_refuses_with_exit_3_and_names_the_change(tmp_path):
    case = CASES / "12_enum_member_refused"
    out = cli("build", str(case / "v1"), str(case / "v2"), "-o", "x.suture", cwd=tmp_path)
    assert out.returncode == 3
    assert "RESTART REQUIRED" in out.stdout and "c12_app.roles:Role.ADMIN" in out.stdout
    assert "Enum members are singletons" in out.stderr
    assert not (tmp_path / "x.suture").exists()


def test_needs_hook_refuses_with_exit_4_and_builds_with_hooks(tmp_path):
    case = CASES / "21_module_call_side_effect"
    out = cli("build", str(case / "v1"), str(case / "v2"), "-o", "x.suture", "--json",
              cwd=tmp_path)
    assert out.returncode == 4
    data = json.loads(out.stdout)
    assert data["refused"] is True and data["error"]["code"] == "SUT-E204"
    hooked = CASES / "21b_module_call_with_hook"
    ok = cli("build", str(hooked / "v1"), str(hooked / "v2"), "--hooks",
             str(hooked / "hooks.py"), "-o", "y.suture", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    shown = cli("inspect", "y.suture", "--json", cwd=tmp_path)
    assert json.loads(shown.stdout)["hooks"] is True


def test_allow_restart_writes_a_partial_patch_that_says_so(tmp_path):
    old = tree(tmp_path / "old", {"papp/__init__.py": "", "papp/a.py": "def f():\n    return 1\n",
                                  "papp/b.py": "import enum\nclass E(enum.Enum):\n    A = 1\n"})
    new = tree(tmp_path / "new", {"papp/__init__.py": "", "papp/a.py": "def f():\n    return 2\n",
                                  "papp/b.py": "import enum\nclass E(enum.Enum):\n    A = 1\n    B = 2\n"})
    with pytest.raises(BuildRefused):
        build_trees(materialize(str(old)), materialize(str(new)))
    rep = build_trees(materialize(str(old)), materialize(str(new)), allow_restart=True)
    assert rep.patch.meta["partial"] is True
    assert rep.patch.meta["excluded"] == ["papp.b"]
    assert [m.name for m in rep.patch.modules] == ["papp.a"]
    (tmp_path / "p.suture").write_bytes(rep.data)
    text = cli("inspect", "p.suture", cwd=tmp_path).stdout
    assert "PARTIAL (left out: papp.b)" in text


def test_native_and_data_files_need_a_restart(tmp_path):
    old = tree(tmp_path / "old", {"napp/__init__.py": "", "napp/table.json": "{}"})
    new = tree(tmp_path / "new", {"napp/__init__.py": "", "napp/table.json": "{\"a\": 1}"})
    (old / "napp" / "_speed.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\x7fELF1")
    (new / "napp" / "_speed.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\x7fELF2")
    with pytest.raises(BuildRefused) as info:
        build_trees(materialize(str(old)), materialize(str(new)))
    kinds = {c["kind"] for c in info.value.report.blockers("restart")}
    assert kinds == {"changed native code", "changed data file"}


def test_a_release_that_changes_only_docs_builds_an_empty_patch(tmp_path):
    old = tree(tmp_path / "old", {"dapp/__init__.py": "X = 1\n"})
    new = tree(tmp_path / "new", {"dapp/__init__.py": "X = 1\n", "dapp/py.typed": ""})
    rep = build_trees(materialize(str(old)), materialize(str(new)))
    assert rep.patch.modules == ()


def test_inspect_refuses_a_tampered_file(tmp_path):
    case = CASES / "02_default_arg"
    rep = build_trees(materialize(str(case / "v1")), materialize(str(case / "v2")))
    env = json.loads(rep.data)
    env["payload"] = env["payload"][:-8] + "AAAAAAA="
    (tmp_path / "bad.suture").write_text(json.dumps(env))
    out = cli("inspect", "bad.suture", cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr.startswith("error: patch ")


def test_a_restart_refusal_offers_the_partial_patch_and_says_what_it_depends_on(tmp_path):
    # a security fix (views.render now cleans) next to a layout change (Row becomes a
    # dataclass: restart): the offer names what --allow-restart leaves out, and that the
    # fixed function calls into it (clean runs its old code there)
    files = {"pp/__init__.py": "",
             "pp/models.py": "class Row:\n    def __init__(self, a):\n        self.a = a\n\n"
                             "def clean(s):\n    return s\n",
             "pp/views.py": "from .models import clean\n\ndef render(s):\n    return '<p>' + s\n",
             "pp/other.py": "def f():\n    return 1\n"}
    old = tree(tmp_path / "old", files)
    new = tree(tmp_path / "new", {
        **files,
        "pp/models.py": "import dataclasses\n\n@dataclasses.dataclass\nclass Row:\n    a: int\n"
                        "    b: int = 0\n\ndef clean(s):\n    return s.replace('<', '')\n",
        "pp/views.py": "from .models import clean\n\ndef render(s):\n"
                       "    return '<p>' + clean(s)\n",
        "pp/other.py": "def f():\n    return 2\n"})
    with pytest.raises(BuildRefused) as info:
        build_trees(materialize(str(old)), materialize(str(new)), verify_state=False)
    offer = info.value.report.to_dict()["partial_offer"]
    assert offer == {"leave_out": ["pp.models"], "files": [], "keep": ["pp.other", "pp.views"],
                     "depends": {"pp.views": ["clean (from pp.models)"]}}
    assert "it would leave out pp.models and patch pp.other, pp.views; WARNING" \
        in info.value.message
