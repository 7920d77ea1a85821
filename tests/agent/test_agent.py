"""The agent in real processes: wire round trips, patching through the socket, permissions,
hostile connections, fork, and peer credentials."""

from __future__ import annotations

import json
import os
import platform
import socket
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict

import pytest

from suture.runtime import _agent
from suture.tooling.build import build_trees
from suture.tooling.build.sources import materialize

from agentutil import Targets, call, exchange, result, wait_for

V1 = "def value():\n    return 1\n"
V2 = "def value():\n    return 2\n"

# A target that keeps calling tiny.calc.value() from 4 threads and answers "observe" on a
# control socket named by its pid. "observe" bumps an epoch, waits until every worker has
# finished a call that *started* in the new epoch, and reports the values of those calls:
# so a value observed after apply returned comes from a call that began after it.
WORKERS = r'''
import json, os, socket, sys, threading, time

from tiny import calc

CTL = sys.argv[1]
if "--agent" in sys.argv:
    import suture.agent
    suture.agent.start()

state = {"epoch": 0, "errors": [], "latest": {}, "values": {}}

def worker(i):
    while True:
        e = state["epoch"]
        try:
            v = calc.value()
        except BaseException as exc:
            state["errors"].append(repr(exc))
            continue
        state["values"].setdefault(e, set()).add(v)
        state["latest"][i] = e
        time.sleep(0)

def start_workers():
    state.update(epoch=0, errors=[], latest={}, values={})
    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(4)]
    for t in threads:
        t.start()
    state["threads"] = threads

def observe():
    state["epoch"] += 1
    e = state["epoch"]
    end = time.monotonic() + 20
    while any(state["latest"].get(i, -1) < e for i in range(4)) and time.monotonic() < end:
        time.sleep(0.001)
    return {"pid": os.getpid(), "values": sorted(state["values"].get(e, ())),
            "errors": list(state["errors"]),
            "alive": sum(t.is_alive() for t in state["threads"]),
            "child": state.get("child")}

def serve():
    path = os.path.join(CTL, "ctl-%d.sock" % os.getpid())
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path + ".tmp")
    srv.listen(4)
    os.rename(path + ".tmp", path)
    while True:
        conn, _ = srv.accept()
        with conn:
            line = conn.makefile("r").readline().strip()
            if line == "exit":
                return   # a normal interpreter exit: atexit handlers run
            conn.sendall(json.dumps(observe()).encode() + b"\n")

start_workers()
if "--fork" in sys.argv:
    pid = os.fork()
    if pid == 0:
        start_workers()   # threads do not survive fork
    else:
        state["child"] = pid
serve()
'''


def observe(targets: Targets, pid: int) -> Dict[str, Any]:
    raw = exchange(str(targets.root / "ctl" / f"ctl-{pid}.sock"), b"observe\n")
    return json.loads(raw)  # type: ignore[no-any-return]


def patch_b64(tmp: Path) -> str:
    import base64

    for name, text in (("v1", V1), ("v2", V2)):
        (tmp / name / "tiny").mkdir(parents=True)
        (tmp / name / "tiny" / "__init__.py").write_text("", encoding="utf-8")
        (tmp / name / "tiny" / "calc.py").write_text(text, encoding="utf-8")
    report = build_trees(materialize(str(tmp / "v1")), materialize(str(tmp / "v2")))
    assert report.data is not None
    return base64.b64encode(report.data).decode("ascii")


def start_workers(targets: Targets, *flags: str):
    (targets.root / "ctl").mkdir(exist_ok=True)
    script = targets.script(WORKERS)
    proc = targets.start([sys.executable, str(script), str(targets.root / "ctl"), *flags],
                         targets.env([str(targets.root / "v1")]))
    wait_for(lambda: (targets.root / "ctl" / f"ctl-{proc.pid}.sock").exists(), "control socket",
             proc=proc)
    return proc, targets.wait_agent(proc.pid, proc)


IDLE = r'''
import sys
from suture.runtime import protocol
import suture.agent
if len(sys.argv) > 1:
    protocol.READ_TIMEOUT = float(sys.argv[1])
    protocol.MAX_LINE = int(sys.argv[2])
suture.agent.start()
sys.stdin.read()   # until the test closes stdin
'''


@pytest.mark.slow
def test_hello_answers_with_the_documented_fields(targets: Targets):
    script = targets.script(IDLE)
    proc = targets.start([sys.executable, str(script)], targets.env(), stdin=subprocess.PIPE)
    path = targets.wait_agent(proc.pid, proc)
    reply = call(path, "hello")
    assert reply["v"] == 1 and reply["ok"] is True
    hello = reply["result"]
    assert set(hello) == {"pid", "python", "implementation", "agent", "protocol", "uid", "argv",
                          "executable", "pidns", "start", "free_threaded", "interpreter",
                          "interpreters"}
    assert hello["pid"] == proc.pid
    assert hello["interpreter"] == 0 and hello["interpreters"] == 1   # issue 22
    assert hello["free_threaded"] is False   # no free-threaded build here (SUT-E218)
    # Identity (issue 13): what a client checks against /proc/PID.
    assert hello["pidns"] == os.readlink(f"/proc/{proc.pid}/ns/pid")
    stat = open(f"/proc/{proc.pid}/stat").read()
    assert hello["start"] == stat[stat.rfind(")") + 2:].split()[19]
    assert hello["python"] == platform.python_version()
    assert hello["implementation"] == "cpython"
    assert hello["agent"] == "0.1.0" and hello["protocol"] == [1]
    assert hello["uid"] == os.geteuid() and hello["argv"] == [str(script)]
    assert hello["executable"] == sys.executable
    assert result(path, "list") == {"patches": []}
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0
    assert not os.path.exists(path), "the socket file outlived its process"


@pytest.mark.slow
def test_socket_is_0600_in_a_0700_directory_owned_by_us(targets: Targets):
    script = targets.script(IDLE)
    proc = targets.start([sys.executable, str(script)], targets.env(), stdin=subprocess.PIPE)
    path = targets.wait_agent(proc.pid, proc)
    st = os.lstat(path)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    dst = os.lstat(targets.rundir)
    assert stat.S_IMODE(dst.st_mode) == 0o700 and dst.st_uid == os.geteuid()
    assert sorted(os.listdir(targets.root)) == ["run", "target_1.py"]  # nothing in the cwd


@pytest.mark.slow
def test_apply_status_revert_through_the_socket_while_four_threads_call(targets: Targets,
                                                                        tmp_path: Path):
    patch = patch_b64(tmp_path)
    proc, path = start_workers(targets, "--agent")
    assert observe(targets, proc.pid)["values"] == [1]
    assert result(path, "status")["patches"] == []

    applied = result(path, "apply", patch=patch, wait_quiescent=None)
    assert applied["state"] == "applied" and applied["modules"] == {"tiny.calc": "applied"}
    seen = observe(targets, proc.pid)
    assert seen["values"] == [2] and seen["errors"] == [] and seen["alive"] == 4
    assert result(path, "list") == {"patches": [applied["patch"]]}
    assert [p["id"] for p in result(path, "status")["patches"]] == [applied["patch"]]

    reverted = result(path, "revert", patch_id=applied["patch"][:12])
    assert reverted["state"] == "reverted"
    seen = observe(targets, proc.pid)
    assert seen["values"] == [1] and seen["errors"] == [] and seen["alive"] == 4
    assert result(path, "list") == {"patches": []}
    assert proc.poll() is None


@pytest.mark.slow
def test_status_counts_calls_into_replaced_code_when_asked(targets: Targets, tmp_path: Path):
    patch = patch_b64(tmp_path)
    proc, path = start_workers(targets, "--agent")
    applied = result(path, "apply", patch=patch, wait_quiescent=None)
    assert result(path, "status")["old_calls"] == {"counting": False, "unavailable": None}
    on = result(path, "status", old_calls=True)
    entry = on["patches"][0]
    assert entry["id"] == applied["patch"] and entry["drained_at"] is not None
    if sys.version_info >= (3, 12):
        assert on["old_calls"] == {"counting": True, "unavailable": None}
        # the workers call the patched function all the time: the fixed code, not counted
        assert entry["old_calls"]["calls"] == 0
    else:
        assert on["old_calls"]["counting"] is False and "3.12" in on["old_calls"]["unavailable"]
    assert result(path, "status", old_calls=False)["old_calls"]["counting"] is False
    assert call(path, "status", old_calls="yes")["error"]["code"] == "SUT-E601"
    assert observe(targets, proc.pid)["errors"] == []


@pytest.mark.slow
def test_refusals_come_back_as_error_frames_with_their_code(targets: Targets, tmp_path: Path):
    patch_b64(tmp_path)  # writes the v1 tree the target imports
    proc, path = start_workers(targets, "--agent")
    unknown = call(path, "revert", patch_id="feedface")
    assert unknown["ok"] is False and unknown["error"]["code"] == "SUT-E300"
    bad = call(path, "apply", patch="!!not base64!!")
    assert bad["error"]["code"] == "SUT-E601"
    corrupt = call(path, "apply", patch="aGVsbG8=")  # b"hello"
    assert corrupt["error"]["code"] == "SUT-E100"
    assert observe(targets, proc.pid)["errors"] == []


@pytest.mark.slow
def test_dists_reports_versions_and_whether_a_module_is_loaded(targets: Targets):
    script = targets.script("import sys, pytest, suture.agent\nsuture.agent.start()\n"
                            "sys.stdin.read()\n")
    proc = targets.start([sys.executable, str(script)], targets.env(), stdin=subprocess.PIPE)
    path = targets.wait_agent(proc.pid, proc)
    import pytest as _pytest
    got = result(path, "dists", names=["pytest", "click", "no-such-dist-here"])
    assert got["dists"]["pytest"] == _pytest.__version__
    assert got["loaded"]["pytest"] is True
    assert "no-such-dist-here" not in got["dists"]
    if "click" in got["dists"]:
        assert got["loaded"]["click"] is False
    everything = result(path, "dists")
    assert everything["dists"]["pytest"] == _pytest.__version__
    assert call(path, "dists", names="pytest")["error"]["code"] == "SUT-E601"


@pytest.mark.slow
def test_garbage_oversized_and_half_open_connections_leave_the_agent_serving(targets: Targets):
    script = targets.script(IDLE)
    proc = targets.start([sys.executable, str(script), "0.5", str(64 * 1024)], targets.env(),
                         stdin=subprocess.PIPE)
    path = targets.wait_agent(proc.pid, proc)

    def error_code(payload: bytes) -> str:
        reply = json.loads(exchange(path, payload))
        assert reply["v"] == 1 and reply["ok"] is False
        return reply["error"]["code"]  # type: ignore[no-any-return]

    assert error_code(b"not json at all\n") == "SUT-E601"
    assert error_code(b"\xff\xfe\x00garbage\n") == "SUT-E601"
    assert error_code(b"[1, 2, 3]\n") == "SUT-E601"
    assert error_code(b'{"v": 99, "op": "hello"}\n') == "SUT-E601"
    assert error_code(b'{"v": 1, "op": "rm -rf"}\n') == "SUT-E601"
    assert error_code(b'{"v": 1, "op": "hel') == "SUT-E601"  # half a frame, then EOF
    assert result(path, "hello")["pid"] == proc.pid

    # connect and hang up at once
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(path)
    # connect, send half a frame and go silent: dropped after READ_TIMEOUT (0.5 s here)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(path)
        s.sendall(b'{"v": 1, "op"')
        answer = s.recv(65536)
        assert answer == b"" or json.loads(answer)["error"]["code"] == "SUT-E601"
    # more than the frame limit without a newline
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(path)
        try:
            s.sendall(b"x" * (1024 * 1024))
            answer = s.recv(65536)
        except (BrokenPipeError, ConnectionResetError):
            answer = b""
        assert answer == b"" or json.loads(answer)["error"]["code"] == "SUT-E601"
    assert result(path, "hello")["pid"] == proc.pid
    assert proc.poll() is None
    proc.stdin.close()
    assert proc.wait(timeout=30) == 0
    assert proc.stderr.read() == ""


@pytest.mark.slow
def test_a_forked_child_gets_its_own_socket_and_is_patched_alone(targets: Targets,
                                                                tmp_path: Path):
    patch = patch_b64(tmp_path)
    proc, parent_sock = start_workers(targets, "--agent", "--fork")
    child = observe(targets, proc.pid)["child"]
    targets.extra_pids.append(child)
    wait_for(lambda: (targets.root / "ctl" / f"ctl-{child}.sock").exists(), "child control")
    child_sock = targets.wait_agent(child)
    assert result(child_sock, "hello")["pid"] == child
    assert result(parent_sock, "hello")["pid"] == proc.pid
    assert stat.S_IMODE(os.lstat(child_sock).st_mode) == 0o600

    applied = result(child_sock, "apply", patch=patch)
    assert applied["state"] == "applied"
    assert observe(targets, child)["values"] == [2]
    assert observe(targets, proc.pid)["values"] == [1]
    assert result(parent_sock, "list") == {"patches": []}
    assert result(child_sock, "list") == {"patches": [applied["patch"]]}

    # The child exiting removes its own socket, never the parent's.
    exchange(str(targets.root / "ctl" / f"ctl-{child}.sock"), b"exit\n")
    wait_for(lambda: not os.path.exists(child_sock), "the child's socket to go")
    assert os.path.exists(parent_sock)
    assert result(parent_sock, "hello")["pid"] == proc.pid
    assert observe(targets, proc.pid)["errors"] == []


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="a second uid needs root (os.setuid in a child)")
def test_a_peer_with_another_uid_is_refused_before_anything_is_read(targets: Targets):
    # Loosen the directory and the socket on purpose, as a mistake would: SO_PEERCRED is
    # the check that still holds. The base must be traversable by uid 65534, so not tmp_path.
    base = Path(tempfile.mkdtemp(prefix="suture-peer-"))
    try:
        os.chmod(base, 0o711)
        targets.rundir = base / "run"
        script = targets.script(IDLE)
        os.chmod(script, 0o644)
        proc = targets.start([sys.executable, str(script)], targets.env(),
                             stdin=subprocess.PIPE)
        path = targets.wait_agent(proc.pid, proc)
        os.chmod(targets.rundir, 0o711)
        os.chmod(path, 0o666)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                os.close(r)
                os.setgid(65534)
                os.setuid(65534)
                out = exchange(path, b'{"v": 1, "op": "hello"}\n', timeout=20)
            except BaseException as exc:  # noqa: BLE001
                out = repr(exc).encode()
            os.write(w, out)
            os._exit(0)
        os.close(w)
        chunks = []
        while True:
            chunk = os.read(r, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        os.close(r)
        os.waitpid(pid, 0)
        reply = json.loads(b"".join(chunks))
        assert reply == {"v": 1, "ok": False, "error": {
            "error": "PeerRefused", "code": "SUT-E600", "message": "peer uid 65534 is not allowed",
            "details": {"uid": 65534, "allowed": [0]}}}
        assert result(path, "hello")["pid"] == proc.pid
    finally:
        import shutil
        targets.close()
        shutil.rmtree(base, ignore_errors=True)


START_TWICE = r'''
import json, os, sys, threading
import suture.agent
a = suture.agent.start()
b = suture.agent.start()
threads = [(t.name, t.daemon) for t in threading.enumerate() if t.name != "MainThread"]
exists = os.path.exists(a)
suture.agent.stop()
after = [t.name for t in threading.enumerate()]
gone = not os.path.exists(a)
c = suture.agent.start()
suture.agent.stop()
print(json.dumps({"a": a, "b": b, "c": c, "threads": threads, "exists": exists,
                  "after": after, "gone": gone}))
'''


@pytest.mark.slow
def test_start_is_idempotent_and_stop_removes_the_socket_and_thread(targets: Targets):
    script = targets.script(START_TWICE)
    out = subprocess.run([sys.executable, str(script)], env=targets.env(), capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["a"] == got["b"] == got["c"] == str(targets.rundir / f"{got['a'].split('/')[-1]}")
    assert got["threads"] == [["suture-agent", True]]
    assert got["exists"] and got["gone"] and got["after"] == ["MainThread"]


def test_a_directory_owned_by_another_user_is_refused(tmp_path: Path):
    if os.geteuid() != 0:
        pytest.skip("chown to another uid needs root")
    d = tmp_path / "theirs"
    d.mkdir(mode=0o700)
    os.chown(d, 65534, 65534)
    with pytest.raises(_agent.AgentStartError, match=r"^refusing to use .*theirs as the Suture "
                       r"runtime directory: it is owned by uid 65534, this process runs as uid 0"):
        _agent.start(str(d))
    assert _agent.running() is None and os.listdir(d) == []


def test_a_group_writable_or_symlinked_directory_is_refused(tmp_path: Path):
    loose = tmp_path / "loose"
    loose.mkdir()
    os.chmod(loose, 0o777)
    with pytest.raises(_agent.AgentStartError, match="lets other users write into it"):
        _agent.ensure_dir(str(loose))
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere")
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    with pytest.raises(_agent.AgentStartError, match="not a directory"):
        _agent.ensure_dir(str(link))
    assert _agent.running() is None


@pytest.mark.parametrize("env, uid, expected", [
    ({"SUTURE_RUNTIME_DIR": "/x/y", "XDG_RUNTIME_DIR": "/run/user/1000"}, 1000, "/x/y"),
    ({"XDG_RUNTIME_DIR": "/run/user/0"}, 0, "/run/suture"),
    ({"XDG_RUNTIME_DIR": "/run/user/1000"}, 1000, "/run/user/1000/suture"),
    ({"XDG_RUNTIME_DIR": "relative/dir"}, 1000, "/tmp/suture-1000"),
    ({}, 1000, "/tmp/suture-1000"),
])
def test_socket_directory_follows_the_documented_order(env: Dict[str, str], uid: int,
                                                        expected: str):
    assert _agent._default_dir(env, uid) == expected
