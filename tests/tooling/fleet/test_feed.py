"""Patch feeds (suture.tooling.fleet.feed): `suture feed publish` and `suture sync`, over a
directory and over real HTTP, with rollback, fork, tampering and resumed downloads."""

from __future__ import annotations

import base64
import datetime
import http.server
import json
import re
import shutil
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from suture.runtime.patchfile import canonical_json, load
from suture.tooling.fleet import feed
from suture.tooling import trust
from suture.tooling.cli import main

from signing import KEY, make_patch, policy_with, signed

def ago(hours: float) -> str:
    return (datetime.datetime.now(datetime.timezone.utc)
            - datetime.timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")


T0, T1 = ago(2), ago(1)     # publish times; indexes stay valid for 30 days from them


@pytest.fixture(autouse=True)
def _own_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUTURE_STATE_DIR", str(tmp_path / "state"))   # a fresh mirror


@pytest.fixture
def patches(tmp_path: Path) -> List[Path]:
    out = []
    for i, body in enumerate(("2", "3")):
        path = tmp_path / f"p{i}.suture"
        path.write_bytes(signed(make_patch(tmp_path / f"build{i}", name=f"pkg{i}", body=body,
                                           dist=f"pkg{i}")))
        out.append(path)
    return out


def run(*args: str) -> Any:
    result = CliRunner().invoke(main, [*args, "--json"])
    return result.exit_code, json.loads(result.output)


class Server:
    """A real HTTP server over a directory, which can fail chosen paths and counts GETs."""

    def __init__(self, root: Path) -> None:
        self.root, self.fail, self.gets = root, set(), []   # type: Path, Set[str], List[str]
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a: Any, **kw: Any) -> None:
                super().__init__(*a, directory=str(outer.root), **kw)

            def do_GET(self) -> None:
                outer.gets.append(self.path.lstrip("/"))
                if self.path.lstrip("/") in outer.fail:
                    self.send_error(500, "injected failure")
                    return
                super().do_GET()

            def log_message(self, *a: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/feed"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path / "www")
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def publish(paths: List[Path], to: Path, channel: str = "broad", now: str = T0,
            key: Ed25519PrivateKey = KEY) -> Dict[str, Any]:
    return feed.publish(paths, to, key, channel=channel, feed="acme", now=now)


# ---------------------------------------------------------------- publish

def test_publish_writes_signed_patches_and_a_signed_index(tmp_path: Path, patches: List[Path]):
    code, out = run("feed", "publish", *map(str, patches), "--to", str(tmp_path / "acme"),
                    "--key", str(_key_file(tmp_path)), "--channel", "canary")
    assert code == 0, out
    assert (out["feed"], out["version"], out["patches"]) == ("acme", 1, 2)
    index = feed.read_index((tmp_path / "acme" / feed.INDEX_FILE).read_bytes(),
                            trust.load_policy())
    assert index.version == 1 and index.signed_by == ["suture-tests"]
    for path, entry in zip(patches, sorted(index.patches, key=lambda e: e["target"]["name"])):
        assert (tmp_path / "acme" / entry["path"]).read_bytes() == path.read_bytes()
        assert entry["id"] == load(path.read_bytes()).id
        assert list(entry["channels"]) == ["canary"]


def _key_file(tmp_path: Path) -> Path:
    from cryptography.hazmat.primitives import serialization
    path = tmp_path / "suite.key"
    path.write_bytes(KEY.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def test_promoting_adds_a_channel_and_bumps_the_version(tmp_path: Path, patches: List[Path]):
    publish(patches[:1], tmp_path / "acme", "canary", T0)
    out = publish(patches[:1], tmp_path / "acme", "broad", T1)
    assert out["version"] == 2
    index = feed.read_index((tmp_path / "acme" / feed.INDEX_FILE).read_bytes(),
                            trust.load_policy())
    (entry,) = index.patches
    assert entry["channels"] == {"canary": T0, "broad": T1}
    # canary hosts got it at T0; early and broad hosts only with the broad release
    assert [feed.released(entry, r) for r in feed.CHANNELS] == [T0, T1, T1]


def test_publish_refuses_an_untrusted_patch(tmp_path: Path):
    unsigned = tmp_path / "u.suture"
    unsigned.write_bytes(make_patch(tmp_path / "b"))
    code, out = run("feed", "publish", str(unsigned), "--to", str(tmp_path / "acme"),
                    "--key", str(_key_file(tmp_path)))
    assert code == 2 and out["error"]["code"] == "SUT-E110"
    assert not (tmp_path / "acme" / feed.INDEX_FILE).exists()


# ---------------------------------------------------------------- sync

def test_sync_over_http_mirrors_every_patch_then_has_nothing_new(
        tmp_path: Path, patches: List[Path], server: Server):
    publish(patches, server.root / "feed")
    code, out = run("sync", server.url)
    assert code == 0, out
    assert out["version"] == 1 and out["recorded"] and out["previous_version"] is None
    assert sorted(r["outcome"] for r in out["patches"]) == ["new", "new"]
    mirror = Path(out["mirror"])
    for path in patches:
        pid = load(path.read_bytes()).id
        assert (mirror / "patches" / f"{pid}.suture").read_bytes() == path.read_bytes()
    server.gets.clear()
    code, out = run("sync", server.url)
    assert code == 0 and [r["outcome"] for r in out["patches"]] == ["held", "held"]
    assert server.gets == ["feed/" + feed.INDEX_FILE]     # nothing downloaded again


def test_a_failed_download_resumes_with_only_what_is_missing(
        tmp_path: Path, patches: List[Path], server: Server):
    publish(patches, server.root / "feed")
    index = feed.read_index((server.root / "feed" / feed.INDEX_FILE).read_bytes(),
                            trust.load_policy())
    broken = "feed/" + index.patches[1]["path"]
    server.fail.add(broken)
    code, out = run("sync", server.url)
    assert code == 1 and not out["recorded"]
    assert sorted(r["outcome"] for r in out["patches"]) == ["failed", "new"]
    mirror = Path(out["mirror"])
    assert not (mirror / "state.json").exists()                    # version not recorded
    assert not list((mirror / "patches").glob(".*"))              # no partial file left
    server.fail.clear()
    server.gets.clear()
    code, out = run("sync", server.url)
    assert code == 0 and out["recorded"]
    assert sorted(r["outcome"] for r in out["patches"]) == ["held", "new"]
    assert server.gets == ["feed/" + feed.INDEX_FILE, broken]


def test_sync_refuses_an_older_index_and_a_forked_one(tmp_path: Path, patches: List[Path]):
    src = tmp_path / "acme"
    publish(patches[:1], src, now=T0)
    old = (src / feed.INDEX_FILE).read_bytes()
    publish(patches[1:], src, now=T1)
    assert feed.sync(str(src))["version"] == 2
    (src / feed.INDEX_FILE).write_bytes(old)                       # replay version 1
    code, out = run("sync", str(src))
    assert code == 3 and out["error"]["code"] == "SUT-E114"
    assert "index version 1 is older than the version 2" in out["error"]["message"]
    # a fork: another version 2, validly signed, with other contents
    fork = tmp_path / "fork"
    shutil.copytree(src, fork)
    (fork / feed.INDEX_FILE).write_bytes(old)
    publish(patches[:1], fork, channel="canary", now=T1)           # version 2 again
    # served where the host gets this feed: rollback state belongs to the source (issue
    # 13, finding 7), so the fork is refused there
    (src / feed.INDEX_FILE).write_bytes((fork / feed.INDEX_FILE).read_bytes())
    code, out = run("sync", str(src))
    assert code == 3 and "the same version as, but different from," in out["error"]["message"]


def _index_signed_by(src: Path, key: Ed25519PrivateKey) -> None:
    envelope = json.loads((src / feed.INDEX_FILE).read_bytes())
    payload = base64.b64decode(envelope["payload"])
    (src / feed.INDEX_FILE).write_bytes(trust.seal(feed.INDEX_TYPE, payload, [key]))


def test_sync_refuses_an_index_no_trusted_unrestricted_key_signed(
        tmp_path: Path, patches: List[Path], monkeypatch: pytest.MonkeyPatch):
    src = tmp_path / "acme"
    publish(patches, src)
    stranger = Ed25519PrivateKey.generate()
    _index_signed_by(src, stranger)
    code, out = run("sync", str(src))
    assert code == 1 and out["error"]["code"] == "SUT-E113"
    assert "no key the trust policy lists signed it" in out["error"]["message"]
    # a key trusted only for some distributions may sign their patches, not an index
    policy = policy_with(tmp_path, {"key": KEY}, {"key": stranger, "name": "pkg0 only",
                                                  "distributions": ["pkg0"]})
    with pytest.raises(feed.FeedError, match="restricted to some distributions"):
        feed.sync(str(src), policy=policy)


def test_each_patch_is_checked_on_its_own(tmp_path: Path, patches: List[Path]):
    src = tmp_path / "acme"
    publish(patches, src)
    index = feed.read_index((src / feed.INDEX_FILE).read_bytes(), trust.load_policy())
    by_name = {e["target"]["name"]: e for e in index.patches}
    # pkg0's file swapped for pkg1's (validly signed, but not what the index lists)
    (src / by_name["pkg0"]["path"]).write_bytes(patches[1].read_bytes())
    code, out = run("sync", str(src))
    rows = {r["target"]["name"]: r for r in out["patches"]}
    assert code == 2
    assert rows["pkg0"]["outcome"] == "refused"
    assert "sha256 is not the one the index lists" in rows["pkg0"]["reason"]
    assert rows["pkg1"]["outcome"] == "new"
    assert out["recorded"]          # a refusal is an answer, not a download to retry


def test_a_patch_the_host_does_not_trust_is_refused_even_in_a_trusted_index(
        tmp_path: Path, patches: List[Path]):
    src = tmp_path / "acme"
    publisher = Ed25519PrivateKey.generate()
    unsigned = tmp_path / "u.suture"
    unsigned.write_bytes(trust.sign(make_patch(tmp_path / "b", name="pkg9", dist="pkg9"),
                                    publisher))
    feed.publish([unsigned], src, KEY, feed="acme", now=T0,
                 policy=policy_with(tmp_path, {"key": publisher}))
    out = feed.sync(str(src))              # the suite's policy trusts KEY, not publisher
    (row,) = out["patches"]
    assert row["outcome"] == "refused" and row["code"] == "SUT-E110"


@pytest.mark.parametrize("edit, message", [
    (lambda b: b["patches"][0].update(path="../../etc/passwd"), "must be patches/<id>.suture"),
    (lambda b: b["patches"][0].update(channels={"everyone": T0}), "channels must map"),
    (lambda b: b["patches"][0].update(bytes=True), "bytes is missing or has the wrong type"),
    (lambda b: b.update(version=0), "version must be a positive integer"),
    (lambda b: b.update(feed="../x"), "feed must be a name"),
    (lambda b: b.update(format=2), "format 2 is not supported"),
    (lambda b: b["patches"].append(dict(b["patches"][0])), "a patch id appears twice"),
], ids=["path traversal", "unknown channel", "bool size", "version 0", "feed name",
        "format", "duplicate"])
def test_a_malformed_index_is_refused(tmp_path: Path, patches: List[Path], edit: Any,
                                      message: str):
    src = tmp_path / "acme"
    publish(patches[:1], src)
    envelope = json.loads((src / feed.INDEX_FILE).read_bytes())
    body = json.loads(base64.b64decode(envelope["payload"]))
    edit(body)
    (src / feed.INDEX_FILE).write_bytes(trust.seal(feed.INDEX_TYPE, canonical_json(body), [KEY]))
    with pytest.raises(feed.FeedError, match=message):
        feed.sync(str(src))
    assert not feed.mirror_dir(str(src)).exists()


def test_an_expired_index_is_refused_until_the_publisher_renews_it(tmp_path: Path,
                                                                    patches: List[Path]):
    src = tmp_path / "acme"
    feed.publish(patches[:1], src, KEY, feed="acme", now=ago(48), valid_days=1)
    code, out = run("sync", str(src))
    assert code == 1 and out["error"]["code"] == "SUT-E113"
    assert re.search(r"index version 1 expired at \S+: the publisher must publish again",
                     out["error"]["message"])
    code, out = run("feed", "publish", "--to", str(src), "--key", str(_key_file(tmp_path)))
    assert code == 0 and out["version"] == 2 and out["published"] == []     # renewed
    code, out = run("sync", str(src))
    assert code == 0 and [r["outcome"] for r in out["patches"]] == ["new"]


def test_check_mode_reads_the_index_and_writes_nothing(tmp_path: Path, patches: List[Path]):
    src = tmp_path / "acme"
    publish(patches, src)
    code, out = run("sync", str(src), "--check")
    assert code == 0 and out["dry_run"] and not out["recorded"]
    assert [r["outcome"] for r in out["patches"]] == ["missing", "missing"]
    assert not feed.mirror_dir(str(src)).exists()
    feed.sync(str(src))
    code, out = run("sync", str(src), "--check")
    assert [r["outcome"] for r in out["patches"]] == ["held", "held"]


def test_install_puts_every_synced_patch_in_the_store_but_not_bad_ones(
        tmp_path: Path, patches: List[Path]):
    from suture.runtime import store

    src = tmp_path / "acme"
    publish(patches, src)
    ids = sorted(load(p.read_bytes()).id for p in patches)
    store.mark_bad(ids[0], "crashed a canary", 0)
    code, out = run("sync", str(src), "--install")
    assert code == 0 and out["installed"] == [ids[1]]
    assert [r["id"] for r in store.installed()] == [ids[1]]
    code, out = run("sync", str(src), "--install")          # again: nothing new
    assert code == 0 and out["installed"] == []


def test_the_hint_for_an_index_signed_by_a_restricted_key_is_a_command_that_works(
        tmp_path: Path, patches: List[Path], monkeypatch: pytest.MonkeyPatch):
    # Issue 18: the hint said `suture trust add KEY.pub`, which refuses a key already listed.
    src = tmp_path / "acme"
    publish(patches, src)
    publisher = Ed25519PrivateKey.generate()
    _index_signed_by(src, publisher)
    policy = policy_with(tmp_path, {"key": publisher, "name": "acme",
                                    "distributions": ["pkg0"]})
    with pytest.raises(feed.FeedError) as err:
        feed.read_index((src / feed.INDEX_FILE).read_bytes(), policy)
    command = re.search(r"`suture (trust set \S+ --any)`", err.value.message)
    assert command is not None, err.value.message
    monkeypatch.setenv("SUTURE_CONFIG_DIR", str(tmp_path / "cfg"))
    got = CliRunner().invoke(main, command.group(1).split())
    assert got.exit_code == 0, got.output
    index = feed.read_index((src / feed.INDEX_FILE).read_bytes(),
                            trust.load_policy(policy.path))
    assert index.signed_by == ["acme"]
