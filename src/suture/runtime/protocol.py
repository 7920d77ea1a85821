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
    obj = loads(b"".join(chunks), limit)
    if not isinstance(obj, dict):
        raise ProtocolError("frame is not a JSON object")
    return obj


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
