"""Hostile and broken input: feeds, the daemon, patch files and agent frames (issue 13,
findings 5-8; docs/security.md "Hostile and broken input").

A hostile HTTP server on loopback (written here: threaded, every answer bounded in time)
answers what a broken or malicious feed server would: not HTTP, a 70 KiB header line, a
100,000-deep JSON index, one byte per second, a 500, a wrong Content-Length. `suture sync`
must end with a clean SUT-E1xx error, by its deadline, and the daemon must survive its
cycle and still serve a good feed in the same cycle. Then: a same-name index from
elsewhere must not wedge a feed (finding 7); what sits in a mirror is installed only if
it is the current index's entry (finding 8); deep JSON as a patch file or an agent frame
is SUT-E100 / SUT-E601, never a traceback or SUT-E999; and bounded, structure-aware
fuzzing of the bounded reader and the index parser.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import shutil
import socket
import socketserver
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suture.runtime import _bounded, store
from suture.runtime.errors import PatchFormatError
from suture.runtime.patchfile import canonical_json, load
from suture.tooling.fleet import daemon, feed
from suture.tooling import trust

from signing import KEY, make_patch, signed


SRC = Path(__file__).resolve().parents[2] / "src"
EXAMPLES = int(os.environ.get("SUTURE_FUZZ_EXAMPLES", "300"))
DEEP = 100_000


def ago(hours: float) -> str:
    return (datetime.datetime.now(datetime.timezone.utc)
            - datetime.timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(autouse=True)
def _own_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUTURE_STATE_DIR", str(tmp_path / "state"))   # fresh mirrors, store


def suture(*args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    """The real CLI in a real process: a traceback would show on its stderr."""
    env = dict(os.environ, PYTHONPATH=str(SRC))
    return subprocess.run([sys.executable, "-m", "suture", *args], capture_output=True,
                          text=True, env=env, timeout=timeout)


def clean_error(out: subprocess.CompletedProcess, exit_code: int = 1) -> Dict[str, Any]:
    assert "Traceback" not in out.stderr, out.stderr
    assert out.returncode == exit_code, out.stdout + out.stderr
    error: Dict[str, Any] = json.loads(out.stdout)["error"]
    return error


# ------------------------------------------------------------------ a hostile server

LONG_HEADER = b"X-Padding: " + b"a" * (70 * 1024)


class Hostile:
    """A threaded HTTP-ish server on loopback. The first path segment picks the answer;
    ``good`` serves files of ``root``. Every connection ends within ``MAX_S`` seconds."""

    MAX_S = 15.0

    def __init__(self, root: Path) -> None:
        self.root = root
        self.stop = threading.Event()
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.settimeout(5)
                try:
                    head = b""
                    while b"\r\n\r\n" not in head and len(head) < 65536:
                        chunk = self.request.recv(4096)
                        if not chunk:
                            return
                        head += chunk
                    path = head.split(b" ", 2)[1].decode("ascii", "replace")
                    outer.answer(self.request, path.lstrip("/").split("/", 1))
                except OSError:
                    pass                    # the client gave up (its deadline): fine

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, mode: str) -> str:
        return f"{self.base}/{mode}/"

    def answer(self, conn: socket.socket, parts: List[str]) -> None:
        mode, rest = parts[0], (parts[1] if len(parts) > 1 else "")

        def ok(body: bytes, extra: bytes = b"") -> None:
            conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n" + extra
                         + b"Content-Length: %d\r\n\r\n" % len(body) + body)

        if mode == "nothttp":
            conn.sendall(b"NOT HTTP\r\n\r\n")
        elif mode == "longheader":
            conn.sendall(b"HTTP/1.1 200 OK\r\n" + LONG_HEADER + b"\r\n\r\n{}")
        elif mode == "deep":
            ok(b"[" * DEEP + b"]" * DEEP)
        elif mode == "status500":
            conn.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n"
                         b"Connection: close\r\n\r\noops")
        elif mode == "badlength":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n"
                         b"Connection: close\r\n\r\n{\"short\": 1}")
        elif mode == "hugelength":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n"
                         b"Connection: close\r\n\r\n{}")
        elif mode in ("drip", "driphead"):
            # one byte a second: in the body, or in the headers themselves
            if mode == "drip":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\n")
            end = time.monotonic() + self.MAX_S
            while time.monotonic() < end and not self.stop.is_set():
                conn.sendall(b"[" if mode == "drip" else b"X")
                time.sleep(1)
        elif mode == "good":
            try:
                body = (self.root / rest).read_bytes()
            except OSError:
                conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n"
                             b"Connection: close\r\n\r\n")
                return
            ok(body)

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hostile(tmp_path: Path) -> Iterator[Hostile]:
    h = Hostile(tmp_path / "www")
    try:
        yield h
    finally:
        h.close()


def good_feed(tmp_path: Path, name: str = "acme", body: str = "2",
              hours: float = 1, dist: str = "") -> Tuple[Path, str]:
    """A published feed directory with one patch released to broad ``hours`` ago; returns
    it and the patch id."""
    data = signed(make_patch(tmp_path / f"build-{name}-{body}", name=f"pkg{body}", body=body,
                             dist=dist or f"pkg{body}"))
    path = tmp_path / f"{name}-{body}.suture"
    path.write_bytes(data)
    src = tmp_path / "www" / name
    feed.publish([path], src, KEY, feed=name, now=ago(hours))
    return src, load(data).id


HOSTILE = {
    "nothttp": ("SUT-E101", "BadStatusLine"),
    "longheader": ("SUT-E101", "LineTooLong"),
    "deep": ("SUT-E113", f"nests {DEEP} levels deep, limit {_bounded.MAX_DEPTH}"),
    "status500": ("SUT-E101", "HTTP 500"),
    "badlength": ("SUT-E101", "fewer than its Content-Length 100000"),
    "hugelength": ("SUT-E101", "Content-Length"),
    "drip": ("SUT-E102", "not finished within the 2 s deadline"),
    "driphead": ("SUT-E102", "not finished within the 2 s deadline"),
}


@pytest.mark.slow
@pytest.mark.parametrize("mode", sorted(HOSTILE))
def test_sync_from_a_hostile_server_ends_with_a_clean_error_by_its_deadline(
        hostile: Hostile, mode: str) -> None:
    code, words = HOSTILE[mode]
    started = time.monotonic()
    out = suture("sync", hostile.url(mode), "--deadline", "2s", "--json")
    elapsed = time.monotonic() - started
    error = clean_error(out)
    assert error["code"] == code and words in error["message"], error
    if code != "SUT-E113":
        assert hostile.url(mode) in error["message"]           # names the URL
    assert elapsed < 8, f"sync took {elapsed:.1f} s with a 2 s deadline"


@pytest.mark.slow
def test_the_daemon_survives_hostile_feeds_and_serves_the_good_one_in_the_same_cycle(
        hostile: Hostile, tmp_path: Path) -> None:
    src, fid = good_feed(tmp_path)
    sources = [hostile.url(m) for m in sorted(HOSTILE)] + [hostile.url("good") + "acme"]
    cfg_file = tmp_path / "daemon.toml"
    cfg_file.write_text(f"feeds = {json.dumps(sources)}\ndownload_deadline = \"2s\"\n")
    cfg = daemon.load_config(str(cfg_file))
    lines: List[str] = []
    logged: List[float] = []
    started = time.monotonic()
    report = daemon.cycle(cfg, log=lambda m: (lines.append(m), logged.append(time.monotonic())))
    # every hostile feed was given up within its deadline (the rest of the cycle, the
    # scan of this machine's processes, depends on the machine's load: not timed here)
    sync_lines = [t for m, t in zip(lines, logged) if m.startswith("sync ")]
    assert len(sync_lines) == len(HOSTILE) and sync_lines[-1] - started < 12
    by_source = {f["source"]: f for f in report["feeds"]}
    for mode, (code, _) in HOSTILE.items():
        row = by_source[hostile.url(mode)]
        assert (row["ok"], row["code"]) == (False, code), row
    assert by_source[sources[-1]]["ok"] is True
    assert [r["id"] for r in store.installed()] == [fid]          # the good feed served
    (row,) = report["patches"]
    assert (row["id"], row["state"]) == (fid, "installed")
    # the failures are in daemon.json and the log, too
    saved = json.loads((Path(store.state_dir()) / daemon.STATE_FILE).read_text())
    assert len([f for f in saved["report"]["feeds"] if not f["ok"]]) == len(HOSTILE)
    assert any("SUT-E102" in line for line in lines)


# ------------------------------------------------------------------ finding 7

@pytest.mark.slow
def test_a_same_name_index_from_another_source_does_not_wedge_a_feed(tmp_path: Path) -> None:
    prod, _ = good_feed(tmp_path)                                 # "acme" version 1
    staging = tmp_path / "www" / "staging" / "acme"               # same name, same key
    feed.publish([], staging, KEY, feed="acme", now=ago(3))
    for _ in range(4):
        feed.publish([], staging, KEY, feed="acme", now=ago(2))
    assert feed.sync(str(staging))["version"] == 5
    out = suture("sync", str(prod), "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)["version"] == 1
    # and each keeps its own rollback state: a replayed old production index is refused
    old = (prod / feed.INDEX_FILE).read_bytes()
    feed.publish([], prod, KEY, feed="acme", now=ago(0.5))
    assert feed.sync(str(prod))["version"] == 2
    (prod / feed.INDEX_FILE).write_bytes(old)
    error = clean_error(suture("sync", str(prod), "--json"), 3)
    assert error["code"] == "SUT-E114"


def test_a_wrongly_accepted_index_wedges_its_source_only_until_it_expires(
        tmp_path: Path) -> None:
    prod, _ = good_feed(tmp_path, hours=72)                      # version 1
    staging = tmp_path / "staging" / "acme"
    shutil.copytree(prod, staging)
    for _ in range(4):                                           # staging version 5, 1 day
        feed.publish([], staging, KEY, now=ago(48), valid_days=1)
    genuine = (prod / feed.INDEX_FILE).read_bytes()
    (prod / feed.INDEX_FILE).write_bytes((staging / feed.INDEX_FILE).read_bytes())
    assert feed.sync(str(prod), now=ago(47))["version"] == 5     # served by mistake
    (prod / feed.INDEX_FILE).write_bytes(genuine)
    with pytest.raises(feed.FeedRollback):                       # while version 5 is valid
        feed.sync(str(prod), now=ago(46))
    assert feed.sync(str(prod))["version"] == 1                  # after it expired


def test_rollback_state_of_the_old_layout_is_kept_for_its_own_source_only(
        tmp_path: Path) -> None:
    prod, _ = good_feed(tmp_path)
    legacy = Path(store.state_dir()) / "feeds" / "acme"
    legacy.mkdir(parents=True)
    state = {"source": feed.source_name(str(prod)), "version": 3, "index_sha256": "0" * 64,
             "synced": ago(1)}
    (legacy / "state.json").write_text(json.dumps(state))
    with pytest.raises(feed.FeedRollback, match="older than the version 3"):
        feed.sync(str(prod))
    state["source"] = "https://staging.example/acme/"            # another source's: ignored
    (legacy / "state.json").write_text(json.dumps(state))
    assert feed.sync(str(prod))["version"] == 1


# ------------------------------------------------------------------ finding 8

def _cycle(tmp_path: Path, *sources: Path) -> Dict[str, Any]:
    cfg_file = tmp_path / f"daemon-{len(list(tmp_path.glob('daemon-*')))}.toml"
    cfg_file.write_text(f"feeds = {json.dumps([str(s) for s in sources])}\n")
    return daemon.cycle(daemon.load_config(str(cfg_file)))


@pytest.mark.slow
def test_the_daemon_installs_only_the_index_entrys_patch_from_a_mirror(tmp_path: Path) -> None:
    src, fid = good_feed(tmp_path, hours=1)
    other, oid = good_feed(tmp_path, name="other", body="3", hours=1)
    # Synced; then someone swaps the mirrored file for another validly signed patch, and
    # the feed is unreachable at the next cycle (so the daemon installs from its mirror).
    mirror = Path(feed.sync(str(src))["mirror"])
    entry_path = mirror / "patches" / f"{fid}.suture"
    entry_path.write_bytes((other / "patches" / f"{oid}.suture").read_bytes())
    shutil.rmtree(src)
    report = _cycle(tmp_path, src)
    assert report["feeds"][0]["ok"] is False
    (row,) = report["patches"]
    assert row["state"] == "waiting" and "sha256 differs" in row["reason"], row
    assert store.installed() == []
    # a patch marked bad on this host, swapped in: not installed either
    store.mark_bad(oid, "crashed a canary", 0)
    report = _cycle(tmp_path, src)
    assert store.installed() == [] and report["patches"][0]["state"] == "waiting"


def test_sync_install_refuses_a_mirror_file_swapped_after_the_sync(tmp_path: Path) -> None:
    src, fid = good_feed(tmp_path)
    other, oid = good_feed(tmp_path, name="other", body="3")
    report = feed.sync(str(src))
    (Path(report["mirror"]) / "patches" / f"{fid}.suture").write_bytes(
        (other / "patches" / f"{oid}.suture").read_bytes())
    with pytest.raises(feed.MirrorMismatch, match="its sha256 differs") as info:
        feed.install_synced(report)
    assert info.value.code == "SUT-E103" and store.installed() == []


@pytest.mark.slow
def test_the_daemon_never_installs_from_a_mirror_of_a_feed_no_longer_configured(
        tmp_path: Path) -> None:
    src, fid = good_feed(tmp_path)
    other, oid = good_feed(tmp_path, name="other", body="3")
    feed.sync(str(src))                               # mirrored while it was configured
    report = _cycle(tmp_path, other)                  # now only "other" is
    assert [r["id"] for r in store.installed()] == [oid]
    assert fid not in {r["id"] for r in report["patches"]}


# ------------------------------------------------------------------ patch files, frames

def _deep_patches(tmp_path: Path) -> Dict[str, Path]:
    deep = b"[" * DEEP + b"]" * DEEP
    envelope = tmp_path / "deep-envelope.suture"
    envelope.write_bytes(b'{"payload": ' + deep + b"}")
    payload = tmp_path / "deep-payload.suture"
    payload.write_bytes(canonical_json({
        "payload": base64.b64encode(b'{"format": ' + deep + b"}").decode(),
        "payloadType": "application/vnd.suture.patch+json; version=1", "signatures": []}))
    return {"envelope": envelope, "payload": payload}


@pytest.mark.slow
@pytest.mark.parametrize("where", ["envelope", "payload"])
@pytest.mark.parametrize("command", ["inspect", "verify", "apply"])
def test_a_deeply_nested_patch_file_is_a_clean_sut_e100(tmp_path: Path, command: str,
                                                        where: str) -> None:
    path = _deep_patches(tmp_path)[where]
    extra = ["--pid", str(os.getpid())] if command == "apply" else []
    error = clean_error(suture(command, str(path), *extra, "--json"))
    assert error["code"] == "SUT-E100", error
    assert f"levels deep, limit {_bounded.MAX_DEPTH}" in error["message"]
    assert error["details"]["limit"] == "depth" and error["details"]["depth"] > DEEP - 1


IDLE = r'''
import sys
import suture.agent
suture.agent.start()
sys.stdin.read()
'''


@pytest.mark.slow
def test_a_deeply_nested_frame_gets_a_protocol_error_from_a_real_agent(targets: Any) -> None:
    from agentutil import call, exchange

    proc = targets.start([sys.executable, str(targets.script(IDLE))], targets.env(),
                         stdin=subprocess.PIPE)
    sock = targets.wait_agent(proc.pid, proc)
    for frame in (b'{"v": 1, "op": "hello", "x": ' + b"[" * DEEP + b"]" * DEEP + b"}\n",
                  b'{"v": 1, "op": "hello", "x": ' + b"1" * 5000 + b"}\n",
                  b'{"v": 1, "op": "hello", "op": "status"}\n',
                  b'{"v": 1, "op": "hello", "x": NaN}\n',
                  b'{"v": 1, "op": "hello", "x": "\xff"}\n'):
        reply = json.loads(exchange(sock, frame))
        assert reply["ok"] is False and reply["error"]["code"] == "SUT-E601", (frame[:40],
                                                                               reply)
    assert call(sock, "hello")["ok"] is True                      # and it keeps serving


# ------------------------------------------------------------------ the bounded reader

class Refused(ValueError):
    def __init__(self, message: str, *, details: Dict[str, Any]) -> None:
        super().__init__(message)
        self.details = details


def bounded(data: bytes, **kw: Any) -> Any:
    return _bounded.loads(data, error=Refused, what="input", max_bytes=kw.pop("max_bytes",
                                                                               1 << 20), **kw)


@pytest.mark.parametrize("data, limit, words", [
    (b"[" * 65 + b"]" * 65, "depth", "nests 65 levels deep, limit 64"),
    (b'{"a": 1, "a": 2}', "duplicate-key", "has the key 'a' twice"),
    (b"[" + b"9" * 65 + b"]", "number", "has an integer of 65 digits, limit 64"),
    (b"[1e999]", "number", "out of range"),
    (b"[NaN]", "number", "has NaN, which is not JSON"),
    (b"[-Infinity]", "number", "has -Infinity"),
    (b'["\xc3("]', "utf-8", "is not valid UTF-8 (byte 2)"),
    (b'["\\ud800"]', "utf-8", "lone surrogate"),
    (b'["a\x00"]', "nul", "contains a NUL byte at offset 3"),
    (b"x" * 11, "size", "is too large: 11 bytes, limit 10"),
    (b"[1,]", "json", "is not JSON"),
], ids=["depth", "duplicate", "digits", "float range", "nan", "infinity", "utf-8",
        "surrogate", "nul", "size", "json"])
def test_the_bounded_reader_refuses_each_rule_with_its_name(data: bytes, limit: str,
                                                            words: str) -> None:
    with pytest.raises(Refused, match=r"^input ") as info:
        bounded(data, max_bytes=10 if limit == "size" else 1 << 20)
    assert info.value.details["limit"] == limit and words in str(info.value)


def test_brackets_inside_strings_do_not_nest_and_the_limit_is_exact() -> None:
    assert bounded(b'["' + b"[" * 1000 + b'\\"{"]') == ["[" * 1000 + '"{']
    assert _bounded.depth(b"[" * 64 + b"]" * 64) == 64
    assert bounded(b"[" * 64 + b"]" * 64) is not None
    assert bounded(b'{"a": [1, 2.5, "\\u00e9", null, true]}') == {"a": [1, 2.5, "é", None,
                                                                      True]}


def test_the_depth_check_is_linear_on_the_largest_patch() -> None:
    data = b"[" * (32 * 1024 * 1024) + b"]" * (32 * 1024 * 1024)
    started = time.monotonic()
    with pytest.raises(PatchFormatError, match="levels deep"):
        load(data)
    assert time.monotonic() - started < 10


FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])

_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False,
                  allow_infinity=False), st.text(max_size=8))
_json = st.recursive(_leaf, lambda kids: st.one_of(
    st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=4), kids, max_size=4)),
    max_leaves=20)


@st.composite
def hostile_json(draw: Any) -> bytes:
    """A JSON document with one hostile construct spliced in: deep nesting, a huge number,
    a duplicate key, invalid UTF-8, a NUL byte, a lone surrogate, NaN; or a random cut."""
    text = json.dumps(draw(_json)).encode()
    n = draw(st.integers(1, 3000))
    evil = draw(st.sampled_from([
        b"[" * n + b"]" * n, b"{\"k\":" * n + b"1" + b"}" * n, b"9" * n, b"-" + b"7" * n,
        b"1e" + b"9" * min(n, 400), b'{"a":1,"a":1}', b'"\xff\xfe"', b'"\x00"', b"\x00",
        b'"\\udc00"', b"NaN", b"Infinity", b"[" * n, b"]" * n]))
    at = draw(st.integers(0, len(text)))
    return text[:at] + evil + text[at:] if draw(st.booleans()) else b"[" + evil + b"]"


@FUZZ
@given(data=st.one_of(hostile_json(), st.binary(max_size=512)))
def test_fuzz_the_bounded_reader_raises_only_the_callers_error(data: bytes) -> None:
    try:
        value = bounded(data)
    except Refused as exc:
        assert isinstance(exc.details["limit"], str)
        return
    # accepted: exactly what json reads, and it survives a canonical round trip
    assert json.loads(data) == value
    canonical_json(value)


_SIGNED_INDEX: Dict[str, bytes] = {}


def _an_index(tmp: Path) -> bytes:
    if "data" not in _SIGNED_INDEX:
        src, _ = good_feed(tmp)
        _SIGNED_INDEX["data"] = (src / feed.INDEX_FILE).read_bytes()
    return _SIGNED_INDEX["data"]


@FUZZ
@given(evil=hostile_json(), key=st.sampled_from(["feed", "version", "patches", "expires",
                                                 "format", "extra"]),
       resign=st.booleans())
def test_fuzz_the_index_parser_raises_only_feed_error(tmp_path_factory: Any, evil: bytes,
                                                      key: str, resign: bool) -> None:
    data = _an_index(tmp_path_factory.mktemp("idx"))
    envelope = json.loads(data)
    body = json.loads(base64.b64decode(envelope["payload"]))
    # the hostile text as the value of one field of the signed payload (or a new field)
    body[key] = "@@EVIL@@"
    payload = canonical_json(body).replace(b'"@@EVIL@@"', evil)
    if resign:
        raw = trust.seal(feed.INDEX_TYPE, payload, [KEY])
    else:
        raw = canonical_json(dict(envelope, payload=base64.b64encode(payload).decode()))
    policy = trust.load_policy()
    try:
        index = feed.read_index(raw, policy)
    except feed.FeedError:
        return
    assert index.version >= 1 and index.feed


def test_a_deep_answer_file_from_an_attach_target_is_a_clean_refusal(tmp_path: Path):
    # The bootstrap inside the target writes this file; a hostile target can write anything.
    import time

    from suture.tooling.host import attach
    answer = tmp_path / "answer"
    answer.write_bytes(b"[" * 30000 + b"]" * 30000)
    got = attach._wait_answer(str(answer), time.monotonic() + 1)
    assert got is not None and got["ok"] is False and "levels deep" in got["error"]
