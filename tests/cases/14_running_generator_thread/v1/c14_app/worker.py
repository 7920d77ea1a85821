"""Request work that can be suspended: a blocking call, a generator, async code."""

import asyncio


def serve(path, entered, upstream_done):
    """Serve path once the upstream call has finished."""
    entered.set()
    upstream_done.wait()
    return "served " + path


def header_lines(lines):
    for line in lines:
        yield line


async def scan(name):
    await asyncio.sleep(0)
    return "clean " + name


async def chunks(parts):
    for part in parts:
        await asyncio.sleep(0)
        yield part.upper()
