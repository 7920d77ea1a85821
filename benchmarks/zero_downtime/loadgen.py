"""A steady-rate HTTP/1.1 load generator on loopback, one JSON row per request.

    python -m benchmarks.zero_downtime.loadgen --port P --rate 400 --conns 16 \
        --seconds 20 --out rows.jsonl

Open loop: request k of connection i is *scheduled* at ``start + (k * conns + i) / rate``,
and its latency is measured from that scheduled time, not from when it was sent. A
connection still waiting for an answer sends its next request late, and that wait is in
the latency: a stalled server cannot hide behind fewer requests (no coordinated omission).
A failed request (refused, reset, closed, timed out, non-200) is a row with ``error`` set;
the connection is re-opened 5 ms later and the schedule goes on.

Times are CLOCK_MONOTONIC (``time.monotonic()``), which is system-wide on Linux, so the
driver can compare them with the moment it started an operation. Standard library only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from typing import Any, Dict, List, Optional, Tuple


class _Conn:
    def __init__(self, port: int, timeout: float) -> None:
        self.port = port
        self.timeout = timeout
        self.reader: Optional[asyncio.StreamReader] = None
        self.writer: Optional[asyncio.StreamWriter] = None

    async def request(self, path: str) -> Tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.port), self.timeout)
        assert self.reader is not None
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), self.timeout)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in lines[1:] if line)}
        if "content-length" in headers:
            body = await asyncio.wait_for(
                self.reader.readexactly(int(headers["content-length"])), self.timeout)
        else:  # chunked: the apps here answer small JSON with a length, so this is rare
            body = b""
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                body += chunk[:-2]
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _worker(i: int, port: int, path: str, rate: float, conns: int, start: float,
                  end: List[float], timeout: float, rows: List[Dict[str, Any]]) -> None:
    conn = _Conn(port, timeout)
    k = 0
    while True:
        scheduled = start + (k * conns + i) / rate
        k += 1
        if scheduled >= end[0]:
            break
        delay = scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        sent = time.monotonic()
        row: Dict[str, Any] = {"c": i, "s": scheduled, "t0": sent}
        try:
            status, body = await conn.request(path)
            row["t1"] = time.monotonic()
            if status != 200:
                row["error"] = f"HTTP {status}"
            else:
                doc = json.loads(body)
                row.update(v=doc.get("v"), pid=doc.get("pid"), hits=doc.get("hits"))
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError,
                IndexError) as exc:
            row["t1"] = time.monotonic()
            row["error"] = f"{type(exc).__name__}: {exc}"[:200]
            conn.close()
            await asyncio.sleep(0.005)
        rows.append(row)
    conn.close()


async def _follow(until: str, end: List[float]) -> None:
    """The driver may end the schedule earlier than ``--seconds`` by writing a time
    (CLOCK_MONOTONIC) to ``until``: the end is then known only once its operation ended."""
    while True:
        try:
            with open(until) as f:
                text = f.read().strip()
        except FileNotFoundError:
            text = ""
        if text:
            end[0] = min(end[0], float(text))
            return
        await asyncio.sleep(0.05)


async def run(port: int, path: str, rate: float, conns: int, seconds: float,
              timeout: float, started: Optional[str] = None,
              until: Optional[str] = None) -> List[Dict[str, Any]]:
    rows: List[Dict[str, Any]] = []
    start = time.monotonic() + 0.05
    end = [start + seconds]
    if started:  # the driver times its operation from the schedule's start
        with open(started + ".tmp", "w") as f:
            f.write(repr(start))
        os.replace(started + ".tmp", started)
    follow = asyncio.ensure_future(_follow(until, end)) if until else None
    await asyncio.gather(*(_worker(i, port, path, rate, conns, start, end, timeout, rows)
                           for i in range(conns)))
    if follow is not None:
        follow.cancel()
    rows.sort(key=lambda r: r["s"])
    return rows


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/item/7")
    ap.add_argument("--rate", type=float, default=400.0, help="requests per second")
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--started", default=None,
                    help="write the schedule's start (CLOCK_MONOTONIC) to this file")
    ap.add_argument("--until", default=None,
                    help="end the schedule at the time (CLOCK_MONOTONIC) written to this file")
    a = ap.parse_args(argv)
    rows = asyncio.run(run(a.port, a.path, a.rate, a.conns, a.seconds, a.timeout, a.started,
                           a.until))
    with open(a.out, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
