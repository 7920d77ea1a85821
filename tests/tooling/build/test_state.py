"""The state manifest (tooling/build/state.py, meta.state): real fresh imports of small
releases written in tmp_path, the build's determinism, the reader's checks, the CLI."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import pytest

from suture.runtime import patchfile
from suture.runtime.errors import PatchFormatError
from suture.tooling.build import BuildRefused, build_trees
from suture.tooling.build.sources import materialize
from suture.tooling.build.state import manifest

SRC = Path(__file__).resolve().parents[3] / "src"

BASE = '''\
import random
import time

LIMIT = 10
SAME = {"names": ["a", "b"], "n": 3}
START = time.time()
LUCKY = random.random()
TAGS = {"x", "y", "z"}


class Config:
    limit = 5

    def check(self, n):
        return n <= self.limit
'''
FIXED = (BASE.replace("LIMIT = 10", "LIMIT = 20").replace("limit = 5", "limit = 6")
         .replace("n <= self.limit", "0 <= n <= self.limit"))


def tree(root: Path, files: Dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def releases(tmp_path: Path, base: Dict[str, str], fixed: Dict[str, str]):
    return tree(tmp_path / "v1", base), tree(tmp_path / "v2", fixed)


def labels(state: Dict[str, Any], module: str) -> Dict[str, Dict[str, Any]]:
    entry = state["modules"][module]
    assert entry["verified"] is True, entry
    return {p["label"]: p for p in entry["paths"]}


@pytest.mark.slow
def test_changed_constant_and_class_attribute_are_paths_unchanged_values_are_not(tmp_path):
    old, new = releases(tmp_path, {"app/conf.py": BASE}, {"app/conf.py": FIXED})
    state = manifest(old, new, ["app.conf"])
    assert state["python"] == f"{sys.version_info[0]}.{sys.version_info[1]}"
    paths = labels(state, "app.conf")
    assert paths["LIMIT"]["path"] == [["g", "LIMIT"]]
    assert (paths["LIMIT"]["baseline"], paths["LIMIT"]["fixed"]) == ("int:10", "int:20")
    assert paths["LIMIT"]["describe"] == ["10", "20"]
    assert paths["Config.limit"]["path"] == [["g", "Config"], ["a", "limit"]]
    assert (paths["Config.limit"]["baseline"], paths["Config.limit"]["fixed"]) == ("int:5",
                                                                                   "int:6")
    # the class holds the attribute, so it differs too; a changed method body does not
    # (functions are fingerprinted by name: docs/engine.md)
    assert set(paths) == {"Config", "Config.limit", "LIMIT"}
    assert "SAME" not in paths and "TAGS" not in paths and "Config.check" not in paths
    assert list(paths) == sorted(paths)
    json.dumps(state)   # JSON as it stands: it goes into the patch as is


@pytest.mark.slow
def test_a_value_that_differs_between_two_imports_of_one_release_is_unstable(tmp_path):
    fixed = FIXED.replace("START = time.time()", "START = time.time() + 1")
    old, new = releases(tmp_path, {"app/conf.py": BASE}, {"app/conf.py": fixed})
    entry = manifest(old, new, ["app.conf"])["modules"]["app.conf"]
    assert entry["verified"] is True
    assert not {"START", "LUCKY"} & {p["label"] for p in entry["paths"]}
    assert entry["unstable"] == 2


@pytest.mark.slow
def test_an_added_path_is_absent_in_the_baseline(tmp_path):
    old, new = releases(tmp_path, {"app.py": "A = 1\n"}, {"app.py": "A = 1\nB = (1, 2)\n"})
    paths = labels(manifest(old, new, ["app"]), "app")
    assert paths["B"]["baseline"] == "absent" and paths["B"]["describe"][0] == "(absent)"
    assert paths["B"]["fixed"] != "absent" and "B[0]" in paths


@pytest.mark.slow
def test_a_module_that_fails_to_import_is_not_verified_and_says_why(tmp_path):
    old, new = releases(
        tmp_path,
        {"app/__init__.py": "", "app/a.py": "X = 1\n", "app/b.py": "import not_installed_dep\n"},
        {"app/__init__.py": "", "app/a.py": "raise RuntimeError('no config')\nX = 2\n",
         "app/b.py": "import not_installed_dep\nY = 1\n"})
    state = manifest(old, new, ["app.a", "app.b"])["modules"]
    assert state["app.a"] == {"verified": False,
                              "reason": "fixed release: RuntimeError: no config"}
    assert state["app.b"]["verified"] is False
    assert "ModuleNotFoundError: No module named 'not_installed_dep'" in state["app.b"]["reason"]


@pytest.mark.slow
def test_import_path_and_import_env_reach_the_imports(tmp_path):
    deps = tree(tmp_path / "deps", {"thedep.py": "VALUE = 7\n"})
    code = "import os, thedep\nMODE = os.environ['APP_MODE']\nN = thedep.VALUE + {}\n"
    old, new = releases(tmp_path, {"app.py": code.format(1)}, {"app.py": code.format(2)})
    state = manifest(old, new, ["app"], import_path=[str(deps)],
                     import_env={"APP_MODE": "prod"})
    paths = labels(state, "app")
    assert (paths["N"]["baseline"], paths["N"]["fixed"]) == ("int:8", "int:9")
    assert "MODE" not in paths


@pytest.mark.slow
def test_the_imports_do_not_see_the_callers_pythonpath(tmp_path, monkeypatch):
    deps = tree(tmp_path / "deps", {"thedep.py": "VALUE = 7\n"})
    monkeypatch.setenv("PYTHONPATH", str(deps))
    old, new = releases(tmp_path, {"app.py": "import thedep\n"},
                        {"app.py": "import thedep\nX = 1\n"})
    entry = manifest(old, new, ["app"])["modules"]["app"]
    assert entry["verified"] is False and "thedep" in entry["reason"]


@pytest.mark.slow
def test_a_hanging_import_is_bounded_by_the_timeout(tmp_path):
    old, new = releases(tmp_path, {"app.py": "X = 1\n"},
                        {"app.py": "while True:\n    pass\n"})
    entry = manifest(old, new, ["app"], timeout=1.0)["modules"]["app"]
    assert entry == {"verified": False,
                     "reason": "fixed release: import did not finish within 1s"}


@pytest.mark.slow
def test_too_many_differing_paths_are_not_verified(tmp_path):
    old, new = releases(tmp_path, {"app.py": "".join(f"V{i} = {i}\n" for i in range(2001))},
                        {"app.py": "".join(f"V{i} = {i + 1}\n" for i in range(2001))})
    entry = manifest(old, new, ["app"])["modules"]["app"]
    assert entry == {"verified": False,
                     "reason": "state differs in 2001 paths: too many to verify"}


@pytest.mark.slow
def test_build_records_the_state_of_changed_modules_only_and_no_import_skips_it(tmp_path):
    old, new = releases(tmp_path, {"app/__init__.py": "", "app/conf.py": BASE},
                        {"app/__init__.py": "", "app/conf.py": FIXED, "app/extra.py": "E = 1\n"})
    report = build_trees(materialize(str(old)), materialize(str(new)))
    assert report.state is not None and report.patch is not None
    assert set(report.state["modules"]) == {"app.conf"}   # app.extra is added: no baseline
    assert report.patch.meta["state"] == report.state
    assert report.to_dict()["state"] == report.state
    off = build_trees(materialize(str(old)), materialize(str(new)), verify_state=False)
    assert off.patch is not None and off.patch.meta["state"]["modules"] == {
        "app.conf": {"verified": False, "reason": "not imported at build (--no-import)"}}


@pytest.mark.slow
def test_building_twice_gives_the_same_bytes_with_the_state_manifest(tmp_path):
    old, new = releases(tmp_path, {"app/conf.py": BASE}, {"app/conf.py": FIXED})
    first = build_trees(materialize(str(old)), materialize(str(new)))
    second = build_trees(materialize(str(old)), materialize(str(new)))
    assert first.data == second.data
    assert first.patch is not None and first.patch.meta["state"]["modules"]["app.conf"]["paths"]


def _with_state(data: bytes, state: Any) -> bytes:
    body = json.loads(patchfile.payload_json(*patchfile.read_envelope(data)))
    body["meta"]["state"] = state
    raw = patchfile.canonical_json(body)
    return patchfile.canonical_json({"payload": base64.b64encode(raw).decode("ascii"),
                                     "payloadType": patchfile.PAYLOAD_TYPE,
                                     "signatures": []}) + b"\n"


GOOD_PATH = {"path": [["g", "Config"], ["a", "limit"]], "label": "Config.limit",
             "baseline": "int:5", "fixed": "int:6", "describe": ["5", "6"]}


@pytest.fixture(scope="module")
def plain_patch(tmp_path_factory) -> bytes:
    root = tmp_path_factory.mktemp("plain")
    old, new = releases(root, {"app.py": "X = 1\n"}, {"app.py": "X = 2\n"})
    report = build_trees(materialize(str(old)), materialize(str(new)), verify_state=False)
    assert report.data is not None
    return report.data


def test_the_reader_accepts_a_well_formed_state(plain_patch):
    state = {"python": "3.11", "modules": {
        "app": {"verified": True, "paths": [GOOD_PATH, {**GOOD_PATH, "path": [["g", "R"],
                                                                               ["i", 0]]}],
                "unstable": 1, "lined": {"C.m": {"baseline": [3, 5], "fixed": [5, 7]}}},
        # a patch built before the lines were recorded: the names only
        "older": {"verified": True, "paths": [], "lined": ["C.m"]},
        "other": {"verified": False, "reason": "ImportError: x"}}}
    assert patchfile.load(_with_state(plain_patch, state)).meta["state"] == state


@pytest.mark.parametrize("state, message", [
    ([], "meta.state must be an object"),
    ({"python": "3.11"}, "meta.state has no 'modules'"),
    ({"modules": []}, "meta.state.modules has the wrong type"),
    ({"modules": {"app": "yes"}}, "must be an object"),
    ({"modules": {"app": {}}}, "has no 'verified'"),
    ({"modules": {"app": {"verified": 1, "paths": []}}}, "verified has the wrong type"),
    ({"modules": {"app": {"verified": False}}}, "has no 'reason'"),
    ({"modules": {"app": {"verified": True}}}, "has no 'paths'"),
    ({"modules": {"app": {"verified": True, "paths": ["LIMIT"]}}}, "must be an object"),
    ({"modules": {"app": {"verified": True, "paths": [{**GOOD_PATH, "path": [["g"]]}]}}},
     "[kind, key] pairs"),
    ({"modules": {"app": {"verified": True, "paths": [{**GOOD_PATH, "path": [["i", True]]}]}}},
     "[kind, key] pairs"),
    ({"modules": {"app": {"verified": True, "paths": [{**GOOD_PATH, "path": []}]}}},
     "[kind, key] pairs"),
    ({"modules": {"app": {"verified": True, "paths": [{**GOOD_PATH, "fixed": None}]}}},
     "fixed has the wrong type"),
    ({"modules": {"app": {"verified": True,
                          "paths": [{k: v for k, v in GOOD_PATH.items() if k != "baseline"}]}}},
     "has no 'baseline'"),
    ({"modules": {"app": {"verified": True, "paths": [], "unstable": "2"}}},
     "unstable has the wrong type"),
    ({"modules": {"app": {"verified": True, "paths": [], "lined": "C.m"}}},
     "lined must map qualified names"),
    ({"modules": {"app": {"verified": True, "paths": [], "lined": [3]}}},
     "lined must map qualified names"),
    ({"modules": {"app": {"verified": True, "paths": [],
                          "lined": {"C.m": {"baseline": [3]}}}}},
     "lined must map qualified names"),
    ({"modules": {"app": {"verified": True, "paths": [],
                          "lined": {"C.m": {"baseline": [3], "fixed": ["5"]}}}}},
     "lined must map qualified names"),
])
def test_the_reader_refuses_a_malformed_state(plain_patch, state, message):
    with pytest.raises(PatchFormatError) as info:
        patchfile.load(_with_state(plain_patch, state))
    assert message in str(info.value)


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(SRC))
    return subprocess.run([sys.executable, "-m", "suture", *args], capture_output=True,
                          text=True, env=env, cwd=str(cwd), timeout=120)


@pytest.mark.slow
def test_the_cli_shows_the_state_and_inspect_reads_it_back(tmp_path):
    old, new = releases(tmp_path, {"app/__init__.py": "", "app/conf.py": BASE,
                                   "app/web.py": "import not_installed_dep\nX = 1\n"},
                        {"app/__init__.py": "", "app/conf.py": FIXED,
                         "app/web.py": "import not_installed_dep\nX = 2\n"})
    out = cli("build", str(old), str(new), "-o", "p.suture", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "  state    app.conf: verified: 3 paths differ (2 unstable ignored)" in out.stdout
    assert "Config, Config.limit, LIMIT" in out.stdout
    assert ("  state    app.web: NOT verified: baseline: ModuleNotFoundError: No module "
            "named 'not_installed_dep'") in out.stdout
    shown = cli("inspect", "p.suture", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "  state    app.conf: verified: 3 paths differ (2 unstable ignored)" in shown.stdout
    assert "app.web: NOT verified" in shown.stdout

    deps = tree(tmp_path / "deps", {"not_installed_dep.py": ""})
    js = cli("build", str(old), str(new), "-o", "q.suture", "--json", "--import-path",
             str(deps), "--import-env", "APP_MODE=prod", cwd=tmp_path)
    assert js.returncode == 0, js.stderr
    state = json.loads(js.stdout)["state"]
    assert state["modules"]["app.web"]["verified"] is True
    assert [p["label"] for p in state["modules"]["app.web"]["paths"]] == ["X"]

    off = cli("build", str(old), str(new), "-o", "r.suture", "--no-import", cwd=tmp_path)
    assert off.returncode == 0, off.stderr
    assert "app.conf: NOT verified: not imported at build (--no-import)" in off.stdout
    bad = cli("build", str(old), str(new), "--import-env", "NOEQUALS", cwd=tmp_path)
    assert bad.returncode == 64 and "NAME=VALUE" in bad.stderr   # a usage error


CASES = Path(__file__).resolve().parents[2] / "cases"


def _build_case(name: str):
    case = CASES / name
    return build_trees(materialize(str(case / "v1")), materialize(str(case / "v2")),
                       dry_run=True)


def test_the_dry_run_applies_and_reverts_in_a_fresh_baseline_process():
    report = _build_case("60_init_reads_changed_class_attr")
    assert report.dry_run is not None and report.dry_run["outcome"] == "applied", report.dry_run
    verified = report.dry_run["verified"]["c60_app.client"]
    assert verified.startswith("state verified equal to a fresh import"), verified
    assert report.to_dict()["dry_run"] == report.dry_run
    # the literal the engine sets for the class attribute travels with the manifest
    (path,) = [p for p in report.state["modules"]["c60_app.client"]["paths"]
               if p["label"] == "Policy.MAX_REDIRECTS"]
    assert path["literal"] == ["int", "5"]


REGISTRY_V1 = """
REGISTRY = set()


def register(f):
    REGISTRY.add(f.__name__)
    return f


@register
def handler():
    return 1
"""
# The fix seeds the registry: a fresh import has {"builtin", "handler"}; evaluating the
# changed statement again in a live process gives {"builtin"} only (the decorator that
# filled it ran at import), and nothing Suture derives can tell what else belongs there.
REGISTRY_V2 = REGISTRY_V1.replace("REGISTRY = set()", 'REGISTRY = {"builtin"}')


def test_the_dry_run_shows_at_build_what_every_baseline_process_will_refuse(tmp_path):
    for name, text in (("v1", REGISTRY_V1), ("v2", REGISTRY_V2)):
        (tmp_path / name / "reg").mkdir(parents=True)
        (tmp_path / name / "reg" / "__init__.py").write_text(text)
    report = build_trees(materialize(str(tmp_path / "v1")), materialize(str(tmp_path / "v2")),
                         dry_run=True)
    assert report.data is not None   # built: the refusal is the engine's, seen here first
    assert report.dry_run["outcome"] == "refused", report.dry_run
    code = report.dry_run["code"]
    assert code in ("SUT-E204", "SUT-E208") and "REGISTRY" in report.dry_run["reason"]
    out = subprocess.run([sys.executable, "-m", "suture", "build", str(tmp_path / "v1"),
                          str(tmp_path / "v2"), "-o", str(tmp_path / "p.suture")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"dry run  WARNING: refused {code} in a fresh process of the baseline" in out.stdout


def test_a_main_module_is_never_imported_at_build(tmp_path):
    old, new = tmp_path / "v1" / "prog", tmp_path / "v2" / "prog"
    for d, body in ((old, "raise SystemExit('ran at build')\n"),
                    (new, "if __name__ == '__main__':\n    raise SystemExit('ran')\n")):
        d.mkdir(parents=True)
        (d / "__init__.py").write_text("")
        (d / "__main__.py").write_text(body)
    report = build_trees(materialize(str(tmp_path / "v1")), materialize(str(tmp_path / "v2")),
                         refuse=False)
    entry = report.state["modules"]["prog.__main__"]
    assert entry == {"verified": False, "reason": "a __main__ module is a program: importing "
                                                  "it at build would run it"}


# -- the whole-process dry run and effects derived without a hook ----------------------

def test_the_dry_run_compares_the_whole_process_with_a_fresh_import_of_the_fix():
    # case 66's plugin statements act on another module of the package: equal, whole
    report = _build_case("66_plugin_statements_on_imported_package")
    assert report.dry_run["outcome"] == "applied", report.dry_run
    assert report.dry_run["differs"]["total"] == 0, report.dry_run["differs"]
    assert report.dry_run["revert_differs"]["total"] == 0, report.dry_run["revert_differs"]
    # case 44: typing keeps a registry of @overload stubs (3.11+), which the fixed
    # release's import fills and a patched process does not: a difference outside every
    # patched module, which only the whole-process comparison sees
    if sys.version_info < (3, 11):
        return   # no registry there: nothing differs
    report = _build_case("44_overload_stubs_added")
    differs = report.dry_run["differs"]
    assert differs["total"] > 0
    assert any(d["module"] == "typing" and d["path"].startswith("_overload_registry")
               for d in differs["paths"]), differs


def test_module_level_code_whose_effect_is_derived_needs_no_hook():
    report = _build_case("72_registration_moved_between_classes")
    assert report.data is not None and report.dry_run["outcome"] == "applied"
    entry = report.state["modules"]["c72_app.constructor"]
    assert sorted(entry["derived"]) == [["added module statement", "<module>"],
                                        ["removed module statement", "<module>"]]
    verdicts = {(c["kind"], c["verdict"]) for c in report.changes()
                if c["qualname"] == "<module>"}
    assert verdicts == {("added module statement", "caveat"),
                        ("removed module statement", "caveat")}
    patch = patchfile.load(report.data)
    assert patch.meta["state"]["modules"]["c72_app.constructor"]["derived"] == entry["derived"]


def test_a_hook_is_still_required_where_the_dry_run_shows_a_difference():
    # case 66b: the new statement reads a target its own module's statements set
    with pytest.raises(BuildRefused) as info:
        _build_case("66b_plugin_statements_read_their_own_effect")
    message = info.value.message
    assert "Their effect could not be derived" in message
    assert "differ from a fresh import of the fixed release" in message
    assert "c66b_app.codecs: MAX_SIZE is 262144, expected 4096" in message
    assert info.value.report.to_dict()["refused"] is True


def test_registries_of_the_process_are_recorded_as_each_release_leaves_them():
    report = _build_case("73_import_time_filters_and_aliases")
    state = report.state
    assert state["warnings"] == {"added": [], "removed": [
        ["ignore", "Trying to detect", ["builtins", "Warning"], "c73_app", 0]]}
    assert state["aliases"]["c73_app.packages.json.decoder"] == ["json.decoder", ""]
    assert report.dry_run["differs"]["total"] == 0, report.dry_run["differs"]


def test_a_changed_statement_whose_value_both_imports_make_alike_is_same():
    report = _build_case("74_registry_declared_differently")
    entry = report.state["modules"]["c74_app.resources"]
    assert list(entry["same"]) == ["_finders"]
    assert report.dry_run["differs"]["total"] == 0, report.dry_run["differs"]


def test_the_comparison_leaves_out_what_is_no_application_state():
    from suture.tooling.build.state import _excused
    found = [
        (3, "logging", "Logger.manager.loggerDict['pkg.extern']", "logging.PlaceHolder instance",
         "(absent)"),
        (4, "logging", "Logger.manager.loggerDict['pkg.extern'].loggerMap", "dict of 1 item(s)",
         "(absent)"),
        (2, "logging", "Logger.manager.loggerDict", "dict of 3 item(s)", "dict of 3 item(s)"),
        (1, "logging", "Logger.manager", "logging.Manager instance", "logging.Manager instance"),
        (2, "ssl", "Options._value2member_map_", "dict of 17 item(s)", "dict of 13 item(s)"),
        (3, "ssl", "Options._value2member_map_[33685504]", "ssl.Options instance", "(absent)"),
        (1, "ssl", "Options", "class ssl.Options", "class ssl.Options"),
        # a real difference keeps its containers
        (2, "app", "REG['x']", "function f (line 1)", "(absent)"),
        (1, "app", "REG", "dict of 2 item(s)", "dict of 1 item(s)"),
        (2, "logging", "Logger.manager.disable", "30", "0"),
    ]
    kept = {(mod, lab) for _, mod, lab, _, _ in _excused(found)}
    assert kept == {("app", "REG['x']"), ("app", "REG"), ("logging", "Logger.manager"),
                    ("logging", "Logger.manager.disable")}


# -- unchanged modules that import a changed one (dependents) ---------------------------

def test_dependents_are_the_unchanged_modules_that_import_a_changed_one_closest_first(tmp_path):
    from suture.tooling.build import _dependents

    same = {
        "pkg/__init__.py": "",
        "pkg/direct.py": "from pkg.api import LIMIT\n",
        "pkg/relative.py": "from . import api\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/deep.py": "from ..relative import api\n",        # through pkg.relative
        "pkg/sub/dotted.py": "import pkg.api\n",
        "pkg/sub/fromname.py": "from .. import direct\n",        # through pkg.direct
        "pkg/fallback.py": "try:\n    import pkg.api\nexcept ImportError:\n    pass\n",
        "pkg/only_in_except.py": "try:\n    import json\nexcept ImportError:\n"
                                 "    from pkg import api\n",
        "pkg/unrelated.py": "import os\nfrom pkg import other\n",
        "pkg/other.py": "X = 1\n",
        "pkg/__main__.py": "from pkg.api import LIMIT\n",
        "pkg/in_function.py": "def f():\n    from pkg.api import LIMIT\n    return LIMIT\n",
    }
    old, new = releases(tmp_path, {**same, "pkg/api.py": "LIMIT = 9\n",
                                   "pkg/edited.py": "from pkg import api\nA = 1\n"},
                        {**same, "pkg/api.py": "LIMIT = 6\n",
                         "pkg/edited.py": "from pkg import api\nA = 2\n"})
    trees = materialize(str(old)), materialize(str(new))
    deps, left_out = _dependents(*trees, ["pkg.api", "pkg.edited"])
    first = ["pkg.direct", "pkg.fallback", "pkg.in_function", "pkg.relative",
             "pkg.sub.dotted"]
    assert deps == first + ["pkg.sub.deep", "pkg.sub.fromname"] and left_out == 0
    assert _dependents(*trees, ["pkg.api"], limit=3) == (first[:3], 4)
    assert _dependents(*trees, ["pkg.other"]) == (["pkg.unrelated"], 0)
    assert _dependents(*trees, []) == ([], 0)


@pytest.mark.slow
def test_a_dependent_whose_state_differs_is_carried_others_are_not(tmp_path):
    same = {
        "app/__init__.py": "",
        "app/rules.py": ("from app.api import LIMIT\n\n\nclass Policy:\n    LIMIT = LIMIT\n\n"
                         "    def __init__(self):\n        self.limit = self.LIMIT\n\n\n"
                         "DEFAULT = Policy()\n"),
        "app/calls.py": "from app import api\n\n\ndef limit():\n    return api.LIMIT\n",
        "app/broken.py": "from app import api\nimport not_installed_dep\n",
    }
    old, new = releases(tmp_path, {**same, "app/api.py": "LIMIT = 9\n"},
                        {**same, "app/api.py": "LIMIT = 6\n"})
    report = build_trees(materialize(str(old)), materialize(str(new)))
    assert report.patch is not None and report.state is not None
    assert [m.name for m in report.patch.modules] == ["app.api", "app.rules"]
    rules = report.patch.modules[1]
    assert rules.action == "change" and not rules.changes
    # LIMIT, bound by ``from app.api import LIMIT``, is app.api's object: not app.rules' own
    assert set(labels(report.state, "app.rules")) == {"DEFAULT", "DEFAULT.limit", "Policy",
                                                       "Policy.LIMIT"}
    assert set(report.state["modules"]) == {"app.api", "app.rules"}   # calls: nothing differs
    assert report.state["dependents_not_verified"] == {
        "app.broken": "baseline: ModuleNotFoundError: No module named 'not_installed_dep'"}
    assert "dependents_left_out" not in report.state
    off = build_trees(materialize(str(old)), materialize(str(new)), verify_state=False)
    assert off.patch is not None and [m.name for m in off.patch.modules] == ["app.api"]

    out = cli("build", str(old), str(new), "-o", "p.suture", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "  state    app.rules: verified: 4 paths differ" in out.stdout
    assert ("  state    app.broken (unchanged, imports a changed module): NOT verified: "
            "baseline: ModuleNotFoundError: No module named 'not_installed_dep'") in out.stdout
    assert "dry run  applied and reverted" in out.stdout


@pytest.mark.slow
def test_dependents_past_the_limit_are_counted_and_shown(tmp_path, monkeypatch, capsys):
    import suture.tooling.build as build
    from suture.tooling.cli.build import _render_state

    same = {"app/__init__.py": "", "app/a.py": "from app import api\n",
            "app/b.py": "from app import api\n"}
    old, new = releases(tmp_path, {**same, "app/api.py": "LIMIT = 9\n"},
                        {**same, "app/api.py": "LIMIT = 6\n"})
    monkeypatch.setattr(build, "MAX_DEPENDENTS", 1)
    report = build_trees(materialize(str(old)), materialize(str(new)))
    assert report.state is not None and report.state["dependents_left_out"] == 1
    _render_state(report.state)
    assert ("  state    1 more unchanged module(s) importing a changed one were not checked "
            "(limit reached)") in capsys.readouterr().out


def test_the_releases_are_imported_with_the_python_the_build_names(tmp_path):
    # another interpreter (here: this one under another path, so the flags for another
    # interpreter apply: no site-packages of its own) records its own version
    other = tmp_path / "python-other"
    other.symlink_to(sys.executable)
    case = CASES / "60_init_reads_changed_class_attr"
    report = build_trees(materialize(str(case / "v1")), materialize(str(case / "v2")),
                         dry_run=True, import_python=str(other))
    assert report.state["python"] == "%d.%d" % sys.version_info[:2]
    assert report.state["modules"]["c60_app.client"]["verified"] is True
    assert report.dry_run["outcome"] == "applied", report.dry_run
    from suture.tooling.build.sources import SourceError
    with pytest.raises(SourceError, match="--import-python /nonexistent"):
        build_trees(materialize(str(case / "v1")), materialize(str(case / "v2")),
                    import_python="/nonexistent")
