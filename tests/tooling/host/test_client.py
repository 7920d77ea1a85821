"""suture.tooling.host.client / fleet.fanout and the ps/apply/revert/status commands, against a stand-in agent.

The stand-in (``FakeAgent``) is a real Unix-socket server on a thread of the test process,
speaking docs/protocol.md with scripted answers: it does not depend on the real agent.
CLI tests run ``python -m suture`` as a subprocess that reaches it through a temporary
SUTURE_RUNTIME_DIR; the PIDs served are the test process and real sleeper processes.
"""

from __future__ import annotations

import itertools
import json
import os
import pickle
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

from suture.runtime import protocol
from suture.runtime.errors import BaselineMismatch, UnknownPatch
from suture.runtime.patchfile import Patch
from suture.tooling.host import client
from suture.tooling.fleet import fanout
from suture.tooling.build import build_trees
from suture.tooling.build.sources import materialize

from signing import signed

SRC = Path(__file__).resolve().parents[3] / "src"
ME = os.getpid()

Handler = Callable[[Dict[str, Any]], Any]   # request -> frame dict, or raw bytes, or None


def ok(result: Any) -> Dict[str, Any]:
    return protocol.ok(result)


def err(name: str, code: str, message: str, **details: Any) -> Dict[str, Any]:
    return {"v": 1, "ok": False,
            "error": {"error": name, "code": code, "message": message, "details": details}}


DEFAULTS: Dict[str, Handler] = {
    "hello": lambda r: ok({"pid": 0, "python": "3.11.7", "implementation": "cpython",
                           "agent": "0.1.0", "protocol": [1], "uid": os.getuid(),
                           "argv": [], "executable": sys.executable}),
    "status": lambda r: ok({"patches": [], "active": []}),
    "list": lambda r: ok({"patches": []}),
    "dists": lambda r: ok({"dists": {}, "loaded": {}}),
}


class FakeAgent:
    """One listening socket per PID in ``runtime_dir``; every connection on its own thread."""

    def __init__(self, runtime_dir: str) -> None:
        self.runtime_dir = runtime_dir
        self.requests: List[Dict[str, Any]] = []
        self.raw: List[bytes] = []
        self.handlers: Dict[int, Dict[str, Handler]] = {}
        self._socks: List[socket.socket] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def serve(self, pid: int, **handlers: Handler) -> str:
        path = os.path.join(self.runtime_dir, f"{pid}.sock")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(path)
        s.listen(64)
        s.settimeout(0.1)
        self.handlers[pid] = dict(DEFAULTS, **handlers)
        self._socks.append(s)
        threading.Thread(target=self._accept, args=(pid, s), daemon=True).start()
        return path

    def _accept(self, pid: int, s: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = s.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(pid, conn), daemon=True).start()

    def _handle(self, pid: int, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            try:
                req = protocol.read_frame(conn)
            except (protocol.ProtocolError, OSError):
                return
            with self._lock:
                self.requests.append(dict(req, _pid=pid))
            handler = self.handlers[pid].get(req.get("op"))
            out = handler(req) if handler else err("ProtocolError", "SUT-E601", "unknown op")
            if out is None:
                return
            conn.sendall(out if isinstance(out, bytes) else protocol.encode(out))

    def ops(self, pid: Optional[int] = None) -> List[str]:
        return [r["op"] for r in self.requests if pid is None or r["_pid"] == pid]

    def close(self) -> None:
        self._stop.set()
        for s in self._socks:
            s.close()


@pytest.fixture
def rundir(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    # Short path under /tmp: AF_UNIX paths are limited to 107 bytes.
    d = tempfile.mkdtemp(prefix="sut-")
    monkeypatch.setenv("SUTURE_RUNTIME_DIR", d)
    # The stand-in answers for PIDs that are not its own: the client's identity checks
    # (tests/security/test_identity.py) would refuse it; its path checks still apply.
    monkeypatch.setenv(client.UNVERIFIED_ENV, "1")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def agent(rundir: str) -> Iterator[FakeAgent]:
    fake = FakeAgent(rundir)
    try:
        yield fake
    finally:
        fake.close()


@pytest.fixture
def sleepers() -> Iterator[Callable[[int], List[int]]]:
    procs: List[subprocess.Popen] = []

    def start(n: int) -> List[int]:
        for _ in range(n):
            procs.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"]))
        return [p.pid for p in procs[-n:]]

    try:
        yield start
    finally:
        for p in procs:
            p.kill()
            p.wait()


def cli(*args: str, rundir: str, cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(SRC), SUTURE_RUNTIME_DIR=rundir)
    return subprocess.run([sys.executable, "-m", "suture", *args], capture_output=True,
                          text=True, env=env, cwd=str(cwd) if cwd else None, timeout=120)


@pytest.fixture(scope="module")
def patch_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("patch")
    for version, body in (("v1", "return 'old'"), ("v2", "return 'new'")):
        pkg = root / version / "sutclientdemo"
        pkg.mkdir(parents=True)
        (pkg / "__init__.py").write_text(f"def answer():\n    {body}\n")
    report = build_trees(materialize(str(root / "v1")), materialize(str(root / "v2")),
                         cves=["CVE-2099-7"])
    out = root / "fix.suture"
    out.write_bytes(signed(report.data))
    return out


def applied(state: str = "applied") -> Handler:
    return lambda r: ok({"patch": "ab" * 32, "state": state, "modules": {"sutclientdemo": state},
                         "pause_ns": 120000, "ops": 1, "caveats": [], "notes": []})


# -- socket location --------------------------------------------------------------------

def test_socket_path_uses_suture_runtime_dir_first(rundir: str) -> None:
    assert client.socket_path(4121) == os.path.join(rundir, "4121.sock")
    assert client.socket_path(4121, "/elsewhere") == "/elsewhere/4121.sock"


def test_socket_candidates_follow_the_targets_uid_and_environment(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("SUTURE_RUNTIME_DIR", raising=False)
    env = {k: v for k, v in os.environ.items() if k not in ("SUTURE_RUNTIME_DIR",)}
    env.update(XDG_RUNTIME_DIR="/run/user/777", SUTURE_RUNTIME_DIR=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env)
    try:
        # Right after exec the kernel briefly shows an empty environ: wait for it.
        deadline = time.monotonic() + 10
        while not client._proc_environ(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.005)
        uid = os.getuid()
        got = client.socket_candidates(proc.pid)
        expected = [str(tmp_path)] + (["/run/suture"] if uid == 0 else []) + [
            "/run/user/777/suture", f"/run/user/{uid}/suture", f"/tmp/suture-{uid}"]
        assert got == [os.path.join(d, f"{proc.pid}.sock") for d in expected]
        # nothing exists: the first candidate, where the agent would be
        assert client.socket_path(proc.pid) == os.path.join(str(tmp_path), f"{proc.pid}.sock")
    finally:
        proc.kill()
        proc.wait()


# -- one call: framing and error mapping ----------------------------------------------

def test_call_sends_one_versioned_frame_and_returns_the_result(agent: FakeAgent) -> None:
    agent.serve(ME, hello=lambda r: ok({"pid": ME, "python": "3.11.7", "echo": r}))
    result = client.call(ME, "hello", 2.0)
    assert result["pid"] == ME
    assert result["echo"] == {"v": 1, "op": "hello"}


def test_call_passes_fields_of_the_request(agent: FakeAgent) -> None:
    agent.serve(ME, revert=lambda r: ok({"patch": r["patch_id"], "state": "reverted"}))
    assert client.call(ME, "revert", 2.0, patch_id="7f3c")["patch"] == "7f3c"


def test_error_frame_with_sut_e201_becomes_baseline_mismatch(agent: FakeAgent) -> None:
    msg = "Refused patch 7f3c for PID 1: `shop.billing` does not match the baseline."
    agent.serve(ME, apply=lambda r: err("BaselineMismatch", "SUT-E201", msg, module="shop.billing"))
    with pytest.raises(BaselineMismatch, match=r"^Refused patch 7f3c for PID 1: `shop\.billing` "
                       r"does not match the baseline\. \[SUT-E201\]$") as info:
        client.call(ME, "apply", 2.0, patch="", wait_quiescent=None)
    assert info.value.details == {"module": "shop.billing", "pid": ME}


def test_unknown_error_code_becomes_agent_error_keeping_the_code(agent: FakeAgent) -> None:
    agent.serve(ME, status=lambda r: err("FutureThing", "SUT-E777", "something new"))
    with pytest.raises(client.AgentError, match=r"^something new \[SUT-E777\]$") as info:
        client.call(ME, "status", 2.0)
    again = pickle.loads(pickle.dumps(info.value))
    assert (again.code, again.message, again.details["remote_error"]) == (
        "SUT-E777", "something new", "FutureThing")


def test_response_that_is_not_json_is_a_protocol_error(agent: FakeAgent) -> None:
    agent.serve(ME, hello=lambda r: b"garbage\n")
    with pytest.raises(protocol.ProtocolError,
                       match=rf"^The agent of PID {ME} sent no valid response to `hello`: "
                             r"frame is not JSON"):
        client.call(ME, "hello", 2.0)


def test_response_of_another_protocol_version_is_refused(agent: FakeAgent) -> None:
    agent.serve(ME, hello=lambda r: {"v": 2, "ok": True, "result": {}})
    with pytest.raises(protocol.ProtocolError, match=rf"^The agent of PID {ME} answered with "
                       r"protocol version 2; this client speaks 1\."):
        client.call(ME, "hello", 2.0)


def test_silent_agent_times_out_with_a_message_saying_to_check_status(agent: FakeAgent) -> None:
    release = threading.Event()
    path = agent.serve(ME, apply=lambda r: release.wait(5) and None)
    try:
        with pytest.raises(client.AgentTimeout, match=rf"^The agent of PID {ME} did not answer "
                           rf"`apply` within 0\.2 s \(socket {re.escape(path)}\)\. The request "
                           rf"may still be running in the process: check with `suture status "
                           rf"--pid {ME}` before retrying\. \[SUT-E612\]$"):
            client.call(ME, "apply", 0.2, patch="")
    finally:
        release.set()


def test_missing_socket_says_the_process_has_no_agent(rundir: str) -> None:
    path = os.path.join(rundir, f"{ME}.sock")
    with pytest.raises(client.NoAgent, match=rf"^PID {ME} has no Suture agent \(no socket at "
                       rf"{re.escape(path)}\)\. Start it under `suture run`, call "
                       r"suture\.agent\.start\(\), or `suture attach PID`\. \[SUT-E610\]$"):
        client.call(ME, "hello", 1.0)


def test_missing_process_says_so(rundir: str) -> None:
    pid = 2 ** 22 + 12345   # above pid_max: never a live process
    with pytest.raises(client.NoAgent, match=rf"^No process has PID {pid} \(nothing at "
                       rf"/proc/{pid}\)\. Check the PID with `suture ps`\. \[SUT-E610\]$"):
        client.call(pid, "hello", 1.0)


def test_stale_socket_is_reported_as_unreachable_and_left_in_place(rundir: str) -> None:
    path = os.path.join(rundir, f"{ME}.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()   # the file stays, nobody listens: what a crashed agent leaves
    with pytest.raises(client.AgentUnreachable, match=rf"^Cannot reach the agent of PID {ME} at "
                       rf"{re.escape(path)}: connection refused\. The socket is stale"):
        client.call(ME, "hello", 1.0)
    assert os.path.exists(path)


def _call_as_other_user(pid: int) -> str:
    """The message of ``client.call`` when made by uid 65534 (root) or as ourselves."""
    if os.geteuid() != 0:
        try:
            client.call(pid, "hello", 1.0)
        except client.AgentPermissionDenied as exc:
            return str(exc)
        return "no error"
    read, write = os.pipe()
    with warnings.catch_warnings():
        # Threads of earlier stand-in agents may linger; the child only makes one
        # socket call and _exits, taking no lock those threads could hold.
        warnings.simplefilter("ignore", DeprecationWarning)
        child = os.fork()
    if child == 0:   # pragma: no cover - runs in the child
        text = "no error"
        try:
            os.setegid(65534)
            os.seteuid(65534)
            client.call(pid, "hello", 1.0)
        except client.AgentPermissionDenied as exc:
            text = str(exc)
        except BaseException as exc:
            text = f"{type(exc).__name__}: {exc}"
        os.write(write, text.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        text = f.read().decode()
    os.waitpid(child, 0)
    return text


def _listening(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(1)
    return s


def test_permission_denied_on_the_socket_names_owner_mode_and_user(rundir: str) -> None:
    os.chmod(rundir, 0o755)
    path = os.path.join(rundir, f"{ME}.sock")
    s = _listening(path)
    try:
        os.chmod(path, 0o600 if os.geteuid() == 0 else 0o000)
        text = _call_as_other_user(ME)
    finally:
        s.close()
    me, owner = ("65534", os.getuid()) if os.geteuid() == 0 else (str(os.getuid()), os.getuid())
    owner_name = client._user(owner)
    mode = "0600" if os.geteuid() == 0 else "0000"
    assert re.match(
        rf"^Cannot reach the agent of PID {ME}: {re.escape(path)} is owned by uid {owner} "
        rf"\({owner_name}\), mode {mode}; you are uid {me} \([^)]*\)\. Retry as that user "
        rf"\(`sudo -u {owner_name} suture hello …`\) or as root\. Nothing was sent to the "
        r"process\. \[SUT-E600\]$", text), text


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_permission_denied_on_the_directory_names_the_directory(rundir: str) -> None:
    os.chmod(rundir, 0o700)
    s = _listening(os.path.join(rundir, f"{ME}.sock"))
    try:
        text = _call_as_other_user(ME)
    finally:
        s.close()
    assert re.match(rf"^Cannot reach the agent of PID {ME}: {re.escape(rundir)} is owned by "
                    r"uid 0 \(root\), mode 0700; you are uid 65534 ", text), text


# -- fleet: the fan-out -------------------------------------------------------------------

def test_apply_all_skips_processes_without_the_distribution(agent: FakeAgent) -> None:
    # The agent says which of the patch's modules it has imported (none here: skipped)...
    agent.serve(1000001, dists=lambda r: ok({"dists": {}, "modules": {
        m: False for m in r.get("modules", [])}}), apply=applied())
    agent.serve(1000002, dists=lambda r: ok({"dists": {"Shop_Lib": "2.4.0"},
                                             "loaded": {"Shop_Lib": True}}),
                apply=applied())
    # ... an agent too old to say is sent the patch (its agent decides), and so is one
    # that runs the modules with no metadata (a plain directory on sys.path)
    agent.serve(1000003, dists=lambda r: ok({"dists": {}}), apply=applied())
    agent.serve(1000004, dists=lambda r: ok({"dists": {}, "modules": {"shop": True}}),
                apply=applied())
    patch = Patch(target={"kind": "distribution", "name": "shop-lib", "from_version": "2.4.0",
                          "to_version": "2.4.1"}, modules=(), id="ab" * 32)
    rows = fanout.apply(b"PATCH", patch, [1000001, 1000002, 1000003, 1000004],
                        select_all=True)
    assert [(r.pid, r.outcome, r.reason) for r in rows] == [
        (1000001, "skipped", "not affected: shop-lib is not installed here"),
        (1000002, "applied", "sutclientdemo: applied; pause 0.12 ms"),
        (1000003, "applied", "sutclientdemo: applied; pause 0.12 ms"),
        (1000004, "applied", "sutclientdemo: applied; pause 0.12 ms")]
    assert agent.ops(1000001) == ["dists"]
    sent = [r for r in agent.requests if r["op"] == "apply"][0]
    assert sent["patch"] == "UEFUQ0g=" and sent["wait_quiescent"] is None
    assert fanout.exit_code(rows) == 0


def test_fleet_reports_progress_when_over_ten_processes(agent: FakeAgent) -> None:
    pids = list(range(1000100, 1000111))
    for pid in pids:
        agent.serve(pid, apply=applied())
    seen: List[int] = []
    patch = Patch(target={"kind": "tree", "name": "x"}, modules=(), id="cd" * 32)
    rows = fanout.apply(b"P", patch, pids, progress=lambda done, total, row: seen.append(done))
    assert [r.pid for r in rows] == pids and {r.outcome for r in rows} == {"applied"}
    assert sorted(seen) == list(range(1, 12))


def test_exit_code_failed_over_refused_over_ok() -> None:
    rows = [fanout.Row(1, "applied"), fanout.Row(2, "refused")]
    assert fanout.exit_code(rows) == 2
    assert fanout.exit_code(rows + [fanout.Row(3, "failed")]) == 1
    assert fanout.exit_code([fanout.Row(1, "pending import"), fanout.Row(2, "skipped")]) == 0


def test_revert_unknown_patch_is_refused_for_a_pid_and_skipped_with_all(agent: FakeAgent) -> None:
    agent.serve(1000201, revert=lambda r: err("UnknownPatch", "SUT-E300", "no patch abc"))
    [row] = fanout.revert("abc", [1000201])
    assert (row.outcome, row.code, row.reason) == ("refused", "SUT-E300", "no patch abc")
    [row] = fanout.revert("abc", [1000201], select_all=True)
    # --all: not applied there (its agent's list), so not sent, and no refusal audited there
    assert (row.outcome, row.reason) == ("skipped", "patch abc is not applied here")
    assert agent.ops(1000201).count("revert") == 1   # the --pid one only
    agent.handlers[1000201]["list"] = lambda r: ok({"patches": ["abc" + "0" * 61]})
    [row] = fanout.revert("abc", [1000201], select_all=True)   # listed: sent; gone meanwhile
    assert (row.outcome, row.code) == ("skipped", UnknownPatch.code)
    assert agent.ops(1000201).count("revert") == 2


# -- the commands, as a user runs them ----------------------------------------------------

@pytest.mark.slow
def test_cli_apply_json_gives_one_row_per_process_and_exit_2_on_a_refusal(
        agent: FakeAgent, rundir: str, patch_file: Path) -> None:
    agent.serve(1000301, apply=applied())
    agent.serve(1000302, apply=lambda r: err("BaselineMismatch", "SUT-E201", "not the baseline"))
    agent.serve(1000303, apply=applied("already fixed"))
    out = cli("apply", str(patch_file), "--pid", "1000301", "--pid", "1000302",
              "--pid", "1000303", "--json", rundir=rundir)
    assert out.returncode == 2, out.stderr
    doc = json.loads(out.stdout)
    assert doc["target"]["kind"] == "tree"
    assert [(p["pid"], p["outcome"], p["code"]) for p in doc["processes"]] == [
        (1000301, "applied", None), (1000302, "refused", "SUT-E201"),
        (1000303, "already fixed", None)]
    assert doc["processes"][1]["reason"] == "not the baseline"
    assert doc["processes"][1]["error"]["error"] == "BaselineMismatch"
    sent = [r for r in agent.requests if r["op"] == "apply"][0]
    assert sent["v"] == 1 and sent["wait_quiescent"] is None
    import base64
    assert base64.b64decode(sent["patch"]) == patch_file.read_bytes()


@pytest.mark.slow
def test_cli_apply_text_and_exit_1_when_a_process_cannot_be_reached(
        agent: FakeAgent, rundir: str, patch_file: Path) -> None:
    agent.serve(1000401, apply=applied("pending import"))
    missing = 2 ** 22 + 999
    out = cli("apply", str(patch_file), "--pid", "1000401", "--pid", str(missing),
              "--wait-quiescent", "2.5", rundir=rundir)
    assert out.returncode == 1, out.stderr
    lines = out.stdout.splitlines()
    assert re.match(r"^patch [0-9a-f]{12} \(sutclientdemo\)$", lines[0])
    assert re.match(r"^ *1000401  pending import +sutclientdemo: pending import; pause 0\.12 ms; "
                    r"sutclientdemo will be checked against the baseline and verified when "
                    r"imported$", lines[2])
    assert re.match(rf"^ *{missing}  failed SUT-E610 +No process has PID {missing}", lines[3])
    assert lines[-1] == "1 failed, 1 pending import (of 2 processes)"
    assert [r["wait_quiescent"] for r in agent.requests if r["op"] == "apply"] == [2.5]


@pytest.mark.slow
def test_cli_apply_refuses_a_bad_file_before_contacting_any_process(
        agent: FakeAgent, rundir: str, tmp_path: Path) -> None:
    agent.serve(ME, apply=applied())
    bad = tmp_path / "bad.suture"
    bad.write_bytes(b"not a patch")
    out = cli("apply", str(bad), "--pid", str(ME), "--json", rundir=rundir)
    assert out.returncode == 1
    assert json.loads(out.stdout)["error"]["code"] == "SUT-E100"
    assert agent.requests == []


@pytest.mark.slow
def test_cli_apply_needs_exactly_one_of_pid_and_all(rundir: str, patch_file: Path,
                                                    tmp_path: Path) -> None:
    # A usage error (64), said before the file's signature is looked at (a newcomer got
    # "not signed" for an unsigned patch given without a target).
    message = ("Give the target processes with --pid PID (repeatable) or --all, not both "
               "and not neither. Nothing was changed.")
    unsigned = tmp_path / "unsigned.suture"
    unsigned.write_bytes(b"not even a patch")
    for args in ([str(patch_file)], [str(unsigned)], [str(unsigned), "--allow-unsigned"],
                 [str(patch_file), "--all", "--pid", "1"]):
        out = cli("apply", *args, rundir=rundir)
        assert out.returncode == 64, out.stderr
        assert message in " ".join(out.stderr.split()), out.stderr
    out = cli("revert", "abcd", rundir=rundir)
    assert out.returncode == 64 and "not both and not neither" in out.stderr


@pytest.mark.slow
def test_cli_apply_all_reaches_every_python_process_with_an_agent(
        agent: FakeAgent, rundir: str, patch_file: Path,
        sleepers: Callable[[int], List[int]]) -> None:
    with_agent, without = sleepers(2)
    agent.serve(with_agent, apply=applied())
    out = cli("apply", str(patch_file), "--all", "--json", rundir=rundir)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)["processes"]
    assert [(r["pid"], r["outcome"]) for r in rows] == [(with_agent, "applied")]
    assert without not in agent.ops()


@pytest.mark.slow
def test_cli_revert_reports_reverted_and_refusals(agent: FakeAgent, rundir: str) -> None:
    agent.serve(1000501, revert=lambda r: ok({"patch": "ab" * 32, "state": "reverted",
                                              "modules": {"m": "reverted"}, "pause_ns": 0}))
    out = cli("revert", "abab", "--pid", "1000501", "--json", rundir=rundir)
    assert out.returncode == 0, out.stderr
    [row] = json.loads(out.stdout)["processes"]
    assert (row["outcome"], row["reason"]) == ("reverted", "m: reverted")
    agent.handlers[1000501]["revert"] = lambda r: err(
        "RevertOrderError", "SUT-E301", "revert newer patch cd01 first")
    out = cli("revert", "abab", "--pid", "1000501", rundir=rundir)
    assert out.returncode == 2
    assert re.search(r"^ *1000501  refused SUT-E301 +revert newer patch cd01 first$",
                     out.stdout, re.M), out.stdout
    assert [r["patch_id"] for r in agent.requests] == ["abab", "abab"]


STATUS = {"patches": [{"id": "ab" * 32, "target": {"kind": "tree", "name": "shop"},
                       "describe": "shop", "cves": ["CVE-2099-7"],
                       "modules": {"shop.billing": "applied", "shop.late": "pending import"}}],
          "active": [{"qualname": "shop.billing.charge", "where": "thread", "thread": "worker",
                      "patch": "ab" * 32}]}


@pytest.fixture
def empty_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "state"
    monkeypatch.setenv("SUTURE_STATE_DIR", str(d))
    return d


@pytest.mark.slow
def test_cli_status_pending_import_is_protected_and_refused_at_import_is_exposed(
        agent: FakeAgent, rundir: str, empty_store: Path) -> None:
    drained = dict(STATUS, active=[])
    agent.serve(1000601, status=lambda r: ok(drained))
    out = cli("status", "--pid", "1000601", rundir=rundir)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "patch abababababab  shop  CVE-2099-7  (applied by hand, not installed)",
        "  1000601  pending import  shop.late not imported yet; patched when imported",
        "",
        "nothing exposed (1 process asked, 0 could not be, 0 not inspected)",
    ]
    # a frame that started before the patch still runs the old code: not protected yet
    # (issue 16: draining counts as exposed, and names where)
    agent.handlers[1000601]["status"] = lambda r: ok(STATUS)
    out = cli("status", "--pid", "1000601", rundir=rundir)
    assert out.returncode == 2, out.stderr
    assert re.search(r"^  1000601  draining +fixed for new calls; 1 frame\(s\) still run the old "
                     r"code.*shop\.billing\.charge.*worker", out.stdout, re.M), out.stdout
    assert f"  1000601  {'shop.billing.charge':<40} in worker (patch abababababab)" \
        in out.stdout.splitlines(), out.stdout
    refused = json.loads(json.dumps(STATUS))
    refused["patches"][0]["modules"]["shop.late"] = "refused at import: not the baseline"
    agent.handlers[1000601]["status"] = lambda r: ok(refused)
    out = cli("status", "--pid", "1000601", rundir=rundir)
    assert out.returncode == 2, out.stderr
    assert re.search(r"^  1000601  exposed +shop\.late refused at import: not the baseline$",
                     out.stdout, re.M), out.stdout
    assert "  PID 1000601 (" in out.stdout and "): CVE-2099-7 (patch abababababab)" in out.stdout


@pytest.mark.slow
def test_cli_status_json_exit_0_when_all_applied_and_1_when_unreachable(
        agent: FakeAgent, rundir: str, empty_store: Path) -> None:
    done = json.loads(json.dumps(STATUS))
    done["patches"][0]["modules"]["shop.late"] = "applied"
    done["active"] = []          # drained: nothing runs the old code any more
    agent.serve(1000701, status=lambda r: ok(done))
    out = cli("status", "--pid", "1000701", "--json", rundir=rundir)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    [row] = doc["processes"]
    assert (row["state"], row["applied"], row["active"]) == ("ok", done["patches"],
                                                             done["active"])
    assert (doc["exposed"], doc["exit_code"]) == ([], 0)
    out = cli("status", "--pid", "1000701", "--pid", str(2 ** 22 + 5), "--json", rundir=rundir)
    assert out.returncode == 1
    assert [r["state"] for r in json.loads(out.stdout)["processes"]] == ["ok", "error"]


@pytest.mark.slow
def test_cli_ps_json_lists_agents_patches_and_dists(
        agent: FakeAgent, rundir: str, sleepers: Callable[[int], List[int]]) -> None:
    with_agent, without = sleepers(2)
    agent.serve(with_agent, list=lambda r: ok({"patches": ["ab" * 32]}),
                dists=lambda r: ok({"dists": {"urllib3": "1.26.17", "idna": "3.4"},
                                    "loaded": {"urllib3": True, "idna": False}}))
    out = cli("ps", "--json", rundir=rundir)
    assert out.returncode == 0, out.stderr
    rows = {r["pid"]: r for r in json.loads(out.stdout)["processes"]}
    a, b = rows[with_agent], rows[without]
    assert (a["agent"], a["python"], a["patches"]) == (True, "3.11.7", ["ab" * 32])
    assert a["dists"] == {"urllib3": "1.26.17", "idna": "3.4"}
    assert a["loaded"] == {"urllib3": True, "idna": False}
    assert "time.sleep(120)" in a["command"]
    assert (b["agent"], b["patches"], b["dists"]) == (False, [], {})
    assert b["python"] == "{}.{}".format(*sys.version_info[:2])
    out = cli("ps", rundir=rundir)
    assert "call suture.agent.start() in them, or `suture attach PID`." in out.stdout
    assert re.search(rf"^ *{with_agent} .* yes +abababababab ", out.stdout, re.M), out.stdout
    assert re.search(r"^ +uses urllib3 1\.26\.17$", out.stdout, re.M), out.stdout


# -- text output for people (issue 18) -----------------------------------------------------

_LONG = ("Refused patch abababababab (sutclientdemo): sutclientdemo does not match the "
         "baseline: `sutclientdemo:answer` differs from the code the patch was built against "
         "(sha256 0123456789ab\u2026). The patch's baseline is sutclientdemo 1.0; this process "
         "runs sutclientdemo 0.9 (its __version__): it needs a patch built from sutclientdemo "
         "0.9. Nothing was changed.")


def _on_a_terminal(args: List[str], rundir: str, columns: int,
                   env_columns: Optional[str]) -> Tuple[int, str]:
    """Run ``suture ARGS`` with stdout on a pseudo-terminal ``columns`` wide (and
    ``$COLUMNS`` set to ``env_columns``, or unset): exit status and what it showed."""
    import fcntl
    import pty
    import select
    import struct
    import termios

    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env.update(PYTHONPATH=str(SRC), SUTURE_RUNTIME_DIR=rundir)
    if env_columns is not None:
        env["COLUMNS"] = env_columns
    proc = subprocess.Popen([sys.executable, "-m", "suture", *args], stdout=secondary,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=env)
    os.close(secondary)
    shown = b""
    try:
        while select.select([primary], [], [], 60)[0]:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        code = proc.wait(timeout=60)
    finally:
        os.close(primary)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code, shown.decode("utf-8").replace("\r\n", "\n")


def _detail(text: str, pid: int) -> Tuple[List[str], str]:
    """The lines of ``pid``'s row and its DETAIL text, the wrapped lines joined again."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith(f"{pid} "))
    row = [lines[start]] + list(itertools.takewhile(lambda line: line.startswith(" " * 28),
                                                    lines[start + 1:]))
    return row, " ".join(line[28:].strip() for line in row)


@pytest.mark.slow
@pytest.mark.parametrize("columns, env_columns", [(200, "60"), (64, None)])
def test_cli_apply_and_revert_wrap_the_detail_column_to_the_terminal(
        agent: FakeAgent, rundir: str, patch_file: Path, columns: int,
        env_columns: Optional[str]) -> None:
    width = int(env_columns or columns)   # $COLUMNS wins, as for every terminal program
    agent.serve(1000501, apply=lambda r: err("BaselineMismatch", "SUT-E201", _LONG),
                revert=lambda r: err("UnknownPatch", "SUT-E300", _LONG))
    agent.serve(1000502, apply=applied(), revert=lambda r: ok({"patch": r["patch_id"],
                                                                "state": "reverted"}))
    for args in (["apply", str(patch_file)], ["revert", "ab" * 6]):
        args += ["--pid", "1000501", "--pid", "1000502"]
        code, shown = _on_a_terminal(args, rundir, columns, env_columns)
        assert code == 2, shown
        assert all(len(line) <= width for line in shown.splitlines()), shown
        row, detail = _detail(shown, 1000501)
        assert len(row) > 2 and detail == _LONG, shown
        assert row[0].startswith("1000501  refused SUT-E"), shown
        done = "applied" if args[0] == "apply" else "reverted"
        assert _detail(shown, 1000502)[0][0].split()[:2] == ["1000502", done], shown
        # Into a pipe, whatever $COLUMNS says: one line per row, for scripts and grep.
        env = dict(os.environ, PYTHONPATH=str(SRC), SUTURE_RUNTIME_DIR=rundir, COLUMNS="60")
        piped = subprocess.run([sys.executable, "-m", "suture", *args], capture_output=True,
                               text=True, env=env, timeout=120)
        assert piped.returncode == 2
        assert re.search(rf"^ *1000501  refused SUT-E\d+ +{re.escape(_LONG)}$", piped.stdout,
                         re.M), piped.stdout


@pytest.mark.slow
def test_cli_ps_shows_python_and_distribution_versions_in_one_format(
        agent: FakeAgent, rundir: str, sleepers: Callable[[int], List[int]]) -> None:
    with_agent, without = sleepers(2)
    answer = {"dists": {"PyYAML": "6.0.1", "urllib3": "1.26.17", "Typing_Extensions": "4.9.0",
                        "idna": "3.4"},
              "loaded": {"PyYAML": True, "urllib3": True, "Typing_Extensions": True,
                         "idna": False}}
    agent.serve(with_agent, dists=lambda r: ok(answer))
    out = cli("ps", rundir=rundir)
    assert out.returncode == 0, out.stderr
    minor = "{}.{}".format(*sys.version_info[:2])
    by_pid = {int(line.split()[0]): line for line in out.stdout.splitlines()
              if line.split() and line.split()[0].isdigit()}
    # The agent says 3.11.7, the outside 3.X: one precision for every row (JSON keeps 3.11.7)
    assert by_pid[with_agent].split()[2] == "3.11"
    assert by_pid[without].split()[2] == minor
    # normalised names, sorted, as `suture status` names them; imported ones only
    assert re.search(r"^ +uses pyyaml 6\.0\.1, typing-extensions 4\.9\.0, urllib3 1\.26\.17$",
                     out.stdout, re.M), out.stdout
    # asked for by name: each one, marked when not imported
    answer.update(dists={"pyyaml": "6.0.1", "idna": "3.4", "six": "1.16"},
                  loaded={"pyyaml": True, "idna": False, "six": None})
    out = cli("ps", "--dist", "pyyaml", "--dist", "idna", "--dist", "six", rundir=rundir)
    assert re.search(r"^ +uses idna 3\.4 \(not imported yet\), pyyaml 6\.0\.1, six 1\.16 "
                     r"\(imported: unknown\)$", out.stdout, re.M), out.stdout
