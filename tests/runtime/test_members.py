"""runtime/_members.py: which modules a patch may touch in the distribution it names.

Real installed layouts (a site directory with dist-info and RECORD on sys.path); the
check is called with ``modules={}`` (by name, as for modules not imported yet) or with
real module objects, never with a mocked importlib.metadata.
"""

from __future__ import annotations

import importlib
import types
from pathlib import Path
from typing import Dict, Sequence, Tuple

import pytest

from suture.runtime import _members
from suture.runtime.errors import NotInDistribution, UnprovenDistribution
from suture.runtime.patchfile import ModulePatch, Patch, Source


def install(site: Path, name: str, files: Sequence[str], version: str = "1.0") -> None:
    for rel in files:
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text("x = 1\n")
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "RECORD").write_text("".join(f"{r},,\n" for r in files))


def patch(dist: str, *modules: Tuple[str, str], kind: str = "distribution") -> Patch:
    src = Source.of("x = 2\n")
    return Patch(target={"kind": kind, "name": dist, "from_version": "1.0", "to_version": "1.1"},
                 modules=tuple(ModulePatch(n, a, None if a == "add" else src, src)
                               for n, a in modules), id="f" * 64)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    s = tmp_path / "site"
    install(s, "Shop_Lib", ["shop/__init__.py", "shop/billing.py", "shop/sub/__init__.py"])
    install(s, "other", ["other/__init__.py", "other/core.py", "shop/plugin.py"])
    monkeypatch.syspath_prepend(str(s))
    importlib.invalidate_caches()
    return s


def refused(exc: pytest.ExceptionInfo) -> Dict[str, str]:
    return {m["module"]: m["file"] for m in exc.value.details["modules"]}


def test_names_compare_normalised_like_packaging():
    assert _members.canonical("Shop_Lib") == _members.canonical("shop.lib") == "shop-lib"
    assert _members.canonical("a-_.B") == "a-b"


def test_a_module_of_the_distribution_passes(site: Path):
    owner, note = _members.check(patch("shop-lib", ("shop.billing", "change")), True, {})
    assert owner is not None and owner.versions == ("1.0",) and note == ""


def test_every_stranger_module_is_named_with_its_file(site: Path):
    p = patch("shop-lib", ("shop.billing", "change"), ("other.core", "change"),
              ("shop.plugin", "change"))
    with pytest.raises(NotInDistribution, match=r"^Refused patch ffffffffffff \(shop-lib 1\.0"
                       r"\u21921\.1\): it names the distribution shop-lib, but these modules "
                       r"are not files of shop-lib 1\.0") as exc:
        _members.check(p, False, {})
    assert refused(exc) == {"other.core": str((site / "other" / "core.py").resolve()),
                            "shop.plugin": str((site / "shop" / "plugin.py").resolve())}
    assert exc.value.code == "SUT-E116"


def test_a_loaded_module_is_judged_by_its_file(site: Path, tmp_path: Path):
    elsewhere = tmp_path / "copy" / "billing.py"
    elsewhere.parent.mkdir()
    elsewhere.write_text("x = 1\n")
    module = types.ModuleType("shop.billing")
    module.__file__ = str(elsewhere)
    with pytest.raises(NotInDistribution) as exc:
        _members.check(patch("shop-lib", ("shop.billing", "change")), False,
                       {"shop.billing": module})
    assert refused(exc) == {"shop.billing": str(elsewhere)}
    module.__file__ = str(site / "shop" / "billing.py")
    assert _members.check(patch("shop-lib", ("shop.billing", "change")), False,
                          {"shop.billing": module})[0] is not None


def test_added_modules_need_a_package_of_the_distribution(site: Path):
    assert _members.check(patch("shop-lib", ("shop.sub.new", "add")), True, {})[0] is not None
    for name in ("toplevel", "other.new", "shop.plugin"):   # no parent; another's; taken
        with pytest.raises(NotInDistribution) as exc:
            _members.check(patch("shop-lib", (name, "add")), True, {})
        assert list(refused(exc)) == [name]


def test_without_a_restriction_a_new_top_level_module_may_be_added_where_none_is(site: Path):
    # PyYAML 5.4 adds the top-level `_yaml`: trusted for any patch, that is allowed ...
    assert _members.check(patch("shop-lib", ("toplevel", "add")), False, {})[0] is not None
    # ... but not in another distribution's package, nor where a module already is
    for name in ("other.new", "shop.plugin", "other"):
        with pytest.raises(NotInDistribution) as exc:
            _members.check(patch("shop-lib", (name, "add")), False, {})
        assert list(refused(exc)) == [name]


def test_without_metadata_only_restricted_trust_is_refused(site: Path):
    p = patch("not-installed", ("shop.billing", "change"))
    with pytest.raises(UnprovenDistribution, match="has no installed metadata") as exc:
        _members.check(p, True, {})
    assert exc.value.code == "SUT-E117"
    owner, note = _members.check(p, False, {})
    assert owner is None and "not checked against its RECORD" in note
    tree = patch("tiny", ("shop.billing", "change"), kind="tree")
    assert _members.check(tree, False, {}) == (None, "")
    with pytest.raises(UnprovenDistribution, match="names no distribution"):
        _members.check(tree, True, {})
