"""Apply checks the baseline and the patch itself before it touches anything.

Refusals leave the process exactly as it was: every function keeps the very
same code object (``is``), module and class dicts hold the same values, no
patch is recorded and no import hook is installed.
"""

from __future__ import annotations

import base64
import hashlib
import dataclasses
import json
import re
import textwrap
import zlib

import pytest

from suture import runtime
from suture.runtime import patchfile
from suture.runtime.patchfile import Source

V1 = {"tgt_bank.py": '''
    """Bank."""

    FEE = 2


    def fee(amount):
        return FEE


    def transfer(amount):
        if amount <= 0:
            raise ValueError("amount")
        return amount - fee(amount)


    class Account:
        def __init__(self, owner):
            self.owner = owner

        def can_withdraw(self, amount):
            return True
'''}

V2 = {"tgt_bank.py": V1["tgt_bank.py"]
      .replace("        return FEE\n", "        return max(FEE, amount // 100)\n")
      .replace("            return True\n", "            return amount <= 1000\n")}

# The process runs a locally edited v1: transfer() differs, which the patch does not change.
V1_EDITED = {"tgt_bank.py": V1["tgt_bank.py"].replace("amount <= 0:", "amount < 0:")}
# Half fixed by hand: fee() is v2's, can_withdraw() still v1's.
V1_HALF = {"tgt_bank.py": V1["tgt_bank.py"]
           .replace("        return FEE\n", "        return max(FEE, amount // 100)\n")}

# Observe the process: behaviour, plus everything a refusal must leave alone.
SNAPSHOT = r"""
import tgt_bank

def observe():
    acct = tgt_bank.Account("ann")
    return [tgt_bank.fee(5000), tgt_bank.transfer(5000), acct.can_withdraw(5000)]

def state():
    return {"codes": codes(tgt_bank), "module": dict(vars(tgt_bank)),
            "cls": dict(vars(tgt_bank.Account)), "meta_path": list(sys.meta_path)}

def unchanged(before):
    now = state()
    return {
        "codes": same_codes(before["codes"], [tgt_bank]),
        "module": now["module"].keys() == before["module"].keys()
                  and all(now["module"][k] is v for k, v in before["module"].items()),
        "cls": now["cls"].keys() == before["cls"].keys()
               and all(now["cls"][k] is v for k, v in before["cls"].items()),
        "meta_path": now["meta_path"] == before["meta_path"],
        "applied": runtime.applied(),
        "patches": runtime.status()["patches"],
        "hook": _hook.installed(),
    }

NOTHING_CHANGED = {"codes": True, "module": True, "cls": True, "meta_path": True,
                   "applied": [], "patches": [], "hook": False}
"""

REFUSE = SNAPSHOT + r"""
before_obs = observe()
before = state()
err = refusal(runtime.apply, load(ARGS["patch"]))
emit({"err": err, "check": unchanged(before), "expected": NOTHING_CHANGED,
      "before": before_obs, "after": observe()})
"""


def _refused(ws, patch, root):
    got = ws.run(REFUSE, [root], {"patch": str(patch)})
    assert got["check"] == got["expected"]
    assert got["after"] == got["before"]
    assert got["err"] is not None, "apply did not refuse"
    return got["err"]


# A compact patch (the default) carries the baseline's hash, not its source: when the
# process's own file is neither version, the engine refuses at the file, before the code.
COMPACT_REFUSAL = (r"^Refused patch [0-9a-f]{12} \(tgt_bank\): tgt_bank does not match the "
                   r"baseline: its source file \(.+/tgt_bank\.py\) is neither the baseline "
                   r"\(sha256 [0-9a-f]{12}\u2026\) nor the fixed version, and this patch "
                   r"carries only the changed lines, .* rebuild the patch with `suture build "
                   r"--embed-sources`, which carries the whole baseline\. \[SUT-E201\]$")


@pytest.mark.slow
def test_a_compact_patch_refuses_a_process_whose_file_is_another_version(ws):
    patch = ws.patch(ws.tree("v1", V1), ws.tree("v2", V2))
    err = _refused(ws, patch, ws.tree("v1_edited", V1_EDITED))
    assert err["code"] == "SUT-E201" and err["error"] == "BaselineMismatch"
    assert err["details"]["first"] is None
    assert re.match(COMPACT_REFUSAL, err["message"]), err["message"]


@pytest.mark.slow
def test_a_compact_patch_still_checks_the_running_code_against_the_baseline(ws):
    # The file on disk is the baseline again, but the process runs an edited transfer():
    # the sources rebuilt from the file are compiled and compared like whole ones.
    patch = ws.patch(ws.tree("v1", V1), ws.tree("v2", V2))
    got = ws.run(SNAPSHOT + r"""
before_obs = observe()
before = state()
with open(tgt_bank.__file__, "w", encoding="utf-8") as f:
    f.write(ARGS["v1"])
err = refusal(runtime.apply, load(ARGS["patch"]))
emit({"err": err, "check": unchanged(before), "expected": NOTHING_CHANGED,
      "before": before_obs, "after": observe()})
""", [ws.tree("v1_edited", V1_EDITED)],
                 {"patch": str(patch), "v1": textwrap.dedent(V1["tgt_bank.py"]).lstrip("\n")})
    assert got["check"] == got["expected"] and got["after"] == got["before"]
    assert got["err"]["code"] == "SUT-E201" and got["err"]["details"]["first"] == "transfer"


@pytest.mark.slow
def test_a_compact_patch_applies_to_a_process_whose_file_is_already_the_fixed_version(ws):
    # `pip install -U` under a running process: the file is the fixed version, the process
    # still runs the baseline. The baseline is rebuilt backwards from the fixed file.
    patch = ws.patch(ws.tree("v1", V1), ws.tree("v2", V2))
    got = ws.run(SNAPSHOT + r"""
before = observe()
with open(tgt_bank.__file__, "w", encoding="utf-8") as f:
    f.write(ARGS["v2"])
result = runtime.apply(load(ARGS["patch"]))
emit({"state": result.state, "before": before, "after": observe()})
""", [ws.tree("v1", V1)],
                 {"patch": str(patch), "v2": textwrap.dedent(V2["tgt_bank.py"]).lstrip("\n")})
    assert got["state"] == "applied"
    assert got["before"] != got["after"]


@pytest.mark.slow
def test_apply_refuses_when_an_unchanged_function_differs_from_the_baseline(ws):
    patch = ws.patch(ws.tree("v1", V1), ws.tree("v2", V2), embed=True)
    err = _refused(ws, patch, ws.tree("v1_edited", V1_EDITED))
    assert err["code"] == "SUT-E201" and err["error"] == "BaselineMismatch"
    assert err["details"]["first"] == "transfer"
    assert re.match(
        r"^Refused patch [0-9a-f]{12} \(tgt_bank\): tgt_bank does not match the baseline: "
        r"`tgt_bank:transfer` differs from the code the patch was built against "
        r"\(sha256 [0-9a-f]{12}\u2026\)\. Nothing was changed\. Check which version the "
        r"process runs, then rebuild the patch from that version\. \[SUT-E201\]$",
        err["message"]), err["message"]


@pytest.mark.slow
def test_apply_refuses_when_a_changed_function_differs_from_both_versions(ws):
    patch = ws.patch(ws.tree("v1", V1), ws.tree("v2", V2), embed=True)
    edited = {"tgt_bank.py": V1["tgt_bank.py"].replace("        return FEE\n",
                                                       "        return FEE + 1\n")}
    err = _refused(ws, patch, ws.tree("v1_edited", edited))
    assert (err["code"], err["details"]["first"]) == ("SUT-E201", "fee")
    assert "`tgt_bank:fee` differs" in err["message"]


@pytest.mark.slow
def test_apply_refuses_a_process_running_half_baseline_half_fixed_code(ws):
    patch = ws.patch(ws.tree("v1", V1), ws.tree("v2", V2), embed=True)
    err = _refused(ws, patch, ws.tree("v1_half", V1_HALF))
    assert err["code"] == "SUT-E201"
    assert err["details"]["first"] == "fee"


@pytest.mark.slow
def test_apply_reports_already_fixed_and_changes_nothing_on_the_fixed_version(ws):
    v2 = ws.tree("v2", V2)
    patch = ws.patch(ws.tree("v1", V1), v2)
    got = ws.run(SNAPSHOT + r"""
before_obs = observe()
before = state()
result = runtime.apply(load(ARGS["patch"]))
emit({"result": result.to_dict(), "check": unchanged(before), "expected": NOTHING_CHANGED,
      "before": before_obs, "after": observe()})
""", [v2], {"patch": str(patch)})
    assert got["result"]["state"] == "already fixed"
    assert got["result"]["modules"] == {"tgt_bank": "already fixed"}
    assert got["result"]["ops"] == 0
    assert got["check"] == got["expected"]
    assert got["before"] == got["after"] == [50, 4950, False]


def _with_fixed_source(patch_path, text: str) -> bytes:
    """The same patch with another fixed source (and its correct sha256): a new, valid file."""
    patch = runtime.load_patch(patch_path.read_bytes())
    (mp,) = patch.modules
    mp = dataclasses.replace(mp, fixed=Source.of(textwrap.dedent(text).lstrip("\n")))
    return patchfile.dump(dataclasses.replace(patch, modules=(mp,)))


@pytest.mark.slow
def test_apply_refuses_a_fixed_source_that_does_not_parse_and_changes_nothing(ws):
    v1 = ws.tree("v1", V1)
    patch = ws.patch(v1, ws.tree("v2", V2))
    broken = ws.root / "broken.suture"
    broken.write_bytes(_with_fixed_source(patch, V2["tgt_bank.py"].replace(
        "amount // 100", "amount // / 100")))
    runtime.load_patch(broken.read_bytes())  # well-formed: only apply looks at the code
    err = _refused(ws, broken, v1)
    assert err["code"] == "SUT-E100" and err["error"] == "PatchFormatError"
    assert err["cause"] == "SyntaxError"
    assert re.match(r"^Patch [0-9a-f]{12}: the source of tgt_bank does not parse on Python "
                    r"3\.\d+\.\d+: .+ \[SUT-E100\]$", err["message"]), err["message"]


@pytest.mark.slow
def test_apply_refuses_a_fixed_source_that_parses_but_does_not_compile(ws):
    # `nonlocal` at function level parses (the builder only parses) but compile() rejects it.
    v1 = ws.tree("v1", V1)
    v2 = ws.tree("v2", {"tgt_bank.py": V2["tgt_bank.py"].replace(
        "        return max(FEE, amount // 100)\n",
        "        nonlocal FEE\n        return max(FEE, amount // 100)\n")})
    err = _refused(ws, ws.patch(v1, v2), v1)
    assert err["code"] == "SUT-E100"
    assert re.match(r"^Patch [0-9a-f]{12}: tgt_bank does not compile on Python 3\.\d+\.\d+: "
                    r".*nonlocal.*\. Nothing was changed\. \[SUT-E100\]$",
                    err["message"]), err["message"]


@pytest.mark.slow
def test_apply_refuses_a_change_list_that_its_sources_do_not_justify(ws):
    # The change list is not covered by the sources' hashes: the engine derives it again.
    v1 = ws.tree("v1", V1)
    patch_path = ws.patch(v1, ws.tree("v2", V2))
    patch = runtime.load_patch(patch_path.read_bytes())
    (mp,) = patch.modules
    forged = dataclasses.replace(mp, changes=mp.changes[:1])
    edited = ws.root / "edited.suture"
    edited.write_bytes(patchfile.dump(dataclasses.replace(patch, modules=(forged,))))
    err = _refused(ws, edited, v1)
    assert err["code"] == "SUT-E100"
    assert re.match(r"^Patch [0-9a-f]{12}: the change list of tgt_bank does not match its "
                    r"sources \(built by another Suture version, or edited\)\. Rebuild the "
                    r"patch\. \[SUT-E100\]$", err["message"]), err["message"]


# -- load_patch on tampered files (no target code is loaded: in-process) ---------------

def _payload(data: bytes) -> dict:
    return json.loads(patchfile.payload_json(*patchfile.read_envelope(data)))


def _repack(payload: dict, compress: bool = True) -> bytes:
    raw = patchfile.canonical_json(payload)
    return patchfile.canonical_json(patchfile.seal(raw, compress)) + b"\n"


def _deflate(body: bytes, zdict: bytes = patchfile.ZDICT) -> bytes:
    deflater = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY, zdict)
    return deflater.compress(body) + deflater.flush()


def _deflated(body: bytes) -> bytes:
    return patchfile.canonical_json({"payload": base64.b64encode(body).decode("ascii"),
                                     "payloadType": patchfile.PAYLOAD_TYPE_DEFLATE,
                                     "signatures": []}) + b"\n"


@pytest.fixture
def patch_bytes(ws) -> bytes:
    """A patch with whole sources (compact ones: tests/runtime/engine/test_compact.py)."""
    hooks = "def pre_apply(ctx):\n    pass\n"
    return ws.patch(ws.tree("v1", V1), ws.tree("v2", V2), hooks=hooks, embed=True).read_bytes()


def test_load_patch_accepts_the_untampered_file(patch_bytes):
    patch = runtime.load_patch(patch_bytes)
    assert [m.name for m in patch.modules] == ["tgt_bank"]
    assert _repack(_payload(patch_bytes)) == patch_bytes  # the helpers are faithful


def test_load_patch_refuses_an_edited_byte_in_a_fixed_source(patch_bytes):
    payload = _payload(patch_bytes)
    src = payload["modules"][0]["fixed"]["source"]
    assert "amount // 100" in src
    payload["modules"][0]["fixed"]["source"] = src.replace("amount // 100", "amount // 900")
    with pytest.raises(runtime.PatchFormatError,
                       match=r"^patch is corrupt: tgt_bank fixed does not match its sha256 "
                             r"[0-9a-f]{12}\u2026 \[SUT-E100\]$"):
        runtime.load_patch(_repack(payload))


def test_load_patch_refuses_a_changed_baseline_sha256(patch_bytes):
    payload = _payload(patch_bytes)
    digest = payload["modules"][0]["baseline"]["sha256"]
    payload["modules"][0]["baseline"]["sha256"] = ("0" if digest[0] != "0" else "1") + digest[1:]
    with pytest.raises(runtime.PatchFormatError,
                       match=r"^patch is corrupt: tgt_bank baseline does not match its sha256 "
                             r"[0-9a-f]{12}\u2026 \[SUT-E100\]$"):
        runtime.load_patch(_repack(payload))


def test_load_patch_refuses_an_edited_hooks_source(patch_bytes):
    payload = _payload(patch_bytes)
    payload["hooks"]["source"] = payload["hooks"]["source"].replace("pass", "raise SystemExit")
    with pytest.raises(runtime.PatchFormatError,
                       match=r"^patch is corrupt: hooks does not match its sha256 "):
        runtime.load_patch(_repack(payload))


def test_load_patch_refuses_a_payload_rewritten_in_another_json_form(patch_bytes):
    raw = json.dumps(_payload(patch_bytes), indent=1).encode()
    data = json.dumps({"payload": base64.b64encode(raw).decode(), "signatures": [],
                       "payloadType": patchfile.PAYLOAD_TYPE}).encode()
    with pytest.raises(runtime.PatchFormatError,
                       match=r"^patch payload is not in canonical form \(edited by hand\?\) "
                             r"\[SUT-E100\]$"):
        runtime.load_patch(data)


def test_load_patch_refuses_a_corrupted_base64_payload(patch_bytes):
    envelope = json.loads(patch_bytes)
    envelope["payload"] = "!" + envelope["payload"][1:]
    with pytest.raises(runtime.PatchFormatError,
                       match=r"^patch payload is not valid base64 \(truncated or edited\?\) "
                             r"\[SUT-E100\]$"):
        runtime.load_patch(json.dumps(envelope).encode())


def test_a_patch_has_one_id_deflated_or_not(patch_bytes):
    # Files written before the deflate payload type (formats 1 and 2 as they are) still
    # load, and the id is the sha256 of the canonical JSON either way.
    plain = _repack(_payload(patch_bytes), compress=False)
    assert json.loads(plain)["payloadType"] == patchfile.PAYLOAD_TYPE
    assert json.loads(patch_bytes)["payloadType"] == patchfile.PAYLOAD_TYPE_DEFLATE
    assert len(patch_bytes) < len(plain)
    body = patchfile.read_envelope(plain)[1]
    assert runtime.load_patch(plain).id == runtime.load_patch(patch_bytes).id \
        == hashlib.sha256(body).hexdigest()


def test_the_deflate_dictionary_is_frozen():
    # Patches deflated with it cannot be read with any other bytes: changing it needs a new
    # payload type (docs/patch-format.md), not an edit.
    assert hashlib.sha256(patchfile.ZDICT).hexdigest() == \
        "c9eb147d43d2714758c8ba71d7dfe6b0956908fc58322c6723e25707560d7809"


def test_load_patch_refuses_a_deflated_payload_in_another_json_form(patch_bytes):
    raw = json.dumps(_payload(patch_bytes), indent=1).encode()
    with pytest.raises(runtime.PatchFormatError,
                       match=r"^patch payload is not in canonical form \(edited by hand\?\) "
                             r"\[SUT-E100\]$"):
        runtime.load_patch(_deflated(_deflate(raw)))


def test_load_patch_refuses_a_deflate_bomb_before_inflating_it_all():
    # 64 MiB and one byte of spaces deflate to 65 KB; the reader stops at the cap.
    bomb = _deflate(b" " * (patchfile.MAX_PATCH_BYTES + 1))
    assert len(bomb) < 100_000
    with pytest.raises(runtime.PatchFormatError,
                       match=r"^patch payload inflates to more than 67108864 bytes "
                             r"\[SUT-E100\]$"):
        runtime.load_patch(_deflated(bomb))


@pytest.mark.parametrize("edit, message", [
    (lambda z: z[:-5], "is a truncated zlib stream"),
    (lambda z: z + b"\x00", "has bytes after its zlib stream"),
    (lambda z: z[:-1] + bytes([z[-1] ^ 1]), "is not a valid zlib stream"),   # adler32
    (lambda z: b"not zlib", "is not a valid zlib stream"),
    (lambda z: _deflate(patchfile.inflate(z), b"another dictionary"),
     "is not a valid zlib stream"),
])
def test_load_patch_refuses_a_broken_zlib_stream(patch_bytes, edit, message):
    stream = _deflate(patchfile.canonical_json(_payload(patch_bytes)))
    assert _deflated(stream) == patch_bytes   # what the builder wrote, and it loads
    with pytest.raises(runtime.PatchFormatError, match=f"^patch payload {message}"):
        runtime.load_patch(_deflated(edit(stream)))


@pytest.mark.parametrize("cut", [1, 2, 100, 1000])
def test_load_patch_refuses_a_truncated_file(patch_bytes, cut):
    with pytest.raises(runtime.PatchFormatError):
        runtime.load_patch(patch_bytes[:-cut - 1])  # -1: the trailing newline alone is harmless


def test_load_patch_refuses_every_single_bit_flip_inside_a_source(patch_bytes):
    # Flip one bit of each character of the fixed source in turn: the sha256 always notices.
    payload = _payload(patch_bytes)
    src = payload["modules"][0]["fixed"]["source"]
    for i in range(0, len(src), 7):
        flipped = chr(ord(src[i]) ^ 1)
        payload["modules"][0]["fixed"]["source"] = src[:i] + flipped + src[i + 1:]
        with pytest.raises(runtime.PatchFormatError, match=r"^patch is corrupt: "):
            runtime.load_patch(_repack(payload))
