"""protocol.encode_plain writes exactly what protocol.encode writes (json), for the data it
accepts: the agent answers the hello of `suture ps` with it, without importing json
(issue 19)."""

from __future__ import annotations

import random
import sys

import pytest

from suture.runtime import protocol

TRICKY = ["", "plain", 'quote " and \\ backslash', "\b\f\n\r\t", "\x00\x01\x1f\x7f\x80",
          "é ü ß", "\u2028\u2029", "\ud800 lone", "\udcff surrogateescape", "\U0001f600 emoji",
          "\uffff\U00010000\U0010ffff", "/slash/", "~ tilde"]


def test_the_plain_encoder_writes_what_json_writes():
    rng = random.Random(19)
    cases = [{"s": t} for t in TRICKY]
    for _ in range(2000):
        text = "".join(chr(rng.choice([rng.randrange(0, 0x80), rng.randrange(0x80, 0x800),
                                       rng.randrange(0xd800, 0xe000),
                                       rng.randrange(0x10000, 0x110000)]))
                       for _ in range(rng.randrange(0, 12)))
        cases.append({text: [text, rng.randrange(-10**20, 10**20), None, True, False],
                      "n": {"b": (1, 2), "a": []}})
    for obj in cases:
        assert protocol.encode_plain(obj) == protocol.encode(obj), obj


def test_the_plain_encoder_writes_a_real_hello_answer_as_json_does():
    from suture.runtime import _agent
    reply = protocol.ok(_agent._op_hello({}))
    assert protocol.encode_plain(reply) == protocol.encode(reply)


@pytest.mark.parametrize("obj", [{"f": 1.5}, {"k": {1: 2}}, {"s": b"x"}, {"e": object()}])
def test_the_plain_encoder_refuses_what_it_does_not_write(obj):
    with pytest.raises(TypeError):
        protocol.encode_plain(obj)


def test_the_hello_request_is_what_the_client_sends():
    assert protocol.encode(protocol.request("hello")) == protocol.HELLO_REQUEST + b"\n"
    assert protocol.parse(protocol.HELLO_REQUEST) == {"v": 1, "op": "hello"}
    assert sys.modules["suture.runtime.protocol"] is protocol
