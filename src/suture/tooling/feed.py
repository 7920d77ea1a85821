"""A patch feed: signed patches and a signed index in a plain directory (docs/fleet.md).

``publish`` maintains the directory; any static server can serve it. ``sync`` brings
a feed's patches to this host's feed mirror (``<state dir>/feeds/<feed name>/``), after
checking the index's signature and freshness and each patch's own signatures against the
host's trust policy. It installs nothing in the store: when a synced patch is due on
this host is the daemon's decision (its ring, delays and window).
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import hashlib
import json
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..runtime import store
from ..runtime.errors import PatchFormatError, SutureError
from ..runtime.patchfile import MAX_PATCH_BYTES, canonical_json
from . import trust

__all__ = ["FeedError", "FeedRollback", "INDEX_FILE", "INDEX_TYPE", "CHANNELS", "publish",
           "sync", "read_index", "released", "mirror_dir"]

INDEX_FILE = "index.suture-index"
INDEX_TYPE = "application/vnd.suture.feed-index+json; version=1"
CHANNELS = ("canary", "early", "broad")     # from the first hosts to all of them
MAX_INDEX_BYTES = 16 * 1024 * 1024
FETCH_TIMEOUT = 30.0
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class FeedError(SutureError, ValueError):
    """A feed cannot be used: unreadable, malformed, not signed by a trusted unrestricted
    key, or a patch file that does not match its index entry."""

    code = "SUT-E113"


class FeedRollback(FeedError):
    """The feed's index is older than one this host already accepted, or the same
    version with other contents: a replayed or forked index."""

    code = "SUT-E114"


def _now() -> str:
    """Now, in the index's one-second resolution, rounded *up*: a release time is never
    earlier than the release, so a host's delay after it is never shorter than set."""
    now = _dt.datetime.now(_dt.timezone.utc)
    if now.microsecond:
        now = now.replace(microsecond=0) + _dt.timedelta(seconds=1)
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> _dt.datetime:
    return _dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=_dt.timezone.utc)


def _write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


# ------------------------------------------------------------------------------- the index

@dataclass
class Index:
    feed: str
    version: int
    published: str
    expires: str
    patches: List[Dict[str, Any]]
    data: bytes = b""                       # the signed envelope, as read or written
    signed_by: List[str] = field(default_factory=list)

    def payload(self) -> bytes:
        return canonical_json({"format": 1, "feed": self.feed, "version": self.version,
                               "published": self.published, "expires": self.expires,
                               "patches": sorted(self.patches, key=lambda e: e["id"])})


def _bad(msg: str, **details: Any) -> FeedError:
    return FeedError(f"feed index is malformed: {msg}", details=details)


def _entry(e: Any, i: int) -> Dict[str, Any]:
    where = f"patches[{i}]"
    if not isinstance(e, dict):
        raise _bad(f"{where} is not an object")
    for key, typ in (("id", str), ("path", str), ("sha256", str), ("bytes", int),
                     ("target", dict), ("cves", list), ("channels", dict)):
        if not isinstance(e.get(key), typ) or isinstance(e.get(key), bool):
            raise _bad(f"{where}.{key} is missing or has the wrong type", entry=i, key=key)
    if not _HEX64.match(e["id"]) or not _HEX64.match(e["sha256"]):
        raise _bad(f"{where} has an id or sha256 that is not 64 hex digits", entry=i)
    if e["path"] != f"patches/{e['id']}.suture":   # the only form: no path leaves the feed
        raise _bad(f"{where}.path must be patches/<id>.suture, not {e['path']!r}", entry=i)
    if not 0 < e["bytes"] <= MAX_PATCH_BYTES:
        raise _bad(f"{where}.bytes is out of range", entry=i)
    if not e["channels"] or any(c not in CHANNELS or not isinstance(t, str)
                                for c, t in e["channels"].items()):
        raise _bad(f"{where}.channels must map some of {', '.join(CHANNELS)} to a time",
                   entry=i)
    for t in e["channels"].values():
        try:
            parse_time(t)
        except ValueError as exc:
            raise _bad(f"{where}.channels has a bad time {t!r}", entry=i) from exc
    if not all(isinstance(c, str) for c in e["cves"]):
        raise _bad(f"{where}.cves must be strings", entry=i)
    return e


def read_index(data: bytes, policy: trust.Policy, now: Optional[str] = None) -> Index:
    """Parse and verify a signed index: signed by a trusted key that is not restricted to
    some distributions (an index may list any), canonical, every field checked, and not
    expired at ``now`` (default: the current time)."""
    if len(data) > MAX_INDEX_BYTES:
        raise _bad(f"{len(data)} bytes, limit {MAX_INDEX_BYTES}")
    try:
        envelope = json.loads(data.decode("utf-8"))
        if not isinstance(envelope, dict) or envelope.get("payloadType") != INDEX_TYPE:
            raise _bad(f"not a Suture feed index (payloadType must be {INDEX_TYPE!r})")
        payload = base64.b64decode(str(envelope.get("payload", "")).encode("ascii"),
                                   validate=True)
        body = json.loads(payload.decode("utf-8"))
        if not isinstance(envelope.get("signatures"), list):
            raise _bad("signatures is not a list")
        keys = trust.signers(envelope, payload, policy)
    except (UnicodeError, ValueError, binascii.Error, PatchFormatError) as exc:
        if isinstance(exc, FeedError):
            raise
        raise _bad(f"not valid JSON/base64 or bad signature entries ({exc})") from exc
    if not isinstance(body, dict) or canonical_json(body) != payload:
        raise _bad("payload is not canonical JSON (edited by hand?)")
    if body.get("format") != 1:
        raise _bad(f"format {body.get('format')!r} is not supported (this Suture reads 1)")
    feed, version, published = body.get("feed"), body.get("version"), body.get("published")
    if not isinstance(feed, str) or not _NAME.match(feed):
        raise _bad("feed must be a name of letters, digits, '.', '_' and '-'")
    if type(version) is not int or version < 1:
        raise _bad("version must be a positive integer")
    expires = body.get("expires")
    try:
        parse_time(str(published))
        parse_time(str(expires))
    except ValueError as exc:
        raise _bad("published and expires must be UTC times like 2026-11-26T06:00:00Z") \
            from exc
    if not isinstance(body.get("patches"), list):
        raise _bad("patches is not a list")
    entries = [_entry(e, i) for i, e in enumerate(body["patches"])]
    if len({e["id"] for e in entries}) != len(entries):
        raise _bad("a patch id appears twice")
    unrestricted = [k for k in keys if k.distributions is None]
    if not unrestricted:
        why = ("it is signed by keys restricted to some distributions, which may sign "
               "patches of those but not a feed's index" if keys else
               "no key the trust policy lists signed it")
        raise FeedError(f"feed {feed!r} index version {version} is not trusted: {why} "
                        f"(policy {policy.path}). Add the publisher's key with `suture trust "
                        f"add KEY.pub`.", details={"feed": feed, "policy": policy.path})
    if parse_time(str(expires)) <= parse_time(now or _now()):
        raise FeedError(f"feed {feed!r} index version {version} expired at {expires}: the "
                        "publisher must publish again (an index that stops being renewed is "
                        "what a feed frozen by an attacker looks like)",
                        details={"feed": feed, "version": version, "expires": expires})
    return Index(feed, version, str(published), str(expires), entries, bytes(data),
                 [k.name for k in unrestricted])


# ------------------------------------------------------------------------------- publish

def publish(files: Sequence[Path], to: Path, key: Ed25519PrivateKey, *,
            channel: str = "broad", feed: Optional[str] = None,
            policy: Optional[trust.Policy] = None, now: Optional[str] = None,
            valid_days: int = 30) -> Dict[str, Any]:
    """Add ``files`` to the feed in ``to`` (released to ``channel``) and sign a new index.

    Each patch must be trusted by the publisher's own policy: a feed never carries what
    its publisher would not apply. A patch already in the feed is released to
    ``channel`` too (a promotion); its earlier channels keep their times. The index
    expires after ``valid_days``: a feed is published again at least that often.
    """
    if channel not in CHANNELS:
        raise FeedError(f"unknown channel {channel!r}; channels: {', '.join(CHANNELS)}")
    policy = policy if policy is not None else trust.load_policy()
    own = trust.Policy(policy.path, tuple(k for k in policy.keys)
                       + (trust.TrustedKey("publisher", trust.keyid(key.public_key()),
                                           key.public_key()),))
    now = now or _now()
    old = to / INDEX_FILE
    if old.exists():
        index = read_index(old.read_bytes(), own, now="1970-01-01T00:00:00Z")  # may renew
        if feed is not None and feed != index.feed:
            raise FeedError(f"{to} holds feed {index.feed!r}, not {feed!r}")
    else:
        name = feed or to.resolve().name
        if not _NAME.match(name):
            raise FeedError(f"feed name {name!r} is not letters, digits, '.', '_' and '-'; "
                            "pass --name")
        index = Index(name, 0, now, now, [])
    by_id = {e["id"]: e for e in index.patches}
    added: List[Dict[str, Any]] = []
    for path in files:
        data = Path(path).read_bytes()
        patch, _ = trust.require(data, policy=own)
        entry = by_id.get(patch.id)
        if entry is None:
            entry = {"id": patch.id, "path": f"patches/{patch.id}.suture",
                     "target": dict(patch.target), "cves": list(patch.meta.get("cves", [])),
                     "channels": {}}
            by_id[patch.id] = entry
        entry["sha256"] = hashlib.sha256(data).hexdigest()
        entry["bytes"] = len(data)
        entry["channels"].setdefault(channel, now)
        _write_atomic(to / entry["path"], data)
        added.append({"id": patch.id, "describe": patch.describe(), "channel": channel})
    expires = (parse_time(now) + _dt.timedelta(days=valid_days)).strftime("%Y-%m-%dT%H:%M:%SZ")
    index = Index(index.feed, index.version + 1, now, expires, list(by_id.values()))
    index.data = trust.seal(INDEX_TYPE, index.payload(), [key])
    _write_atomic(old, index.data)
    return {"feed": index.feed, "dir": str(to), "version": index.version,
            "expires": index.expires, "published": added, "patches": len(index.patches)}


# ------------------------------------------------------------------------------- sync

def describe(target: Dict[str, Any]) -> str:
    """``name old→new`` of an index entry's target."""
    if target.get("from_version"):
        return f"{target.get('name')} {target['from_version']}\u2192{target.get('to_version')}"
    return str(target.get("name"))


def mirror_dir(feed: str) -> Path:
    return Path(store.state_dir()) / "feeds" / feed


def released(entry: Dict[str, Any], ring: str) -> Optional[str]:
    """When ``entry`` was released to a host in ``ring``: its earliest release to that ring
    or a wider one (canary hosts take everything, broad hosts only broad releases)."""
    rank = CHANNELS.index(ring)
    times = [t for c, t in entry["channels"].items() if CHANNELS.index(c) >= rank]
    return min(times) if times else None


Fetch = Callable[[str, int], bytes]


def _fetcher(source: str) -> Tuple[str, Fetch]:
    """(a canonical name of the source, a function reading a file of it)."""
    parsed = urllib.parse.urlparse(source)
    if parsed.scheme in ("http", "https"):
        base = source if source.endswith("/") else source + "/"

        def fetch_url(rel: str, limit: int) -> bytes:
            try:
                with urllib.request.urlopen(urllib.parse.urljoin(base, rel),
                                            timeout=FETCH_TIMEOUT) as resp:
                    data: bytes = resp.read(limit + 1)
            except (urllib.error.URLError, OSError) as exc:
                raise FeedError(f"cannot download {rel} from {base}: {exc}",
                                details={"url": base + rel}) from exc
            if len(data) > limit:
                raise FeedError(f"{base}{rel} is larger than {limit} bytes")
            return data
        return base, fetch_url
    root = Path(parsed.path if parsed.scheme == "file" else source)

    def fetch_file(rel: str, limit: int) -> bytes:
        try:
            with open(root / rel, "rb") as f:
                data = f.read(limit + 1)
        except OSError as exc:
            raise FeedError(f"cannot read {rel} in {root}: {exc}",
                            details={"path": str(root / rel)}) from exc
        if len(data) > limit:
            raise FeedError(f"{root / rel} is larger than {limit} bytes")
        return data
    return str(root.resolve()), fetch_file


def _state(mirror: Path) -> Dict[str, Any]:
    try:
        state = json.loads((mirror / "state.json").read_text(encoding="utf-8"))
        return state if isinstance(state, dict) else {}
    except (OSError, ValueError):
        return {}


def sync(source: str, *, policy: Optional[trust.Policy] = None,
         fetch: Optional[Fetch] = None, now: Optional[str] = None,
         dry_run: bool = False) -> Dict[str, Any]:
    """Bring the feed at ``source`` (URL or directory) to this host's mirror.

    Returns a report: the index version, and one row per patch with its outcome
    (``held`` already here, ``new`` downloaded and verified, ``refused`` not trusted or
    not matching its entry, ``failed`` not downloaded). The index version is recorded,
    and the mirror's index replaced, only when no download failed, so the next sync
    fetches exactly what is missing. ``dry_run`` checks the index the same way but
    downloads and writes nothing: patches not held are ``missing``.
    """
    policy = policy if policy is not None else trust.load_policy()
    name, fetch_fn = _fetcher(source)
    fetch = fetch or fetch_fn
    index = read_index(fetch(INDEX_FILE, MAX_INDEX_BYTES), policy, now)
    mirror = mirror_dir(index.feed)
    state = _state(mirror)
    seen = state.get("version")
    digest = hashlib.sha256(index.data).hexdigest()
    if isinstance(seen, int) and (index.version < seen or index.version == seen
                                  and digest != state.get("index_sha256")):
        what = ("older than" if index.version < seen else
                "the same version as, but different from,")
        raise FeedRollback(
            f"feed {index.feed!r} from {name}: index version {index.version} is {what} the "
            f"version {seen} this host accepted (from {state.get('source')}). Refusing a "
            "replayed or forked index; nothing was synced.",
            details={"feed": index.feed, "version": index.version, "accepted": seen})
    rows: List[Dict[str, Any]] = []
    if not dry_run:
        mirror.mkdir(parents=True, exist_ok=True, mode=0o700)
    for entry in index.patches:
        rows.append(_held(entry, mirror) if dry_run else _sync_one(entry, mirror, fetch, policy))
    failed = any(r["outcome"] == "failed" for r in rows)
    if not failed and not dry_run:
        _write_atomic(mirror / INDEX_FILE, index.data, 0o600)
        _write_atomic(mirror / "state.json", json.dumps(
            {"source": name, "version": index.version, "index_sha256": digest,
             "synced": _now()}).encode("utf-8"), 0o600)
    return {"feed": index.feed, "source": name, "version": index.version,
            "expires": index.expires, "dry_run": dry_run,
            "previous_version": seen, "mirror": str(mirror), "signed_by": index.signed_by,
            "recorded": not failed and not dry_run, "patches": rows}


def install_synced(report: Dict[str, Any], policy: Optional[trust.Policy] = None) -> List[str]:
    """Install every patch ``sync`` holds for this feed in the host's store, at once (no
    ring, delay or window: that is the daemon's job). Skips patches marked bad and those
    already installed; each is verified again. Returns the ids installed now."""
    policy = policy if policy is not None else trust.load_policy()
    mirror = Path(report["mirror"])
    bad = store.bad_patches()
    have = {row["id"] for row in store.installed()}
    done = []
    for row in report["patches"]:
        if row["outcome"] not in ("new", "held") or row["id"] in bad or row["id"] in have:
            continue
        data = (mirror / "patches" / f"{row['id']}.suture").read_bytes()
        _, record = trust.require(data, policy=policy)
        store.install(data, record)
        store.audit("install", row["id"], "installed", os.getpid(), os.getuid(),
                    f"suture sync --install from {report['source']}")
        done.append(row["id"])
    return done


def _row(entry: Dict[str, Any]) -> Dict[str, Any]:
    return {"id": entry["id"], "target": entry["target"], "cves": entry["cves"],
            "channels": entry["channels"]}


def _held(entry: Dict[str, Any], mirror: Path) -> Dict[str, Any]:
    path = mirror / entry["path"]
    held = path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
    return dict(_row(entry), outcome="held" if held else "missing", reason="")


def _sync_one(entry: Dict[str, Any], mirror: Path, fetch: Fetch,
              policy: trust.Policy) -> Dict[str, Any]:
    row = _row(entry)
    path = mirror / entry["path"]
    try:
        if _held(entry, mirror)["outcome"] == "held":
            return dict(row, outcome="held", reason="")
        data = fetch(entry["path"], entry["bytes"])
    except (FeedError, OSError) as exc:
        return dict(row, outcome="failed", reason=getattr(exc, "message", str(exc)))
    try:
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise FeedError(f"patch {entry['id'][:12]}: the file's sha256 is not the one the "
                            "index lists (changed after publishing, or a bad download)")
        verdict = trust.check(data, policy)
        if verdict.patch.id != entry["id"]:
            raise FeedError(f"patch {entry['id'][:12]}: the file holds another patch "
                            f"({verdict.patch.short_id})")
        if not verdict.trusted:
            raise verdict.refusal()
    except SutureError as exc:
        return dict(row, outcome="refused", reason=exc.message, code=exc.code)
    _write_atomic(path, data, 0o600)
    return dict(row, outcome="new", reason="")
