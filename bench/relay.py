"""A TCP relay on 127.0.0.1 that cuts every connection through it on SIGUSR1 (figure 5):
the tunnel daemon's SSH connection runs through it, so a cut looks like a network drop
while the SSH endpoint keeps running.

    python -m bench.relay --listen-port L --target-port T --status FILE

``FILE`` holds the number of connections accepted so far (rewritten at every accept).
Ends on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def serve(args) -> None:
    accepted = 0
    open_writers: set[asyncio.StreamWriter] = set()
    stop = asyncio.Event()

    async def handle(reader, writer):
        nonlocal accepted
        accepted += 1
        with open(args.status, "w") as f:
            f.write(str(accepted))
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", args.target_port)
        except OSError:
            writer.close()
            return
        for w in (writer, up_writer):
            w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            open_writers.add(w)
        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            open_writers.discard(writer)
            open_writers.discard(up_writer)

    def cut():
        for w in list(open_writers):
            w.transport.abort()  # RST, as a dropped network path ends up
        open_writers.clear()

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, cut)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    server = await asyncio.start_server(handle, "127.0.0.1", args.listen_port)
    with open(args.status, "w") as f:
        f.write("0")
    async with server:
        await stop.wait()
    cut()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen-port", type=int, required=True)
    parser.add_argument("--target-port", type=int, required=True)
    parser.add_argument("--status", required=True)
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
