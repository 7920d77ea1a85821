"""Suture across a fleet, on one machine: hosts as network namespaces (issue 7).

    sudo python -m benchmarks.fleet [--json OUT] [--markdown OUT] [--ansible VENV]

Hosts ``h1`` (ring canary), ``h2`` and ``h3`` (ring broad) are network namespaces
(iproute2: ``ip netns``, veth, a bridge), each with its own Suture state, config and
runtime directory, two real HTTP services (a per-process hit counter in memory, and the
code the fix changes) under a steady load from a load generator in the same namespace,
and ``suture daemon``. The feed is served over HTTP from a fourth namespace, ``feed``
(10.77.0.1); addresses exist only inside the namespaces.

Timeline: an empty feed; the fix published to the canary channel; ``h2``'s daemon killed
with SIGKILL; the fix promoted to broad; ``h2``'s daemon started again. ``h3``'s health
check fails, so its daemon must revert the fix and mark it bad (crash-loop lock).
Measured per ring: the exposure window (from the release to that ring until every new
request of every process there gets the fix), failed requests, whether in-memory state
survived; per host: the Prometheus textfile the daemon writes, read with
``prometheus_client``'s parser; and, with ``--ansible``, a playbook run against each host.

Network namespaces isolate the network only: every "host" shares this machine's pid
namespace and filesystem, and is told apart by its own SUTURE_STATE_DIR, CONFIG_DIR and
RUNTIME_DIR (a daemon sees only the agents in its host's runtime directory).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SRC = ROOT / "src"
sys.path.insert(0, str(SRC))

HOSTS = [("h1", "canary", None), ("h2", "broad", None), ("h3", "broad", "exit 1")]
PORTS = (9001, 9002)
NET = "10.77.0"
CVE = "CVE-2099-7001"
DELAY = 5.0                  # broad hosts wait this long after a release to broad

SERVICE = '''
import json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HITS = [0]


def answer():
    return {v}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        HITS[0] += 1
        body = json.dumps({{"v": answer(), "pid": os.getpid(), "hits": HITS[0]}}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def serve(port):
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
'''

MAIN = '''
import sys
sys.path.insert(0, {pkgs!r})
import suture.agent
suture.agent.start()
import fleetsvc
fleetsvc.serve(int(sys.argv[1]))
'''


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def netns_up(names: List[str]) -> None:
    ip("netns", "add", "sut-feed")
    ip("-n", "sut-feed", "link", "set", "lo", "up")
    ip("-n", "sut-feed", "link", "add", "br0", "type", "bridge")
    ip("-n", "sut-feed", "addr", "add", f"{NET}.1/24", "dev", "br0")
    ip("-n", "sut-feed", "link", "set", "br0", "up")
    for i, name in enumerate(names, start=1):
        ns, a, b = f"sut-{name}", f"sv{name}", f"sv{name}f"
        ip("netns", "add", ns)
        ip("-n", ns, "link", "set", "lo", "up")
        ip("link", "add", a, "type", "veth", "peer", "name", b)
        ip("link", "set", a, "netns", ns)
        ip("link", "set", b, "netns", "sut-feed")
        ip("-n", "sut-feed", "link", "set", b, "master", "br0", "up")
        ip("-n", ns, "addr", "add", f"{NET}.{10 + i}/24", "dev", a)
        ip("-n", ns, "link", "set", a, "up")


def netns_down(names: List[str]) -> None:
    for ns in ["sut-feed"] + [f"sut-{n}" for n in names]:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def write_dist(root: Path, v: int, version: str) -> Path:
    pkg = root / "fleetsvc"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(SERVICE.format(v=v))
    info = root / f"fleetsvc-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fleetsvc\nVersion: {version}\n")
    (info / "top_level.txt").write_text("fleetsvc\n")
    return root


def build_patch(work: Path, key: Any) -> Path:
    from suture.tooling import trust
    from suture.tooling.build import build_trees
    from suture.tooling.build.sources import materialize

    v1 = write_dist(work / "build" / "1.0", 1, "1.0")
    v2 = write_dist(work / "build" / "1.1", 2, "1.1")
    report = build_trees(replace(materialize(str(v1)), name="fleetsvc", version="1.0"),
                         replace(materialize(str(v2)), name="fleetsvc", version="1.1"),
                         cves=[CVE], summary="answer() returns the fixed value")
    assert report.data is not None
    out = work / "fleetsvc-1.0-1.1.suture"
    out.write_bytes(trust.sign(report.data, key))
    return out


class Fleet:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.procs: Dict[str, subprocess.Popen] = {}
        self.events: List[Dict[str, Any]] = []
        self.t0 = time.monotonic()

    def mark(self, what: str, **kw: Any) -> float:
        t = time.monotonic()
        self.events.append(dict(kw, what=what, t=round(t - self.t0, 3)))
        print(f"[{t - self.t0:6.2f}] {what}", file=sys.stderr, flush=True)
        return t

    def env(self, host: str) -> Dict[str, str]:
        h = self.work / host
        return dict(os.environ, PYTHONPATH=str(SRC), SUTURE_STATE_DIR=str(h / "state"),
                    SUTURE_CONFIG_DIR=str(h / "config"), SUTURE_RUNTIME_DIR=str(h / "run"),
                    PYTHONDONTWRITEBYTECODE="1")

    def start(self, name: str, host: str, argv: List[str], out: Optional[Path] = None) -> None:
        ns = "sut-feed" if host == "feed" else f"sut-{host}"
        log = open(out or (self.work / f"{name}.log"), "w")
        self.procs[name] = subprocess.Popen(["ip", "netns", "exec", ns, *argv],
                                            env=self.env(host) if host != "feed" else None,
                                            stdout=log, stderr=subprocess.STDOUT)

    def suture(self, host: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", f"sut-{host}", sys.executable, "-m",
                               "suture", *args], env=self.env(host), capture_output=True,
                              text=True, timeout=120)

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        p = self.procs.pop(name)
        p.send_signal(sig)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def run(seconds_after: float = 20.0, ansible: Optional[Path] = None,
        prometheus: Optional[str] = None) -> Dict[str, Any]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from suture.tooling.fleet import feed
    from suture.tooling import trust

    names = [h for h, _, _ in HOSTS]
    work = Path(tempfile.mkdtemp(prefix="suture-fleet-"))
    key = Ed25519PrivateKey.generate()
    netns_down(names)
    netns_up(names)
    fleet = Fleet(work)
    try:
        patch = build_patch(work, key)
        pkgs = write_dist(work / "pkgs", 1, "1.0")
        (work / "service.py").write_text(MAIN.format(pkgs=str(pkgs)))
        feed_dir = work / "feed"
        for host, ring, health in HOSTS:
            h = work / host
            for d in ("state", "config", "run"):
                (h / d).mkdir(parents=True, mode=0o700)
            trust.add_key(trust.public_key_line(key.public_key()), "publisher",
                          path=str(h / "config" / trust.POLICY_FILE))
            i = names.index(host) + 1
            lines = [f'feeds = ["http://{NET}.1:8000/"]', 'interval = "1s"', f'ring = "{ring}"',
                     f'textfile = "{h / "suture.prom"}"',
                     f'metrics_listen = "{NET}.{10 + i}:9464"']
            if health:
                lines += [f"health = {json.dumps(health)}", 'watch = "2s"',
                          'health_interval = "0.5s"']
            lines += ["[delay]", 'canary = "0s"', f'broad = "{DELAY:g}s"']
            (h / "config" / "daemon.toml").write_text("\n".join(lines) + "\n")
        feed.publish([], feed_dir, key, feed="acme")             # an empty feed to start
        fleet.start("feed", "feed", [sys.executable, "-m", "http.server", "8000", "--bind",
                                     f"{NET}.1", "--directory", str(feed_dir)])
        if prometheus:
            targets = ", ".join(f'"{NET}.{10 + i}:9464"' for i in range(1, len(names) + 1))
            (work / "prometheus.yml").write_text(
                "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                "scrape_configs:\n  - job_name: suture\n"
                f"    static_configs: [{{targets: [{targets}]}}]\n")
            fleet.start("prometheus", "feed", [
                prometheus, f"--config.file={work / 'prometheus.yml'}",
                f"--storage.tsdb.path={work / 'tsdb'}", f"--web.listen-address={NET}.1:9090"])
        total = 8 + 9 + seconds_after
        for host, _, _ in HOSTS:
            for port in PORTS:
                fleet.start(f"svc-{host}-{port}", host, [sys.executable, str(work / "service.py"),
                                                         str(port)])
        time.sleep(1.5)
        for host, _, _ in HOSTS:
            for port in PORTS:
                fleet.start(f"load-{host}-{port}", host, [
                    sys.executable, "-m", "benchmarks.zero_downtime.loadgen", "--port",
                    str(port), "--path", "/", "--rate", "50", "--conns", "4", "--seconds",
                    str(total), "--out", str(work / f"load-{host}-{port}.jsonl")])
            fleet.start(f"daemon-{host}", host, [sys.executable, "-m", "suture", "daemon"])
        time.sleep(3)
        t_canary = fleet.mark("publish to canary")
        feed.publish([patch], feed_dir, key, channel="canary", feed="acme")
        time.sleep(5)
        fleet.mark("SIGKILL h2's daemon")
        fleet.stop("daemon-h2", signal.SIGKILL)
        time.sleep(1)
        t_broad = fleet.mark("promote to broad")
        feed.publish([patch], feed_dir, key, channel="broad", feed="acme")
        time.sleep(2)
        fleet.mark("restart h2's daemon")
        fleet.start("daemon-h2b", "h2", [sys.executable, "-m", "suture", "daemon"])
        time.sleep(seconds_after)
        fleet.mark("end of observation")
        for name in [n for n in list(fleet.procs) if n.startswith("load-")]:
            fleet.procs.pop(name).wait(60)
        report = collect(fleet, t_canary, t_broad, ansible)
        if prometheus:
            report["prometheus"] = scrape_prometheus(fleet.mark("query Prometheus") - t_canary)
    finally:
        for name in list(fleet.procs):
            fleet.stop(name, signal.SIGKILL if name.startswith("svc") else signal.SIGTERM)
        netns_down(names)
    report["events"] = fleet.events
    report["work"] = str(work)
    return report


def collect(fleet: Fleet, t_canary: float, t_broad: float,
            ansible: Optional[Path]) -> Dict[str, Any]:
    from prometheus_client.parser import text_string_to_metric_families

    hosts: Dict[str, Any] = {}
    for host, ring, health in HOSTS:
        release = t_canary if ring == "canary" else t_broad
        rows = []
        for port in PORTS:
            with open(fleet.work / f"load-{host}-{port}.jsonl") as f:
                rows += [dict(json.loads(line), port=port) for line in f]
        failed = sum(1 for r in rows if r.get("error"))
        # exposure: until every request sent later got the fix, per process
        end = max(r["t0"] for r in rows)
        per_pid: Dict[int, Dict[str, Any]] = {}
        for r in rows:
            if r.get("pid") is None:
                continue
            p = per_pid.setdefault(r["pid"], {"old_after": None, "first_new": None,
                                              "last": None, "before": 0, "late": []})
            if r.get("v") == 2 and p["first_new"] is None:
                p["first_new"] = r["t0"]
            if r.get("v") != 2 and r["t0"] >= release:
                p["old_after"] = max(p["old_after"] or 0.0, r["t0"])
            if p["last"] is None or r["t0"] >= p["last"][0]:
                p["last"] = (r["t0"], r.get("v"))
            if r["t1"] < release:
                p["before"] = max(p["before"], r["hits"])
            if r["t0"] > end - 2.0:
                p["late"].append(r["hits"])
        # What the store recorded per process: a fix applied and reverted by the health watch
        # within one load interval is invisible to the load generator, but not to the audit.
        audit = fleet.suture(host, "audit", "--json")
        ops: Dict[int, List[str]] = {}
        for e in (json.loads(audit.stdout)["entries"] if audit.returncode == 0 else []):
            if e["op"] in ("apply", "revert"):
                ops.setdefault(e["pid"], []).append(e["result"])
        outcome = []
        for pid, p in per_pid.items():
            if p["first_new"] is None and ops.get(pid) == ["applied", "reverted"]:
                outcome.append("applied, then reverted before a request saw it")
            elif p["first_new"] is None:
                outcome.append("never fixed")
            elif p["last"][1] != 2:
                outcome.append(f"fixed after {p['first_new'] - release:.2f} s, then reverted")
            else:
                outcome.append(f"{(p['old_after'] or release) - release:.2f}")
        # state: the same processes answer at the end, their counters past where they were
        kept = bool(per_pid) and all(p["before"] > 0 and p["late"] and min(p["late"]) > p["before"]
                                     for p in per_pid.values())
        prom = (fleet.work / host / "suture.prom")
        samples = {}
        if prom.exists():
            for fam in text_string_to_metric_families(prom.read_text()):
                for s in fam.samples:
                    samples[s.name + json.dumps(s.labels, sort_keys=True)] = s.value
        state = json.loads((fleet.work / host / "state" / "daemon.json").read_text())
        bad = fleet.suture(host, "bad", "--json")
        hosts[host] = {
            "ring": ring, "health": health, "requests": len(rows), "failed": failed,
            "processes": len(per_pid), "fixed_after_release_s": outcome,
            "state_kept": kept,
            "exposed_metric": samples.get('suture_exposed_processes{"cve": "%s"}' % CVE),
            "processes_metric": {k: v for k, v in samples.items()
                                 if k.startswith("suture_processes")},
            "daemon_view": state.get("report", {}).get("processes"),
            "bad": json.loads(bad.stdout) if bad.stdout.strip() else bad.stderr,
        }
        if ansible is not None:
            hosts[host]["ansible"] = ansible_status(fleet, host, ansible)
    return {"hosts": hosts, "delay_broad_s": DELAY}


def scrape_prometheus(since: float) -> Dict[str, Any]:
    """What a real Prometheus server scraped from the daemons' /metrics: exposed processes
    per host now, and the most exposed during the run."""
    def query(q: str) -> Dict[str, float]:
        url = f"http://{NET}.1:9090/api/v1/query?" + urllib.parse.urlencode({"query": q})
        run = subprocess.run(["ip", "netns", "exec", "sut-feed", sys.executable, "-c",
                              "import sys, urllib.request; sys.stdout.write(urllib.request."
                              "urlopen(sys.argv[1], timeout=10).read().decode())", url],
                             capture_output=True, text=True, timeout=60)
        doc = json.loads(run.stdout)
        return {r["metric"].get("instance", ""): float(r["value"][1])
                for r in doc["data"]["result"]}

    window = f"{int(since) + 10}s"
    return {"exposed_now": query(f'sum by (instance) (suture_exposed_processes{{cve="{CVE}"}})'),
            "exposed_max": query(f'max_over_time(sum by (instance) '
                                 f'(suture_exposed_processes{{cve="{CVE}"}})[{window}:1s])'),
            "applied_total": query('sum by (instance) '
                                   '(suture_operations_total{op="apply",result="applied"})'),
            "reverted_total": query('sum by (instance) '
                                    '(suture_operations_total{op="revert",result="reverted"})')}


def ansible_status(fleet: Fleet, host: str, venv: Path) -> Dict[str, Any]:
    """`suture.fleet.suture` action status run by ansible-playbook inside the host."""
    d = fleet.work / host / "ansible"
    d.mkdir()
    wrapper = d / "suture-cmd"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} -m suture \"$@\"\n")
    wrapper.chmod(0o755)
    env = {k: v for k, v in fleet.env(host).items() if k.startswith(("SUTURE_", "PYTHONPATH"))}
    book = d / "play.yml"
    out = d / "out.json"
    book.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"suture.fleet.suture": {"action": "status", "executable": str(wrapper),
                                 "environment": env}, "register": "s"},
        {"copy": {"dest": str(out), "content": "{{ s | to_json }}"}}]}]))
    (d / "inventory.ini").write_text(f"localhost ansible_connection=local "
                                     f"ansible_python_interpreter={venv / 'bin' / 'python'}\n")
    run = subprocess.run(["ip", "netns", "exec", f"sut-{host}",
                          str(venv / "bin" / "ansible-playbook"), "-i", str(d / "inventory.ini"),
                          str(book)], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(
                             ROOT / "integrations" / "ansible"), ANSIBLE_HOME=str(d / "home"),
                             ANSIBLE_LOCAL_TEMP=str(d / "tmp")))
    if run.returncode != 0:
        return {"rc": run.returncode, "error": (run.stdout + run.stderr)[-1500:]}
    doc = json.loads(out.read_text())
    return {"rc": 0, "changed": doc["changed"], "exposed": doc["exposed"]}


def markdown(report: Dict[str, Any]) -> str:
    lines = ["| host | ring | health check | requests | failed | processes | fixed after "
             "release, s | state kept | exposed (metric) | marked bad | Ansible: exposed |",
             "| --- | --- | --- | ---: | ---: | ---: | --- | --- | ---: | --- | --- |"]
    for host, h in report["hosts"].items():
        bad = h["bad"]
        marked = ("yes" if isinstance(bad, dict) and bad.get("bad") else "no")
        ans = h.get("ansible")
        ans_s = "-" if ans is None else (str(len(ans["exposed"])) if ans.get("rc") == 0
                                         else f"error {ans.get('rc')}")
        fixed = "; ".join(h["fixed_after_release_s"])
        lines.append(f"| {host} | {h['ring']} | {h['health'] or '-'} | {h['requests']} | "
                     f"{h['failed']} | {h['processes']} | {fixed} | "
                     f"{'yes' if h['state_kept'] else 'no'} | {h['exposed_metric']} | {marked} | "
                     f"{ans_s} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--markdown", type=Path)
    ap.add_argument("--ansible", type=Path, help="a venv with ansible-core (bin/ansible-playbook)")
    ap.add_argument("--seconds-after", type=float, default=20.0)
    ap.add_argument("--prometheus", default=shutil.which("prometheus"),
                    help="a Prometheus server binary to scrape the daemons (default: on PATH)")
    a = ap.parse_args(argv)
    if os.geteuid() != 0 or shutil.which("ip") is None:
        print("needs root and iproute2 (ip netns)", file=sys.stderr)
        return 2
    report = run(a.seconds_after, a.ansible, a.prometheus)
    text = markdown(report)
    if report.get("prometheus"):
        text += "\nPrometheus: " + json.dumps(report["prometheus"], sort_keys=True) + "\n"
    print(text)
    if a.json:
        a.json.write_text(json.dumps(report, indent=1, default=str))
    if a.markdown:
        a.markdown.write_text(text)
    return 0
