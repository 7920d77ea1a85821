"""The definition diff's shortcuts give what the walks and dumps they replace give.

``syntax.same_body`` answers ``_body_dump(old) == _body_dump(new)`` mostly without dumping,
``syntax.walk`` is ``list(ast.walk(node))``, and ``call_hazards`` skips callers whose
text names no changed callee (``instances._may_call``). Each is checked here against
the original on every function of the hard cases, of urllib3's releases and of
generated packages, and on the edge cases their proofs name. The whole corpus, whole
plans against an older tree: ``tests/runtime/diff_corpus.py``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

from suture.runtime._defs import diff as D
from suture.runtime._defs import instances as I
from suture.runtime._defs import syntax as S

sys.path.insert(0, str(Path(__file__).parent))
import diff_corpus  # noqa: E402


def _corpus() -> List[Tuple[str, str, str]]:
    return [(i, o, n) for i, o, n in diff_corpus.pairs(8)
            if not i.startswith("wheel") or "urllib3" in i]


CORPUS = _corpus()


def _trees() -> Iterator[Tuple[str, ast.Module, ast.Module, str, str]]:
    for ident, old, new in CORPUS:
        try:
            yield ident, ast.parse(old), ast.parse(new), old, new
        except SyntaxError:
            continue


def test_same_body_is_the_dump_comparison() -> None:
    checked = 0
    for ident, old, new, _, _ in _trees():
        of = list(S.iter_functions(old.body, overloads=True))
        nf = list(S.iter_functions(new.body, overloads=True))
        news = dict(nf)
        pairs = [(a, news[q]) for q, a in of if q in news]        # the same definition
        pairs += [(a, b) for (_, a), (_, b) in zip(of, of[1:])]   # two others
        pairs += [(a, a) for _, a in of]
        for a, b in pairs:
            want = S._body_dump(a) == S._body_dump(b)
            assert S.same_body(a, b) == want, (ident, a.name, b.name)
            assert S.same_body(b, a) == want, (ident, b.name, a.name)
            checked += 1
    assert checked > 1000


def test_same_dump_decides_only_what_the_dumps_decide() -> None:
    decided = 0
    for ident, old, new, _, _ in _trees():
        for a, b in [*zip(old.body, new.body), *zip(old.body, old.body[1:])]:
            verdict = S._same_dump(a, b)
            if verdict != S._UNDECIDED:
                assert (verdict == S._EQUAL) == (S.dump(a) == S.dump(b)), (ident, S._text(a))
                decided += 1
    assert decided > 100


@pytest.mark.parametrize("old, new", [
    ("def f(a): pass", "def f(a, /): pass"),          # the joined dump cannot tell them
    ("def f(a, b): pass", "def f(a, *, b): pass"),
    ("def f(*a): pass", "def f(a): pass"),
    ("def f(a): return 0.0", "def f(a): return -0.0"),
    ("def f(a): return 1", "def f(a): return True"),
    ("def f(a): return 1", "def f(a): return 1.0"),
    ("def f(a): return 'x'", "def f(a): return u'x'"),
    ("def f(a): return 'x'", "def f(a): return b'x'"),
    ("def f(a): return a", "def f(a): a = 1"),
    ("def f(a): x = a", "def f(a): a.x = a"),
    ("def f(a): return [a]", "def f(a): return [a, a]"),
    ("def f(a): return []", "def f(a): return [a]"),
    ("def f(a): return", "def f(a): return None"),
    ("def f(a) -> int: pass", "def f(a): pass"),
    ("def f(a: int): pass", "def f(a): pass"),
    ("def f(a): pass", "async def f(a): pass"),
    ("def f(a): pass", "def f(a):\n    pass\n    pass"),
    ("def f(a): global x", "def f(a): global x, y"),
    ("def f(a): return f'{a}'", "def f(a): return f'{a!r}'"),
    ("def f(a): return a[1:]", "def f(a): return a[1:2]"),
    ("def f(a): pass", "def f(a):  # comment\n    pass"),
])
def test_same_body_edge_cases(old: str, new: str) -> None:
    a, b = ast.parse(old).body[0], ast.parse(new).body[0]
    assert isinstance(a, (ast.FunctionDef, ast.AsyncFunctionDef))
    assert isinstance(b, (ast.FunctionDef, ast.AsyncFunctionDef))
    assert S.same_body(a, b) == (S._body_dump(a) == S._body_dump(b))
    assert S.same_body(b, a) == (S._body_dump(b) == S._body_dump(a))


def test_walk_is_ast_walk() -> None:
    for _, old, new, _, _ in _trees():
        for tree in (old, new):
            mine, theirs = S.walk(tree), list(ast.walk(tree))
            assert len(mine) == len(theirs)
            assert all(x is y for x, y in zip(mine, theirs))


def _hazards_both_ways(old_src: str, new_src: str) -> Tuple[list, list]:
    plan = D.diff_module(old_src, new_src)
    assert plan.old_tree is not None and plan.new_tree is not None
    changed = D.code_changed(plan)
    return (I.call_hazards(plan.old_tree, plan.new_tree, changed),
            I.call_hazards(plan.old_tree, plan.new_tree, changed, D._lines(old_src)))


def test_skipping_callers_changes_no_hazard() -> None:
    found = 0
    for ident, old, new in CORPUS:
        try:
            walked, skipped = _hazards_both_ways(old, new)
        except SyntaxError:
            continue
        assert walked == skipped, ident
        found += len(walked)
    assert found > 0


@pytest.mark.parametrize("call", [
    "g(1)",                 # a changed callee
    "f(1) if a else g(1)",
    "h(1)",                 # through an alias
    "ｇ(1)",                # NFKC: the tree says g
    "f(a - 1) or g(a)",     # its own name twice
])
def test_callers_that_name_a_changed_callee_are_walked(call: str) -> None:
    old = f"def g(a, b=0):\n    return a\n\n\nh = g\n\n\ndef f(a):\n    return {call}\n"
    new = old.replace("def g(a, b=0):\n    return a", "def g(a, b):\n    return a + 1") \
        .replace("return " + call, "return " + call + " or 0")
    walked, skipped = _hazards_both_ways(old, new)
    assert walked == skipped and walked, walked


def test_self_calls_of_a_changed_method_are_walked() -> None:
    old = ("class C:\n    def m(self, a):\n        return a\n\n"
           "    def n(self):\n        return self.m(1)\n")
    new = old.replace("def m(self, a):\n        return a", "def m(self, a, b):\n        return b") \
        .replace("return self.m(1)", "return self.m(1) or 0")
    walked, skipped = _hazards_both_ways(old, new)
    assert walked == skipped and [h.callee for h in walked] == ["C.m"]
