"""Processes a patched process starts later, and Python processes without an agent (issue 16,
situations 3 and 4; runtime/_inherit.py, docs/live-processes.md "Children and processes
without an agent").

Real processes: a multiprocessing spawn pool started under `suture run`, Django's
`runserver` with its autoreloader, and a fork pool whose parent is attached with gdb after
its workers were forked. The patch is a real distribution patch (sutlivedemo 1.0 -> 1.1, a
`.dist-info` on the targets' PYTHONPATH), applied with the real CLI.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

import livecli

SRC = Path(__file__).resolve().parents[2] / "src"
PKG = livecli.PKG


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    base = tmp_path_factory.mktemp("children")
    d10 = livecli.write_dist(base / "1.0", "old", "1.0")
    d11 = livecli.write_dist(base / "1.1", "new", "1.1")
    return {"1.0": d10, "fix": livecli.dist_patch(base, d10, "1.0", d11, "1.1",
                                                   ["CVE-2099-116"])}


@pytest.fixture
def rundir() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="sut-kids-")   # 0700, ours, short enough for AF_UNIX
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


class Procs:
    def __init__(self) -> None:
        self.procs: List[subprocess.Popen] = []

    def start(self, argv: List[str], env: Dict[str, str], cwd: Path) -> subprocess.Popen:
        proc = subprocess.Popen(argv, env=env, cwd=str(cwd), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                proc.communicate(timeout=10)
            except Exception:  # noqa: BLE001
                pass


@pytest.fixture
def procs() -> Iterator[Procs]:
    # Their pool workers load the same release as the live CLI tests' targets, which judge
    # every process of the user: one at a time on the host (livecli.host_lock).
    with livecli.host_lock():
        p = Procs()
        try:
            yield p
        finally:
            p.close()


def env_for(rundir: str, *paths: Path, **extra: str) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "SUTURE_AGENT", "PYTHONSTARTUP", "PYTHONWARNINGS")}
    env.update(PYTHONDONTWRITEBYTECODE="1", SUTURE_RUNTIME_DIR=rundir,
               PYTHONPATH=os.pathsep.join(map(str, paths)), **extra)
    return env


def cli(rundir: str, *args: str) -> subprocess.CompletedProcess:
    return livecli.cli(rundir, *args)


def descendants(pid: int) -> List[int]:
    out, todo = [], [pid]
    while todo:
        kids = children(todo.pop())
        out += kids
        todo += kids
    return sorted(out)


def children(pid: int) -> List[int]:
    """Every live child of ``pid`` (of any of its threads: a pool spawns from a thread)."""
    out = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] not in (b"Z", b"X"):   # not exited
                out.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return sorted(out)


def started_at(pid: int) -> float:
    """When ``pid`` started, in seconds since boot (/proc/PID/stat field 22)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            ticks = int(f.read().rsplit(b")", 1)[1].split()[19])
    except OSError:
        return -1.0   # gone meanwhile
    return ticks / os.sysconf("SC_CLK_TCK")


def uptime() -> float:
    """Now, on the clock of ``started_at``."""
    with open("/proc/uptime") as f:
        return float(f.read().split()[0])


def apply_all(rundir: str, patch: Path) -> List[Dict[str, Any]]:
    """`apply --all --json`: its rows. Exit 0, or 4 for a process without an agent that is
    not one of this test's (the tests of other checkouts may run on this host)."""
    out = cli(rundir, "apply", str(patch), "--all", "--json")
    rows = json.loads(out.stdout)["processes"]
    assert out.returncode == (4 if any(r["outcome"] == "not covered" for r in rows) else 0), \
        out.stdout + out.stderr
    assert all(r["outcome"] in ("applied", "already applied", "pending import", "not covered")
               for r in rows), rows
    return rows  # type: ignore[no-any-return]


def status(rundir: str) -> Dict[str, Any]:
    out = cli(rundir, "status", "--json")
    report = json.loads(out.stdout)
    assert report["exit_code"] == out.returncode, out.stderr
    return report  # type: ignore[no-any-return]


def ended(pid: int) -> bool:
    """Gone, or a zombie its parent has not reaped yet."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[0] == b"Z"
    except OSError:
        return True


def proc_row(report: Dict[str, Any], pid: int) -> Optional[Dict[str, Any]]:
    return next((p for p in report["processes"] if p["pid"] == pid), None)


def wait_for(pred: Any, what: str, timeout: float = 20.0) -> Any:
    end = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.02)


# -- situation 3: a spawn pool respawns its workers after a by-hand apply to the parent ----

POOL = """\
import json, multiprocessing as mp, os, sys

def now():   # /proc/uptime's clock, the test's
    with open("/proc/uptime") as f:
        return float(f.read().split()[0])

STARTED = os.getpid(), now()   # in a worker: after its agent's start-up (sitecustomize)
from {pkg} import answer

def started():
    pid, at = STARTED
    if pid == os.getpid():
        return at
    # 3.14's forkserver imports __main__ once and forks every worker from it: the global
    # is the server's, and the worker's own start is its fork.
    with open("/proc/self/stat", "rb") as f:
        return int(f.read().rsplit(b")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")

def work(_):
    from {pkg} import answer
    return os.getpid(), started(), answer()

if __name__ == "__main__":
    with mp.get_context(sys.argv[1]).Pool(2, maxtasksperchild=1) as pool:
        print("ready", os.getpid(), flush=True)
        for line in sys.stdin:
            print(json.dumps(pool.map(work, range(int(line)), chunksize=1)), flush=True)
"""


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_pool_workers_started_after_a_by_hand_apply_inherit_it(method, dist, rundir, procs,
                                                               tmp_path):
    # spawn: worker -> main. forkserver: worker -> forkserver (started before the apply,
    # so without the patch) -> main; a forked worker runs its task at once, so it waits
    # for its agent's inheritance (runtime/_inherit.py, _wait_after_fork).
    script = tmp_path / "pool.py"
    script.write_text(POOL.format(pkg=PKG))
    proc = procs.start([sys.executable, "-m", "suture", "run", sys.executable, str(script),
                        method],
                       env_for(rundir, dist["1.0"], SRC, SUTURE_AGENT="1"), tmp_path)
    line = proc.stdout.readline()
    assert line.startswith("ready"), (line, proc.stderr.read() if proc.poll() else "")
    parent = proc.pid

    def ask(n: int) -> List[Any]:
        proc.stdin.write(f"{n}\n")
        proc.stdin.flush()
        return json.loads(proc.stdout.readline())

    assert {a for _, _, a in ask(2)} == {"old"}
    wait_for(lambda: os.path.exists(os.path.join(rundir, f"{parent}.sock")), "the agent")
    before_up = uptime()
    out = cli(rundir, "apply", str(dist["fix"]), "--pid", str(parent))
    assert out.returncode == 0, out.stdout + out.stderr
    done_up = uptime()
    alive = set(descendants(parent))   # the pool is idle: no worker starts meanwhile
    results = ask(6)
    # Workers spawned before the apply (or during it) may take the first tasks; every
    # worker started after it runs the fixed code (on main: "old", nothing inherits a
    # by-hand apply). "After" by pid, not by start time: a forked worker's start is known
    # to a clock tick (10 ms) only.
    new = [(pid, a) for pid, _, a in results if pid not in alive]
    assert len(new) >= 4 and {a for _, a in new} == {"new"}, results
    # Status: the live workers started after the apply have the patch, inherited; what
    # was started before and lacks it (a worker, the resource tracker) is exposed, named
    # with why (on main: "nothing exposed", exit 0: a by-hand patch was judged nowhere else).
    def respawned() -> List[int]:   # the pool's next two workers, with their agents
        late = [pid for pid in descendants(parent) if started_at(pid) > done_up
                and os.path.exists(os.path.join(rundir, f"{pid}.sock"))]
        return late if len(late) >= 2 else []

    late = wait_for(respawned, "the pool's next workers")
    report = status(rundir)
    patch_id = livecli.patch_id(dist["fix"])
    # A worker of the last tasks may have ended since (maxtasksperchild=1: it exits after
    # its task); one missing from the report must be gone, and the idle ones are there.
    seen = [pid for pid in late if proc_row(report, pid) is not None]
    assert seen and all(ended(pid) for pid in late if pid not in seen), (late, report)
    for pid in seen:
        row = proc_row(report, pid)
        assert row is not None and row["state"] == "ok", row
        assert patch_id in [a["id"] for a in row["applied"]], row
    early = [p for p in report["processes"] if p["pid"] in descendants(parent)
             and started_at(p["pid"]) < before_up]   # (one started during the apply: either)
    assert early, report   # at least the resource tracker, spawned before the apply
    for p in early:
        assert p["state"] == "exposed", p
        assert f"applied by hand to pid {parent}, not here" in p["exposed"][0]["reason"], p
    assert report["exit_code"] == 2
    # `apply --all` covers them; then nothing is exposed.
    rows = apply_all(rundir, dist["fix"])
    assert not [r for r in rows if r["pid"] in descendants(parent)
                and r["outcome"] == "not covered"], rows
    report = status(rundir)
    assert not [p for p in report["processes"] if p["pid"] in descendants(parent)
                and p["state"] != "ok"], report


# -- situation 3: Django's autoreloader restarts its child after an apply ------------------

SETTINGS = """\
SECRET_KEY = "test"
DEBUG = True
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "urls"
INSTALLED_APPS = []
MIDDLEWARE = []
DATABASES = {}
USE_TZ = True
"""

URLS = """\
import os
from django.http import HttpResponse
from django.urls import path
from %s import answer

def view(request):
    return HttpResponse(f"{answer()} {os.getpid()}")

urlpatterns = [path("", view)]
""" % PKG


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(port: int) -> Optional[List[str]]:
    import urllib.request
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
            return r.read().decode().split()
    except OSError:
        return None


@pytest.mark.skipif(sys.version_info[:2] != (3, 11),
                    reason="one run per CI is enough: the reloader is Django's, and the "
                    "inheritance it relies on runs on every version in the pool tests")
def test_django_runserver_child_restarted_by_the_reloader(dist, rundir, procs, tmp_path):
    pytest.importorskip("django")
    project = tmp_path / "project"
    project.mkdir()
    (project / "settings.py").write_text(SETTINGS)
    urls = project / "urls.py"
    urls.write_text(URLS)
    port = free_port()
    proc = procs.start([sys.executable, "-m", "suture", "run", sys.executable, "-m", "django",
                        "runserver", f"127.0.0.1:{port}", "--settings=settings"],
                       env_for(rundir, dist["1.0"], project, SRC, SUTURE_AGENT="1"), project)
    reloader = proc.pid
    answer, child = wait_for(lambda: get(port), "runserver's first answer", 30)
    assert answer == "old"

    def alive(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                return f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
        except OSError:
            return False

    def restart(old: str) -> List[str]:
        # Touch a watched file until the old child exits: the StatReloader compares mtimes
        # once a second, and a child whose first look came after the write sees no change.
        # Never once it has exited: the next child would restart again.
        touched = [0.0]

        def next_child() -> Optional[List[str]]:
            if alive(int(old)) and time.monotonic() - touched[0] > 2.5:
                urls.write_text(URLS + f"\n# touched {time.monotonic()}\n")
                touched[0] = time.monotonic()
            got = None if alive(int(old)) else get(port)
            return got if got and got[1] != old else None

        return wait_for(next_child, "the reloader's next child", 30)

    # 1. Applied to the child only: the next child does not get it (the reloader does not
    #    have it), and status says so, naming the reason (on main: "nothing exposed").
    out = cli(rundir, "apply", str(dist["fix"]), "--pid", child)
    assert out.returncode == 0, out.stdout + out.stderr
    assert get(port) == ["new", child]
    answer, child2 = restart(child)
    assert answer == "old"
    report = status(rundir)
    assert report["exit_code"] == 2
    row = proc_row(report, int(child2))
    assert row is not None and row["state"] == "exposed", report
    assert (f"applied by hand to pid {child} (exited), not here"
            in row["exposed"][0]["reason"]), row
    # 2. apply --all reaches the reloader (pending import: it never imports the view) and
    #    its child; the child it starts next inherits the patch from the reloader (on main:
    #    "old").
    rows = apply_all(rundir, dist["fix"])
    assert {r["pid"]: r["outcome"] for r in rows if r["pid"] in (reloader, int(child2))} \
        == {reloader: "pending import", int(child2): "applied"}, rows
    assert get(port) == ["new", child2]
    answer, child3 = restart(child2)
    assert answer == "new", "the restarted child runs the vulnerable code"
    report = status(rundir)   # (other processes of this host may be exposed: not ours)
    ours = [p for p in report["processes"] if p["pid"] == reloader or p["pid"] in
            children(reloader)]
    assert {p["pid"] for p in ours} == {reloader, int(child3)}, ours
    assert all(p["state"] == "ok" for p in ours), ours
    assert livecli.patch_id(dist["fix"]) in [a["id"] for a in
                                             proc_row(report, int(child3))["applied"]]


# -- situation 4: apply --all and status name the workers that have no agent --------------

FORK_POOL = """\
import json, multiprocessing as mp, os, sys
from %s import answer

def work(_):
    return os.getpid(), answer()

if __name__ == "__main__":
    with mp.get_context("fork").Pool(2) as pool:
        print("ready", os.getpid(), flush=True)
        for line in sys.stdin:
            print(json.dumps(pool.map(work, range(int(line)), chunksize=1)), flush=True)
""" % PKG


@pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("gdb") is None,
                    reason="attach before Python 3.14 needs Linux and gdb")
def test_fork_pool_attached_after_its_workers_were_forked(dist, rundir, procs, tmp_path):
    script = tmp_path / "forkpool.py"
    script.write_text(FORK_POOL)
    # A foreign environment: Suture is not importable in the target, no agent at start.
    proc = procs.start([sys.executable, str(script)], env_for(rundir, dist["1.0"]), tmp_path)
    assert proc.stdout.readline().startswith("ready")
    workers = children(proc.pid)        # forked by Pool() before "ready"
    assert len(workers) == 2, workers
    out = cli(rundir, "attach", str(proc.pid), "--json")
    if out.returncode != 0:
        pytest.skip(f"gdb cannot attach here: {out.stdout[-400:]} {out.stderr[-400:]}")
    # apply --all: the parent is patched; its workers, forked before the attach, have no
    # agent and run the baseline: one "not covered" row each, exit 4 (on main: "1 applied
    # (of 1 process)", exit 0).
    out = cli(rundir, "apply", str(dist["fix"]), "--all", "--json")
    assert out.returncode == 4, out.stdout + out.stderr
    rows = {r["pid"]: r for r in json.loads(out.stdout)["processes"]}
    assert rows[proc.pid]["outcome"] == "applied", rows
    assert {p for p, r in rows.items() if r["outcome"] == "not covered"
            and p in children(proc.pid)} == set(workers), rows
    for pid in workers:
        assert rows[pid]["code"] == "SUT-E618" and "no agent" in rows[pid]["reason"], rows[pid]
    text = cli(rundir, "apply", str(dist["fix"]), "--all")
    assert text.returncode == 4 and "not covered" in text.stdout, text.stdout
    # They do run the old code, which is what the rows say.
    proc.stdin.write("2\n")
    proc.stdin.flush()
    assert {a for _, a in json.loads(proc.stdout.readline())} == {"old"}
    # status: exit 2, each worker exposed with why (on main: "not inspected", exit 0).
    report = status(rundir)
    assert report["exit_code"] == 2, report
    for pid in workers:
        row = proc_row(report, pid)
        assert row is not None and row["state"] == "exposed", row
        assert "no agent" in row["exposed"][0]["reason"], row
    assert proc_row(report, proc.pid)["state"] == "ok"


# -- the inherit op (docs/protocol.md) ----------------------------------------------------

def test_inherit_op_hands_out_what_is_applied_by_hand_now(dist, rundir, procs, tmp_path):
    import base64

    from agentutil import result

    proc = procs.start([sys.executable, "-c", "import sys, time, suture.agent; "
                        f"from {PKG} import answer; suture.agent.start(); print('ready', "
                        "flush=True); time.sleep(60)"],
                       env_for(rundir, dist["1.0"], SRC), tmp_path)
    assert proc.stdout.readline().startswith("ready")
    sock = os.path.join(rundir, f"{proc.pid}.sock")
    assert result(sock, "inherit") == {"pid": proc.pid, "patches": []}
    data = dist["fix"].read_bytes()
    applied = result(sock, "apply", patch=base64.b64encode(data).decode("ascii"))
    assert applied["state"] == "applied" and applied["target"]["from_version"] == "1.0"
    handed = result(sock, "inherit")["patches"]
    assert [(p["id"], p["how"], p["restricted"]) for p in handed] == \
        [(livecli.patch_id(dist["fix"]), "hand", False)]
    assert base64.b64decode(handed[0]["patch"]) == data
    result(sock, "revert", patch_id=applied["patch"])
    assert result(sock, "inherit")["patches"] == []    # reverted: no longer handed out


# -- an ancestor whose agent never answers: bounded, recorded ------------------------------

HUNG_PARENT = """\
import os, socket, subprocess, sys, time
# Listens where its agent would, accepts, and never answers.
s = socket.socket(socket.AF_UNIX)
s.bind(os.path.join(os.environ["SUTURE_RUNTIME_DIR"], f"{os.getpid()}.sock"))
s.listen(8)
child = subprocess.Popen([sys.executable, "-c", "print('child ran', flush=True)"],
                         env=dict(os.environ, SUTURE_AGENT="1", PYTHONPATH=sys.argv[1]))
t0 = time.monotonic()
conn, _ = s.accept()
child.wait()
print(round(time.monotonic() - t0, 2), flush=True)
"""


def test_an_ancestor_that_never_answers_delays_a_child_boundedly(rundir, procs, tmp_path):
    from suture.runtime import store
    from suture.runtime._bootstrap import prepare

    script = tmp_path / "hung.py"
    script.write_text(HUNG_PARENT)
    env = env_for(rundir, SUTURE_INHERIT_TIMEOUT="0.5")
    bootstrap = prepare(os.path.join(rundir, "bootstrap"))
    proc = procs.start([sys.executable, str(script), bootstrap], env, tmp_path)
    out, err = proc.communicate(timeout=30)
    lines = out.split()
    assert lines[:2] == ["child", "ran"], (out, err)
    assert float(lines[2]) < 3.0, out          # bounded by the timeout, not hung
    assert "were not inherited" in err and "did not answer within 0.5 s" in err, err
    rows = [r for r in store.audit_log() if r["op"] == "inherit"
            and r["result"] == "failed SUT-E617" and f"from pid {proc.pid}" in r["detail"]]
    assert rows, store.audit_log()[-5:]
