"""Case 18: an async function and an async generator change; run with asyncio.run."""

import asyncio

URLS = ["http://example.org/a", "http://169.254.169.254/latest/meta-data",
        "http://localhost:8080/admin"]


def setup():
    from c18_app import fetch

    return {"fetch": fetch, "held": fetch.fetch}


async def _main(mod, held):
    fetched = await asyncio.gather(*(mod.fetch(u) for u in URLS))
    streamed = [c async for c in mod.stream(["aaaa", "bbbb", "cccc"], 6)]
    return {"fetch": list(fetched), "held": (await held(URLS[1]))["status"],
            "stream": streamed}


def observe(state):
    return asyncio.run(_main(state["fetch"], state["held"]))
