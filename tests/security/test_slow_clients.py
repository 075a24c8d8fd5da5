"""Slow or stalled clients cannot hold the Outpost's connections: a connection that sends
no complete request head within ``idle_connection_timeout``, or no complete body within
``body_timeout``, is closed; nothing of it is stored and the Outpost keeps answering."""

import asyncio
import base64
import json
import time

from tests.outpost.support import HUBS, start_body

TIMEOUT = 0.5


async def connect(outpost):
    return await asyncio.open_connection("127.0.0.1", outpost.app.port)


async def closed_after(reader) -> float:
    """Seconds until the Outpost closes the connection (read to EOF, at most 20 s)."""
    began = time.monotonic()
    data = await asyncio.wait_for(reader.read(), 20)
    assert data == b"", f"the Outpost answered instead of closing: {data[:200]!r}"
    return time.monotonic() - began


async def test_a_connection_that_never_completes_its_request_head_is_closed(make_outpost):
    outpost = await make_outpost(idle_connection_timeout=TIMEOUT, body_timeout=TIMEOUT)
    reader, writer = await connect(outpost)
    writer.write(b"GET /services HTTP/1.1\r\nHost: outpost\r\n")  # the head never ends
    await writer.drain()
    assert await closed_after(reader) >= TIMEOUT * 0.8
    writer.close()
    assert (await outpost.api.call("GET", "/ping", hub=None))[0] == 200


async def test_an_idle_keep_alive_connection_is_closed(make_outpost):
    outpost = await make_outpost(idle_connection_timeout=TIMEOUT, body_timeout=TIMEOUT)
    reader, writer = await connect(outpost)
    writer.write(b"GET /ping HTTP/1.1\r\nHost: outpost\r\n\r\n")
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 20)
    assert head.startswith(b"HTTP/1.1 200")
    length = int(
        next(
            line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        ).split(b":")[1]
    )
    await reader.readexactly(length)
    assert await closed_after(reader) >= TIMEOUT * 0.8  # kept alive, then closed when idle
    writer.close()


async def test_a_start_whose_body_trickles_in_too_slowly_is_dropped_and_nothing_stored(
    make_outpost,
):
    outpost = await make_outpost(idle_connection_timeout=30, body_timeout=TIMEOUT)
    body = json.dumps(start_body("slow")).encode()
    auth = base64.b64encode(f"hub1:{HUBS['hub1']}".encode())
    reader, writer = await connect(outpost)
    writer.write(
        b"POST /services HTTP/1.1\r\nHost: outpost\r\nAuthorization: Basic " + auth + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    writer.write(body[: len(body) // 2])  # the rest never comes
    await writer.drain()
    assert await closed_after(reader) >= TIMEOUT * 0.8
    writer.close()
    assert await outpost.api.call("GET", "/services") == (200, [])
    assert (await outpost.api.call("POST", "/services", body=start_body("fast")))[0] == 200
