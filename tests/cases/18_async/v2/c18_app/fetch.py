"""Async fetching of internal resources."""

import asyncio

INTERNAL = ("127.0.0.1", "localhost", "169.254.169.254")


async def fetch(url):
    await asyncio.sleep(0)
    host = url.split("://", 1)[-1].split("/", 1)[0]
    if host.split(":")[0] in INTERNAL:
        return {"url": url, "host": host, "status": 403}
    return {"url": url, "host": host, "status": 200}


async def stream(chunks, limit):
    total = 0
    for chunk in chunks:
        await asyncio.sleep(0)
        total += len(chunk)
        if total > limit:
            yield "<truncated>"
            return
        yield chunk
