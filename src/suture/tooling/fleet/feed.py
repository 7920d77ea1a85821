"""A patch feed: signed patches and a signed index in a plain directory (docs/fleet.md).

``publish`` maintains the directory; any static server can serve it. ``sync`` brings
a feed's patches to this host's feed mirror (``<state dir>/feeds/<feed name>/``), after
checking the index's signature and freshness and each patch's own signatures against the
host's trust policy. It installs nothing in the store: when a synced patch is due on
this host is the daemon's decision (its ring, delays and window).

Size: about 700 lines, over the ~500-line rule of thumb: ``publish`` and ``sync``
share the index format and its checks (signature, version, expiry), which must agree
byte for byte; a split would put the format in a module of its own. Issue 14 only moved
this file.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import hashlib
import http.client
import json
import os
import re
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ...runtime import _bounded, store
from ...runtime.errors import PatchFormatError, SutureError
from ...runtime.patchfile import MAX_PATCH_BYTES, canonical_json
from .. import trust

__all__ = ["FeedError", "FeedRollback", "FeedDownloadError", "FeedDeadline", "MirrorMismatch",
           "INDEX_FILE", "INDEX_TYPE", "CHANNELS", "publish",
           "sync", "read_index", "released", "mirror_dir", "source_name", "mirror_patch"]

INDEX_FILE = "index.suture-index"
INDEX_TYPE = "application/vnd.suture.feed-index+json; version=1"
CHANNELS = ("canary", "early", "broad")     # from the first hosts to all of them
MAX_INDEX_BYTES = 16 * 1024 * 1024
FETCH_TIMEOUT = 30.0        # per read (and connect), as before
DEADLINE = 300.0            # per sync of one feed: every download of it together
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


class FeedDownloadError(FeedError):
    """A download from a feed failed: no connection, TLS, not HTTP, an error status, a
    malformed or oversized header, a wrong Content-Length, a body over its limit. Names
    the URL; the next sync tries again."""

    code = "SUT-E101"


class FeedDeadline(FeedDownloadError):
    """A download did not finish within its overall deadline (``--deadline``,
    ``download_deadline`` in daemon.toml): a server too slow, or one that drips bytes to
    hold the host."""

    code = "SUT-E102"


class MirrorMismatch(FeedError):
    """A file in this host's feed mirror is not the patch its feed's current index names
    (another id or sha256): changed after the sync. Not installed; the next sync fetches
    the right one."""

    code = "SUT-E103"


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
    keyids: List[str] = field(default_factory=list)     # of the keys in signed_by

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


def read_index(data: bytes, policy: trust.Policy, now: Optional[str] = None,
               where: str = "") -> Index:
    """Parse and verify a signed index: signed by a trusted key that is not restricted to
    some distributions (an index may list any), canonical, every field checked, and not
    expired at ``now`` (default: the current time). The bytes go through the bounded
    reader (runtime/_bounded.py): too large, too deep, duplicate keys, huge numbers, NaN,
    bad UTF-8 or NUL bytes are a FeedError naming the limit. ``where`` (``from URL``)
    goes into those messages."""
    envelope = _bounded.loads(data, error=FeedError, what=f"feed index {where}".rstrip(),
                              max_bytes=MAX_INDEX_BYTES)
    if not isinstance(envelope, dict) or envelope.get("payloadType") != INDEX_TYPE:
        raise _bad(f"not a Suture feed index (payloadType must be {INDEX_TYPE!r})")
    if not isinstance(envelope.get("payload"), str):
        raise _bad("payload is not a string")
    if not isinstance(envelope.get("signatures"), list):
        raise _bad("signatures is not a list")
    try:
        payload = base64.b64decode(envelope["payload"].encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error) as exc:
        raise _bad("payload is not base64") from exc
    body = _bounded.loads(payload, error=FeedError,
                          what=f"feed index payload {where}".rstrip(),
                          max_bytes=MAX_INDEX_BYTES)
    try:
        keys = trust.signers(envelope, payload, policy)
    except PatchFormatError as exc:
        raise _bad(f"bad signature entries ({exc.message})") from exc
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
        if keys:  # the key is listed already: `trust add` would refuse it as a duplicate
            why = ("it is signed by keys restricted to some distributions, which may sign "
                   "patches of those but not a feed's index")
            todo = ("To trust the publisher's key for any patch (and so for its index): "
                    + "; ".join(f"`suture trust set {k.keyid[:12]} --any` ({k.name})"
                                for k in keys))
        else:
            why = "no key the trust policy lists signed it"
            todo = "Add the publisher's key with `suture trust add KEY.pub`"
        raise FeedError(f"feed {feed!r} index version {version} is not trusted: {why} "
                        f"(policy {policy.path}). {todo}.",
                        details={"feed": feed, "policy": policy.path})
    if parse_time(str(expires)) <= parse_time(now or _now()):
        raise FeedError(f"feed {feed!r} index version {version} expired at {expires}: the "
                        "publisher must publish again (an index that stops being renewed is "
                        "what a feed frozen by an attacker looks like)",
                        details={"feed": feed, "version": version, "expires": expires})
    return Index(feed, version, str(published), str(expires), entries, bytes(data),
                 [k.name for k in unrestricted], [k.keyid for k in unrestricted])


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


def source_name(source: str) -> str:
    """The canonical name of a feed source: its URL with a final ``/``, or its directory
    resolved. Mirrors and rollback state are keyed by it."""
    parsed = urllib.parse.urlparse(source)
    if parsed.scheme in ("http", "https"):
        return source if source.endswith("/") else source + "/"
    return str(Path(parsed.path if parsed.scheme == "file" else source).resolve())


def mirror_dir(source: str) -> Path:
    """This host's mirror of the feed at ``source`` (a URL or directory, as configured).

    Keyed by the source, not by the feed name inside its index: two feeds may carry the
    same name (``feed publish`` names a feed after its directory, so a staging and a
    production feed are often both "acme"), and one must never overwrite or wedge the
    other's mirror or rollback state (issue 13, finding 7). The readable part of the name
    is for people; the hash makes it unique."""
    name = source_name(source)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")[-48:] or "feed"
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:12]
    return Path(store.state_dir()) / "feeds" / f"{slug}-{digest}"


def released(entry: Dict[str, Any], ring: str) -> Optional[str]:
    """When ``entry`` was released to a host in ``ring``: its earliest release to that ring
    or a wider one (canary hosts take everything, broad hosts only broad releases)."""
    rank = CHANNELS.index(ring)
    times = [t for c, t in entry["channels"].items() if CHANNELS.index(c) >= rank]
    return min(times) if times else None


Fetch = Callable[[str, int], bytes]


class _Deadline:
    """An overall deadline for every socket of one sync, enforced from outside the read.

    A per-read timeout (``FETCH_TIMEOUT``) is not a deadline: a server that sends one byte
    every few seconds never trips it (issue 13, finding 6). Checking the clock between
    reads does not help either while ``http.client`` reads the status line and headers,
    byte by byte if the server wants. So each socket is registered when it is created,
    and a timer shuts it down when the deadline passes: the blocked read returns at once,
    whatever it was reading, and the caller sees ``expired``. Rejected: a worker thread per
    download (the thread would stay blocked; the daemon would leak one per cycle);
    ``signal.alarm`` (main thread only, and process-wide).
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.expired = False
        self._socks: List[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def _fire(self) -> None:
        with self._lock:
            self.expired = True
            socks = list(self._socks)
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:             # already closed: nothing left to unblock
                pass

    def register(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._socks.append(sock)
            late = self.expired
        if late:
            self._fire()
        return sock

    def cancel(self) -> None:
        self._timer.cancel()

    def watch(self, http_class: Any) -> Callable[..., Any]:
        """A factory like ``http_class`` whose connections register their socket.

        ``_create_connection`` is the hook ``http.client`` itself uses to open the TCP
        socket (3.9-3.15; HTTPS wraps that socket afterwards, so the TLS handshake is
        covered too). Its timeout (per operation) is capped by what is left."""
        def make(*args: Any, **kwargs: Any) -> Any:
            conn = http_class(*args, **kwargs)
            create = conn._create_connection

            def create_connection(address: Any, timeout: Any = None, *a: Any,
                                  **kw: Any) -> socket.socket:
                left = max(0.001, self.remaining())
                timeout = left if not isinstance(timeout, (int, float)) else min(timeout, left)
                return self.register(create(address, timeout, *a, **kw))
            conn._create_connection = create_connection
            return conn
        return make


def _opener(deadline: _Deadline) -> urllib.request.OpenerDirector:
    """urllib's usual opener (proxies, redirects, TLS verification), with every HTTP(S)
    connection under ``deadline``."""
    class HTTP(urllib.request.HTTPHandler):
        def do_open(self, http_class: Any, req: Any, **kw: Any) -> Any:
            return super().do_open(deadline.watch(http_class), req, **kw)

    class HTTPS(urllib.request.HTTPSHandler):
        def do_open(self, http_class: Any, req: Any, **kw: Any) -> Any:
            return super().do_open(deadline.watch(http_class), req, **kw)

    return urllib.request.build_opener(HTTP(), HTTPS())


def _download(opener: urllib.request.OpenerDirector, deadline: _Deadline, url: str,
              limit: int) -> bytes:
    """The body at ``url``, at most ``limit`` bytes, before the deadline; else a
    FeedDownloadError (FeedDeadline) naming the URL. Every failure of the network, of
    TLS and of HTTP is one of those, never an exception of http.client."""
    def failed(why: str) -> FeedDownloadError:
        if deadline.expired:
            return FeedDeadline(f"cannot download {url}: not finished within the "
                                f"{deadline.seconds:g} s deadline (a server too slow, or "
                                "one that sends a few bytes at a time)",
                                details={"url": url, "deadline": deadline.seconds})
        return FeedDownloadError(f"cannot download {url}: {why}", details={"url": url})

    chunks: List[bytes] = []
    size = 0
    try:
        with opener.open(url, timeout=min(FETCH_TIMEOUT, max(0.001, deadline.remaining()))) \
                as resp:
            length = resp.headers.get("Content-Length")
            if length is not None and (not length.strip().isdigit()
                                       or int(length.strip()[:20]) > limit):
                raise failed(f"Content-Length {length[:40]!r} is not a size up to {limit}")
            while size <= limit:
                chunk = resp.read(min(65536, limit + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if deadline.expired:
                    raise failed("deadline")
    except FeedDownloadError:
        raise
    except urllib.error.HTTPError as exc:           # an answer, but not 200
        exc.close()
        raise failed(f"HTTP {exc.code} {exc.reason}") from exc
    # http.client.HTTPException: BadStatusLine ("NOT HTTP"), LineTooLong (a header over
    # 64 KiB), IncompleteRead (fewer bytes than Content-Length), too many headers.
    # OSError: URLError, refused or reset connections, ssl.SSLError, socket.timeout.
    # ValueError: a URL or a header http.client cannot use.
    except (http.client.HTTPException, OSError, ValueError) as exc:
        raise failed(f"{type(exc).__name__}: {str(exc)[:200]}") from exc
    if deadline.expired:
        raise failed("deadline")
    if size > limit:
        raise failed(f"larger than {limit} bytes")
    # http.client's read(n) returns what came before the server closed, without checking
    # the Content-Length (its read() would); a short body is a failed download, not a file.
    if length is not None and size != int(length.strip()):
        raise failed(f"{size} bytes, fewer than its Content-Length {length.strip()}")
    return b"".join(chunks)


def _fetcher(source: str, deadline: _Deadline) -> Tuple[str, Fetch]:
    """(a canonical name of the source, a function reading a file of it)."""
    parsed = urllib.parse.urlparse(source)
    if parsed.scheme in ("http", "https"):
        base = source if source.endswith("/") else source + "/"
        opener = _opener(deadline)

        def fetch_url(rel: str, limit: int) -> bytes:
            return _download(opener, deadline, urllib.parse.urljoin(base, rel), limit)
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


STATE_FORMAT = 2


def _read_json(path: Path) -> Dict[str, Any]:
    """A JSON object this host wrote (state files), or {} if missing or unreadable."""
    try:
        value = _bounded.loads(path.read_bytes(), error=FeedError, what=str(path),
                               max_bytes=MAX_INDEX_BYTES)
    except (OSError, FeedError):
        return {}
    return value if isinstance(value, dict) else {}


def _state(mirror: Path, name: str, feed: str) -> Dict[str, Any]:
    """The rollback state of the feed at ``name``: per signing key id, the index version
    (and sha256, expiry) last accepted from that source signed by that key.

    Migration: state format 1 lived in ``feeds/<feed name>/`` with one version for the
    name. It is adopted only if it was recorded for this very source, for every key (its
    expiry is unknown, so it never lapses; the next accepted index replaces it). A
    format 1 state recorded for another source is ignored: that is the wedge of finding 7.
    """
    state = _read_json(mirror / "state.json")
    if state.get("format") == STATE_FORMAT and isinstance(state.get("keys"), dict):
        return state
    legacy = _read_json(Path(store.state_dir()) / "feeds" / feed / "state.json")
    if legacy.get("source") == name and isinstance(legacy.get("version"), int) \
            and "format" not in legacy:
        return {"format": STATE_FORMAT, "source": name, "legacy": {
            "version": legacy["version"], "index_sha256": legacy.get("index_sha256"),
            "expires": None}, "keys": {}}
    return {"format": STATE_FORMAT, "source": name, "keys": {}}


def _check_rollback(index: Index, name: str, state: Dict[str, Any], digest: str,
                    now: str) -> Optional[int]:
    """Refuse ``index`` if a key that signed it signed a newer index (or the same version
    with other bytes) that this host accepted from this same source and that has not
    expired yet. Returns the highest version so compared (None: first sync).

    Why the state lapses when the index it records expires: a wrongly accepted index (a
    staging index served at the production URL by mistake) would otherwise wedge the feed
    until the publisher's version passes it, whereas an index an attacker replays must be
    unexpired itself, and older indexes expire first when the publisher keeps one
    validity period. The cost, documented in docs/fleet.md: a publisher who *shortens*
    ``--valid-days`` lets an older, longer-lived index be replayed after the newer one
    expires, until the older one expires too."""
    seen: List[Tuple[str, Dict[str, Any]]] = []
    keys = state.get("keys") or {}
    for keyid in index.keyids:
        if isinstance(keys.get(keyid), dict):
            seen.append((keyid, keys[keyid]))
    if isinstance(state.get("legacy"), dict):
        seen.append(("(state format 1)", state["legacy"]))
    highest: Optional[int] = None
    for keyid, row in seen:
        version, expires = row.get("version"), row.get("expires")
        if not isinstance(version, int):
            continue
        if isinstance(expires, str) and parse_time(expires) <= parse_time(now):
            continue    # lapsed with the index it recorded
        highest = version if highest is None else max(highest, version)
        if index.version < version or (index.version == version
                                       and digest != row.get("index_sha256")):
            what = ("older than" if index.version < version else
                    "the same version as, but different from,")
            raise FeedRollback(
                f"feed {index.feed!r} from {name}: index version {index.version} is {what} "
                f"the version {version} this host accepted from this source (signed by key "
                f"{keyid[:16]}, valid until {expires or 'its successor'}). Refusing a "
                "replayed or forked index; nothing was synced.",
                details={"feed": index.feed, "source": name, "version": index.version,
                         "accepted": version, "keyid": keyid})
    return highest


def sync(source: str, *, policy: Optional[trust.Policy] = None,
         fetch: Optional[Fetch] = None, now: Optional[str] = None,
         dry_run: bool = False, deadline: float = DEADLINE,
         mirror: Optional[Path] = None) -> Dict[str, Any]:
    """Bring the feed at ``source`` (URL or directory) to this host's mirror.

    Returns a report: the index version, and one row per patch with its outcome
    (``held`` already here, ``new`` downloaded and verified, ``refused`` not trusted or
    not matching its entry, ``failed`` not downloaded). The index version is recorded,
    and the mirror's index replaced, only when no download failed, so the next sync
    fetches exactly what is missing. ``dry_run`` checks the index the same way but
    downloads and writes nothing: patches not held are ``missing``.

    Every download of this sync together must finish within ``deadline`` seconds
    (FeedDeadline, SUT-E102, otherwise); any other failure to download the index is a
    FeedDownloadError (SUT-E101) naming the URL.

    ``mirror``: sync into this directory instead of the host's mirror of ``source``
    (``suture daemon --once --check`` syncs into a copy of it, which it then removes).
    """
    policy = policy if policy is not None else trust.load_policy()
    timer = _Deadline(deadline)
    try:
        return _sync(source, policy, fetch, now, dry_run, timer, mirror)
    finally:
        timer.cancel()


def _sync(source: str, policy: trust.Policy, fetch: Optional[Fetch], now: Optional[str],
          dry_run: bool, deadline: _Deadline, mirror: Optional[Path]) -> Dict[str, Any]:
    name, fetch_fn = _fetcher(source, deadline)
    fetch = fetch or fetch_fn
    now = now or _now()
    index = read_index(fetch(INDEX_FILE, MAX_INDEX_BYTES), policy, now, where=f"from {name}")
    mirror = mirror or mirror_dir(source)
    state = _state(mirror, name, index.feed)
    digest = hashlib.sha256(index.data).hexdigest()
    seen = _check_rollback(index, name, state, digest, now)
    rows: List[Dict[str, Any]] = []
    if not dry_run:
        mirror.mkdir(parents=True, exist_ok=True, mode=0o700)
    for entry in index.patches:
        rows.append(_held(entry, mirror) if dry_run else _sync_one(entry, mirror, fetch, policy))
    failed = any(r["outcome"] == "failed" for r in rows)
    if not failed and not dry_run:
        _write_atomic(mirror / INDEX_FILE, index.data, 0o600)
        keys = {k: v for k, v in (state.get("keys") or {}).items() if isinstance(v, dict)}
        keys.update({k: {"version": index.version, "index_sha256": digest,
                         "expires": index.expires} for k in index.keyids})
        _write_atomic(mirror / "state.json", json.dumps(
            {"format": STATE_FORMAT, "source": name, "feed": index.feed,
             "version": index.version, "index_sha256": digest, "expires": index.expires,
             "synced": _now(), "keys": keys}).encode("utf-8"), 0o600)
    return {"feed": index.feed, "source": name, "version": index.version,
            "expires": index.expires, "dry_run": dry_run,
            "previous_version": seen, "mirror": str(mirror), "signed_by": index.signed_by,
            "recorded": not failed and not dry_run, "patches": rows}


def mirror_patch(mirror: Path, entry: Dict[str, Any], policy: trust.Policy) -> Tuple[bytes, Any]:
    """The mirrored file of index ``entry``, if it is exactly that entry's patch: the
    sha256 the index lists, the patch id it lists, and trusted on its own. Returns
    ``(data, trust record)`` for ``store.install``; else MirrorMismatch (or the trust
    refusal). What sits in a mirror is never installed just because it is signed (issue
    13, finding 8): another validly signed patch swapped in would be."""
    path = mirror / entry["path"]
    with open(path, "rb") as f:
        data = f.read(entry["bytes"] + 1)
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise MirrorMismatch(f"{path} is not the file the feed's index lists for patch "
                             f"{entry['id'][:12]} (its sha256 differs): changed since the "
                             "sync; not installed, the next sync fetches it again",
                             details={"path": str(path), "id": entry["id"]})
    patch, record = trust.require(data, policy=policy)
    if patch.id != entry["id"]:
        raise MirrorMismatch(f"{path} holds patch {patch.short_id}, not {entry['id'][:12]} "
                             "as the feed's index lists", details={"path": str(path),
                                                                   "id": entry["id"]})
    return data, record


def install_synced(report: Dict[str, Any], policy: Optional[trust.Policy] = None) -> List[str]:
    """Install every patch ``sync`` holds for this feed in the host's store, at once (no
    ring, delay or window: that is the daemon's job). Skips patches marked bad and those
    already installed; each is checked again against its index entry (``mirror_patch``).
    Returns the ids installed now."""
    policy = policy if policy is not None else trust.load_policy()
    mirror = Path(report["mirror"])
    bad = store.bad_patches()
    have = {row["id"] for row in store.installed()}
    entries = {e["id"]: e for e in read_index((mirror / INDEX_FILE).read_bytes(), policy,
                                              where=f"mirrored in {mirror}").patches}
    done = []
    for row in report["patches"]:
        if row["outcome"] not in ("new", "held") or row["id"] in bad or row["id"] in have:
            continue
        data, record = mirror_patch(mirror, entries[row["id"]], policy)
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
    except FeedError as exc:
        return dict(row, outcome="failed", reason=exc.message, code=exc.code)
    except OSError as exc:
        return dict(row, outcome="failed", reason=str(exc))
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
