"""Bytes straight onto a node's TCP port: requests no HTTP client library would send."""

from __future__ import annotations

import asyncio


async def raw_exchange(host: str, port: int, request: bytes, within: float = 30.0) -> bytes:
    """Send ``request`` as is and read the answer until the node closes the connection."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), within)
    finally:
        writer.close()
        await writer.wait_closed()


def status_of(answer: bytes) -> int:
    """The status code of the first response in ``answer``."""
    return int(answer.split(b" ", 2)[1])
