"""A site's outbound HTTP proxy: how batch nodes reach the hub without the hub reaching them.

HPC compute nodes usually cannot be reached from outside, and reach outside only through a
gateway. In a local topology the hub and the compute hosts share no network, so a job's
``report_address`` reaches the hub's setuptunnel URL through this proxy, which runs on a
host on both networks (the Outpost/login host)::

    python -m jupyterhub_outpost.topology.egress_proxy --ip 10.231.2.2 --port 3128 \\
        --allow 10.231.1.2:8000

and the jobs get ``http_proxy=http://10.231.2.2:3128`` (``minibatch serve --job-env``).
It forwards plain-HTTP proxy requests (absolute URLs; no CONNECT, no TLS) to the targets
in ``--allow`` (``HOST:PORT``; none given: any) and answers 403 to anything else. Each
connection carries one request (``Connection: close``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from urllib.parse import urlsplit

MAX_HEAD = 64 * 1024


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.write_eof()


def answer(writer: asyncio.StreamWriter, status: str, text: str) -> None:
    body = (text + "\n").encode()
    writer.write(
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n".encode()
        + body
    )


class EgressProxy:
    def __init__(self, allow: list[str]):
        self.allow = set(allow)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ", 2)
        except ValueError:
            answer(writer, "400 Bad Request", "not an HTTP request")
            return await self._close(writer)
        url = urlsplit(target)
        if method == "CONNECT" or url.scheme != "http" or not url.hostname:
            answer(writer, "405 Method Not Allowed", "only plain http:// proxy requests")
            return await self._close(writer)
        port = url.port or 80
        where = f"{url.hostname}:{port}"
        if self.allow and where not in self.allow:
            print(f"egress_proxy: refused {method} {target}", flush=True)
            answer(writer, "403 Forbidden", f"{where} is not an allowed destination")
            return await self._close(writer)
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(url.hostname, port), 10
            )
        except (OSError, asyncio.TimeoutError) as e:
            answer(writer, "502 Bad Gateway", f"cannot reach {where}: {e}")
            return await self._close(writer)
        path = url.path or "/"
        if url.query:
            path += "?" + url.query
        headers = [
            h
            for h in lines[1:]
            if h and not h.lower().startswith(("proxy-", "connection:", "keep-alive:"))
        ]
        up_writer.write(
            "\r\n".join(
                [f"{method} {path} {version}", *headers, "Connection: close", "", ""]
            ).encode("latin-1")
        )
        print(f"egress_proxy: {method} {target}", flush=True)
        upload = asyncio.create_task(pipe(reader, up_writer))
        await pipe(up_reader, writer)  # the answer; upstream closes after it
        upload.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await upload
        up_writer.close()
        await self._close(writer)

    async def _close(self, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await writer.drain()
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def serve(args: argparse.Namespace) -> None:
    proxy = EgressProxy(args.allow or [])
    server = await asyncio.start_server(proxy.handle, args.ip, args.port, limit=MAX_HEAD)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    allowed = ", ".join(args.allow) if args.allow else "any destination"
    print(f"egress_proxy: listening on {args.ip}:{args.port}, forwarding to {allowed}", flush=True)
    await stop.wait()
    server.close()
    await server.wait_closed()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="egress_proxy", description=__doc__.split("\n\n")[0])
    p.add_argument("--ip", required=True)
    p.add_argument("--port", type=int, default=3128)
    p.add_argument("--allow", action="append", help="HOST:PORT that may be reached (repeat)")
    asyncio.run(serve(p.parse_args(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    main()
