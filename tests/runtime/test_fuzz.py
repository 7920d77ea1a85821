"""Fuzzing the patch parser (issue 5): whatever the bytes, ``load`` returns a patch or raises
``PatchFormatError``, and so do the readers behind it (signature check, store install).

Bounded for CI: SUTURE_FUZZ_EXAMPLES (default 300) examples per property; set it higher to
fuzz longer locally. Three generators: arbitrary bytes; edits of a real patch file (flips,
cuts, insertions); and schema-shaped documents whose every field may have the wrong type,
which reach the validators deepest.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suture.runtime import store
from suture.runtime.errors import PatchFormatError
from suture.runtime.patchfile import (PAYLOAD_TYPE, Patch, canonical_json, dump, load,
                                     payload_json, read_envelope, resolve, sha256_text)
from suture.tooling import trust
from suture.tooling.build import build_trees
from suture.tooling.build.sources import materialize

EXAMPLES = int(os.environ.get("SUTURE_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


def _real_patch() -> bytes:
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        for tag, body in (("a", "1"), ("b", "2")):
            pkg = Path(d, tag, "fz")
            pkg.mkdir(parents=True)
            (pkg / "__init__.py").write_text("")
            (pkg / "m.py").write_text(f"X = {body}\n\ndef f():\n    return X\n")
        report = build_trees(materialize(str(Path(d, "a"))), materialize(str(Path(d, "b"))))
    assert report.data is not None
    return report.data


REAL = _real_patch()

# Any JSON value, small.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=3),
    max_leaves=8)


def maybe(strategy: Any) -> Any:
    """The right shape nine times in ten, any JSON value otherwise: most documents get deep
    into the validators, and each field is sometimes wrong on its own."""
    return st.integers(0, 9).flatmap(lambda i: json_values if i == 0 else strategy)


def source(text: Any) -> Any:
    return st.builds(lambda t, good: {"source": t, "sha256": sha256_text(t) if good else "0"},
                     text, st.booleans())


# Format 2's compact forms: a baseline known by its hash, a fixed source as hunks.
digest = st.sampled_from([sha256_text("X = 1\n"), sha256_text("X = 2\n"), "0" * 64, "abc"])
hunk = st.tuples(st.integers(-1, 3), st.sampled_from(["", "X = 1\n", "X = 2\n", "\r"]),
                 st.sampled_from(["", "X = 2\n", "def f(:\n"])).map(list)
compact_baseline = st.builds(lambda d: {"sha256": d}, digest)
delta = st.builds(lambda d, hunks: {"sha256": d, "delta": hunks}, digest,
                  maybe(st.lists(maybe(hunk), max_size=3)))

module = st.fixed_dictionaries({
    "name": maybe(st.sampled_from(["fz.m", "fz", "", "a..b", "1x", "fz.m"])),
    "action": maybe(st.sampled_from(["change", "add", "remove"])),
    "baseline": maybe(st.none() | compact_baseline
                      | source(st.sampled_from(["X = 1\n", "def f(:\n", ""]))),
    "fixed": maybe(st.none() | delta
                   | source(st.sampled_from(["X = 2\n", "def f():\n  return 1\n"]))),
    "changes": maybe(st.lists(st.fixed_dictionaries({
        "kind": maybe(st.sampled_from(["changed function", "added"])),
        "qualname": maybe(st.text(max_size=5)),
        "verdict": maybe(st.sampled_from(["live", "caveat", "restart", "hook", "maybe"])),
        "reason": maybe(st.text(max_size=5))}), max_size=2)),
})

# A compact module with each part right more often, so that accepted ones reach resolve().
compact_module = st.fixed_dictionaries({
    "name": st.just("fz.m"), "action": st.just("change"),
    "baseline": maybe(compact_baseline), "fixed": maybe(delta),
    "changes": st.just([])})

payload = st.fixed_dictionaries({
    "format": maybe(st.sampled_from([1, 2])),
    "target": maybe(st.fixed_dictionaries({
        "name": maybe(st.sampled_from(["fz", "requests", ""])),
        "kind": maybe(st.sampled_from(["tree", "distribution"])),
        "from_version": maybe(st.sampled_from(["1.0", None])),
        "to_version": maybe(st.sampled_from(["1.1", None]))})),
    "meta": maybe(st.fixed_dictionaries({"cves": maybe(st.lists(st.text(max_size=6),
                                                                max_size=2)),
                                         "summary": maybe(st.text(max_size=6)),
                                         "partial": maybe(st.booleans())})),
    "modules": maybe(st.lists(module, max_size=2)),
    "files": maybe(st.lists(maybe(st.fixed_dictionaries({"path": st.text(max_size=5),
                                                          "kind": st.text(max_size=5)})),
                            max_size=2)),
    "hooks": maybe(st.none() | source(st.sampled_from(["def pre_apply(ctx):\n  pass\n"]))),
})


def envelope(body: Any, signatures: Any) -> bytes:
    encoded = base64.b64encode(canonical_json(body)).decode("ascii")
    return canonical_json({"payload": encoded, "payloadType": PAYLOAD_TYPE,
                           "signatures": signatures}) + b"\n"


def readers_agree(data: bytes) -> None:
    """Every reader of patch files raises only PatchFormatError on ``data``."""
    try:
        patch = load(data)
    except PatchFormatError:
        patch = None
    if patch is not None:
        # What later readers do with an accepted patch must work: describe it, write it
        # again (the builder's and signer's path), index it like the store and status do.
        assert isinstance(patch, Patch) and len(patch.id) == 64
        patch.describe()
        again = load(dump(patch))
        assert [m.name for m in again.modules] == sorted(m.name for m in patch.modules)
        json.dumps([patch.target.get("from_version"), patch.target.get("to_version"),
                    list(patch.meta.get("cves") or []), [f.get("verdict") for f in patch.files]])
        # the engine's first step on a compact module: rebuild it from the target's file
        for mp in patch.modules:
            for text in ("X = 1\n", "X = 2\n", "", None):
                try:
                    resolve(mp, text)
                except PatchFormatError:
                    pass
    try:
        verdict = trust.check(data, trust.Policy("fuzz", ()))
    except PatchFormatError:  # also a malformed signature list, on a payload load() accepts
        return
    assert patch is not None and not verdict.trusted  # this policy trusts no key


@FUZZ
@given(st.binary(max_size=4096))
def test_arbitrary_bytes(data: bytes):
    readers_agree(data)


@FUZZ
@given(st.data())
def test_edits_of_a_real_patch(data: Any):
    blob = bytearray(REAL)
    for _ in range(data.draw(st.integers(1, 4))):
        if not blob:
            break
        i = data.draw(st.integers(0, len(blob) - 1))
        how = data.draw(st.sampled_from(["flip", "cut", "insert", "truncate"]))
        if how == "flip":
            blob[i] ^= 1 << data.draw(st.integers(0, 7))
        elif how == "cut":
            del blob[i:i + data.draw(st.integers(1, 16))]
        elif how == "insert":
            blob[i:i] = data.draw(st.binary(min_size=1, max_size=8))
        else:
            del blob[i:]
    readers_agree(bytes(blob))


@FUZZ
@given(payload, st.one_of(st.just([]), maybe(st.lists(maybe(st.fixed_dictionaries(
    {"keyid": maybe(st.text(max_size=4)), "sig": maybe(st.text(max_size=8))})), max_size=2))))
def test_schema_shaped_documents(body: Any, signatures: Any):
    readers_agree(envelope(body, signatures))


@settings(max_examples=max(20, EXAMPLES // 3), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(payload)
def test_the_store_refuses_or_keeps_what_load_accepts(tmp_path_factory: Any, body: Any):
    # install() reads fields of the patch (target versions, meta.cves) to index it: a
    # document load() accepts must not break it with a wrong type there.
    saved = os.environ["SUTURE_STATE_DIR"]
    os.environ["SUTURE_STATE_DIR"] = str(tmp_path_factory.mktemp("fuzzstore") / "s")
    try:
        data = envelope(body, [])
        try:
            load(data)
        except PatchFormatError:
            with pytest.raises(PatchFormatError):
                store.install(data)
            return
        patch = store.install(data, {"unsigned": True, "signers": []})
        assert [r["id"] for r in store.installed()] == [patch.id]
        json.dumps(store.installed())
    finally:
        os.environ["SUTURE_STATE_DIR"] = saved


@FUZZ
@given(compact_module)
def test_compact_modules_in_a_real_patch(module: Any):
    # The real patch (compact, format 2) with its module replaced: the rest stays valid, so
    # every draw reaches the compact validators and, when accepted, resolve().
    body = json.loads(payload_json(*read_envelope(REAL)))
    assert body["format"] == 2
    module["changes"] = body["modules"][0]["changes"]
    body["modules"] = [module]
    readers_agree(envelope(body, []))
