"""The one reader of untrusted JSON: patch files, agent frames, feed indexes, HTTP bodies.

Stdlib only and importable from 3.9 (the agent runs it inside targets; tooling imports it
from here). ``loads`` either returns a plain JSON value or raises the *caller's* error
class (PatchFormatError, ProtocolError, FeedError), whose ``details["limit"]`` names the
rule that failed, so every caller keeps its own code and exit status.

Invariants, checked in this order, each by one validator:

1. at most ``max_bytes`` bytes (before anything else is done with them);
2. no NUL byte and valid UTF-8 (a decoder error names the offset);
3. nesting at most ``max_depth`` deep, measured *before* ``json.loads`` runs: the C
   scanner recurses once per bracket and raises RecursionError (not ValueError) around
   depth 1,000-100,000 depending on the version and stack, which callers did not expect
   (issue 13, finding 5: a traceback in the CLI, SUT-E999 from the agent, a dead daemon);
4. no duplicate key in an object (``json`` keeps the last one silently: two readers of
   the same signed bytes could disagree on what they say);
5. integers of at most ``MAX_INT_DIGITS`` digits (3.9 and 3.10 have no int digit limit,
   and int() of a megabyte of digits is quadratic) and finite floats only: NaN, Infinity
   and 1e999 are not JSON;
6. no lone surrogate in a string (``\\ud800`` parses, then breaks every UTF-8 encoder
   later, e.g. a patch's canonical form).

Rejected alternatives for the depth check: raising the recursion limit (only moves the
crash, and is process-wide inside a target); catching RecursionError after the fact (the
C scanner may exhaust the C stack before Python notices, and the work is already done); a
Python loop over every character (seconds for a 64 MiB patch). What we do instead is
linear and runs in C: delete the strings (a bracket inside a string does not nest), keep
only the brackets as +1/-1 bytes, and take the maximum of their running sum.
"""

from __future__ import annotations

import array
import itertools
import json
import math
import re
from typing import Any, Callable, Dict, List, Tuple

__all__ = ["MAX_DEPTH", "MAX_INT_DIGITS", "loads", "depth"]

MAX_DEPTH = 64            # our formats nest at most ~8 deep; 64 leaves room for `meta`
MAX_INT_DIGITS = 64       # versions, sizes and line numbers; 10**64 is plenty

# A complete JSON string (the "unrolled loop" form: linear, no backtracking). An
# unterminated string does not match, so its brackets count: that only makes garbage
# look deeper, and garbage is refused either way.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
# '[' and '{' become 0x01 (+1), ']' and '}' become 0xff (-1 as a signed byte), the
# rest is deleted.
_BRACKETS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[{]}")
_SURROGATE = re.compile("[\ud800-\udfff]")

Error = Callable[..., Exception]


def depth(data: bytes) -> int:
    """The deepest nesting of brackets in ``data`` outside JSON strings (linear, in C)."""
    steps = _STRING.sub(b"", data).translate(_BRACKETS, _NOT_BRACKETS)
    if not steps:
        return 0
    return max(0, max(itertools.accumulate(array.array("b", steps))))


def _fail(error: Error, what: str, limit: str, msg: str, **details: Any) -> Exception:
    return error(f"{what} {msg}", details=dict(details, limit=limit))


def _check_size(data: bytes, max_bytes: int, error: Error, what: str) -> None:
    if len(data) > max_bytes:
        raise _fail(error, what, "size", f"is too large: {len(data)} bytes, limit {max_bytes}",
                    size=len(data), max=max_bytes)


def _check_nul(data: bytes, error: Error, what: str) -> None:
    at = data.find(b"\x00")
    if at >= 0:
        raise _fail(error, what, "nul", f"contains a NUL byte at offset {at}", offset=at)


def _decode(data: bytes, error: Error, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _fail(error, what, "utf-8", f"is not valid UTF-8 (byte {exc.start})",
                    offset=exc.start) from exc


def _check_depth(data: bytes, max_depth: int, error: Error, what: str) -> None:
    found = depth(data)
    if found > max_depth:
        raise _fail(error, what, "depth", f"nests {found} levels deep, limit {max_depth}",
                    depth=found, max=max_depth)


class _Refused(ValueError):
    """Raised inside ``json.loads`` hooks; turned into the caller's error below."""

    def __init__(self, limit: str, msg: str) -> None:
        super().__init__(msg)
        self.limit = limit


def _pairs(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Refused("duplicate-key", f"has the key {key[:80]!r} twice in one object")
        out[key] = value
    return out


def _int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise _Refused("number", f"has an integer of {digits} digits, limit {MAX_INT_DIGITS}")
    return int(text)


def _float(text: str) -> float:
    if len(text) > MAX_INT_DIGITS * 2:
        raise _Refused("number", f"has a number of {len(text)} characters")
    value = float(text)
    if not math.isfinite(value):
        raise _Refused("number", f"has a number out of range ({text[:40]})")
    return value


def _constant(text: str) -> Any:
    raise _Refused("number", f"has {text}, which is not JSON")


def _check_strings(value: Any, error: Error, what: str) -> None:
    """No lone surrogate in any key or string (iterative: depth is already bounded)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            strings = [item]
        elif isinstance(item, dict):
            strings = list(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            strings = []
            stack.extend(item)
        else:
            continue
        for s in strings:
            if _SURROGATE.search(s):
                raise _fail(error, what, "utf-8", "has a string with a lone surrogate "
                            "(\\ud800-\\udfff), which is not Unicode text")


def loads(data: bytes, *, error: Error, what: str, max_bytes: int,
          max_depth: int = MAX_DEPTH) -> Any:
    """Parse untrusted ``data`` as JSON within the limits above, or raise ``error``.

    ``error`` is called as ``error(message, details={...})`` (a SutureError class);
    ``what`` starts the message ("patch", "frame", "feed index from URL").
    """
    if not isinstance(data, (bytes, bytearray)):
        raise _fail(error, what, "type", f"must be bytes, not {type(data).__name__}")
    data = bytes(data)
    _check_size(data, max_bytes, error, what)
    _check_nul(data, error, what)
    text = _decode(data, error, what)
    _check_depth(data, max_depth, error, what)
    try:
        value = json.loads(text, object_pairs_hook=_pairs, parse_int=_int,
                           parse_float=_float, parse_constant=_constant)
    except _Refused as exc:
        raise _fail(error, what, exc.limit, str(exc)) from exc
    except ValueError as exc:       # json.JSONDecodeError: not JSON at all
        raise _fail(error, what, "json", f"is not JSON: {exc}") from exc
    except RecursionError as exc:   # unreachable after _check_depth; kept as a refusal
        raise _fail(error, what, "depth", "nests too deep") from exc
    _check_strings(value, error, what)
    return value
