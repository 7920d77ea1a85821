"""Case 14: a thread, a generator, a coroutine and an async generator are inside old
code when the patch is applied.

They finish on the old code; new calls get the new code. after_apply checks that
runtime.status() reports all four, releases them and checks that they finished
with v1's results. observe() only makes new calls, so it stays differential (in
the fresh runs the suspended work is never resumed).
"""

import threading

LINES = ["GET /", "X-Note: a\r\nSet-Cookie: admin=1", "Host: x"]
PARTS = ["ab", "c;d", "ef"]
OLD_SERVE = "served ../secret"
OLD_REST_OF_LINES = ["X-Note: a\r\nSet-Cookie: admin=1", "Host: x"]
OLD_SCAN = "clean ../x"
OLD_REST_OF_CHUNKS = ["C;D", "EF"]


def _drive(awaitable):
    """Run an awaitable that only suspends on bare yields (asyncio.sleep(0)); no loop."""
    it = awaitable.__await__()
    try:
        while True:
            it.send(None)
    except StopIteration as stop:
        return stop.value


def _drain(agen):
    out = []
    while True:
        try:
            out.append(_drive(agen.asend(None)))
        except StopAsyncIteration:
            return out


def setup():
    from c14_app import worker

    entered, upstream_done = threading.Event(), threading.Event()
    results = []
    thread = threading.Thread(
        target=lambda: results.append(worker.serve("../secret", entered, upstream_done)),
        name="c14-worker", daemon=True)
    thread.start()
    if not entered.wait(10):
        raise RuntimeError("worker thread did not enter serve()")

    gen = worker.header_lines(LINES)
    first_line = next(gen)

    coro = worker.scan("../x")
    coro.send(None)  # now suspended inside asyncio.sleep(0), before the check

    agen = worker.chunks(PARTS)
    first_chunk = _drive(agen.asend(None))

    return {"worker": worker, "thread": thread, "results": results,
            "upstream_done": upstream_done, "gen": gen, "coro": coro, "agen": agen,
            "first": [first_line, first_chunk]}


def _short(qualname):
    return qualname.replace(":", ".").rsplit(".", 1)[-1]


def _ours(runtime):
    names = {"serve", "header_lines", "scan", "chunks"}
    return sorted((_short(e["qualname"]), e["where"]) for e in runtime.status()["active"]
                  if _short(e["qualname"]) in names)


def after_apply(state, runtime):
    active = _ours(runtime)
    for want in [("chunks", "async_generator"), ("header_lines", "generator"),
                 ("scan", "coroutine"), ("serve", "thread")]:
        assert want in active, "status() does not report %r: %r" % (want, active)

    assert state["first"] == ["GET /", "AB"], state["first"]
    state["upstream_done"].set()
    state["thread"].join(10)
    assert not state["thread"].is_alive(), "worker thread did not finish"
    assert state["results"] == [OLD_SERVE], state["results"]
    rest = list(state["gen"])
    assert rest == OLD_REST_OF_LINES, rest
    try:
        state["coro"].send(None)
    except StopIteration as stop:
        assert stop.value == OLD_SCAN, stop.value
    else:
        raise AssertionError("coroutine did not finish")
    rest = _drain(state["agen"])
    assert rest == OLD_REST_OF_CHUNKS, rest

    after = _ours(runtime)
    assert after == [], "status() still reports finished work: %r" % (after,)


def after_revert(state, runtime):
    left = _ours(runtime)
    assert left == [], "status() reports work after revert: %r" % (left,)


def observe(state):
    w = state["worker"]
    entered, done = threading.Event(), threading.Event()
    done.set()
    return {
        "serve": [w.serve(p, entered, done) for p in ("a/b", "../secret")],
        "header_lines": list(w.header_lines(LINES)),
        "scan": [_drive(w.scan(n)) for n in ("report.pdf", "../x")],
        "chunks": _drain(w.chunks(PARTS)),
    }
