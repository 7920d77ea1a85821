"""Read, write and validate the patch artifact (formats 1 and 2).

A patch file is a DSSE-shaped JSON envelope around the payload bytes::

    {"payload": "<base64>", "payloadType": PAYLOAD_TYPE_DEFLATE, "signatures": []}

The payload is JSON with sorted keys and no insignificant white space, so the
same patch always has the same JSON; its sha256 is the patch id. It travels
deflated (zlib with ``ZDICT``, ``PAYLOAD_TYPE_DEFLATE``) or, in files written
before issue 19, as it is (``PAYLOAD_TYPE``); the id is the same either way, and
``inflate`` refuses to produce more than ``MAX_PATCH_BYTES``. Signatures sign the
payload bytes the envelope carries (DSSE), never the envelope
(tooling/trust/__init__.py checks them; the runtime cannot, being stdlib-only:
docs/security.md). This module is the only reader of the format; tooling writes
through ``dump``. See docs/patch-format.md.

Format 2 adds *compact* modules: the baseline travels as its sha256 only and
the fixed source as line hunks against it (``make_delta``). The engine reads
the module's source file in the target process and rebuilds both sources with
``resolve``, which accepts the file only if its hash is the baseline's or the
fixed source's: the patch stays exact while carrying only what changed.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import hashlib
import json
import zlib
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from . import _bounded, _fingerprint
from .errors import PatchFormatError

PAYLOAD_TYPE = "application/vnd.suture.patch+json; version=1"
# The same canonical JSON, compressed with zlib (RFC 1950). Written by default since
# issue 19: JSON of source lines and hashes deflates to about a third, which pays for
# base64 (+33 %) several times over. A reader older than this type refuses it by name.
PAYLOAD_TYPE_DEFLATE = "application/vnd.suture.patch+json+zlib; version=1"
PAYLOAD_TYPES = (PAYLOAD_TYPE, PAYLOAD_TYPE_DEFLATE)

# The preset dictionary of PAYLOAD_TYPE_DEFLATE (zlib's ``zdict``): the format's own
# vocabulary (keys in canonical order, verdicts, change kinds, fingerprint prefixes, the
# reason every version bump carries) and common Python tokens, so that a small patch does
# not spend its first few hundred bytes spelling them out (measured: about 300 bytes less
# per patch, a third of a one-function fix). Nothing here names a package. FROZEN: a
# patch deflated with it is unreadable with any other bytes, so a change needs a new
# payload type; tests/runtime/engine/test_baseline.py pins its sha256. zlib prefers
# strings near the end, so the most frequent come last.
ZDICT = (
    b"    def __init__(self, \n        return \n        if \n        else:\n"
    b"            raise \n    @property\n    @staticmethod\n    @classmethod\n"
    b" is None:\n is not None\n        self.\n            return \n            if "
    b"import \nfrom . import \n\"\"\"\n        \"\"\"\n    def \nclass "
    b'"changed class attribute","changed class body statement","changed decorator",'
    b'"changed default","changed module statement","changed nested function",'
    b'"added class","added function","added import","added module","added module statement",'
    b'"removed import","removed module constant","changed import","changed class bases",'
    b'"restart","hook","baseline: ModuleNotFoundError: No module named \''
    b'{"action":"add","baseline":null,"changes":[],"fixed":{"sha256":"","source":"'
    b'"aliases":{},"dependents_not_verified":{},"warnings":{"added":[],"removed":[]}'
    b'"derived":[],"lined":{},"same":{},"reason":"","verified":false}'
    b'"literal":["int","'
    b'"literal":["ref",["'
    b'"describe":["(absent)","function ","class '
    b'{"baseline":"absent","describe":["'
    b'{"files":[],"format":2,"hooks":null,"meta":{"builder":"suture 0.1.0",'
    b'"cves":["CVE-20'
    b'"],"partial":false,"python":">=3.9","state":{"modules":{"'
    b'{"kind":"changed module constant","qualname":"__version__","reason":"rebound in '
    b"this module and in modules that did `from ... import` it; other references to the "
    b'old value keep it","verdict":"caveat"}'
    b'"]],"paths":[],"unstable":0,"verified":true},"'
    b'{"baseline":"str:'
    b'","describe":["\'","\'"],"fixed":"str:'
    b'","label":"__version__","literal":["str","'
    b'"],"path":[["g","__version__"]]}],"unstable":0,"verified":true},"'
    b'"},"python":"3.11"},"summary":""},"modules":['
    b'"target":{"from_version":"'
    b'","kind":"distribution","name":"'
    b'","to_version":"'
    b'{"action":"change","baseline":{"sha256":"'
    b'"},"changes":[{"kind":"changed method","qualname":"'
    b'","reason":"","verdict":"live"},{"kind":"changed function","qualname":"'
    b'","reason":"","verdict":"live"}],"fixed":{"delta":[['
    b'"]],"sha256":"'
    b'"},"name":"'
)
FORMAT_VERSION = 2          # written when a module is compact; 1 otherwise
FORMATS = (1, 2)
MAX_PATCH_BYTES = 64 * 1024 * 1024   # the file, and the inflated payload

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
    text: Optional[str]          # None: known by its hash only (a compact module)
    sha256: str

    @classmethod
    def of(cls, text: str) -> "Source":
        return cls(text, sha256_text(text))

    @property
    def whole(self) -> str:
        """The text; only for sources known whole (hooks, added or resolved modules)."""
        if self.text is None:
            raise ValueError("source known by its hash only: resolve() the module first")
        return self.text


Hunk = Tuple[int, str, str]      # (first baseline line, lines removed, lines inserted)


@dataclass(frozen=True)
class ModulePatch:
    name: str
    action: str
    baseline: Optional[Source]
    fixed: Source
    changes: Tuple[Change, ...] = ()
    delta: Optional[Tuple[Hunk, ...]] = None   # the fixed source as hunks against the baseline

    @property
    def compact(self) -> bool:
        """Its sources must be rebuilt from the target's own source file (``resolve``)."""
        return self.baseline is not None and (self.baseline.text is None
                                              or self.fixed.text is None)


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


def decode_source(data: bytes) -> str:
    """A source file's text, exactly as the builder and the engine both read it.

    No newline translation (unlike ``importlib``'s loaders), so the hash covers the
    file's bytes: UTF-8, else Latin-1 (which decodes any bytes).
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def make_delta(baseline: str, fixed: str) -> Tuple[Hunk, ...]:
    """The hunks that turn ``baseline`` into ``fixed`` (whole lines, in order)."""
    a, b = baseline.splitlines(keepends=True), fixed.splitlines(keepends=True)
    # autojunk (difflib's default) skips lines frequent in ``b`` as match anchors: hunks may
    # come out a little larger, never wrong (resolve() checks both hashes), and the time
    # stays near-linear on repetitive sources (without it: 39 s for 1000 small functions).
    matcher = difflib.SequenceMatcher(None, a, b)
    return tuple((i1, "".join(a[i1:i2]), "".join(b[j1:j2]))
                 for op, i1, i2, j1, j2 in matcher.get_opcodes() if op != "equal")


def _splice(text: str, hunks: Tuple[Hunk, ...], reverse: bool) -> Optional[str]:
    """Apply ``hunks`` to ``text`` (backwards: from the fixed source to the baseline);
    None when a hunk's removed lines are not where it says."""
    lines = text.splitlines(keepends=True)
    out: List[str] = []
    pos = shift = 0
    for line, removed, inserted in hunks:
        n_removed = len(removed.splitlines(keepends=True))
        n_inserted = len(inserted.splitlines(keepends=True))
        if reverse:   # positions in the fixed text move by what earlier hunks changed
            line, removed, inserted = line + shift, inserted, removed
            shift += n_inserted - n_removed
            n_removed, n_inserted = n_inserted, n_removed
        if line < pos or "".join(lines[line:line + n_removed]) != removed:
            return None
        out.append("".join(lines[pos:line]))
        out.append(inserted)
        pos = line + n_removed
    out.append("".join(lines[pos:]))
    return "".join(out)


def resolve(mp: ModulePatch, text: Optional[str]) -> Optional[ModulePatch]:
    """``mp`` with both sources whole, rebuilt from ``text``, the target's own copy of
    the module's source (may be None). None if ``text`` is neither the baseline nor
    the fixed source. A delta that does not rebuild its hash is a corrupt patch.
    """
    if not mp.compact:
        return mp
    assert mp.baseline is not None
    base, fixed = mp.baseline.text, mp.fixed.text
    digest = None if text is None else sha256_text(text)
    if base is None and digest == mp.baseline.sha256:
        base = text
    elif base is None and digest == mp.fixed.sha256 and mp.delta is not None:
        fixed = text
        base = _splice(text, mp.delta, reverse=True)  # type: ignore[arg-type]
    if base is None:
        return None
    if fixed is None and mp.delta is not None:
        fixed = _splice(base, mp.delta, reverse=False)
    if base is None or fixed is None or sha256_text(base) != mp.baseline.sha256 \
            or sha256_text(fixed) != mp.fixed.sha256:
        raise _fail(f"patch is corrupt: the delta of module {mp.name} does not rebuild "
                    "its sources", module=mp.name)
    return ModulePatch(mp.name, mp.action, Source(base, mp.baseline.sha256),
                       Source(fixed, mp.fixed.sha256), mp.changes)


def compacted(mp: ModulePatch) -> ModulePatch:
    """``mp`` (whole sources) as a compact module: baseline hash and hunks."""
    if mp.baseline is None or mp.compact:
        return mp
    assert mp.baseline.text is not None and mp.fixed.text is not None
    return ModulePatch(mp.name, mp.action, Source(None, mp.baseline.sha256),
                       Source(None, mp.fixed.sha256), mp.changes,
                       make_delta(mp.baseline.text, mp.fixed.text))


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def _payload_dict(patch: Patch) -> Dict[str, Any]:
    def src(s: Optional[Source], delta: Optional[Tuple[Hunk, ...]] = None) -> Any:
        if s is None:
            return None
        if s.text is not None:
            return {"sha256": s.sha256, "source": s.text}
        if delta is not None:
            return {"sha256": s.sha256, "delta": [list(h) for h in delta]}
        return {"sha256": s.sha256}

    compact = any(m.compact for m in patch.modules)
    return {
        "format": FORMAT_VERSION if compact else 1,
        "target": patch.target,
        "meta": patch.meta,
        "modules": [
            {"name": m.name, "action": m.action, "baseline": src(m.baseline),
             "fixed": src(m.fixed, m.delta), "changes": [c.to_dict() for c in m.changes]}
            for m in sorted(patch.modules, key=lambda m: m.name)
        ],
        "files": sorted(patch.files, key=lambda f: (f.get("path", ""), f.get("kind", ""))),
        "hooks": src(patch.hooks),
    }


def seal(body: bytes, compress: bool = True) -> Dict[str, Any]:
    """The unsigned envelope around ``body``, the canonical payload JSON: deflated
    (``PAYLOAD_TYPE_DEFLATE``) or as it is (``PAYLOAD_TYPE``, what readers before
    issue 19 read)."""
    if compress:
        # Level 9, zlib container (its adler32 is checked on inflating; its header names
        # the dictionary by its adler32, so a reader with another one fails). The stream is
        # deterministic for one zlib; other zlibs (zlib-ng) may write other bytes for the
        # same JSON, which is why the id is taken over the JSON, not over the stream.
        deflater = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY, ZDICT)
        payload, ptype = deflater.compress(body) + deflater.flush(), PAYLOAD_TYPE_DEFLATE
    else:
        payload, ptype = body, PAYLOAD_TYPE
    return {"payload": base64.b64encode(payload).decode("ascii"), "payloadType": ptype,
            "signatures": []}


def dump(patch: Patch, compress: bool = True) -> bytes:
    """Serialise ``patch`` deterministically; returns the envelope bytes.

    ``compress=False`` writes the payload uncompressed, for agents older than the
    deflate payload type; the patch id is the same either way."""
    return canonical_json(seal(canonical_json(_payload_dict(patch)), compress)) + b"\n"


def patch_id(body: bytes) -> str:
    """The id of the patch whose canonical payload JSON is ``body`` (``payload_json``)."""
    return hashlib.sha256(body).hexdigest()


def inflate(payload: bytes) -> bytes:
    """A deflated payload's JSON bytes, refusing (before producing them) more than
    ``MAX_PATCH_BYTES``: a bomb costs the reader that much memory at most."""
    inflater = zlib.decompressobj(15, ZDICT)
    try:
        body = inflater.decompress(payload, MAX_PATCH_BYTES + 1)
    except zlib.error as exc:
        raise _fail(f"patch payload is not a valid zlib stream ({exc})") from None
    if len(body) > MAX_PATCH_BYTES or inflater.unconsumed_tail:
        raise _fail(f"patch payload inflates to more than {MAX_PATCH_BYTES} bytes",
                    max_bytes=MAX_PATCH_BYTES)
    if not inflater.eof:
        raise _fail("patch payload is a truncated zlib stream")
    if inflater.unused_data:
        raise _fail("patch payload has bytes after its zlib stream")
    return body


def payload_json(envelope: Dict[str, Any], payload: bytes) -> bytes:
    """The canonical JSON of an envelope's payload (``read_envelope``'s pair): the patch
    id is its sha256; signatures are over ``payload`` as the envelope carries it."""
    if envelope.get("payloadType") == PAYLOAD_TYPE_DEFLATE:
        return inflate(payload)
    return payload


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


def _source(obj: Any, where: str, compact: bool = False) -> Optional[Source]:
    """A whole source; with ``compact`` (format 2 baselines and deltas) also a bare hash."""
    if obj is None:
        return None
    digest = _need(obj, "sha256", str, where)
    if compact and "source" not in obj:
        if len(digest) != 64 or any(ch not in "0123456789abcdef" for ch in digest):
            raise _fail(f"patch is malformed: {where}.sha256 is not a sha256", where=where)
        return Source(None, digest)
    text = _need(obj, "source", str, where)
    if sha256_text(text) != digest:
        raise _fail(f"patch is corrupt: {where} does not match its sha256 "
                    f"{digest[:12]}\u2026", where=where)
    return Source(text, digest)


def _delta(obj: Any, where: str) -> Optional[Tuple[Hunk, ...]]:
    if not isinstance(obj, dict) or "delta" not in obj:
        return None
    raw = _need(obj, "delta", list, where)
    hunks: List[Hunk] = []
    last = 0
    for i, h in enumerate(raw):
        if not (isinstance(h, list) and len(h) == 3 and type(h[0]) is int
                and isinstance(h[1], str) and isinstance(h[2], str)) or h[0] < last:
            raise _fail(f"patch is malformed: {where}.delta[{i}] is not a hunk "
                        "[line, removed, inserted] in order", where=where)
        last = h[0] + len(h[1].splitlines(keepends=True))
        hunks.append((h[0], h[1], h[2]))
    return tuple(hunks)


def _lined(lined: Any, where: str) -> None:
    """``lined`` of a manifest entry, when present: ``{QUALNAME: {"baseline": [LINE, ...],
    "fixed": [LINE, ...]}}``, or a list of qualified names (patches built before the lines
    were recorded)."""
    if lined is None or isinstance(lined, list) and all(isinstance(q, str) for q in lined):
        return
    if isinstance(lined, dict) and all(
            isinstance(v, dict) and all(
                isinstance(v.get(r), list) and all(type(n) is int for n in v[r])
                for r in ("baseline", "fixed"))
            for v in lined.values()):
        return
    raise _fail(f"patch is malformed: {where}.lined must map qualified names to "
                '{"baseline": [line, ...], "fixed": [line, ...]} (or list names)',
                where=where, key="lined")


def _state(obj: Any) -> None:
    """``meta.state``, the state manifest (docs/patch-format.md): per module, verified with
    its differing paths, or not verified with a reason."""
    if not isinstance(obj, dict):
        raise _fail("patch is malformed: meta.state must be an object", where="meta.state")
    _optional(obj, "python", str, "meta.state")
    aliases = obj.get("aliases", {})
    if not isinstance(aliases, dict) or not all(
            isinstance(k, str) and isinstance(v, list) and len(v) == 2
            and all(isinstance(x, str) for x in v) for k, v in aliases.items()):
        raise _fail("patch is malformed: meta.state.aliases must map module names to "
                    "[fixed place, baseline place]", where="meta.state")
    warnings = obj.get("warnings", {})
    if not isinstance(warnings, dict) or not all(
            isinstance(warnings.get(k, []), list) for k in ("added", "removed")):
        raise _fail("patch is malformed: meta.state.warnings must be an object with lists",
                    where="meta.state")
    modules = _need(obj, "modules", dict, "meta.state")
    for name, entry in modules.items():
        where = f"meta.state.modules[{name!r}]"
        if not isinstance(entry, dict):
            raise _fail(f"patch is malformed: {where} must be an object", where=where)
        verified = _need(entry, "verified", bool, where)
        if not verified:
            _need(entry, "reason", str, where)
            continue
        _optional(entry, "unstable", int, where)
        _lined(entry.get("lined"), where)
        same = entry.get("same", {})
        if not isinstance(same, dict) or not all(isinstance(v, str) for v in same.values()):
            raise _fail(f"patch is malformed: {where}.same must map names to fingerprints",
                        where=where)
        derived = entry.get("derived", [])
        if not isinstance(derived, list) or not all(
                isinstance(d, list) and len(d) == 2 and all(isinstance(x, str) for x in d)
                for d in derived):
            raise _fail(f"patch is malformed: {where}.derived must be a list of [kind, "
                        "qualname] pairs", where=where)
        for i, row in enumerate(_need(entry, "paths", list, where)):
            rw = f"{where}.paths[{i}]"
            if not isinstance(row, dict):
                raise _fail(f"patch is malformed: {rw} must be an object", where=rw)
            segments = _need(row, "path", list, rw)
            if not segments or not all(
                    isinstance(seg, list) and len(seg) == 2 and isinstance(seg[0], str)
                    and (isinstance(seg[1], str) or type(seg[1]) is int) for seg in segments):
                raise _fail(f"patch is malformed: {rw}.path must be a non-empty list of "
                            "[kind, key] pairs (key a string or an integer)", where=rw)
            _need(row, "baseline", str, rw)
            _need(row, "fixed", str, rw)
            _optional(row, "label", str, rw)
            _optional(row, "describe", list, rw)
            if "literal" in row:   # a list of any JSON: checked by decoding it
                try:
                    _fingerprint.from_literal(row["literal"], refs=False)
                except (ValueError, RecursionError) as exc:
                    raise _fail(f"patch is malformed: {rw}.literal is not a literal value "
                                f"({exc})", where=rw) from None


def read_envelope(data: bytes) -> Tuple[Dict[str, Any], bytes]:
    """Parse the envelope; returns it and the decoded payload bytes, as signed (still
    deflated for ``PAYLOAD_TYPE_DEFLATE``: ``payload_json`` gives the JSON)."""
    if not isinstance(data, (bytes, bytearray)):
        raise _fail("patch must be bytes")
    envelope = _bounded.loads(data, error=PatchFormatError,
                              what="patch is not a Suture patch file: it",
                              max_bytes=MAX_PATCH_BYTES)
    if not isinstance(envelope, dict):
        raise _fail("patch is not a Suture patch file (no envelope)")
    ptype = _need(envelope, "payloadType", str, "envelope")
    if ptype not in PAYLOAD_TYPES:
        raise _fail(f"patch has unsupported payload type {ptype!r}; this Suture reads "
                    f"{' and '.join(map(repr, PAYLOAD_TYPES))}", payload_type=ptype)
    _need(envelope, "signatures", list, "envelope")
    encoded = _need(envelope, "payload", str, "envelope")
    try:
        payload = base64.b64decode(encoded.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise _fail("patch payload is not valid base64 (truncated or edited?)") from exc
    return envelope, payload


def load(data: bytes) -> Patch:
    """Validate ``data`` completely and return the patch. Never compiles anything."""
    envelope, payload = read_envelope(data)
    payload = payload_json(envelope, payload)
    body = _bounded.loads(payload, error=PatchFormatError, what="patch payload",
                          max_bytes=MAX_PATCH_BYTES)
    if canonical_json(body) != payload:
        raise _fail("patch payload is not in canonical form (edited by hand?)")
    version = _need(body, "format", int, "payload")
    if version not in FORMATS:
        raise _fail(f"patch format {version} is not supported (this Suture reads "
                    f"{', '.join(map(str, FORMATS))})", format=version)
    compact = version >= 2
    target = _need(body, "target", dict, "payload")
    _need(target, "name", str, "target")
    _need(target, "kind", str, "target")
    for key in ("from_version", "to_version"):
        _optional(target, key, (str, type(None)), "target")
    meta = _need(body, "meta", dict, "payload")
    for key, typ in (("cves", list), ("excluded", list), ("summary", str), ("builder", str),
                     ("python", str), ("partial", bool)):
        _optional(meta, key, typ, "meta")
    if "state" in meta:
        _state(meta["state"])
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
        baseline = _source(m.get("baseline"), f"{name} baseline", compact)
        delta = _delta(m.get("fixed"), f"{name} fixed") if compact else None
        fixed = _source(m.get("fixed"), f"{name} fixed", delta is not None)
        if fixed is None:
            raise _fail(f"patch is malformed: module {name} has no fixed source")
        if (baseline is None) != (action == "add"):
            raise _fail(f"patch is malformed: module {name} ({action}) "
                        f"{'lacks' if baseline is None else 'has'} a baseline")
        if delta is not None and baseline is None:
            raise _fail(f"patch is malformed: module {name} ({action}) has a delta "
                        "but no baseline")
        if fixed.text is None and delta is None or delta is not None and fixed.text is not None:
            raise _fail(f"patch is malformed: module {name}'s fixed source needs "
                        "exactly one of source and delta")
        changes = []
        for j, c in enumerate(_need(m, "changes", list, where)):
            cw = f"{where}.changes[{j}]"
            verdict = _need(c, "verdict", str, cw)
            if verdict not in VERDICTS:
                raise _fail(f"patch is malformed: {cw} has unknown verdict {verdict!r}")
            changes.append(Change(_need(c, "kind", str, cw), _need(c, "qualname", str, cw),
                                  verdict, _need(c, "reason", str, cw)))
        mp = ModulePatch(name, action, baseline, fixed, tuple(changes), delta)
        if mp.compact and mp.baseline is not None and mp.baseline.text is not None:
            mp = resolve(mp, None) or mp   # baseline whole, fixed as hunks: rebuild now
        modules.append(mp)
    files = tuple(_file_row(f, f"files[{i}]")
                  for i, f in enumerate(_need(body, "files", list, "payload")))
    hooks = _source(body.get("hooks"), "hooks")
    return Patch(target=target, modules=tuple(modules), meta=meta, files=files,
                 hooks=hooks, id=patch_id(payload))
