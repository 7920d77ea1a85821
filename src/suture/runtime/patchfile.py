"""Read, write and validate the patch artifact (format v1).

A patch file is a DSSE-shaped JSON envelope around canonical payload bytes::

    {"payload": "<base64>", "payloadType": PAYLOAD_TYPE, "signatures": []}

The payload is JSON with sorted keys and no insignificant white space, so the
same patch always has the same bytes; its sha256 is the patch id. Signatures
sign the payload bytes, never the envelope (tooling/trust.py checks them; the
runtime cannot, being stdlib-only: docs/security.md). This module is the
only reader of the format; tooling writes through ``dump``. See
docs/patch-format.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from .errors import PatchFormatError

PAYLOAD_TYPE = "application/vnd.suture.patch+json; version=1"
FORMAT_VERSION = 1
MAX_PATCH_BYTES = 64 * 1024 * 1024

VERDICTS = ("live", "caveat", "restart", "hook")
MODULE_ACTIONS = ("change", "add")


@dataclass(frozen=True)
class Change:
    kind: str
    qualname: str
    verdict: str
    reason: str = ""

    def to_dict(self) -> Dict[str, str]:
        return {"kind": self.kind, "qualname": self.qualname,
                "verdict": self.verdict, "reason": self.reason}


@dataclass(frozen=True)
class Source:
    text: str
    sha256: str

    @classmethod
    def of(cls, text: str) -> "Source":
        return cls(text, sha256_text(text))


@dataclass(frozen=True)
class ModulePatch:
    name: str
    action: str
    baseline: Optional[Source]
    fixed: Source
    changes: Tuple[Change, ...] = ()


@dataclass(frozen=True)
class Patch:
    target: Dict[str, Any]
    modules: Tuple[ModulePatch, ...]
    meta: Dict[str, Any] = field(default_factory=dict)
    files: Tuple[Dict[str, str], ...] = ()
    hooks: Optional[Source] = None
    id: str = ""

    @property
    def short_id(self) -> str:
        return self.id[:12]

    def describe(self) -> str:
        t = self.target
        if t.get("kind") == "distribution":
            return f"{t['name']} {t.get('from_version')}\u2192{t.get('to_version')}"
        return str(t.get("name", "tree"))


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def _payload_dict(patch: Patch) -> Dict[str, Any]:
    def src(s: Optional[Source]) -> Optional[Dict[str, str]]:
        return None if s is None else {"sha256": s.sha256, "source": s.text}

    return {
        "format": FORMAT_VERSION,
        "target": patch.target,
        "meta": patch.meta,
        "modules": [
            {"name": m.name, "action": m.action, "baseline": src(m.baseline),
             "fixed": src(m.fixed), "changes": [c.to_dict() for c in m.changes]}
            for m in sorted(patch.modules, key=lambda m: m.name)
        ],
        "files": sorted(patch.files, key=lambda f: (f.get("path", ""), f.get("kind", ""))),
        "hooks": src(patch.hooks),
    }


def dump(patch: Patch) -> bytes:
    """Serialise ``patch`` deterministically; returns the envelope bytes."""
    payload = canonical_json(_payload_dict(patch))
    envelope = {"payload": base64.b64encode(payload).decode("ascii"),
                "payloadType": PAYLOAD_TYPE, "signatures": []}
    return canonical_json(envelope) + b"\n"


def patch_id(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


# -- reading ---------------------------------------------------------------
# One small validator per rule, each with its own message (style: _classify_pyc).

def _fail(msg: str, **details: Any) -> "PatchFormatError":
    return PatchFormatError(msg, details=details)


def _need(obj: Any, key: str, typ: Any, where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise _fail(f"patch is malformed: {where} has no {key!r}", where=where, key=key)
    value = obj[key]
    if not isinstance(value, typ):
        raise _fail(f"patch is malformed: {where}.{key} has the wrong type "
                    f"({type(value).__name__})", where=where, key=key)
    return value


def _optional(obj: Dict[str, Any], key: str, typ: Any, where: str) -> None:
    """``obj[key]``, when present, has type ``typ`` (a list type means: of strings)."""
    if key not in obj:
        return
    value = obj[key]
    if typ is list:
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    else:
        ok = isinstance(value, typ) and not (typ is not bool and isinstance(value, bool))
    if not ok:
        raise _fail(f"patch is malformed: {where}.{key} has the wrong type "
                    f"({type(value).__name__})", where=where, key=key)


def _file_row(obj: Any, where: str) -> Dict[str, str]:
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                            for k, v in obj.items()):
        raise _fail(f"patch is malformed: {where} must be an object of strings", where=where)
    _need(obj, "path", str, where)
    return obj


def _source(obj: Any, where: str) -> Optional[Source]:
    if obj is None:
        return None
    text = _need(obj, "source", str, where)
    digest = _need(obj, "sha256", str, where)
    if sha256_text(text) != digest:
        raise _fail(f"patch is corrupt: {where} does not match its sha256 "
                    f"{digest[:12]}\u2026", where=where)
    return Source(text, digest)


def read_envelope(data: bytes) -> Tuple[Dict[str, Any], bytes]:
    """Parse the envelope; returns it and the decoded payload bytes."""
    if not isinstance(data, (bytes, bytearray)):
        raise _fail("patch must be bytes")
    if len(data) > MAX_PATCH_BYTES:
        raise _fail(f"patch is too large: {len(data)} bytes, limit {MAX_PATCH_BYTES}",
                    size=len(data))
    try:
        envelope = json.loads(bytes(data).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _fail(f"patch is not a Suture patch file (not JSON: {exc})") from exc
    if not isinstance(envelope, dict):
        raise _fail("patch is not a Suture patch file (no envelope)")
    ptype = _need(envelope, "payloadType", str, "envelope")
    if ptype != PAYLOAD_TYPE:
        raise _fail(f"patch has unsupported payload type {ptype!r}; this Suture reads "
                    f"{PAYLOAD_TYPE!r}", payload_type=ptype)
    _need(envelope, "signatures", list, "envelope")
    encoded = _need(envelope, "payload", str, "envelope")
    try:
        payload = base64.b64decode(encoded.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise _fail("patch payload is not valid base64 (truncated or edited?)") from exc
    return envelope, payload


def load(data: bytes) -> Patch:
    """Validate ``data`` completely and return the patch. Never compiles anything."""
    _, payload = read_envelope(data)
    try:
        body = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _fail(f"patch payload is not JSON: {exc}") from exc
    if canonical_json(body) != payload:
        raise _fail("patch payload is not in canonical form (edited by hand?)")
    version = _need(body, "format", int, "payload")
    if version != FORMAT_VERSION:
        raise _fail(f"patch format {version} is not supported (this Suture reads "
                    f"{FORMAT_VERSION})", format=version)
    target = _need(body, "target", dict, "payload")
    _need(target, "name", str, "target")
    _need(target, "kind", str, "target")
    for key in ("from_version", "to_version"):
        _optional(target, key, (str, type(None)), "target")
    meta = _need(body, "meta", dict, "payload")
    for key, typ in (("cves", list), ("excluded", list), ("summary", str), ("builder", str),
                     ("python", str), ("partial", bool)):
        _optional(meta, key, typ, "meta")
    modules: List[ModulePatch] = []
    seen = set()
    for i, m in enumerate(_need(body, "modules", list, "payload")):
        where = f"modules[{i}]"
        name = _need(m, "name", str, where)
        if not name or any(not part.isidentifier() for part in name.split(".")):
            raise _fail(f"patch is malformed: {where} has an invalid module name {name!r}")
        if name in seen:
            raise _fail(f"patch is malformed: module {name!r} appears twice")
        seen.add(name)
        action = _need(m, "action", str, where)
        if action not in MODULE_ACTIONS:
            raise _fail(f"patch is malformed: {where} has unknown action {action!r}")
        baseline = _source(m.get("baseline"), f"{name} baseline")
        fixed = _source(m.get("fixed"), f"{name} fixed")
        if fixed is None:
            raise _fail(f"patch is malformed: module {name} has no fixed source")
        if (baseline is None) != (action == "add"):
            raise _fail(f"patch is malformed: module {name} ({action}) "
                        f"{'lacks' if baseline is None else 'has'} a baseline")
        changes = []
        for j, c in enumerate(_need(m, "changes", list, where)):
            cw = f"{where}.changes[{j}]"
            verdict = _need(c, "verdict", str, cw)
            if verdict not in VERDICTS:
                raise _fail(f"patch is malformed: {cw} has unknown verdict {verdict!r}")
            changes.append(Change(_need(c, "kind", str, cw), _need(c, "qualname", str, cw),
                                  verdict, _need(c, "reason", str, cw)))
        modules.append(ModulePatch(name, action, baseline, fixed, tuple(changes)))
    files = tuple(_file_row(f, f"files[{i}]")
                  for i, f in enumerate(_need(body, "files", list, "payload")))
    hooks = _source(body.get("hooks"), "hooks")
    return Patch(target=target, modules=tuple(modules), meta=meta, files=files,
                 hooks=hooks, id=patch_id(payload))
