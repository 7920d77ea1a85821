"""Hostile and broken input against one real, busy target process (issue 5).

One long-running target keeps calling the code a patch would change from a thread, holds
instances and a session table in memory, and has the agent loaded. Every bad input below
goes in the way an operator or an attacker would send it: patch files through the real
`suture apply` CLI, frames through the agent's socket. After each one the test asks the
target for a fingerprint (the code of every function and method, module and class
namespaces, every instance's ``__dict__``, the session table, the applied patches, which
modules are imported) and requires it to be exactly what it was before the first input,
with the worker thread still making progress. The inputs are sent one after another to
the same process, so damage left by one would show in every later check.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from suture.runtime.patchfile import (Source, canonical_json, dump, load, payload_json,
                                     read_envelope, seal)
from suture.tooling.build import build_trees
from suture.tooling.build.sources import materialize

from agentutil import Targets, exchange, result, wait_for
from signing import signed

V1 = {
    "calc.py": "def value():\n    return 1\n",
    "shop.py": ("class Cart:\n"
                "    def __init__(self, n):\n"
                "        self.n = n\n"
                "        self.items = [n]\n"
                "\n"
                "    def total(self):\n"
                "        return sum(self.items)\n"),
    "lazy.py": "def later():\n    return 'v1'\n",
}
V2 = {**V1,
      "calc.py": "def value():\n    return 2\n",
      "shop.py": V1["shop.py"].replace("return sum(self.items)", "return sum(self.items) * 2"),
      "lazy.py": "def later():\n    return 'v2'\n"}

TARGET = r'''
import hashlib, inspect, json, marshal, sys, threading, time
import suture.agent
suture.agent.start()
import suture.runtime as rt
from hpkg import calc, shop

carts = [shop.Cart(i) for i in range(10)]
SESSIONS = {"alice": {"cart": 3}, "bob": {"cart": 7}}
ticks = [0]
errors = []

def work():
    while True:
        try:
            calc.value()
            carts[ticks[0] % 10].total()
        except BaseException as exc:   # the fingerprint reports it
            errors.append(repr(exc))
        ticks[0] += 1
        time.sleep(0.0005)

threading.Thread(target=work, daemon=True).start()

def code(fn):
    return hashlib.sha256(marshal.dumps(fn.__code__)).hexdigest()[:16]

def fingerprint():
    patches = [p["id"] for p in rt.status()["patches"]]  # first: waits for an apply under way
    out = {}
    for m in (calc, shop):
        out[m.__name__] = sorted(k for k in vars(m) if not k.startswith("__"))
        for name, obj in vars(m).items():
            if inspect.isfunction(obj):
                out[m.__name__ + "." + name] = code(obj)
            if isinstance(obj, type) and obj.__module__ == m.__name__:
                out[m.__name__ + "." + name] = sorted(vars(obj))
                for k, v in vars(obj).items():
                    if inspect.isfunction(v):
                        out[m.__name__ + "." + name + "." + k] = code(v)
    start = ticks[0]
    end = time.monotonic() + 10
    while ticks[0] < start + 5 and time.monotonic() < end:
        time.sleep(0.001)
    return {"code": out, "carts": [dict(vars(c)) for c in carts],
            "cart_ids": [id(c) for c in carts], "sessions": SESSIONS,
            "observed": [calc.value(), carts[3].total()],
            "patches": patches,
            "modules": sorted(m for m in sys.modules if m.startswith("hpkg")),
            "worker_alive": ticks[0] >= start + 5, "errors": errors}

for line in sys.stdin:
    if line.strip() == "probe":
        print(json.dumps(fingerprint()), flush=True)
'''


def tree(root: Path, files: Dict[str, str]) -> Path:
    pkg = root / "hpkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("", encoding="utf-8")
    for name, text in files.items():
        (pkg / name).write_text(text, encoding="utf-8")
    return root


def build(tmp: Path, tag: str, old: Dict[str, str], new: Dict[str, str],
          hooks: str = "") -> bytes:
    hooks_path = None
    if hooks:
        hooks_path = tmp / f"hooks-{tag}.py"
        hooks_path.write_text(hooks, encoding="utf-8")
    report = build_trees(materialize(str(tree(tmp / f"{tag}-old", old))),
                         materialize(str(tree(tmp / f"{tag}-new", new))), hooks=hooks_path)
    assert report.data is not None
    return report.data


def with_source(data: bytes, module: str, text: str) -> bytes:
    """``data`` with the fixed source of ``module`` replaced (hashes recomputed): a
    well-formed patch whose new code is whatever ``text`` is."""
    patch = load(data)
    modules = tuple(dataclasses.replace(m, fixed=Source.of(text)) if m.name == module else m
                    for m in patch.modules)
    return dump(dataclasses.replace(patch, modules=modules))


class Target:
    def __init__(self, targets: Targets, v1: Path) -> None:
        script = targets.script(TARGET)
        self.proc = targets.start([sys.executable, str(script)], targets.env([str(v1)]),
                                  stdin=subprocess.PIPE)
        self.sock = targets.wait_agent(self.proc.pid, self.proc)
        self.env = targets.env()
        self.lock = threading.Lock()

    def probe(self) -> Dict[str, Any]:
        with self.lock:
            assert self.proc.poll() is None, self.proc.communicate()
            self.proc.stdin.write("probe\n")
            self.proc.stdin.flush()
            return json.loads(self.proc.stdout.readline())  # type: ignore[no-any-return]

    def suture(self, *args: str, timeout: float = 120) -> Tuple[int, Dict[str, Any]]:
        out = subprocess.run([sys.executable, "-m", "suture", *args, "--json"], env=self.env,
                             capture_output=True, text=True, timeout=timeout)
        try:
            return out.returncode, json.loads(out.stdout)
        except ValueError:
            pytest.fail(f"suture {args} printed no JSON: {out.stdout!r} {out.stderr!r}")

    def apply(self, path: Path, *extra: str) -> Tuple[int, Dict[str, Any]]:
        return self.suture("apply", str(path), "--pid", str(self.proc.pid), *extra)


def error_of(answer: Dict[str, Any]) -> Dict[str, Any]:
    """The error a command reported: a file refused before any process was contacted, or
    the one row of the process that refused."""
    if "error" in answer:
        return answer["error"]  # type: ignore[no-any-return]
    (row,) = answer["processes"]
    return {"code": row.get("code"), "message": row.get("reason"), "outcome": row["outcome"]}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("hostile")
    targets = Targets(tmp)
    try:
        good = signed(build(tmp, "good", V1, V2))
        yield tmp, targets, Target(targets, tree(tmp / "v1", V1)), good
    finally:
        targets.close()


@pytest.fixture(scope="module")
def baseline(world: Any) -> Dict[str, Any]:
    _, _, target, _ = world
    fp = target.probe()
    assert fp["observed"] == [1, 3] and fp["patches"] == [] and fp["worker_alive"]
    assert fp["modules"] == ["hpkg", "hpkg.calc", "hpkg.shop"]   # hpkg.lazy: not loaded
    return fp


def unchanged(target: Target, before: Dict[str, Any]) -> None:
    now = target.probe()
    assert now["worker_alive"], "the target's worker thread stopped"
    assert now == {**before, "worker_alive": True}


# ---------------------------------------------------------------- bad files, via `suture apply`

def _file_cases(tmp: Path, good: bytes) -> Dict[str, Tuple[bytes, int, str, str]]:
    """name -> (file bytes, exit code, error code, words the message must contain)."""
    envelope, payload = read_envelope(good)
    edited_summary = json.loads(payload_json(envelope, payload))
    edited_summary["meta"]["summary"] = "harmless, promise"
    resealed = dict(envelope, payload=seal(canonical_json(edited_summary))["payload"])
    assert resealed["payloadType"] == seal(b"")["payloadType"]
    other = signed(build(tmp, "other", {**V1, "calc.py": "def value():\n    return 7\n"},
                         {**V1, "calc.py": "def value():\n    return 8\n"}))
    stolen = dict(envelope, signatures=read_envelope(other)[0]["signatures"])
    flipped = bytearray(good)
    flipped[good.index(b'"payload":"') + 40] ^= 0x01
    return {
        "not a patch at all": (b"\x00\xffGIF89a garbage", 1, "SUT-E100", "not a Suture patch"),
        "truncated": (good[: len(good) // 2], 1, "SUT-E100", "not a Suture patch"),
        "oversized": (good + b" " * (64 * 1024 * 1024), 1, "SUT-E100", "too large"),
        "a flipped bit in the payload": (bytes(flipped), 1, "SUT-E100", "patch"),
        "edited after signing": (canonical_json(resealed) + b"\n", 2, "SUT-E110",
                                 "does not match its bytes"),
        "a valid signature over other bytes": (canonical_json(stolen) + b"\n", 2, "SUT-E110",
                                               "does not match its bytes"),
        "unsigned": (dump(load(good)), 2, "SUT-E110", "is not signed"),
        "another baseline": (other, 2, "SUT-E201", "does not match the baseline"),
        "new code with a syntax error": (
            signed(with_source(good, "hpkg.calc", "def value(:\n    return 2\n")), 2,
            "SUT-E100", "does not parse"),
        "a new module that raises on import": (
            signed(build(tmp, "raises", V1, {**V2, "boom.py": "raise RuntimeError('boom')\n",
                                             "calc.py": "from hpkg import boom\n\n"
                                                        "def value():\n    return 2\n"})),
            2, "SUT-E200", "RuntimeError: boom"),
        "a pre-apply hook that fails": (
            signed(build(tmp, "pre", V1, V2, "def pre_apply(ctx):\n"
                                             "    raise RuntimeError('window closed')\n")),
            2, "SUT-E205", "window closed"),
        "a post-apply hook that fails": (
            signed(build(tmp, "post", V1, V2, "def post_apply(ctx):\n"
                                              "    raise RuntimeError('smoke test failed')\n")),
            1, "SUT-E400", "rolled back"),
        "a migration that raises halfway": (
            signed(build(tmp, "migr", V1, V2,
                         "def _migrate(cart):\n"   # assigns, as docs/engine.md asks
                         "    cart.items = cart.items + [100]\n"
                         "    cart.flag = True\n"
                         "    if cart.n == 5:\n"
                         "        raise ValueError('cart 5')\n\n"
                         "MIGRATIONS = {'hpkg.shop:Cart': _migrate}\n")),
            2, "SUT-E205", "restored"),
    }


CASES = ["not a patch at all", "truncated", "oversized", "a flipped bit in the payload",
         "edited after signing", "a valid signature over other bytes", "unsigned",
         "another baseline", "new code with a syntax error",
         "a new module that raises on import", "a pre-apply hook that fails",
         "a post-apply hook that fails", "a migration that raises halfway"]


@pytest.fixture(scope="module")
def file_cases(world: Any) -> Dict[str, Tuple[bytes, int, str, str]]:
    tmp, _, _, good = world
    cases = _file_cases(tmp / "cases", good)
    assert sorted(cases) == sorted(CASES)
    return cases


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_a_bad_patch_file_is_refused_and_the_target_is_exactly_as_before(world, baseline,
                                                                         file_cases,
                                                                         case: str):
    tmp, _, target, _ = world
    data, exit_code, code, words = file_cases[case]
    path = tmp / f"{case.replace(' ', '-')}.suture"
    path.write_bytes(data)
    rc, answer = target.apply(path)
    err = error_of(answer)
    assert rc == exit_code, answer
    if code:
        assert err["code"] == code, answer
    assert words in (err.get("message") or ""), answer
    unchanged(target, baseline)


# ---------------------------------------------------------------- the agent's socket

@pytest.mark.slow
def test_garbage_huge_and_half_open_connections_change_nothing(world, baseline):
    _, _, target, _ = world
    for payload in (b"GET / HTTP/1.0\r\n\r\n", b"\xff" * 5000 + b"\n",
                    b'{"v": 1, "op": "apply", "patch": "!!"}\n',
                    b'{"v": 1, "op": "apply", "patch": "' + b"A" * (4 * 1024 * 1024)):
        reply = exchange(target.sock, payload)
        assert reply == b"" or json.loads(reply)["ok"] is False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as half_open:
        half_open.connect(target.sock)
        half_open.sendall(b'{"v": 1, "op": "ap')          # and then nothing
        assert result(target.sock, "hello")["pid"] == target.proc.pid  # served meanwhile
    unchanged(target, baseline)


# ---------------------------------------------------------------- a module not loaded

@pytest.mark.slow
def test_a_patch_for_a_module_not_loaded_waits_and_loads_nothing(world, baseline):
    tmp, _, target, _ = world
    lazy_only = signed(build(tmp, "lazy", V1, {**V1, "lazy.py": V2["lazy.py"]}))
    path = tmp / "lazy.suture"
    path.write_bytes(lazy_only)
    rc, answer = target.apply(path)
    assert rc == 0 and answer["processes"][0]["outcome"] == "pending import", answer
    now = target.probe()
    assert now["modules"] == baseline["modules"]          # Suture imported nothing
    assert now["patches"] == [load(lazy_only).id]
    rc, answer = target.suture("revert", load(lazy_only).id, "--pid", str(target.proc.pid))
    assert rc == 0, answer
    unchanged(target, baseline)


# ---------------------------------------------------------------- races and a killed client

@pytest.mark.slow
def test_two_applies_racing_apply_once_and_revert_exactly(world, baseline):
    tmp, _, target, good = world
    path = tmp / "good.suture"
    path.write_bytes(good)
    answers: List[Tuple[int, Dict[str, Any]]] = []
    threads = [threading.Thread(target=lambda: answers.append(target.apply(path)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    outcomes = sorted(a[1]["processes"][0]["outcome"] for a in answers)
    assert outcomes == ["already applied", "applied"], answers
    patched = target.probe()
    assert patched["observed"] == [2, 6] and patched["patches"] == [load(good).id]
    assert patched["carts"] == baseline["carts"] and patched["sessions"] == baseline["sessions"]
    assert patched["cart_ids"] == baseline["cart_ids"]   # the same live objects
    rc, answer = target.suture("revert", load(good).id, "--pid", str(target.proc.pid))
    assert rc == 0, answer
    unchanged(target, baseline)


@pytest.mark.slow
def test_a_client_killed_mid_apply_leaves_the_patch_whole_or_absent(world, baseline):
    tmp, _, target, _ = world
    gate = tmp / "entered"
    slow = signed(build(tmp, "slow", V1, V2,
                        "import os, time\n\n"
                        "def pre_apply(ctx):\n"
                        f"    open({str(gate)!r}, 'w').close()\n"
                        "    time.sleep(1.5)\n"))
    path = tmp / "slow.suture"
    path.write_bytes(slow)
    client = subprocess.Popen([sys.executable, "-m", "suture", "apply", str(path), "--pid",
                               str(target.proc.pid)], env=target.env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(gate.exists, "the apply to be inside the target")
    client.send_signal(signal.SIGKILL)
    client.wait(30)
    # The agent finishes what it started, whoever hung up: a whole patch, never a half.
    now = wait_for(lambda: (lambda fp: fp if fp["patches"] else None)(target.probe()),
                   "the apply the killed client started to finish")
    assert now["observed"] == [2, 6] and now["patches"] == [load(slow).id]
    assert now["errors"] == [] and now["worker_alive"]
    rc, answer = target.suture("revert", load(slow).id, "--pid", str(target.proc.pid))
    assert rc == 0, answer
    unchanged(target, baseline)


@pytest.mark.slow
def test_after_everything_the_good_patch_still_applies_and_reverts(world, baseline):
    tmp, _, target, good = world
    path = tmp / "good-final.suture"
    path.write_bytes(good)
    rc, answer = target.apply(path)
    assert rc == 0 and answer["processes"][0]["outcome"] == "applied", answer
    assert target.probe()["observed"] == [2, 6]
    rc, _ = target.suture("revert", load(good).id, "--pid", str(target.proc.pid))
    assert rc == 0
    unchanged(target, baseline)
    assert target.proc.poll() is None
