"""runtime/_fingerprint.py: structural fingerprints of module state, read without running
application code, equal in any process for equal structure (issue 15's state manifest)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Any, List

import pytest
from hypothesis import given, settings, strategies as st

from suture.runtime import _fingerprint as F

SRC = Path(__file__).resolve().parents[2] / "src"


class Tripwire(Exception):
    pass


calls: List[str] = []


class Hostile:
    """Every hook a careless walker would call: each one records and raises."""

    def __init__(self) -> None:
        object.__setattr__(self, "payload", [1, 2])

    def __eq__(self, other: object) -> bool:
        calls.append("__eq__")
        raise Tripwire

    def __hash__(self) -> int:
        calls.append("__hash__")
        raise Tripwire

    def __repr__(self) -> str:
        calls.append("__repr__")
        raise Tripwire

    def __getattribute__(self, name: str) -> Any:
        calls.append(f"__getattribute__ {name}")
        raise Tripwire

    def __getattr__(self, name: str) -> Any:
        calls.append(f"__getattr__ {name}")
        raise Tripwire

    def __iter__(self) -> Any:
        calls.append("__iter__")
        raise Tripwire

    def __len__(self) -> int:
        calls.append("__len__")
        raise Tripwire

    @property
    def prop(self) -> int:
        calls.append("prop")
        raise Tripwire


class Meta(type):
    def __getattribute__(cls, name: str) -> Any:
        calls.append(f"Meta.__getattribute__ {name}")
        raise Tripwire

    def __repr__(cls) -> str:
        calls.append("Meta.__repr__")
        raise Tripwire


class Guarded(metaclass=Meta):
    LIMIT = 3


class HostileDict(dict):  # type: ignore[type-arg]
    def __iter__(self) -> Any:
        calls.append("HostileDict.__iter__")
        raise Tripwire

    def items(self) -> Any:
        calls.append("HostileDict.items")
        raise Tripwire


def test_no_application_code_runs_while_fingerprinting_and_describing():
    calls.clear()
    # fingerprinted as this module's own state (its classes are not another package's)
    ns = {"h": Hostile(), "g": Guarded, "d": HostileDict(a=Hostile()), "t": (Hostile(),),
          "s": {1, 2}, "__name__": __name__}
    ns["g_instance"] = object.__new__(Guarded)
    state = F.module_state(ns, __name__)
    for label, (segments, fp, _desc) in state.items():
        assert F.fingerprint_at(ns, __name__, segments) == fp, label
        F.value_at(ns, segments)
    assert state["h.payload"][1] != state["g"][1]
    assert calls == []


def _probe(expr: str) -> str:
    return F.fingerprint_value(eval(expr, {"re": re, "types": types}))


@pytest.mark.parametrize("a, b", [
    ("{3, 1, 2}", "{2, 3, 1}"),                             # order-free sets
    ("{'a': 1, 'b': 2}", "{'b': 2, 'a': 1}"),                 # and dicts
    ("frozenset('abc')", "frozenset('cba')"),
    ("re.compile('a+', re.I)", "re.compile('a+', re.I)"),
])
def test_equal_structure_equal_fingerprint(a, b):
    assert _probe(a) == _probe(b)


@pytest.mark.parametrize("a, b", [
    ("{'a': 1, 'b': 2}", "{'a': 2, 'b': 1}"),
    ("re.compile('a+', re.I)", "re.compile('a+')"),           # flags count
    ("re.compile('a+')", "re.compile('a*')"),
    ("(1, 2)", "[1, 2]"),
    ("1", "True"),
    ("1.0", "1"),
])
def test_different_structure_different_fingerprint(a, b):
    assert _probe(a) != _probe(b)


def test_functions_are_fingerprinted_by_name_and_defaults_not_bytecode_nor_line():
    one, two = {}, {}
    exec("def f(x=1):\n    return x + 1\n", one)
    exec("\ndef f(x=1):\n    return x * 2\n", two)     # another body, one line lower
    assert F.fingerprint_value(one["f"]) == F.fingerprint_value(two["f"])
    exec("def f(x=2):\n    return x + 1\n", two)        # another default
    assert F.fingerprint_value(one["f"]) != F.fingerprint_value(two["f"])


def test_a_name_defined_twice_is_told_apart_by_its_line():
    source = ("import sys\nclass Q:\n    if sys.maxsize > 1:\n        def m(self):\n"
              "            return 1\n    else:\n        def m(self):\n            return 2\n"
              "def g():\n    pass\n")
    assert F.defined_twice(source, "def g():\n    pass\n") == ["Q.m"]
    ns: dict = {"__name__": "m"}
    exec(source, ns)
    plain = F.module_state(ns, "m")["Q.m"][1]
    lined = F.module_state(ns, "m", lined={"Q.m"})["Q.m"][1]
    assert plain != lined and "@4" in lined


_TWO_DEFS = ("import sys\nclass Q:\n    if sys.maxsize {op} 1:\n        def m(self):\n"
             "            return 1\n    else:\n        def m(self):\n            return 2\n")


def test_defs_of_one_name_on_the_same_line_are_told_apart_by_their_ordinal():
    # v1 binds its 2nd def of Q.m, at line 7; v2 (three lines added above, the condition
    # flipped) binds its 1st, also at line 7: by line alone they were the same (seed 422)
    v1 = _TWO_DEFS.format(op="<")
    v2 = '"""Doc.\n\nMore."""\n' + _TWO_DEFS.format(op=">")
    assert F.def_lines(v1) == {"Q.m": [4, 7]} and F.def_lines(v2) == {"Q.m": [7, 10]}
    lined = F.lined_defs(v1, v2)
    assert lined == {"Q.m": {"baseline": [4, 7], "fixed": [7, 10]}}
    one: dict = {"__name__": "m"}
    two: dict = {"__name__": "m"}
    exec(v1, one)
    exec(v2, two)
    assert one["Q"].m.__code__.co_firstlineno == two["Q"].m.__code__.co_firstlineno == 7
    old = F.module_state(one, "m", lined=F.lined_for(lined, "baseline"))["Q.m"][1]
    new = F.module_state(two, "m", lined=F.lined_for(lined, "fixed"))["Q.m"][1]
    assert old != new and "@1:7" in old and "@0:7" in new
    # the path, computed alone, as the engine does
    assert F.fingerprint_at(one, "m", [("g", "Q"), ("a", "m")],
                            lined=F.lined_for(lined, "baseline")) == old
    assert F.fingerprint_at(two, "m", [("g", "Q"), ("a", "m")],
                            lined=F.lined_for(lined, "fixed")) == new
    # a manifest of before (a plain list of names: the line only) saw no difference
    names = F.lined_for(["Q.m"], "fixed")
    assert names == frozenset({"Q.m"})
    assert F.module_state(one, "m", lined=names)["Q.m"][1] == \
        F.module_state(two, "m", lined=names)["Q.m"][1]
    # the same def in both releases (the condition kept, lines moved): the same ordinal
    v3 = '"""Doc.\n\nMore."""\n' + v1
    three: dict = {"__name__": "m"}
    exec(v3, three)
    moved = F.lined_defs(v1, v3)
    assert "@1:10" in F.module_state(three, "m", lined=F.lined_for(moved, "fixed"))["Q.m"][1]


def test_def_lines_are_the_first_lines_functions_report():
    source = ("import functools\ntry:\n    import json\nexcept ImportError:\n"
              "    def f():\n        return 1\nelse:\n    @functools.lru_cache()\n"
              "    def f():\n        return 2\nclass A:\n    class B:\n"
              "        for _ in (1,):\n            def g(self):\n                pass\n"
              "        def g(self):\n            pass\n")
    assert F.def_lines(source) == {"f": [5, 8], "A.B.g": [14, 16]}
    ns: dict = {"__name__": "m"}
    exec(source, ns)
    assert ns["f"].__wrapped__.__code__.co_firstlineno == 8   # the decorator's line
    assert F.def_lines("def (:\n") == {}
    assert F.defined_twice(source) == ["A.B.g", "f"]


def test_a_lined_name_of_another_module_keeps_its_line_only():
    ns: dict = {"__name__": "m"}
    exec("def f():\n    pass\n", {"__name__": "elsewhere"}, ns)   # f.__module__: elsewhere
    ns["__name__"] = "m"
    fp = F.module_state(ns, "m", lined={"f": [1, 3]})["f"][1]
    assert "@1" in fp and "@0:" not in fp
    mine: dict = {"__name__": "m"}
    exec("def f():\n    pass\n", mine)
    assert "@0:1" in F.module_state(mine, "m", lined={"f": [1, 3]})["f"][1]
    assert "@?:1" in F.module_state(mine, "m", lined={"f": [2, 3]})["f"][1]


def test_the_same_module_fingerprints_the_same_in_processes_with_other_hash_seeds():
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); "
            "from suture.runtime import _fingerprint as F; import email.message, json as j; "
            "print(json.dumps({m.__name__: {k: v[1] for k, v in "
            "F.module_state(vars(m), m.__name__).items()} for m in (email.message, j)}))")
    runs = [json.loads(subprocess.run([sys.executable, "-c", code, str(SRC)], check=True,
                                      capture_output=True, text=True,
                                      env=dict(os.environ, PYTHONHASHSEED=seed)).stdout)
            for seed in ("1", "2")]
    assert runs[0] == runs[1] and len(runs[0]["email.message"]) > 50


def test_strings_under_the_import_root_read_the_same_wherever_it_is():
    a = {"HERE": "/srv/a/pkg", "__name__": "m"}
    b = {"HERE": "/opt/site-packages/pkg", "__name__": "m"}
    fa = F.module_state(a, "m", root="/srv/a")["HERE"][1]
    fb = F.module_state(b, "m", root="/opt/site-packages")["HERE"][1]
    assert fa == fb
    assert F.module_state(a, "m")["HERE"][1] != F.module_state(b, "m")["HERE"][1]
    enc = F.literal("/srv/a/pkg/templates", root="/srv/a")
    assert F.from_literal(enc, root="/x/y") == "/x/y/pkg/templates"


atoms = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20),
                  st.binary(max_size=20),
                  st.floats(allow_nan=False))
literals = st.recursive(atoms, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.tuples(inner, inner),
    st.frozensets(st.one_of(st.integers(), st.text(max_size=5)), max_size=4),
    st.dictionaries(st.one_of(st.integers(), st.text(max_size=5)), inner, max_size=4)),
    max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(literals)
def test_literals_round_trip_through_json_with_equal_fingerprints(value):
    enc = F.literal(value)
    assert enc is not None
    back = F.from_literal(json.loads(json.dumps(enc)))
    assert F.fingerprint_value(back) == F.fingerprint_value(value)


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.one_of(st.integers(), st.text(max_size=3), st.none()),
                    lambda inner: st.one_of(st.lists(inner, max_size=3),
                                            st.dictionaries(st.text(max_size=3), inner,
                                                            max_size=3)), max_leaves=15))
def test_every_recorded_path_reads_back_to_its_own_fingerprint(value):
    ns = {"X": value, "__name__": "m"}
    for label, (segments, fp, _) in F.module_state(ns, "m").items():
        assert F.fingerprint_at(ns, "m", segments) == fp, label


def test_functions_and_classes_travel_as_references_to_where_they_are_defined():
    mod = types.ModuleType("fp_probe_mod")
    exec("class K:\n    def m(self):\n        pass\ndef f():\n    pass\nREG = {'k': K, 'f': f}\n",
         mod.__dict__)
    sys.modules["fp_probe_mod"] = mod
    try:
        enc = F.literal(mod.REG)
        assert enc == ["dict", [[["str", "k"], ["ref", ["fp_probe_mod", "K"]]],
                                [["str", "f"], ["ref", ["fp_probe_mod", "f"]]]]]
        assert F.from_literal(enc) == {"k": mod.K, "f": mod.f}
        assert F.from_literal(enc, refs=False) == {"k": None, "f": None}
        assert F.literal({mod.K: 1}) is None          # never hashed: not a key
    finally:
        del sys.modules["fp_probe_mod"]


def test_another_packages_objects_count_by_their_plain_attributes_only():
    import logging
    log = logging.getLogger("fp-probe")
    ns = {"log": log, "__name__": "mypkg.mod"}
    state = F.module_state(ns, "mypkg.mod")
    assert [label for label in state if label.startswith("log")] == ["log"]
    before = state["log"][1]
    logging.getLogger("fp-probe.other")            # logging's state, not the module's
    assert F.module_state(ns, "mypkg.mod")["log"][1] == before
    log.setLevel(logging.ERROR)                     # the object's own plain attribute
    assert F.module_state(ns, "mypkg.mod")["log"][1] != before


def test_a_walk_that_is_too_large_says_so():
    ns = {"BIG": [[i] for i in range(F.BUDGET)], "__name__": "m"}
    with pytest.raises(F.TooLarge):
        F.module_state(ns, "m")
