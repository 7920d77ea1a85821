"""Fuzzing the agent protocol against a real agent in a real process (issue 5).

Frames are random bytes, random JSON, and well-formed requests of every op whose fields
have random values (a ``patch`` may be base64 of an edited real patch). Whatever arrives,
the agent answers with at most one JSON line, never an internal error (SUT-E999), keeps
serving, and the process applies nothing. Bounded for CI by SUTURE_FUZZ_EXAMPLES
(default 300 connections, about 2 s).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suture.runtime import _agent
from suture.tooling.build import build_trees
from suture.tooling.build.sources import materialize

from agentutil import Targets, exchange, result

EXAMPLES = int(os.environ.get("SUTURE_FUZZ_EXAMPLES", "300"))

IDLE = r'''
import sys
import suture.agent
suture.agent.start()
import fzp.calc
sys.stdin.read()
'''


def _tree(root: Path, body: str) -> str:
    (root / "fzp").mkdir(parents=True)
    (root / "fzp" / "__init__.py").write_text("")
    (root / "fzp" / "calc.py").write_text(f"def value():\n    return {body}\n")
    return str(root)


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("fuzzagent")
    targets = Targets(tmp)
    v1 = _tree(tmp / "v1", "1")
    # A real patch for a baseline this process does not run: edits of it are refused.
    report = build_trees(materialize(_tree(tmp / "o", "7")), materialize(_tree(tmp / "n", "8")))
    assert report.data is not None
    try:
        proc = targets.start([sys.executable, str(targets.script(IDLE))], targets.env([v1]),
                             stdin=subprocess.PIPE)
        yield targets.wait_agent(proc.pid, proc), proc, report.data
    finally:
        targets.close()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=3),
    max_leaves=6)


@st.composite
def patch_field(draw: Any, real: bytes) -> Any:
    kind = draw(st.sampled_from(["edited", "random", "json"]))
    if kind == "json":
        return draw(json_values)
    if kind == "random":
        return base64.b64encode(draw(st.binary(max_size=200))).decode()
    blob = bytearray(real)
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(blob) - 1))
        blob[i] ^= 1 << draw(st.integers(0, 7))
    return base64.b64encode(bytes(blob)).decode()


def mostly(strategy: Any) -> Any:
    """``strategy`` nine times in ten, any JSON value otherwise."""
    return st.integers(0, 9).flatmap(lambda i: json_values if i == 0 else strategy)


def frames(real: bytes) -> Any:
    # Well-formed requests get most of the examples: they reach the handlers, where the
    # bugs would be; each field is sometimes absent and sometimes of any type.
    request = st.fixed_dictionaries(
        {"v": mostly(st.just(1)), "op": mostly(st.sampled_from(list(_agent._OPS)))},
        optional={"patch": patch_field(real), "patch_id": json_values,
                  "wait_quiescent": st.one_of(st.none(), st.floats(-1, 0.05), json_values)})
    return st.integers(0, 9).flatmap(lambda i: (
        st.binary(max_size=300).map(lambda b: b + b"\n") if i == 0 else
        json_values.map(lambda v: json.dumps(v).encode() + b"\n") if i == 1 else
        request.map(lambda r: json.dumps(r).encode() + b"\n")))


def test_the_agent_answers_every_frame_and_applies_nothing(agent: Any):
    sock, proc, real = agent

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(frames(real))
    def one(frame: bytes) -> None:
        raw = exchange(sock, frame, timeout=30)
        assert raw == b"" or (raw.endswith(b"\n") and raw.count(b"\n") == 1), raw[:200]
        if raw:
            reply = json.loads(raw)
            assert reply["v"] == 1
            if not reply["ok"]:
                assert reply["error"]["code"] != "SUT-E999", reply

    one()
    assert result(sock, "list") == {"patches": []}
    assert result(sock, "hello")["pid"] == proc.pid
    assert proc.poll() is None
