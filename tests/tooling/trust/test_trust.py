"""Signed patches (suture.tooling.trust) and the commands around them: keygen, sign,
verify, trust, and the refusal of untrusted patches by apply and install."""

from __future__ import annotations

import base64
import json
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, List

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from suture.runtime import store
from suture.runtime.errors import PatchFormatError, UntrustedPatch
from suture.runtime.patchfile import canonical_json, load, read_envelope
from suture.tooling import trust
from suture.tooling.cli import main

from signing import KEY, NAME, make_patch, policy_with, signed


def statuses(data: bytes, policy: trust.Policy) -> List[str]:
    return [s["status"] for s in trust.check(data, policy).signatures]


@pytest.fixture
def data(tmp_path: Path) -> bytes:
    return make_patch(tmp_path)


# ---------------------------------------------------------------- the envelope

def test_pae_is_dsse_v1():
    # The example of the DSSE specification (protocol.md, "Signature definition").
    assert trust._pae("http://example.com/HelloWorld", b"hello world") \
        == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"


def test_signing_keeps_the_payload_and_the_id_and_allows_several_signatures(data: bytes):
    other = Ed25519PrivateKey.generate()
    once = trust.sign(data, KEY)
    twice = trust.sign(trust.sign(once, other), KEY)   # KEY again replaces its own signature
    assert read_envelope(twice)[1] == read_envelope(data)[1]
    assert load(twice).id == load(data).id
    sigs = read_envelope(twice)[0]["signatures"]
    assert [s["keyid"] for s in sigs] == [trust.keyid(other.public_key()),
                                          trust.keyid(KEY.public_key())]
    # The signature is over DSSE's PAE, checkable with nothing but the public key.
    envelope, payload = read_envelope(once)
    KEY.public_key().verify(base64.b64decode(envelope["signatures"][0]["sig"]),
                            trust._pae(envelope["payloadType"], payload))


def test_signing_refuses_what_is_not_a_patch():
    with pytest.raises(PatchFormatError):
        trust.sign(b"hello", KEY)


# ---------------------------------------------------------------- the verdicts

def test_each_signature_gets_a_status(tmp_path: Path, data: bytes):
    stranger = Ed25519PrivateKey.generate()
    policy = policy_with(tmp_path, {"key": KEY, "name": "publisher"})
    assert statuses(data, policy) == []
    assert statuses(trust.sign(data, stranger), policy) == ["unknown key"]
    verdict = trust.check(trust.sign(trust.sign(data, stranger), KEY), policy)
    assert [s["status"] for s in verdict.signatures] == ["unknown key", "valid"]
    assert verdict.trusted and verdict.trusted_by == ["publisher"]
    assert verdict.record() == {"signers": [{"name": "publisher",
                                             "keyid": trust.keyid(KEY.public_key())}]}


def test_a_valid_signature_over_other_bytes_is_invalid(tmp_path: Path, data: bytes):
    policy = policy_with(tmp_path, {"key": KEY})
    other = make_patch(tmp_path, body="3")
    stolen = read_envelope(trust.sign(other, KEY))[0]["signatures"]
    envelope = read_envelope(data)[0]
    envelope["signatures"] = stolen
    forged = canonical_json(envelope) + b"\n"
    assert statuses(forged, policy) == ["invalid"]
    with pytest.raises(UntrustedPatch, match="does not match its bytes"):
        trust.require(forged, policy=policy)
    # Tampering is refused even with the development flag: it is not development.
    with pytest.raises(UntrustedPatch):
        trust.require(forged, allow_unsigned=True, policy=policy)


@lru_cache(maxsize=None)
def _signed_base(tmp: Path) -> bytes:
    return signed(make_patch(tmp))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_no_edit_of_a_signed_file_stays_trusted(tmp_path_factory, draw):
    # Any single byte changed anywhere in a signed file: either it is no longer a patch,
    # or it is the same patch (an edit JSON ignores), or its signature fails. Never a
    # different patch that is trusted.
    base = _signed_base(tmp_path_factory.getbasetemp() / "flip")
    policy = policy_with(tmp_path_factory.mktemp("policy"), {"key": KEY})
    i = draw.draw(st.integers(0, len(base) - 1))
    b = draw.draw(st.integers(0, 255).filter(lambda v: v != base[i]))
    edited = base[:i] + bytes([b]) + base[i + 1:]
    try:
        verdict = trust.check(edited, policy)
    except PatchFormatError:
        return
    if verdict.trusted:
        assert read_envelope(edited)[1] == read_envelope(base)[1]


def test_distribution_restrictions_use_normalised_names(tmp_path: Path):
    dist = make_patch(tmp_path, dist="Tiny_Calc")
    tree = make_patch(tmp_path, body="5")
    ok = policy_with(tmp_path / "a", {"key": KEY, "distributions": ["tiny-calc"]})
    assert statuses(trust.sign(dist, KEY), ok) == ["valid"]
    no = policy_with(tmp_path / "b", {"key": KEY, "distributions": ["requests"]})
    assert statuses(trust.sign(dist, KEY), no) == ["not allowed"]
    with pytest.raises(UntrustedPatch, match="allows only for requests"):
        trust.require(trust.sign(dist, KEY), policy=no)
    assert statuses(trust.sign(tree, KEY), ok) == ["not allowed"]  # a tree is no distribution


def test_refusals_say_what_to_do(tmp_path: Path, data: bytes):
    empty = trust.load_policy(str(tmp_path / "none.toml"))
    assert not empty.exists and empty.keys == ()
    with pytest.raises(UntrustedPatch, match="is not signed. Sign it with `suture sign"):
        trust.require(data, policy=empty)
    with pytest.raises(UntrustedPatch, match="there is no trust policy at"):
        trust.require(signed(data), policy=empty)
    policy = policy_with(tmp_path, {"key": Ed25519PrivateKey.generate()})
    with pytest.raises(UntrustedPatch, match="does not list") as err:
        trust.require(signed(data), policy=policy)
    assert err.value.code == "SUT-E110" and err.value.details["signatures"]
    assert trust.require(data, allow_unsigned=True, policy=policy)[1] == {"unsigned": True,
                                                                           "signers": []}


def test_malformed_signature_entries_are_format_errors(data: bytes):
    envelope = read_envelope(data)[0]
    for bad in ([1], [{"keyid": "k"}], [{"keyid": 3, "sig": "x"}]):
        envelope["signatures"] = bad
        with pytest.raises(PatchFormatError, match="signatures\\[0\\]"):
            trust.check(canonical_json(envelope))


def test_a_garbled_signature_is_invalid_not_a_crash(tmp_path: Path, data: bytes):
    policy = policy_with(tmp_path, {"key": KEY})
    envelope = read_envelope(signed(data))[0]
    envelope["signatures"][0]["sig"] = "!!!"
    assert statuses(canonical_json(envelope), policy) == ["invalid"]
    envelope["signatures"][0]["sig"] = base64.b64encode(b"short").decode()
    assert statuses(canonical_json(envelope), policy) == ["invalid"]


# ---------------------------------------------------------------- the policy file

@pytest.mark.parametrize("env, uid, expect", [
    ({"SUTURE_CONFIG_DIR": "/x/c", "XDG_CONFIG_HOME": "/xdg"}, 0, "/x/c"),
    ({"XDG_CONFIG_HOME": "/xdg"}, 0, "/etc/suture"),
    ({"XDG_CONFIG_HOME": "/xdg"}, 1000, "/xdg/suture"),
    ({"XDG_CONFIG_HOME": "relative"}, 1000, "/home/u/.config/suture"),
    ({}, 1000, "/home/u/.config/suture"),
])
def test_config_directory_follows_the_documented_order(env, uid, expect):
    assert trust.config_dir(env, uid, "/home/u") == expect


@pytest.mark.parametrize("text, match", [
    ("[[keys]\n", "not valid TOML"),
    ("keys = 3\n", "array of tables"),
    ("[[keys]]\npublic_key = 'AAAA'\n", "not an Ed25519 public key"),
    ("[[keys]]\npublic_key = '{pub}'\ndistribution = ['x']\n", "unknown fields"),
    ("[[keys]]\npublic_key = '{pub}'\ndistributions = 'x'\n", "must be a list"),
])
def test_a_bad_policy_is_refused_with_its_reason(tmp_path: Path, text: str, match: str):
    path = tmp_path / "trust.toml"
    path.write_text(text.replace("{pub}", trust.public_key_line(KEY.public_key())))
    with pytest.raises(trust.TrustPolicyError, match=match):
        trust.load_policy(str(path))


def test_a_policy_others_can_write_is_refused(tmp_path: Path):
    policy_with(tmp_path, {"key": KEY})
    path = tmp_path / "cfg" / trust.POLICY_FILE
    os.chmod(path, 0o666)
    with pytest.raises(trust.TrustPolicyError, match="lets other users choose"):
        trust.load_policy(str(path))


def test_adding_a_key_twice_is_refused(tmp_path: Path):
    policy_with(tmp_path, {"key": KEY})
    with pytest.raises(trust.TrustPolicyError, match="already in"):
        policy_with(tmp_path, {"key": KEY})


# ---------------------------------------------------------------- the commands

def cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A host with its own (empty) trust policy and store."""
    monkeypatch.setenv("SUTURE_CONFIG_DIR", str(tmp_path / "cfg"))
    monkeypatch.setenv("SUTURE_STATE_DIR", str(tmp_path / "state"))
    return tmp_path


def test_keygen_sign_trust_verify_end_to_end(host: Path, data: bytes):
    f = host / "fix.suture"
    f.write_bytes(data)
    got = cli("keygen", "--out", str(host / "acme"), "--name", "acme", "--json")
    assert got.exit_code == 0, got.output
    keys = json.loads(got.output)
    assert os.stat(keys["private_key"]).st_mode & 0o077 == 0
    assert cli("keygen", "--out", str(host / "acme")).exit_code == 1  # never overwrites

    assert cli("verify", str(f)).exit_code == 2
    assert cli("sign", str(f), "--key", keys["private_key"]).exit_code == 0
    got = cli("verify", str(f), "--json")
    assert got.exit_code == 2 and json.loads(got.output)["signatures"][0]["status"] \
        == "unknown key"
    got = cli("trust", "add", keys["public_key"], "--json")
    assert got.exit_code == 0 and json.loads(got.output)["key"]["name"] == "acme"
    got = cli("verify", str(f), "--json")
    assert got.exit_code == 0 and json.loads(got.output)["trusted_by"] == ["acme"]
    assert "acme" in cli("trust").output
    assert [k["keyid"] for k in json.loads(cli("trust", "--json").output)["keys"]] \
        == [keys["keyid"]]
    assert keys["keyid"][:12] in cli("inspect", str(f)).output


def test_build_signs_with_sign(host: Path, tmp_path: Path):
    for tag, value in (("o", "1"), ("n", "2")):
        (tmp_path / tag / "tiny").mkdir(parents=True)
        (tmp_path / tag / "tiny" / "calc.py").write_text(f"def value():\n    return {value}\n")
    key, pub, _ = trust.keygen(host / "k")
    trust.add_key(pub.read_text())
    out = host / "p.suture"
    got = cli("build", str(tmp_path / "o"), str(tmp_path / "n"), "-o", str(out),
              "--sign", str(key))
    assert got.exit_code == 0 and "signed by 1 key" in got.output, got.output
    assert cli("verify", str(out)).exit_code == 0


def test_install_refuses_untrusted_patches_and_stores_nothing(host: Path, data: bytes):
    f = host / "fix.suture"
    f.write_bytes(data)
    got = cli("install", str(f), "--json")
    assert got.exit_code == 2 and json.loads(got.output)["error"]["code"] == "SUT-E110"
    assert store.installed() == []
    got = cli("install", str(f), "--allow-unsigned")
    assert got.exit_code == 0 and "WARNING" in got.output, got.output  # stderr, mixed in
    assert [r["trust"] for r in store.installed()] == [{"unsigned": True, "signers": []}]
    assert "UNSIGNED" in cli("list").output


def test_apply_refuses_untrusted_patches_before_contacting_any_process(host: Path,
                                                                        data: bytes):
    f = host / "fix.suture"
    f.write_bytes(signed(data))   # signed, but this host's policy trusts no key
    # PID 1 has no agent: reaching the targets would fail differently (SUT-E610).
    got = cli("apply", str(f), "--pid", "1", "--json")
    assert got.exit_code == 2, got.output
    assert json.loads(got.output)["error"]["code"] == "SUT-E110"
    assert "no key is trusted on this host" in json.loads(got.output)["error"]["message"]


def test_the_suite_key_is_what_the_suite_trusts():
    # tests/conftest.py: the suite-wide policy trusts exactly the suite's key.
    policy = trust.load_policy()
    assert [(k.name, k.keyid) for k in policy.keys] == [(NAME, trust.keyid(KEY.public_key()))]


def test_trust_only_through_restricted_keys_is_recorded_for_the_agents(tmp_path: Path):
    # Agents must then prove that the modules are the distribution's files (issue 13).
    dist = trust.sign(make_patch(tmp_path, dist="Tiny_Calc"), KEY)
    scoped = policy_with(tmp_path / "a", {"key": KEY, "name": "p", "distributions": ["tiny-calc"]})
    _, record = trust.require(dist, policy=scoped)
    assert record == {"signers": [{"name": "p", "keyid": trust.keyid(KEY.public_key())}],
                      "restricted_to": "tiny-calc"}
    # One unrestricted signer is enough to lift it.
    other = Ed25519PrivateKey.generate()
    both = policy_with(tmp_path / "b", {"key": KEY, "distributions": ["tiny-calc"]},
                       {"key": other})
    assert "restricted_to" not in trust.require(trust.sign(dist, other), policy=both)[1]
    # Nothing installed here: verify says membership is left to the targets.
    verdict = trust.check(dist, scoped)
    assert verdict.trusted and not verdict.membership.checked
    assert verdict.membership.reason.startswith("Tiny_Calc is not installed here")


# ---------------------------------------------------------------- changing a key's trust

def _policy_files(host: Path) -> List[str]:
    return sorted(p.name for p in (host / "cfg").iterdir())


def test_a_key_is_widened_narrowed_and_removed_by_commands(host: Path, tmp_path: Path):
    # Issue 18: `trust add` refused a listed key with "edit the file"; now each change is a
    # command, and each refusal names the command that does it.
    dist = trust.sign(make_patch(tmp_path, dist="Tiny_Calc"), KEY)
    f = host / "fix.suture"
    f.write_bytes(dist)
    pub = host / "acme.pub"
    pub.write_text(trust.public_key_line(KEY.public_key(), "acme") + "\n")
    kid = trust.keyid(KEY.public_key())
    assert cli("trust", "add", str(pub), "--dist", "requests").exit_code == 0
    os.chmod(host / "cfg" / trust.POLICY_FILE, 0o600)

    got = cli("verify", str(f))
    assert got.exit_code == 2
    hint = re.search(r"`suture (trust set \S+ [^`]+)`", got.output)
    assert hint is not None, got.output
    assert hint.group(1) == f"trust set {kid[:12]} --dist requests --dist tiny-calc"
    got = cli(*hint.group(1).split())  # the hint is a command that works
    assert got.exit_code == 0, got.output
    assert "for requests, tiny-calc (was: requests)" in got.output
    assert cli("verify", str(f)).exit_code == 0

    # narrowed by `set` (by name), widened again by `add --dist` (the union)
    got = cli("trust", "set", "acme", "--dist", "requests", "--json")
    assert got.exit_code == 0, got.output
    assert json.loads(got.output)["key"]["distributions"] == ["requests"]
    assert cli("verify", str(f)).exit_code == 2
    got = cli("trust", "add", str(pub), "--dist", "Tiny_Calc", "--json")
    assert got.exit_code == 0, got.output
    assert json.loads(got.output)["key"]["distributions"] == ["requests", "tiny-calc"]
    assert cli("verify", str(f)).exit_code == 0

    # `add` without --dist never silently widens a restricted key to any patch
    got = cli("trust", "add", str(pub))
    assert got.exit_code == 1 and f"suture trust set {kid[:12]} --any" in got.output
    assert cli("trust", "set", kid[:8], "--any").exit_code == 0
    assert json.loads(cli("trust", "--json").output)["keys"] == [
        {"name": "acme", "keyid": kid, "distributions": None}]
    got = cli("trust", "add", str(pub), "--dist", "requests")
    assert got.exit_code == 1 and f"suture trust set {kid[:12]} --dist requests" in got.output

    # each rewrite kept the file's mode and left no temporary file behind
    assert os.stat(host / "cfg" / trust.POLICY_FILE).st_mode & 0o777 == 0o600
    assert _policy_files(host) == [trust.POLICY_FILE]

    got = cli("trust", "remove", kid, "--json")
    assert got.exit_code == 0 and json.loads(got.output)["removed"]["keyid"] == kid
    got = cli("verify", str(f), "--json")
    assert got.exit_code == 2 and json.loads(got.output)["signatures"][0]["status"] \
        == "unknown key"
    assert trust.load_policy().keys == ()
    assert cli("trust", "add", str(pub)).exit_code == 0  # and it can come back


def test_set_and_remove_refuse_what_names_no_single_key(host: Path):
    one, two = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    policy_with(host, {"key": one, "name": "same"}, {"key": two, "name": "same"})
    path = host / "cfg" / trust.POLICY_FILE
    before = path.read_bytes()
    for args, match in [(("remove", "nobody"), "no key has that id"),
                        (("remove", "same"), "several keys match it"),
                        (("remove", trust.keyid(one.public_key())[:6]), "no key has that id"),
                        (("set", "same", "--any"), "several keys match it"),
                        (("set", trust.keyid(one.public_key())), "either --dist NAME"),
                        (("set", trust.keyid(one.public_key()), "--any", "--dist", "x"),
                         "either --dist NAME")]:
        got = cli("trust", *args, "--json")
        assert got.exit_code == 1, (args, got.output)
        err = json.loads(got.output)["error"]
        assert err["code"] == "SUT-E111" and match in err["message"], (args, err)
    assert path.read_bytes() == before


def test_set_and_remove_keep_the_policy_checks(host: Path):
    policy_with(host, {"key": KEY, "name": "acme"})
    path = host / "cfg" / trust.POLICY_FILE
    os.chmod(path, 0o666)
    before = path.read_bytes()
    for args in (("remove", "acme"), ("set", "acme", "--dist", "x")):
        got = cli("trust", *args)
        assert got.exit_code == 1 and "lets other users choose" in got.output, got.output
    assert path.read_bytes() == before and os.stat(path).st_mode & 0o777 == 0o666
