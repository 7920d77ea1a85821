"""Request work that can be suspended: a blocking call, a generator, async code."""

import asyncio


def serve(path, entered, upstream_done):
    """Serve path once the upstream call has finished."""
    entered.set()
    upstream_done.wait()
    if ".." in path.split("/"):
        return "denied " + path
    return "served " + path


def header_lines(lines):
    for line in lines:
        if "\r" in line or "\n" in line:
            yield "<dropped>"
            continue
        yield line


async def scan(name):
    await asyncio.sleep(0)
    if name.startswith(".") or "/" in name:
        return "rejected " + name
    return "clean " + name


async def chunks(parts):
    for part in parts:
        await asyncio.sleep(0)
        yield part.upper() if part.isalnum() else "?"
