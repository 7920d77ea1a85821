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
    # the id is the sha256 of the canonical payload JSON, deflated in the file or not
    body = patchfile.payload_json(*patchfile.read_envelope(first.data))
    assert first.patch.id == hashlib.sha256(body).hexdigest()
    plain = patchfile.dump(first.patch, compress=False)
    assert patchfile.read_envelope(plain)[1] == body and len(plain) > len(first.data)
    assert patchfile.load(plain).id == first.patch.id
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


# ------------------------------------------------ what a new user sees (issue 18)

def _pip_env(tmp_path: Path) -> dict:
    """The suite's environment with pip seeing only what a test passes (no pip.conf, no
    PIP_*), the tree under test first on the path and a cache of the test's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "SUTURE_CACHE"))}
    return dict(env, PYTHONPATH=str(SRC), PIP_CONFIG_FILE=os.devnull,
                SUTURE_CACHE_DIR=str(tmp_path / "cache"))


def _on_a_terminal(args: list, env: dict, cwd: Path) -> tuple:
    """Run ``suture ARGS`` with stderr on a real pseudo-terminal (stdout a pipe): exit
    status, stdout, and what the terminal showed."""
    import pty
    import select

    primary, secondary = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "suture", *args], stdout=subprocess.PIPE,
                            stderr=secondary, stdin=subprocess.DEVNULL, env=env, cwd=str(cwd))
    os.close(secondary)
    shown = b""
    try:
        while True:
            ready, _, _ = select.select([primary], [], [], 120)
            if not ready:
                raise AssertionError(f"no output for 120 s; so far: {shown!r}")
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        out = proc.stdout.read().decode() if proc.stdout else ""
        code = proc.wait(timeout=120)
    finally:
        os.close(primary)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code, out, shown.decode("utf-8", "replace").replace("\r\n", "\n")


def _two_releases(links: Path) -> None:
    from test_sources import make_wheel

    for version, body in (("1.0", "1"), ("1.1", "2")):
        make_wheel(links, "suture-fixture-prog", version,
                   {"suture_fixture_prog/__init__.py": "",
                    "suture_fixture_prog/calc.py": f"def value():\n    return {body}\n"})


@pytest.mark.slow
def test_a_build_on_a_terminal_shows_each_step_and_the_cache(tmp_path: Path):
    links = tmp_path / "links"
    _two_releases(links)
    env = _pip_env(tmp_path)
    args = ["build", "suture-fixture-prog==1.0", "suture-fixture-prog==1.1", "-o", "p.suture",
            "--no-index", "--find-links", str(links)]
    code, out, shown = _on_a_terminal(args, env, tmp_path)
    assert code == 0, shown
    assert "wrote p.suture" in out
    cache = tmp_path / "cache"
    for step in (f"suture build: downloading suture-fixture-prog==1.0 with pip into the cache "
                 f"{cache}",
                 "suture build: unpacking suture_fixture_prog-1.1-py3-none-any.whl into the "
                 f"cache {cache}",
                 "suture build: diffing suture-fixture-prog 1.0 and suture-fixture-prog 1.1",
                 "suture build: importing both releases in fresh interpreters",
                 "suture build: compiling and writing the patch",
                 "suture build: dry run: applying the patch to a fresh process"):
        assert step in shown, shown
    # The second time both releases are in the cache: it says so, and downloads nothing.
    code, out, shown = _on_a_terminal(args, env, tmp_path)
    assert code == 0, shown
    assert f"suture-fixture-prog==1.0: already downloaded, in the cache {cache}" in shown
    assert "downloading" not in shown and "unpacking" not in shown

    # Not a terminal: stderr stays quiet (scripts and CI logs read the report).
    quiet = subprocess.run([sys.executable, "-m", "suture",
                            *["q.suture" if a == "p.suture" else a for a in args]],
                           capture_output=True, text=True, env=env, cwd=str(tmp_path),
                           timeout=120)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == "" and "wrote q.suture" in quiet.stdout


@pytest.mark.slow
def test_a_misspelt_distribution_is_not_found_on_the_index_without_the_fallbacks(
        tmp_path: Path):
    links = tmp_path / "links"
    _two_releases(links)
    code, out, shown = _on_a_terminal(
        ["build", "suture-fixture-porg==1.0", "suture-fixture-prog==1.1", "--no-index",
         "--find-links", str(links)], _pip_env(tmp_path), tmp_path)
    assert code == 1 and out == ""
    assert ("error: Cannot build from 'suture-fixture-porg==1.0': suture-fixture-porg was not "
            "found on the index") in shown, shown
    assert "[SUT-E501]" in shown
    # pip was asked for a wheel and then for any file, and never for the wheels of the
    # other Pythons (five more runs that cannot find a name no index knows)
    assert "trying its sdist" in shown and "trying the wheel for Python" not in shown
    got = subprocess.run([sys.executable, "-m", "suture", "build", "suture-fixture-porg==1.0",
                          "x==1", "--no-index", "--find-links", str(links), "--json"],
                         capture_output=True, text=True, env=_pip_env(tmp_path),
                         cwd=str(tmp_path), timeout=120)
    err = json.loads(got.stdout)["error"]
    assert got.returncode == 1 and err["code"] == "SUT-E501"
    assert err["details"]["name"] == "suture-fixture-porg"
    assert err["details"]["looked_in"] == [str(links)]


@pytest.mark.slow
def test_a_release_whose_only_wheel_is_for_another_python_still_takes_the_fallbacks(
        tmp_path: Path):
    # The name is known (a file of it is in --find-links), so "no version here" is not a
    # typo: the wheels of other Pythons are still tried, and the one there is taken.
    from test_sources import make_wheel

    links = tmp_path / "links"
    other = "3.9" if sys.version_info[:2] != (3, 9) else "3.10"
    tag = f"cp{other.replace('.', '')}"
    make_wheel(links, "suture-fixture-old", "5.4", {"suture_fixture_old/__init__.py": ""},
               filename=f"suture_fixture_old-5.4-{tag}-{tag}-manylinux1_x86_64.whl")
    code, _, shown = _on_a_terminal(
        ["build", "suture-fixture-old==5.4", str(tmp_path), "--no-index", "--find-links",
         str(links), "--no-import"], _pip_env(tmp_path), tmp_path)
    assert f"trying the wheel for Python {other}" in shown, shown
    assert "not found on the index" not in shown


def test_two_identical_versions_are_refused_not_written_as_an_empty_patch(tmp_path: Path):
    case = CASES / "09_constants_regex"
    copy = tree(tmp_path / "copy", {str(p.relative_to(case / "v1")): p.read_text()
                                    for p in (case / "v1").rglob("*.py")})
    for new in (str(case / "v1"), str(copy)):  # the same path twice, or a copy of it
        out = cli("build", str(case / "v1"), new, "-o", "x.suture", cwd=tmp_path)
        assert out.returncode == 1, out.stdout + out.stderr
        assert out.stderr.startswith("error: nothing to patch: ") and "[SUT-E505]" in out.stderr
        assert not (tmp_path / "x.suture").exists()
    out = cli("build", str(case / "v1"), str(copy), "--json", cwd=tmp_path)
    assert out.returncode == 1 and json.loads(out.stdout)["error"]["code"] == "SUT-E505"
    assert not list(tmp_path.glob("*.suture"))
