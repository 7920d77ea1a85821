"""Signed patches: Ed25519 keys, DSSE signatures and the host's trust policy (issue 5).

A patch file is already a DSSE envelope (runtime/patchfile.py). A signature signs
DSSE's pre-authentication encoding of the payload type and the payload bytes, never
the envelope, so adding a signature changes neither the payload nor the patch id, and
several publishers can sign one file. Signature entries are
``{"keyid": sha256(raw public key) in hex, "sig": base64}``.

The trust policy is ``trust.toml`` in the host's config directory: the keys whose
signatures this host accepts, each optionally restricted to some distributions. It is
read only when it and every directory above it are owned by this user (or root) and not
writable by others: opened first, then checked (runtime/_owned.py).

Tooling side only: this module uses ``cryptography``, which the runtime may not import.
Verification therefore happens here, before the CLI sends a patch to an agent or keeps
it in the store; docs/security.md says why that is where it belongs.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import (TYPE_CHECKING, Any, BinaryIO, Dict, List, Mapping, Optional, Sequence, Tuple,
                    Type)

from ...runtime import _members, _owned
from ...runtime.errors import NotInDistribution, PatchFormatError, SutureError, UntrustedPatch
from ...runtime.patchfile import Patch, canonical_json, load, read_envelope

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.9/3.10 by the same tests
    import tomli as tomllib

# ``cryptography`` is imported in the functions that use it, and only its ed25519 module
# to check a signature (its ``serialization`` module, for key files, costs three times as
# much): `suture apply` checks signatures on its way to the target (issue 19,
# docs/performance.md).
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (Ed25519PrivateKey,
                                                                   Ed25519PublicKey)

# Distribution names as PEP 503 normalises them (packaging's ``canonicalize_name``, whose
# module loads ``packaging.tags`` and more at import: the runtime's copy is the same rule).
canonicalize_name = _members.canonical

__all__ = ["TrustPolicyError", "KeyFileError", "TrustedKey", "Policy", "Verdict",
           "config_dir", "policy_path", "load_policy", "add_key", "set_scope", "remove_key",
           "find_key", "keygen", "load_private_key",
           "public_key_line", "sign", "check", "require", "POLICY_FILE", "seal",
           "signers", "keyid", "open_owned", "Membership", "membership_here"]

POLICY_FILE = "trust.toml"
_PUB_PREFIX = "suture-ed25519"


class TrustPolicyError(SutureError, ValueError):
    """The trust policy file cannot be used: unsafe ownership or mode, not TOML, bad key."""

    code = "SUT-E111"


class KeyFileError(SutureError, ValueError):
    """A key file cannot be read, is not an Ed25519 key, or would be overwritten."""

    code = "SUT-E112"


# ---------------------------------------------------------------- where the policy is

def config_dir(environ: Mapping[str, str] = os.environ, euid: Optional[int] = None,
               home: Optional[str] = None) -> str:
    """$SUTURE_CONFIG_DIR, else /etc/suture for root, else $XDG_CONFIG_HOME/suture or
    ~/.config/suture (the state directory's rule, for configuration)."""
    explicit = environ.get("SUTURE_CONFIG_DIR")
    if explicit:
        return explicit
    if (os.geteuid() if euid is None else euid) == 0:
        return "/etc/suture"
    xdg = environ.get("XDG_CONFIG_HOME")
    if xdg and os.path.isabs(xdg):
        return os.path.join(xdg, "suture")
    return os.path.join(home or os.path.expanduser("~"), ".config", "suture")


def policy_path() -> str:
    return os.path.join(config_dir(), POLICY_FILE)


# ---------------------------------------------------------------- keys

def _raw(public: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def keyid(public: Ed25519PublicKey) -> str:
    return _keyid(_raw(public))


def _keyid(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def public_key_line(public: Ed25519PublicKey, name: str = "") -> str:
    """The one-line text of a ``.pub`` file: ``suture-ed25519 BASE64 [name]``."""
    raw = _raw(public)
    return " ".join(p for p in (_PUB_PREFIX, base64.b64encode(raw).decode("ascii"), name) if p)


def _parse_public(text: str, where: str) -> Tuple[Ed25519PublicKey, str]:
    """A public key given as a ``.pub`` line or as bare base64 of the 32 raw bytes, and
    its key id."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    parts = text.split()
    if parts and parts[0] == _PUB_PREFIX:
        parts = parts[1:]
    try:
        raw = base64.b64decode(parts[0] if parts else "", validate=True)
        return Ed25519PublicKey.from_public_bytes(raw), _keyid(raw)
    except (binascii.Error, ValueError) as exc:
        raise TrustPolicyError(f"{where}: not an Ed25519 public key (expected "
                               f"'{_PUB_PREFIX} BASE64' or 32 bytes in base64)",
                               details={"where": where}) from exc


def keygen(prefix: Path, name: str = "") -> Tuple[Path, Path, str]:
    """Write ``PREFIX.key`` (PKCS#8 PEM, mode 0600) and ``PREFIX.pub``; never overwrite.

    Returns both paths and the key id. The private key is not encrypted: keep it offline
    or in a secret store, as with any release-signing key.
    """
    key_path, pub_path = Path(f"{prefix}.key"), Path(f"{prefix}.pub")
    for p in (key_path, pub_path):
        if os.path.lexists(p):
            raise KeyFileError(f"{p} exists; refusing to overwrite a key (choose another "
                               f"--out)", details={"path": str(p)})
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    try:
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        pub_path.write_text(public_key_line(private.public_key(), name) + "\n")
    except OSError as exc:
        raise KeyFileError(f"cannot write the key pair {prefix}.key/.pub: {exc}",
                           details={"path": str(prefix)}) from exc
    return key_path, pub_path, keyid(private.public_key())


def load_private_key(path: Path) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise KeyFileError(f"cannot read the signing key {path}: {exc}",
                           details={"path": str(path)}) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} is not an Ed25519 private key",
                           details={"path": str(path)})
    return key


# ---------------------------------------------------------------- the policy

@dataclass(frozen=True)
class TrustedKey:
    name: str
    keyid: str
    public: Ed25519PublicKey = field(repr=False, compare=False)
    distributions: Optional[Tuple[str, ...]] = None  # None: any patch

    def allows(self, patch: Patch) -> bool:
        if self.distributions is None:
            return True
        t = patch.target
        return (t.get("kind") == "distribution"
                and canonicalize_name(str(t.get("name", ""))) in self.distributions)

    def to_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "keyid": self.keyid,
                "distributions": None if self.distributions is None
                else list(self.distributions)}


@dataclass(frozen=True)
class Policy:
    path: str
    keys: Tuple[TrustedKey, ...]
    exists: bool = True

    def by_id(self, keyid: str) -> Optional[TrustedKey]:
        return next((k for k in self.keys if k.keyid == keyid), None)


def open_owned(path: str, what: str = "the trust policy",
               risk: str = "choose which keys this host trusts",
               error: Type[SutureError] = TrustPolicyError) -> BinaryIO:
    """``path`` opened for reading, once the opened file and every directory above it are
    this user's or root's and not writable by others (runtime/_owned.py: open first,
    then check what was opened, as sudo does for sudoers). FileNotFoundError: no file."""
    return _owned.open_owned(path, what, risk, error)


def load_policy(path: Optional[str] = None) -> Policy:
    """The trust policy at ``path`` (default: ``policy_path()``); no file trusts no key."""
    path = path or policy_path()
    try:
        with open_owned(path) as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        return Policy(path, (), exists=False)
    except OSError as exc:
        raise TrustPolicyError(f"cannot read the trust policy {path}: {exc}",
                               details={"path": path}) from exc
    except tomllib.TOMLDecodeError as exc:
        raise TrustPolicyError(f"the trust policy {path} is not valid TOML: {exc}",
                               details={"path": path}) from exc
    entries = doc.get("keys", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise TrustPolicyError(f"the trust policy {path}: `keys` must be an array of tables "
                               f"([[keys]])", details={"path": path})
    keys: List[TrustedKey] = []
    for i, entry in enumerate(entries):
        where = f"{path}: keys[{i}]"
        unknown = sorted(set(entry) - {"name", "public_key", "distributions"})
        if unknown:  # a misspelt "distributions" must not silently trust a key for everything
            raise TrustPolicyError(f"{where} has unknown fields {unknown}",
                                   details={"path": path, "fields": unknown})
        public, kid = _parse_public(str(entry.get("public_key", "")), where)
        dists = entry.get("distributions")
        if dists is not None and (not isinstance(dists, list)
                                  or not all(isinstance(d, str) and d for d in dists)):
            raise TrustPolicyError(f"{where}: distributions must be a list of names",
                                   details={"path": path})
        keys.append(TrustedKey(str(entry.get("name") or kid[:12]), kid,
                               public, None if dists is None
                               else tuple(sorted({canonicalize_name(d) for d in dists}))))
    return Policy(path, tuple(keys))


def _toml_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=True)  # a JSON string is a valid TOML basic string


def _scope(dists: Optional[Sequence[str]]) -> str:
    return "any distribution" if dists is None else ", ".join(dists)


def add_key(public_text: str, name: str = "", distributions: Sequence[str] = (),
            path: Optional[str] = None) -> TrustedKey:
    """Append a key to the trust policy (creating it, mode 0644, in a 0700-or-existing
    directory).

    A key already listed is never listed twice. ``distributions`` given for a key already
    restricted to some widens it to the union (the policy is rewritten atomically,
    ``_rewrite``); any other call for a listed key is refused with the command that does
    what was probably meant (``set_scope``): ``add`` never silently turns a restricted key
    into one trusted for any patch, nor narrows a key trusted for any patch."""
    path = path or policy_path()
    public, kid = _parse_public(public_text, "the public key")
    policy = load_policy(path)
    listed = policy.by_id(kid)
    if listed is not None:
        wanted = {canonicalize_name(d) for d in distributions}
        if listed.distributions is not None and wanted:
            return _rewrite(policy, listed, tuple(sorted(wanted | set(listed.distributions))))
        if listed.distributions is None:
            hint = (f"to trust it only for {', '.join(sorted(wanted))}: `suture trust set "
                    f"{kid[:12]} {' '.join('--dist ' + d for d in sorted(wanted))}`"
                    if wanted else "nothing to change")
            raise TrustPolicyError(f"the key {kid[:12]} is already in {path} (as "
                                   f"{listed.name!r}), trusted for any distribution; {hint}",
                                   details={"path": path, "keyid": kid})
        raise TrustPolicyError(f"the key {kid[:12]} is already in {path} (as {listed.name!r}), "
                               f"trusted only for {_scope(listed.distributions)}; to widen it, "
                               f"`suture trust add KEY.pub --dist NAME`; to trust it for any "
                               f"patch, `suture trust set {kid[:12]} --any`",
                               details={"path": path, "keyid": kid})
    name = name or (public_text.split()[2] if len(public_text.split()) > 2 else kid[:12])
    block = ["\n[[keys]]", f"name = {_toml_str(name)}",
             f"public_key = {_toml_str(public_key_line(public))}"]
    if distributions:
        block.append("distributions = [" + ", ".join(_toml_str(d) for d in distributions) + "]")
    try:
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        header = "" if policy.exists else (_HEADER + "\n")
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "a") as f:
            f.write(header + "\n".join(block) + "\n")
    except OSError as exc:
        raise TrustPolicyError(f"cannot write the trust policy {path}: {exc}",
                               details={"path": path}) from exc
    added = load_policy(path).by_id(kid)
    assert added is not None
    return added


_HEADER = "# Suture trust policy: keys whose signatures this host accepts (docs/security.md)."


def find_key(policy: Policy, ref: str) -> TrustedKey:
    """The one key of ``policy`` that ``ref`` names: its key id, a prefix of it of at least
    8 hex digits (``suture trust`` shows 12), or its name. None or several: refused, naming
    what is listed, since changing the wrong key's trust is worse than asking again."""
    ref = ref.strip()
    exact = [k for k in policy.keys if k.keyid == ref.lower()]
    by_prefix = [k for k in policy.keys if len(ref) >= 8 and k.keyid.startswith(ref.lower())]
    by_name = [k for k in policy.keys if k.name == ref]
    found = exact or list({k.keyid: k for k in by_prefix + by_name}.values())
    if len(found) == 1:
        return found[0]
    listed = ", ".join(f"{k.keyid[:12]} ({k.name})" for k in policy.keys) or "no key"
    why = "several keys match it" if found else "no key has that id, id prefix or name"
    raise TrustPolicyError(f"{ref!r}: {why} in the trust policy {policy.path}, which lists "
                           f"{listed}; name the key by its id (`suture trust` shows them)",
                           details={"path": policy.path, "key": ref,
                                    "matches": [k.keyid for k in found]})


def set_scope(ref: str, distributions: Optional[Sequence[str]],
              path: Optional[str] = None) -> Tuple[TrustedKey, TrustedKey]:
    """Trust the key ``ref`` (``find_key``) for exactly ``distributions``, or for any patch
    when None: widens or narrows. Returns the key before and after."""
    if distributions is not None and not distributions:
        raise TrustPolicyError("give the distributions the key may sign (--dist NAME, "
                               "repeatable) or --any; to stop trusting it: `suture trust "
                               "remove KEYID`", details={"key": ref})
    policy = load_policy(path)
    before = find_key(policy, ref)
    scope = (None if distributions is None
             else tuple(sorted({canonicalize_name(d) for d in distributions})))
    return before, _rewrite(policy, before, scope)


def remove_key(ref: str, path: Optional[str] = None) -> TrustedKey:
    """Stop trusting the key ``ref`` (``find_key``); returns it. Patches it signed that are
    already installed stay installed (docs/security.md, "What this does not give")."""
    policy = load_policy(path)
    key = find_key(policy, ref)
    _rewrite(policy, key, None, remove=True)
    return key


def _rewrite(policy: Policy, key: TrustedKey, scope: Optional[Tuple[str, ...]],
             remove: bool = False) -> TrustedKey:
    """Write ``policy`` with ``key`` given ``scope`` (or left out), atomically: a new file
    beside it (``O_EXCL | O_NOFOLLOW``, the old file's mode), flushed to disk, then renamed
    over it, so that a reader sees the old policy or the new one, never half of either.
    ``policy`` was read through ``load_policy``, so the file and its directories passed the
    ownership checks before anything is written; the result is read back the same way.

    The file is written from what it lists: comments other than the leading ones are not
    kept (editing TOML text in place would need a TOML editor the tooling does not have)."""
    path = policy.path
    blocks: List[str] = []
    for k in policy.keys:
        if k.keyid == key.keyid and remove:
            continue
        dists = scope if k.keyid == key.keyid else k.distributions
        lines = ["[[keys]]", f"name = {_toml_str(k.name)}",
                 f"public_key = {_toml_str(public_key_line(k.public))}"]
        if dists is not None:
            lines.append("distributions = [" + ", ".join(_toml_str(d) for d in dists) + "]")
        blocks.append("\n".join(lines) + "\n")
    directory = os.path.dirname(path) or "."
    tmp = os.path.join(directory, f".{POLICY_FILE}.{os.getpid()}.{os.urandom(4).hex()}")
    try:
        with open_owned(path) as f:
            old = f.read().decode("utf-8", "replace")
            mode = os.fstat(f.fileno()).st_mode & 0o755
        leading = []
        for line in old.splitlines():
            if not line.startswith("#"):
                break
            leading.append(line)
        text = "\n".join(leading or [_HEADER]) + "\n\n" + "\n".join(blocks)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as exc:
        raise TrustPolicyError(f"cannot write the trust policy {path}: {exc}",
                               details={"path": path}) from exc
    after = load_policy(path).by_id(key.keyid)
    if remove:
        assert after is None
        return key
    assert after is not None
    return after


# ---------------------------------------------------------------- signing and checking

def _pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def _signatures(envelope: Dict[str, Any]) -> List[Dict[str, str]]:
    sigs = envelope["signatures"]
    for i, s in enumerate(sigs):
        if (not isinstance(s, dict) or not isinstance(s.get("sig"), str)
                or not isinstance(s.get("keyid", ""), str)):
            raise PatchFormatError(f"patch is malformed: signatures[{i}] must be "
                                   f"{{\"keyid\": str, \"sig\": base64}}", details={"index": i})
    return list(sigs)


def sign(data: bytes, key: Ed25519PrivateKey) -> bytes:
    """``data`` with one more signature (a signature by the same key is replaced)."""
    load(data)  # sign only what is a valid patch
    envelope, payload = read_envelope(data)
    kid = keyid(key.public_key())
    sig = base64.b64encode(key.sign(_pae(str(envelope["payloadType"]), payload))
                           ).decode("ascii")
    kept = [s for s in _signatures(envelope) if s.get("keyid") != kid]
    envelope["signatures"] = kept + [{"keyid": kid, "sig": sig}]
    return canonical_json(envelope) + b"\n"


def seal(payload_type: str, payload: bytes, keys: Sequence[Ed25519PrivateKey]) -> bytes:
    """A DSSE envelope of another payload type (a feed's index), signed by ``keys``."""
    sigs = [{"keyid": keyid(k.public_key()),
             "sig": base64.b64encode(k.sign(_pae(payload_type, payload))).decode("ascii")}
            for k in keys]
    return canonical_json({"payload": base64.b64encode(payload).decode("ascii"),
                           "payloadType": payload_type, "signatures": sigs}) + b"\n"


def signers(envelope: Dict[str, Any], payload: bytes, policy: Policy) -> List[TrustedKey]:
    """The policy's keys with a valid signature over ``payload`` in ``envelope``, whatever
    their distribution restrictions (the caller decides what a restricted key may sign)."""
    from cryptography.exceptions import InvalidSignature

    message = _pae(str(envelope["payloadType"]), payload)
    out: List[TrustedKey] = []
    for s in _signatures(envelope):
        key = policy.by_id(s.get("keyid", ""))
        if key is None or key in out:
            continue
        try:
            key.public.verify(base64.b64decode(s["sig"], validate=True), message)
        except (InvalidSignature, binascii.Error, ValueError):
            continue
        out.append(key)
    return out


@dataclass
class Membership:
    """Whether the patch's modules are files of the distribution it names, as far as this
    environment can tell (``_members``, the check every target runs itself).

    ``checked`` is True only when this environment has the distribution installed, with a
    RECORD, at the patch's baseline version (``from_version``): any other version may have
    other files, and the processes that matter may use another environment. Otherwise
    ``reason`` says why it was not checked here; each target checks anyway."""

    distribution: Optional[str]
    checked: bool
    reason: str
    refusal: Optional[NotInDistribution] = None

    def to_dict(self) -> Dict[str, Any]:
        return {"distribution": self.distribution, "checked_here": self.checked,
                "reason": self.reason, "refused": None if self.refusal is None
                else self.refusal.to_dict()}


def membership_here(patch: Patch) -> Membership:
    """Check the patch's module names against this environment's copy of its distribution,
    when that copy is the patch's baseline release (see ``Membership``)."""
    t = patch.target
    if t.get("kind") != "distribution":
        return Membership(None, False, "the patch names no distribution")
    name = str(t.get("name", ""))
    owner = _members.find(name)
    base = str(t.get("from_version"))
    if owner is None:
        return Membership(name, False, f"{name} is not installed here (with a RECORD); each "
                                       f"target process checks against its own copy")
    if base not in owner.versions:
        return Membership(name, False, f"{name} {'/'.join(owner.versions)} is installed here, "
                                       f"not {base} (the patch's baseline); each target "
                                       f"process checks against its own copy")
    try:  # by name only: this process has not imported the target's modules
        _members.check(patch, restricted=False, modules={})
    except NotInDistribution as exc:
        return Membership(name, True, f"checked here against {name} {base}'s RECORD",
                          refusal=exc)
    return Membership(name, True, f"checked here against {name} {base}'s RECORD; each target "
                                  f"process checks again against its own copy")


@dataclass
class Verdict:
    """What the policy makes of a patch's signatures. ``trusted_by`` names the keys whose
    valid signatures make it trusted; each signature has a ``status``: ``valid``,
    ``not allowed`` (valid, but the key may not sign this distribution), ``invalid`` (does
    not match the patch's bytes), ``unknown key`` (not in the policy).

    A valid signature by a restricted key vouches only for the *name* in the patch's
    target. Whether the modules are that distribution's files is decided in each target
    process (``_members``; the record carries ``restricted_to`` there), and here too when
    this environment has the baseline release (``membership``): a patch refused here is
    not trusted, whoever signed it."""

    patch: Patch
    policy: Policy
    signatures: List[Dict[str, Any]]
    membership: Membership = field(default_factory=lambda: Membership(None, False, ""))

    @property
    def trusted_by(self) -> List[str]:
        return [s["name"] for s in self.signatures if s["status"] == "valid"]

    @property
    def trusted(self) -> bool:
        return bool(self.trusted_by) and self.membership.refusal is None

    @property
    def restricted_to(self) -> Optional[str]:
        """The patch's distribution (normalised) when every key that trusts it is restricted
        to distributions; None when an unrestricted key trusts it (or none does)."""
        valid = [s for s in self.signatures if s["status"] == "valid"]
        if not valid or any(s.get("distributions") is None for s in valid):
            return None
        return canonicalize_name(str(self.patch.target.get("name", "")))

    def record(self) -> Dict[str, Any]:
        """What the store keeps about this verification (runtime/store.py ``trust``), and
        what ``apply`` tells agents: ``restricted_to`` only when restricted keys alone
        trust the patch (agents then require proof of membership: runtime/_members.py)."""
        out: Dict[str, Any] = {"signers": [{"name": s["name"], "keyid": s["keyid"]}
                                           for s in self.signatures if s["status"] == "valid"]}
        if self.restricted_to is not None:
            out["restricted_to"] = self.restricted_to
        return out

    def to_dict(self) -> Dict[str, Any]:
        return {"patch": self.patch.id, "trusted": self.trusted, "trusted_by": self.trusted_by,
                "policy": self.policy.path, "signatures": self.signatures,
                "restricted_to": self.restricted_to, "membership": self.membership.to_dict()}

    def refusal(self) -> UntrustedPatch:
        if self.trusted_by and self.membership.refusal is not None:
            return self.membership.refusal
        who = f"patch {self.patch.short_id} ({self.patch.describe()})"
        details = {"patch_id": self.patch.id, "policy": self.policy.path,
                   "signatures": self.signatures}
        by = {s["status"]: s for s in reversed(self.signatures)}
        if not self.signatures:
            why = (f"{who} is not signed. Sign it with `suture sign FILE --key KEY`, or pass "
                   f"--allow-unsigned (development only)")
        elif "invalid" in by:
            why = (f"{who} has a signature by the trusted key {by['invalid']['name']!r} that "
                   f"does not match its bytes: it was changed after signing, or the signature "
                   f"belongs to another patch")
        elif "not allowed" in by:
            s = by["not allowed"]
            dist = canonicalize_name(str(self.patch.target.get("name", "")))
            why = (f"{who} is signed by {s['name']!r}, which the trust policy allows only for "
                   f"{', '.join(s['distributions'])}" + (
                       f". To trust it for {dist} too: `suture trust set {s['keyid'][:12]} "
                       + " ".join(f"--dist {d}" for d in sorted({*s['distributions'], dist}))
                       + "`" if self.patch.target.get("kind") == "distribution" else
                       " (a patch that names no distribution needs a key trusted for any "
                       f"patch: `suture trust set {s['keyid'][:12]} --any`)"))
        elif not self.policy.keys:
            where = (f"the trust policy {self.policy.path} lists none" if self.policy.exists
                     else f"there is no trust policy at {self.policy.path}")
            why = (f"{who} is signed, but no key is trusted on this host: {where}. Add the "
                   f"publisher's key with `suture trust add KEY.pub`")
        else:
            ids = ", ".join(s["keyid"][:12] for s in self.signatures)
            why = (f"{who} is signed only by keys the trust policy {self.policy.path} does not "
                   f"list ({ids}). Add the publisher's key with `suture trust add KEY.pub`")
        return UntrustedPatch(why, details=details)


def check(data: bytes, policy: Optional[Policy] = None) -> Verdict:
    """Validate the patch and judge each signature; raises only for a malformed file."""
    policy = policy if policy is not None else load_policy()
    patch = load(data)
    envelope, payload = read_envelope(data)
    message = _pae(str(envelope["payloadType"]), payload)
    rows: List[Dict[str, Any]] = []
    for s in _signatures(envelope):
        kid = s.get("keyid", "")
        key = policy.by_id(kid)
        row: Dict[str, Any] = {"keyid": kid, "name": key.name if key else None}
        if key is None:
            row["status"] = "unknown key"
        else:
            from cryptography.exceptions import InvalidSignature

            try:
                key.public.verify(base64.b64decode(s["sig"], validate=True), message)
                row["status"] = "valid" if key.allows(patch) else "not allowed"
                row["distributions"] = key.to_dict()["distributions"]
            except (InvalidSignature, binascii.Error, ValueError):
                row["status"] = "invalid"
        rows.append(row)
    return Verdict(patch, policy, rows, membership_here(patch))


def require(data: bytes, allow_unsigned: bool = False,
            policy: Optional[Policy] = None) -> Tuple[Patch, Dict[str, Any]]:
    """The patch and its trust record, or ``UntrustedPatch``. With ``allow_unsigned`` a patch
    no trusted key signed passes as ``{"unsigned": True}`` (an invalid signature by a trusted
    key is refused even then: that is tampering, not development)."""
    verdict = check(data, policy)
    if verdict.membership.refusal is not None:  # not a signature question: no flag waives it
        raise verdict.membership.refusal
    if verdict.trusted:
        return verdict.patch, verdict.record()
    if allow_unsigned and not any(s["status"] == "invalid" for s in verdict.signatures):
        return verdict.patch, {"unsigned": True, "signers": []}
    raise verdict.refusal()
