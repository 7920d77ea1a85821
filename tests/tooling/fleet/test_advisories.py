"""fleet/advisories.py: PyPI's advisory data, merged by alias, cached, and offline.

The registry is a real HTTP server on localhost speaking PyPI's JSON API (the paths and
answers of https://pypi.org/pypi/NAME[/VERSION]/json); the one recorded response
(tests/data/pypi-ecdsa-0.19.2.json) is PyPI's own. The join with live processes is tested
in test_status_advisories.py.
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from suture.tooling.fleet import advisories
from suture.tooling.fleet.advisories import Candidate, Source

DATA = Path(__file__).resolve().parents[2] / "data"
ECDSA = DATA / "pypi-ecdsa-0.19.2.json"
URLLIB3 = DATA / "advisories-urllib3.json"


def vuln(id_: str, aliases: List[str], fixed: List[str], withdrawn: Any = None) -> Dict[str, Any]:
    return {"id": id_, "aliases": aliases, "fixed_in": fixed, "withdrawn": withdrawn,
            "summary": None, "details": f"details of {id_}", "link": f"https://x/{id_}",
            "source": "osv"}


def test_the_recorded_pypi_response_is_one_advisory_under_its_cve():
    # PyPI lists CVE-2024-23342 twice (PYSEC and GHSA, each naming the other): one advisory
    data = json.loads(ECDSA.read_text())
    assert len(data["vulnerabilities"]) == 2
    (adv,) = advisories.merge(data["vulnerabilities"], data["info"]["name"])
    assert adv.id == "CVE-2024-23342"
    assert adv.aliases == ["CVE-2024-23342", "GHSA-wj6h-64fc-37mp", "PYSEC-2026-1325"]
    assert adv.package == "ecdsa" and adv.fixed_in == [] and "Minerva" in adv.summary
    assert adv.link == "https://osv.dev/vulnerability/GHSA-wj6h-64fc-37mp"


def test_a_recorded_response_as_mirror_file_serves_its_release_only():
    found = advisories.lookup([("ecdsa", "0.19.2"), ("ECDSA", "0.19.1")],
                              Source("file", path=ECDSA))
    assert [a.id for a in found.found[("ecdsa", "0.19.2")]] == ["CVE-2024-23342"]
    assert found.errors == {("ecdsa", "0.19.1"): f"not in the mirror file {ECDSA}"}


def test_withdrawn_entries_are_dropped_and_aliases_merge_transitively():
    merged = advisories.merge([
        vuln("PYSEC-1", ["GHSA-a"], ["2.0"]),
        vuln("GHSA-a", ["CVE-2020-1"], ["2.0", "1.9.3"]),    # joins PYSEC-1 through GHSA-a
        vuln("GHSA-b", ["CVE-2020-2"], ["3.0"], withdrawn="2021-01-01T00:00:00Z"),
        vuln("PYSEC-9", [], ["10.0"]),
    ], "Some_Pkg")
    assert [(a.id, a.aliases, a.fixed_in, a.package) for a in merged] == [
        ("CVE-2020-1", ["CVE-2020-1", "GHSA-a", "PYSEC-1"], ["1.9.3", "2.0"], "some-pkg"),
        ("PYSEC-9", ["PYSEC-9"], ["10.0"], "some-pkg")]


def test_primary_id_prefers_cve_then_ghsa_then_pysec():
    assert advisories.primary_id(["PYSEC-2", "GHSA-x", "CVE-1"]) == "CVE-1"
    assert advisories.primary_id(["PYSEC-2", "GHSA-x"]) == "GHSA-x"
    assert advisories.primary_id(["PYSEC-2", "OSV-1"]) == "PYSEC-2"


def test_a_mirror_file_that_is_not_pypi_data_is_an_error_with_a_code(tmp_path: Path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"something": 1}')
    for path in (bad, tmp_path / "missing.json"):
        with pytest.raises(advisories.AdvisorySourceError) as err:
            advisories.lookup([("x", "1")], Source("file", path=path))
        assert err.value.code == "SUT-E660" and str(path) in err.value.message


def test_a_patch_covers_an_advisory_by_id_or_else_by_its_fixed_release():
    adv = advisories.merge([vuln("PYSEC-1", ["CVE-2020-1"], ["1.26.18", "2.0.7"])],
                           "urllib3")[0]
    target = {"kind": "distribution", "name": "urllib3", "from_version": "1.26.17",
              "to_version": "1.26.18"}
    assert advisories.covers(Candidate("p", target, ["CVE-2020-1"], "installed"), adv, "1.26.17")
    assert not advisories.covers(Candidate("p", target, ["CVE-2020-9"], "x"), adv, "1.26.17")
    assert advisories.covers(Candidate("p", target, [], "x"), adv, "1.26.17")
    assert not advisories.covers(Candidate("p", target, [], "x"), adv, "1.26.16")
    assert not advisories.covers(Candidate("p", dict(target, to_version="1.26.17.1"), [], "x"),
                                 adv, "1.26.17")


# -- the registry: a real HTTP server in PyPI's shape --------------------------------------

class Registry:
    def __init__(self) -> None:
        self.pages: Dict[str, Any] = {}
        self.asked: List[str] = []

    def handler(self) -> Any:
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:   # noqa: N802 - the http.server API
                registry.asked.append(self.path)
                page = registry.pages.get(self.path)
                body = json.dumps(page).encode() if page is not None else b""
                self.send_response(200 if page is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def registry() -> Iterator[Any]:
    reg = Registry()
    server = ThreadingHTTPServer(("127.0.0.1", 0), reg.handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    reg.url = f"http://127.0.0.1:{server.server_address[1]}/pypi"   # type: ignore[attr-defined]
    try:
        yield reg
    finally:
        server.shutdown()
        server.server_close()


def project(name: str, latest: str, releases: List[str], vulns: List[Any]) -> Dict[str, Any]:
    return {"info": {"name": name, "version": latest},
            "releases": {r: [] for r in releases}, "vulnerabilities": vulns}


def test_the_registry_per_release_page_then_the_cache_until_it_expires(registry, tmp_path):
    registry.pages["/pypi/urllib3/1.26.17/json"] = {
        "info": {"name": "urllib3", "version": "1.26.17"},
        "vulnerabilities": [vuln("PYSEC-2023-212", ["CVE-2023-45803"], ["1.26.18"])]}
    source = Source("pypi", url=registry.url, cache=tmp_path, ttl=100)
    found = advisories.lookup([("urllib3", "1.26.17")], source, now=1000.0)
    assert [a.id for a in found.found[("urllib3", "1.26.17")]] == ["CVE-2023-45803"]
    assert registry.asked == ["/pypi/urllib3/1.26.17/json"]
    # within the expiry: the cache, no request
    again = advisories.lookup([("urllib3", "1.26.17")], source, now=1099.0)
    assert again.found == found.found and len(registry.asked) == 1
    # expired: asked again
    advisories.lookup([("urllib3", "1.26.17")], source, now=1101.0)
    assert len(registry.asked) == 2
    # offline: the cache, whatever its age
    offline = advisories.lookup([("urllib3", "1.26.17"), ("urllib3", "2.0.0")],
                                Source("cache", cache=tmp_path), now=10 ** 9)
    assert offline.found == found.found and len(registry.asked) == 2
    assert "not in the cache" in offline.errors[("urllib3", "2.0.0")]


def test_a_404_for_the_release_is_explained_by_the_project_page(registry, tmp_path):
    registry.pages["/pypi/ecdsa/json"] = json.loads(ECDSA.read_text())     # latest: 0.19.2
    source = Source("pypi", url=registry.url, cache=tmp_path)
    found = advisories.lookup([("ecdsa", "0.19.2"), ("ecdsa", "0.19.1"), ("ecdsa", "0.0.0+local"),
                               ("not-on-pypi", "1.0")], source)
    # the latest release: its advisories are on the project page
    assert [a.id for a in found.found[("ecdsa", "0.19.2")]] == ["CVE-2024-23342"]
    # a release PyPI has, whose page is not served (a proxy): unknown, never "none"
    assert ("ecdsa", "0.19.1") not in found.found
    assert "answered 404" in found.errors[("ecdsa", "0.19.1")]
    # a release or project PyPI does not have: no advisories there
    assert found.found[("ecdsa", "0.0.0+local")] == []
    assert found.found[("not-on-pypi", "1.0")] == []
    # ... and said so, with when: "none known", not "none"
    assert "not on " in found.notes[("not-on-pypi", "1.0")]


def test_a_registry_url_that_knows_no_project_is_unknown_not_none_and_not_cached(
        registry, tmp_path):
    # A URL that answers 404 to everything (PyPI's simple index, a mirror of another kind)
    # once made every release "no advisories", cached for a day (a new user's finding).
    wrong = Source("pypi", url=registry.url, cache=tmp_path)
    asked = [("urllib3", "1.26.17"), ("requests", "2.31.0"), ("idna", "3.4")]
    found = advisories.lookup(asked, wrong, now=1000.0)
    assert found.found == {}
    assert all("knows none of the 3 projects" in found.errors[r] for r in asked)
    assert list(tmp_path.rglob("*.json")) == []
    # the right URL then answers at once: nothing wrong was remembered
    registry.pages["/pypi/urllib3/1.26.17/json"] = {
        "info": {"name": "urllib3", "version": "1.26.17"},
        "vulnerabilities": [vuln("PYSEC-2023-212", ["CVE-2023-45803"], ["1.26.18"])]}
    right = advisories.lookup([("urllib3", "1.26.17")], wrong, now=1001.0)
    assert [a.id for a in right.found[("urllib3", "1.26.17")]] == ["CVE-2023-45803"]


def test_a_project_not_on_the_registry_is_asked_again_after_an_hour(registry, tmp_path):
    source = Source("pypi", url=registry.url, cache=tmp_path)
    registry.pages["/pypi/urllib3/1.26.17/json"] = {"info": {"version": "1.26.17"},
                                                   "vulnerabilities": []}
    advisories.lookup([("urllib3", "1.26.17"), ("private-thing", "1.0")], source, now=0.0)
    before = len(registry.asked)
    advisories.lookup([("private-thing", "1.0")], source, now=60.0)
    assert len(registry.asked) == before                       # remembered...
    advisories.lookup([("private-thing", "1.0")], source, now=3601.0)
    assert len(registry.asked) > before                        # ...for an hour only


def test_an_unreachable_registry_says_so_and_falls_back_on_the_cache(registry, tmp_path):
    registry.pages["/pypi/urllib3/1.26.17/json"] = {
        "info": {}, "vulnerabilities": [vuln("PYSEC-2023-212", ["CVE-2023-45803"], [])]}
    advisories.lookup([("urllib3", "1.26.17")],
                      Source("pypi", url=registry.url, cache=tmp_path), now=0.0)
    with socket.socket() as s:            # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/pypi"
    found = advisories.lookup([("urllib3", "1.26.17"), ("urllib3", "1.26.18")],
                              Source("pypi", url=dead, cache=tmp_path, ttl=1), now=10.0)
    assert [a.id for a in found.found[("urllib3", "1.26.17")]] == ["CVE-2023-45803"]
    assert "from the cache, fetched 1970-01-01 00:00 UTC" in found.notes[("urllib3", "1.26.17")]
    assert f"{dead} is unreachable" in found.errors[("urllib3", "1.26.18")]


def test_the_source_comes_from_the_option_or_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("SUTURE_ADVISORIES", raising=False)
    assert Source.parse(None).kind == "pypi"
    monkeypatch.setenv("SUTURE_ADVISORIES", "cache")
    assert Source.parse(None).kind == "cache"
    assert Source.parse("off").kind == "off"
    assert Source.parse(str(URLLIB3)) == Source("file", path=URLLIB3)
    monkeypatch.setenv("SUTURE_CACHE_DIR", str(tmp_path))
    assert advisories.cache_dir() == tmp_path / "advisories"


def test_a_release_page_the_registry_does_not_serve_is_not_asked_again_for_an_hour(
        registry, tmp_path):
    registry.pages["/pypi/ecdsa/json"] = json.loads(ECDSA.read_text())     # latest: 0.19.2
    source = Source("pypi", url=registry.url, cache=tmp_path)
    first = advisories.lookup([("ecdsa", "0.19.1")], source, now=1000.0)
    asked = len(registry.asked)
    assert asked == 2 and "answered 404" in first.errors[("ecdsa", "0.19.1")]
    again = advisories.lookup([("ecdsa", "0.19.1")], source, now=1000.0 + 3599)
    assert len(registry.asked) == asked
    assert "remembered from 1970-01-01 00:16 UTC" in again.errors[("ecdsa", "0.19.1")]
    advisories.lookup([("ecdsa", "0.19.1")], source, now=1000.0 + 3601)
    assert len(registry.asked) == asked + 2
