"""A real release pair: urllib3 1.26.17 -> 1.26.18 (CVE-2023-45803), built and hotpatched.

The wheels are the unmodified PyPI files in tests/data (see its README). The target is a
real process that holds a PoolManager created before the patch and talks to a real HTTP
server on loopback: a POST answered with 303 must not carry its body to the next hop.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from suture.tooling.build import build_trees
from suture.tooling.build.sources import materialize

DATA = Path(__file__).resolve().parents[1] / "data"
SRC = Path(__file__).resolve().parents[2] / "src"
OLD = DATA / "urllib3-1.26.17-py2.py3-none-any.whl"
NEW = DATA / "urllib3-1.26.18-py2.py3-none-any.whl"

EXPECTED = {
    ("urllib3._collections", "added method", "HTTPHeaderDict._prepare_for_method_change"),
    ("urllib3.connectionpool", "changed method", "HTTPConnectionPool.urlopen"),
    ("urllib3.connectionpool", "added import", "HTTPHeaderDict"),
    ("urllib3.poolmanager", "changed method", "PoolManager.urlopen"),
    ("urllib3.poolmanager", "added import", "HTTPHeaderDict"),
    ("urllib3._version", "changed module constant", "__version__"),
    ("urllib3.contrib.securetransport", "changed import", "six"),
}

TARGET = textwrap.dedent('''
    import json, sys, threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    import urllib3
    import suture.runtime as rt

    seen = []

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass
        def _any(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else b""
            if self.path == "/redirect":
                self.send_response(303)
                self.send_header("Location", "/target")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            seen.append([self.command, body.decode(), self.headers.get("Content-Type")])
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
        do_GET = do_POST = _any

    server = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = "http://127.0.0.1:%d/redirect" % server.server_address[1]
    pool = urllib3.PoolManager()                        # built before the patch
    conn = urllib3.HTTPConnectionPool("127.0.0.1", server.server_address[1])

    def observe():
        seen.clear()
        pool.request("POST", url, body=b"card=4111", headers={"Content-Type": "text/plain"})
        conn.urlopen("POST", "/redirect", body=b"card=4111",
                     headers={"Content-Type": "text/plain"}, redirect=True)
        return list(seen)

    out = {"before": observe()}
    patch = rt.load_patch(open(sys.argv[1], "rb").read())
    res = rt.apply(patch)
    out["apply"] = res.to_dict()
    out["version"] = urllib3.__version__
    out["after"] = observe()
    rt.revert(patch.id)
    out["reverted"] = observe()
    out["version_reverted"] = urllib3.__version__
    server.shutdown()
    print(json.dumps(out))
''')


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    old = materialize(str(OLD), cache_dir=cache)
    new = materialize(str(NEW), cache_dir=cache)
    return old, build_trees(old, new, cves=["CVE-2023-45803"])


def test_build_reports_exactly_the_changed_definitions(report):
    _, rep = report
    got = {(c["module"], c["kind"], c["qualname"]) for c in rep.changes()}
    assert got == EXPECTED
    assert rep.target == {"kind": "distribution", "name": "urllib3",
                          "from_version": "1.26.17", "to_version": "1.26.18"}
    assert all(c["verdict"] in ("live", "caveat") for c in rep.changes())


@pytest.mark.slow
def test_live_process_is_fixed_then_reverted(report, tmp_path):
    old, rep = report
    patch = tmp_path / "urllib3.suture"
    patch.write_bytes(rep.data)
    script = tmp_path / "target.py"
    script.write_text(TARGET)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), str(old.root)]))
    proc = subprocess.run([sys.executable, str(script), str(patch)], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    leaked = [["GET", "card=4111", "text/plain"]] * 2
    assert out["before"] == leaked                      # the vulnerability, for real
    assert out["apply"]["state"] == "applied"
    assert out["after"] == [["GET", "", None]] * 2      # body and its headers dropped
    assert out["version"] == "1.26.18"
    assert out["reverted"] == leaked                    # revert is exact
    assert out["version_reverted"] == "1.26.17"
