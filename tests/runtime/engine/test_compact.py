"""Compact modules (patch format 2): hashes and changed lines instead of whole sources.

The engine rebuilds both sources from the process's own file, forwards from the baseline
or backwards from the fixed version, and accepts nothing whose hash is not the patch's.
"""

from __future__ import annotations

import os
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suture import runtime
from suture.runtime import patchfile
from suture.runtime.patchfile import ModulePatch, Source, compacted, resolve

from test_baseline import SNAPSHOT, V1, V2, _payload, _refused, _repack

V2_TEXT = textwrap.dedent(V2["tgt_bank.py"]).lstrip("\n")   # as the workspace writes it
EXAMPLES = int(os.environ.get("SUTURE_FUZZ_EXAMPLES", "300"))

# Lines built from a few tokens, with every line ending Python accepts and some without:
# diffs then have repeated lines, moved blocks, CRLF and a missing final newline.
LINE = st.sampled_from(["def f():", "    return 1", "    return 2", "", "x = 1", "# é",
                        "\x0c", "pass"])
END = st.sampled_from(["\n", "\r\n", "\r", ""])
TEXT = st.lists(st.tuples(LINE, END), max_size=25).map(
    lambda rows: "".join(line + end for line, end in rows))


def _module(baseline: str, fixed: str) -> ModulePatch:
    return compacted(ModulePatch("m", "change", Source.of(baseline), Source.of(fixed)))


@settings(max_examples=EXAMPLES, deadline=None)
@given(TEXT, TEXT)
def test_both_sources_are_rebuilt_from_either_version(baseline, fixed):
    mp = _module(baseline, fixed)
    assert mp.compact and mp.baseline is not None and mp.baseline.text is None
    for text in (baseline, fixed):
        full = resolve(mp, text)
        assert full is not None and not full.compact
        assert (full.baseline.text, full.fixed.text) == (baseline, fixed)  # type: ignore[union-attr]


@settings(max_examples=EXAMPLES, deadline=None)
@given(TEXT, TEXT, TEXT)
def test_any_other_text_is_not_accepted(baseline, fixed, other):
    if other in (baseline, fixed):
        return
    assert resolve(_module(baseline, fixed), other) is None


@settings(max_examples=EXAMPLES, deadline=None)
@given(TEXT, TEXT)
def test_the_file_round_trips_and_carries_only_the_changes(baseline, fixed):
    mp = _module(baseline, fixed)
    data = patchfile.dump(patchfile.Patch(target={"kind": "tree", "name": "m"}, modules=(mp,)))
    (loaded,) = runtime.load_patch(data).modules
    assert loaded == mp
    kept = sum(len(removed) + len(inserted) for _, removed, inserted in loaded.delta or ())
    assert kept <= len(baseline) + len(fixed)


def test_a_real_fix_travels_as_its_changed_lines():
    baseline = "".join(f"def f{i}(x):\n    return x + {i}\n\n" for i in range(500))
    fixed = baseline.replace("return x + 250\n", "return x + 250 + 1\n")
    mp = _module(baseline, fixed)
    assert mp.delta == ((250 * 3 + 1, "    return x + 250\n", "    return x + 250 + 1\n"),)


def test_a_hunk_whose_lines_are_not_there_rebuilds_nothing():
    mp = _module("a\nb\nc\n", "a\nB\nc\n")
    assert mp.delta == ((1, "b\n", "B\n"),)
    moved = ModulePatch(mp.name, mp.action, mp.baseline, mp.fixed, (), ((2, "b\n", "B\n"),))
    with pytest.raises(runtime.PatchFormatError, match=r"^patch is corrupt: the delta of "
                                                       r"module m does not rebuild its sources"):
        resolve(moved, "a\nb\nc\n")


# -- the reader ---------------------------------------------------------------------------

@pytest.fixture
def compact_bytes(ws) -> bytes:
    return ws.patch(ws.tree("v1", V1), ws.tree("v2", V2)).read_bytes()


def test_the_builder_writes_format_2_with_hashes_and_hunks_only(compact_bytes):
    payload = _payload(compact_bytes)
    assert payload["format"] == 2
    (m,) = payload["modules"]
    assert set(m["baseline"]) == {"sha256"} and set(m["fixed"]) == {"sha256", "delta"}
    assert len(compact_bytes) < 1400


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["fixed"].update(source=V2_TEXT), "needs exactly one of source and delta"),
    (lambda m: m["fixed"].update(delta=[[0, "", ""], "x"]), r"delta\[1\] is not a hunk"),
    (lambda m: m["fixed"].update(delta=[[3, "", ""], [1, "", ""]]), r"delta\[1\] is not a hunk"),
    (lambda m: m["fixed"].update(delta=[[True, "", ""]]), r"delta\[0\] is not a hunk"),
    (lambda m: m["fixed"].update(delta=[[-1, "", ""]]), r"delta\[0\] is not a hunk"),
    (lambda m: m["baseline"].update(sha256="abc"), "baseline.sha256 is not a sha256"),
    (lambda m: m.update(action="add", baseline=None), "has a delta but no baseline"),
], ids=["source and delta", "not a list", "out of order", "bool line", "negative line",
        "short hash", "added module with a delta"])
def test_the_reader_refuses_malformed_compact_modules(compact_bytes, edit, message):
    payload = _payload(compact_bytes)
    edit(payload["modules"][0])
    with pytest.raises(runtime.PatchFormatError, match=message):
        runtime.load_patch(_repack(payload))


def test_format_1_still_requires_whole_sources(compact_bytes):
    payload = _payload(compact_bytes)
    payload["format"] = 1   # format 1 has whole sources only
    with pytest.raises(runtime.PatchFormatError, match=r"has no 'source'"):
        runtime.load_patch(_repack(payload))


# -- in a process -----------------------------------------------------------------------------

@pytest.mark.slow
def test_an_edited_hunk_is_refused_when_rebuilt_and_nothing_changes(ws, compact_bytes):
    payload = _payload(compact_bytes)
    hunks = payload["modules"][0]["fixed"]["delta"]
    hunks[0][2] = hunks[0][2].replace("amount // 100", "amount // 900")
    edited = ws.root / "edited.suture"
    edited.write_bytes(_repack(payload))
    runtime.load_patch(edited.read_bytes())   # well-formed; only the rebuild can tell
    err = _refused(ws, edited, ws.tree("v1", V1))
    assert err["code"] == "SUT-E100"
    assert err["message"].startswith("patch is corrupt: the delta of module tgt_bank does "
                                     "not rebuild its sources")


@pytest.mark.slow
def test_a_compact_patch_stacks_on_an_applied_one(ws):
    # v2 -> v3 has v2 as its baseline: not on disk, but the applied patch's fixed source.
    v1, v2 = ws.tree("v1", V1), ws.tree("v2", V2)
    v3 = ws.tree("v3", {"tgt_bank.py": V2["tgt_bank.py"].replace("amount <= 1000",
                                                                  "amount <= 500")})
    first, second = ws.patch(v1, v2), ws.patch(v2, v3)
    got = ws.run(SNAPSHOT + r"""
states = [runtime.apply(load(ARGS["first"])).state, runtime.apply(load(ARGS["second"])).state]
acct = tgt_bank.Account("ann")
emit({"states": states, "limit": [acct.can_withdraw(700), acct.can_withdraw(400)]})
""", [v1], {"first": str(first), "second": str(second)})
    assert got == {"states": ["applied", "applied"], "limit": [False, True]}

