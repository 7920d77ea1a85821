"""Identity: a client talks only to the agent of the process it was asked about (issue 13).

docs/security.md, "Identity of the process": the client resolves the socket inside the
target's own root, refuses a path through anything another user could have created,
checks who listens (SO_PEERCRED) before it sends a byte, and checks the agent's hello
(pid, pid namespace, start time). Each test attacks it with real processes:

* finding 1: root reverts a patch in a PID that has exited; uid 65534 has planted
  /tmp/suture-0/<PID>.sock, a symlink to a root service's agent (root only);
* finding 2: a container (`unshare --pid --mount`) makes its socket an absolute symlink
  to a host agent's socket, and root applies a patch to the container (root only);
* a listener answering for a PID that is not its own, or a hello that names another
  pid, pid namespace or start time;
* finding 11: 20 and 200 concurrent clients of one agent.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest

from suture.runtime import protocol
from suture.runtime.errors import SutureError
from suture.tooling.host import client
from suture.tooling.build import build_trees
from suture.tooling.build.sources import materialize

from agentutil import SRC, Targets, wait_for
from benchmarks.procs import first_child
from signing import signed

PKG = "sutidentitydemo"
NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a second uid, "
                                                          "namespaces)")

SERVICE = f"""
import sys, time
from {PKG} import answer
import suture.agent
suture.agent.start()
print("ready", flush=True)
while True:
    time.sleep(1)
"""


# -- helpers ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def patch(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    """v1 and v2 of a one-function package and the signed patch between them."""
    root = tmp_path_factory.mktemp("identity")
    for tag, body in (("v1", "old"), ("v2", "new")):
        (root / tag / PKG).mkdir(parents=True)
        (root / tag / PKG / "__init__.py").write_text(f"def answer():\n    return {body!r}\n")
    report = build_trees(materialize(str(root / "v1")), materialize(str(root / "v2")))
    assert report.data is not None and report.patch is not None
    data = signed(report.data)
    (root / "fix.suture").write_bytes(data)
    return {"v1": root / "v1", "file": root / "fix.suture", "data": data,
            "id": report.patch.id}


def service(targets: Targets, patch: Dict[str, Any]) -> Tuple[int, str]:
    """A real agent in a root (or our uid's) service importing the patched package."""
    env = targets.env(pythonpath=[str(patch["v1"])])
    proc = targets.start([sys.executable, str(targets.script(SERVICE))], env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line == "ready\n", (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc.pid, targets.wait_agent(proc.pid, proc)


def applied(pid: int, sock: str) -> List[str]:
    """The patches applied in ``pid``, asked on its own socket (bypassing the client)."""
    from agentutil import result
    return list(result(sock, "list")["patches"])


def cli(*args: str) -> subprocess.CompletedProcess:
    """`python -m suture` as an operator runs it: no runtime directory of its own."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("SUTURE_RUNTIME_DIR", client.UNVERIFIED_ENV)}
    env["PYTHONPATH"] = str(SRC)
    return subprocess.run([sys.executable, "-m", "suture", *args], capture_output=True,
                          text=True, env=env, timeout=60)


def as_nobody(script: str) -> None:
    subprocess.run(["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY),
                    "--clear-groups", "/bin/sh", "-c", script], check=True, timeout=10)


def exited_pid() -> int:
    proc = subprocess.Popen(["/bin/true"])
    proc.wait()
    assert not os.path.exists(f"/proc/{proc.pid}")
    return proc.pid


@contextlib.contextmanager
def host_tmp_dir(exclusive: bool) -> Iterator[None]:
    """/tmp/suture-0, where a client looks last, is one directory for the whole host, and
    scripts/test.sh runs two Pythons' suites at once: the test that plants it holds this
    lock exclusively, the tests whose client may look there hold it shared."""
    fd = os.open("/tmp/suture-tests-host-tmp-dir.lock", os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW,
                 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


@pytest.fixture
def caller_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process as a client: the socket is found from the target, not from us."""
    monkeypatch.delenv("SUTURE_RUNTIME_DIR", raising=False)
    monkeypatch.delenv(client.UNVERIFIED_ENV, raising=False)
    with host_tmp_dir(exclusive=False):
        yield


# -- finding 1: an exited PID, a directory another user created -------------------------

@pytest.mark.slow
@needs_root
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs util-linux setpriv")
def test_revert_of_an_exited_pid_never_reaches_a_socket_planted_in_tmp(
        targets: Targets, patch: Dict[str, Any]) -> None:
    planted_dir = "/tmp/suture-0"   # where the client looked for a process of unknown uid
    with host_tmp_dir(exclusive=True):
        plant_and_revert(targets, patch, planted_dir)


def plant_and_revert(targets: Targets, patch: Dict[str, Any], planted_dir: str) -> None:
    if os.path.lexists(planted_dir):
        pytest.skip(f"{planted_dir} exists already: the attacker (and this test) cannot "
                    "create it")
    pid, sock = service(targets, patch)
    assert client.call(pid, "apply", 10, runtime_dir=str(targets.rundir),
                       patch=base64.b64encode(patch["data"]).decode())["state"] == "applied"
    gone = exited_pid()
    try:
        as_nobody(f'mkdir {planted_dir}')
    except subprocess.CalledProcessError:
        pytest.skip(f"{planted_dir} appeared meanwhile (another test?)")
    try:   # from here on the directory is ours (uid 65534's) to remove
        as_nobody(f'ln -s "{sock}" {planted_dir}/{gone}.sock')
        done = cli("revert", patch["id"], "--pid", str(gone), "--json")
    finally:
        shutil.rmtree(planted_dir)
    assert done.returncode != 0, done.stdout + done.stderr
    (row,) = json.loads(done.stdout)["processes"]
    assert (row["pid"], row["outcome"], row["code"]) == (gone, "failed", "SUT-E610"), row
    assert applied(pid, sock) == [patch["id"]]          # the root service keeps its fix


@pytest.mark.slow
@needs_root
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs util-linux setpriv")
def test_a_directory_created_by_another_user_is_refused_for_a_live_process(
        targets: Targets, patch: Dict[str, Any], tmp_path: Path, caller_env: None) -> None:
    # The same rule for a live root process whose SUTURE_RUNTIME_DIR names a directory
    # that uid 65534 made first (a predictable name under a sticky, world-writable dir).
    pid, sock = service(targets, patch)
    shared = Path(tempfile.mkdtemp(prefix="sut-sticky-"))
    try:
        shared.chmod(0o1777)
        trap = shared / "run"
        as_nobody(f'mkdir "{trap}" && ln -s "{sock}" "{trap}/TARGET.sock"')
        victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                                  env=dict(os.environ, SUTURE_RUNTIME_DIR=str(trap)))
        try:
            wait_for(lambda: client._proc_environ(victim.pid), "the victim's environment")
            (trap / "TARGET.sock").rename(trap / f"{victim.pid}.sock")
            with pytest.raises(client.UnsafeSocketPath, match=rf": {trap} is owned by uid "
                               rf"{NOBODY} .*Nothing was sent"):
                client.call(victim.pid, "revert", 5, patch_id=patch["id"])
        finally:
            victim.kill()
            victim.wait()
    finally:
        shutil.rmtree(shared)
    assert applied(pid, sock) == []                      # the service was never reached


# -- finding 2: a container's absolute symlink -----------------------------------------

@pytest.mark.slow
@needs_root
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
@pytest.mark.parametrize("masked", [True, False], ids=["host-path-hidden-inside",
                                                       "host-path-visible-inside"])
def test_a_containers_absolute_symlink_never_reaches_a_host_agent(
        targets: Targets, patch: Dict[str, Any], tmp_path: Path, masked: bool) -> None:
    host_pid, host_sock = service(targets, patch)
    rt = tmp_path / "rt"       # in the container: a tmpfs of its own
    rt.mkdir(mode=0o700)
    # Inside, the symlink resolves in the container's root: with the host's run directory
    # hidden there (a container's usual view) it leads nowhere; visible, it leads to the
    # host agent's socket, which is not the container process's.
    hide = f'mount -t tmpfs tmpfs "{targets.rundir}" && ' if masked else ""
    shell = (f'mount -t tmpfs -o mode=0700 tmpfs "{rt}" && {hide}'
             f'ln -s "{host_sock}" "{rt}/1.sock" && '
             f'exec {sys.executable} -c "import time; time.sleep(30)"')
    proc = subprocess.Popen(["unshare", "--pid", "--fork", "--mount", "--mount-proc",
                             "/bin/sh", "-c", shell],
                            env=dict(os.environ, SUTURE_RUNTIME_DIR=str(rt)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        inner = first_child(proc.pid)
        wait_for(lambda: os.path.lexists(f"/proc/{inner}/root{rt}/1.sock")
                 and "python" in os.readlink(f"/proc/{inner}/exe"), "the container")
        done = cli("apply", str(patch["file"]), "--pid", str(inner), "--json")
        status = cli("status", "--pid", str(inner), "--json")
    finally:
        proc.kill()
        proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()
    assert done.returncode == 1, done.stdout + done.stderr
    (row,) = json.loads(done.stdout)["processes"]
    expected = "SUT-E610" if masked else "SUT-E616"
    assert (row["pid"], row["outcome"], row["code"]) == (inner, "failed", expected), row
    assert status.returncode == 1, status.stdout
    assert [r["state"] for r in json.loads(status.stdout)["processes"]] == ["error"]
    assert applied(host_pid, host_sock) == []           # the host process is untouched
    if not masked:
        assert f"PID {host_pid} " in row["reason"], row["reason"]


# -- a listener that is not the process -------------------------------------------------

FAKE = r"""
import json, os, socket, sys
run, log, mode = sys.argv[1], sys.argv[2], sys.argv[3]
path = os.path.join(run, f"{os.getpid()}.sock")   # the name of its own agent
hello = {"pid": os.getpid(), "python": "3", "implementation": "cpython", "agent": "x",
         "protocol": [1], "uid": os.geteuid(), "argv": [], "executable": sys.executable,
         "pidns": os.readlink("/proc/self/ns/pid"),
         "start": open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19]}
if mode == "pid":
    hello["pid"] += 1
elif mode == "pidns":
    hello["pidns"] = "pid:[1]"
elif mode == "start":
    hello["start"] = "1"
s = socket.socket(socket.AF_UNIX)
s.bind(path)
s.listen(16)
print("ready", flush=True)
while True:
    conn, _ = s.accept()
    with conn:
        req = json.loads(conn.makefile("rb").readline())
        with open(log, "a") as f:
            f.write(req["op"] + "\n")
        result = hello if req["op"] == "hello" else {"patch": "ab", "state": "applied"}
        conn.sendall(json.dumps({"v": 1, "ok": True, "result": result}).encode() + b"\n")
"""


@pytest.mark.slow
def test_a_listener_in_another_process_gets_nothing(tmp_path: Path, caller_env: None) -> None:
    # A process whose socket (in its own directory) is served by someone else: here, us.
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    target = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                              env=dict(os.environ, SUTURE_RUNTIME_DIR=str(run)))
    listener = socket.socket(socket.AF_UNIX)
    received: List[bytes] = []

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(2)
            try:
                received.append(conn.recv(4096))
                conn.sendall(protocol.encode(protocol.ok({"pid": target.pid})))
            except OSError:
                pass   # the client hung up without sending: what it should do

    try:
        wait_for(lambda: client._proc_environ(target.pid), "the target's environment")
        listener.bind(str(run / f"{target.pid}.sock"))
        listener.listen(4)
        listener.settimeout(5)
        t = threading.Thread(target=serve)
        t.start()
        with pytest.raises(client.WrongAgent, match=rf"is not the agent of PID {target.pid}: "
                           rf"PID {os.getpid()} \(uid \d+ .*\) listens on it\. Nothing was "
                           r"sent to it"):
            client.call(target.pid, "status", 5)
        listener.close()
        t.join(10)
    finally:
        target.kill()
        target.wait()
        listener.close()
    assert received in ([], [b""])                       # not a byte of a request


@pytest.mark.slow
@pytest.mark.parametrize("lie", ["pid", "pidns", "start"])
def test_a_hello_naming_another_process_is_refused_before_the_op(
        tmp_path: Path, caller_env: None, lie: str) -> None:
    # The process itself listens (SO_PEERCRED is right) but its hello names another pid,
    # pid namespace or start time: refused after the hello, the apply is never sent.
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    log = tmp_path / "ops.log"
    fake = tmp_path / "fake.py"
    fake.write_text(FAKE)
    proc = subprocess.Popen([sys.executable, str(fake), str(run), str(log), lie],
                            stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, SUTURE_RUNTIME_DIR=str(run)))
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        wait_for(lambda: client._proc_environ(proc.pid), "the fake's environment")
        what = {"pid": "pid", "pidns": "pid namespace", "start": "start time"}[lie]
        with pytest.raises(client.WrongAgent, match=rf"its hello names {what} "):
            client.call(proc.pid, "apply", 5, patch="UEFUQ0g=")
    finally:
        proc.kill()
        proc.wait()
    assert log.read_text() == "hello\n"                 # the apply never left the client


@pytest.mark.slow
def test_the_real_agent_passes_every_check(targets: Targets, patch: Dict[str, Any],
                                           caller_env: None) -> None:
    pid, _ = service(targets, patch)
    info = client.call(pid, "hello", 5)
    assert info["pid"] == pid and info["pidns"] == os.readlink(f"/proc/{pid}/ns/pid")
    assert info["start"] == client._start_ticks(pid)
    assert client.call(pid, "list", 5) == {"patches": []}
    # A directory named through the target's /proc/PID/root (as `suture attach` does) is
    # resolved in the target's root.
    inside = f"/proc/{pid}/root{targets.rundir}"
    assert client.call(pid, "hello", 5, runtime_dir=inside)["pid"] == pid


# -- finding 11: many clients of one agent ------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("clients,op", [(20, "apply"), (200, "apply"), (200, "status")])
def test_concurrent_clients_all_get_an_answer(targets: Targets, patch: Dict[str, Any],
                                              caller_env: None, clients: int,
                                              op: str) -> None:
    pid, _ = service(targets, patch)
    encoded = base64.b64encode(patch["data"]).decode()
    fields = {"patch": encoded, "wait_quiescent": None} if op == "apply" else {}
    start = threading.Barrier(clients)

    def one(_: int) -> str:
        start.wait(10)
        try:
            out = client.call(pid, op, 30, **fields)
        except SutureError as exc:
            return exc.code
        return str(out.get("state", "ok"))

    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        outcomes = list(pool.map(one, range(clients)))
    assert time.monotonic() - began < 20
    if op == "apply":
        assert sorted(set(outcomes)) == ["already applied", "applied"], outcomes
        assert outcomes.count("applied") == 1
    else:
        assert set(outcomes) == {"ok"}, outcomes


# -- the path rules, one at a time --------------------------------------------------------

@pytest.fixture
def sleeper(tmp_path: Path) -> Iterator[Tuple[int, Path]]:
    """A process (our uid) whose SUTURE_RUNTIME_DIR is tmp_path/run/dir."""
    run = tmp_path / "run" / "dir"
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                            env=dict(os.environ, SUTURE_RUNTIME_DIR=str(run)))
    try:
        wait_for(lambda: client._proc_environ(proc.pid), "the sleeper's environment")
        yield proc.pid, run
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_a_directory_others_may_write_is_refused(sleeper: Tuple[int, Path],
                                                 caller_env: None) -> None:
    pid, run = sleeper
    run.mkdir(parents=True, mode=0o700)
    run.parent.chmod(0o777)           # not sticky: anyone could swap `dir` for their own
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(run / f"{pid}.sock"))
        s.listen(1)
        with pytest.raises(client.UnsafeSocketPath, match=rf"{run.parent} has mode 0777: "
                           r"users other than its owner may create entries in it"):
            client.call(pid, "hello", 2)


@pytest.mark.slow
def test_a_symlink_loop_is_refused(sleeper: Tuple[int, Path], caller_env: None) -> None:
    pid, run = sleeper
    run.parent.mkdir(mode=0o700)
    os.symlink("dir", str(run))       # dir -> dir
    with pytest.raises(client.UnsafeSocketPath, match=r"leads through more than 40 "
                                                      r"symlinks"):
        client.call(pid, "hello", 2)


@pytest.mark.slow
def test_dotdot_never_climbs_above_the_targets_root(sleeper: Tuple[int, Path],
                                                    caller_env: None) -> None:
    # A relative symlink with more ".." than there are directories ends at the root ("/"),
    # as openat2's RESOLVE_IN_ROOT does: here that finds no socket, so NoAgent.
    pid, run = sleeper
    run.parent.mkdir(mode=0o700)
    os.symlink("../" * 40 + "nonexistent-suture-dir", str(run))
    with pytest.raises(client.NoAgent):
        client.call(pid, "hello", 2)
