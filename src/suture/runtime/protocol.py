"""Agent wire format v1: one JSON line each way per connection (docs/protocol.md).

Shared by the agent (inside targets) and the client (tooling): stdlib only.
"""

from __future__ import annotations

from .errors import SutureError

TYPE_CHECKING = False
if TYPE_CHECKING:   # not at run time: typing costs an idle agent 1.6 MiB (issue 19)
    import _socket
    from typing import Any, Dict, Optional

# What encoding and reading a frame imports, on first use: an idle agent never does
# (issue 19), and one that serves requests imports them first under its fork guard.
FRAME_MODULES = ("json", "suture.runtime._bounded")

VERSION = 1
SUPPORTED = (1,)
MAX_LINE = 64 * 1024 * 1024
READ_TIMEOUT = 10.0


class ProtocolError(SutureError, ValueError):
    """A frame that is not a valid request or response."""

    code = "SUT-E601"


class PeerRefused(SutureError, PermissionError):
    """The peer's uid may not talk to this agent."""

    code = "SUT-E600"


def encode(obj: Dict[str, Any]) -> bytes:
    import json
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode("utf-8") + b"\n"


def loads(data: bytes, limit: int = MAX_LINE) -> Any:
    """One frame's JSON, through the bounded reader (depth, numbers, duplicate keys,
    UTF-8, NUL): anything else is a ProtocolError (SUT-E601), never an internal error."""
    from . import _bounded
    return _bounded.loads(data, error=ProtocolError, what="frame", max_bytes=limit)


def read_frame(sock: _socket.socket, limit: int = MAX_LINE) -> Dict[str, Any]:
    """Read one newline-terminated JSON object; raise ProtocolError on anything else."""
    return parse(read_line(sock, limit), limit)


def parse(line: bytes, limit: int = MAX_LINE) -> Dict[str, Any]:
    """One frame's bytes (without its newline) as a JSON object, or ProtocolError."""
    obj = loads(line, limit)
    if not isinstance(obj, dict):
        raise ProtocolError("frame is not a JSON object")
    return obj


def read_line(sock: _socket.socket, limit: int = MAX_LINE) -> bytes:
    """Read one newline-terminated frame's bytes, without the newline (not parsed)."""
    chunks = []
    size = 0
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            raise ProtocolError("connection closed before a complete frame")
        end = chunk.find(b"\n")
        if end >= 0:
            chunks.append(chunk[:end])
            size += end
            if size > limit:
                raise ProtocolError(f"frame larger than {limit} bytes")
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise ProtocolError(f"frame larger than {limit} bytes")
    return b"".join(chunks)


# The hello request exactly as ``encode(request("hello"))`` writes it, and an encoder that
# writes what ``encode`` writes without importing json: an idle agent answers the hello of
# `suture ps` with neither (issue 19). json (with re and enum) costs an idle agent about
# 1.8 MiB, and imported at the first request of a busy process it made that hello wait
# for the GIL at every file read of the import (1.4-3.8 s with 50 busy threads on a loaded
# host; tests/agent/test_busy.py). Any other frame, and any hello written otherwise, goes
# through json and the bounded reader. tests/runtime/test_protocol_plain.py checks that
# encode_plain writes what encode writes.
HELLO_REQUEST = b'{"op":"hello","v":%d}' % VERSION

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n",
            "\r": "\\r", "\t": "\\t"}


def _plain_str(text: str) -> str:
    out = ['"']
    for ch in text:
        if " " <= ch <= "~" and ch != '"' and ch != "\\":
            out.append(ch)
        elif ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        else:
            n = ord(ch)
            if n < 0x10000:
                out.append(f"\\u{n:04x}")
            else:
                n -= 0x10000
                out.append(f"\\u{0xd800 | (n >> 10):04x}\\u{0xdc00 | (n & 0x3ff):04x}")
    out.append('"')
    return "".join(out)


def _plain(obj: Any) -> str:
    if obj is None:
        return "null"
    if obj is True:
        return "true"
    if obj is False:
        return "false"
    if type(obj) is int:
        return int.__repr__(obj)
    if type(obj) is str:
        return _plain_str(obj)
    if type(obj) in (list, tuple):
        return "[" + ",".join(_plain(x) for x in obj) + "]"
    if type(obj) is dict and all(type(k) is str for k in obj):
        return "{" + ",".join(_plain_str(k) + ":" + _plain(obj[k]) for k in sorted(obj)) + "}"
    raise TypeError(f"{type(obj).__name__} is not written without json")


def encode_plain(obj: Dict[str, Any]) -> bytes:
    """``encode(obj)`` without json, for None, bool, int, str, list, tuple and dicts with
    str keys; TypeError for anything else (floats included): use ``encode`` then."""
    return _plain(obj).encode("ascii") + b"\n"


def ok(result: Any) -> Dict[str, Any]:
    return {"v": VERSION, "ok": True, "result": result}


def error(exc: SutureError) -> Dict[str, Any]:
    return {"v": VERSION, "ok": False, "error": exc.to_dict()}


def request(op: str, **fields: Any) -> Dict[str, Any]:
    return {"v": VERSION, "op": op, **fields}


def check_version(frame: Dict[str, Any]) -> Optional[ProtocolError]:
    v = frame.get("v")
    if v not in SUPPORTED:
        return ProtocolError(f"protocol version {v!r} is not supported; this agent speaks "
                             f"{', '.join(map(str, SUPPORTED))}", details={"supported": list(SUPPORTED)})
    return None
