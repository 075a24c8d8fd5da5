"""A site's egress: how batch nodes reach the hub without the hub reaching them.

HPC compute nodes usually cannot be reached from outside, and reach outside only through a
gateway. In a local topology the hub and the compute hosts share no network and nothing
forwards packets, so the way out is this process on a host that is on both networks (the
Outpost/login host). It offers two things:

- TCP relays, ``--relay PORT=HOST:PORT``: connections to ``--ip:PORT`` are passed on to
  ``HOST:PORT``. With the hub's ``outposts[NAME]["hub_api_url"]`` set to
  ``http://LOGIN:PORT/hub/api`` the jobs' ``JUPYTERHUB_API_URL``, activity and setuptunnel
  URLs point at the relay, so ``jupyterhub-singleuser`` (which checks the hub API before it
  listens) and ``report_address`` reach the hub.
- An HTTP forward proxy on ``--port`` (for ``http_proxy=``): plain-HTTP proxy requests
  (absolute URLs; no CONNECT, no TLS, one request per connection) to the targets in
  ``--allow`` (``HOST:PORT``; none given: any), 403 for anything else. ``report_address``
  honours ``http_proxy``; ``jupyterhub-singleuser``'s client does not.

::

    python -m outpost_scenarios.egress_proxy --ip 10.231.2.2 \\
        --relay 8081=10.231.1.2:8081 [--port 3128 --allow 10.231.1.2:8081]
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


def relay_handler(listen: int, host: str, port: int):
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
        except (OSError, asyncio.TimeoutError) as e:
            print(f"egress_proxy: relay {listen} -> {host}:{port} failed: {e}", flush=True)
            writer.close()
            return
        print(f"egress_proxy: relay {listen} -> {host}:{port} for {peer[0]}", flush=True)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        up_writer.close()
        writer.close()

    return handle


def parse_relay(text: str) -> tuple[int, str, int]:
    try:
        listen, _, target = text.partition("=")
        host, _, port = target.rpartition(":")
        if not host:
            raise ValueError
        return int(listen), host, int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--relay {text!r}: use PORT=HOST:PORT") from None


async def serve(args: argparse.Namespace) -> None:
    servers = []
    for listen, host, port in args.relay or []:
        servers.append(
            await asyncio.start_server(relay_handler(listen, host, port), args.ip, listen)
        )
        print(f"egress_proxy: relaying {args.ip}:{listen} to {host}:{port}", flush=True)
    if args.port:
        proxy = EgressProxy(args.allow or [])
        servers.append(await asyncio.start_server(proxy.handle, args.ip, args.port, limit=MAX_HEAD))
        allowed = ", ".join(args.allow) if args.allow else "any destination"
        print(
            f"egress_proxy: HTTP proxy on {args.ip}:{args.port}, forwarding to {allowed}",
            flush=True,
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for server in servers:
        server.close()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="egress_proxy", description=__doc__.split("\n\n")[0])
    p.add_argument("--ip", required=True)
    p.add_argument("--port", type=int, default=0, help="HTTP proxy port (0: no HTTP proxy)")
    p.add_argument("--allow", action="append", help="HOST:PORT the HTTP proxy may reach (repeat)")
    p.add_argument(
        "--relay",
        action="append",
        type=parse_relay,
        metavar="PORT=HOST:PORT",
        help="TCP relay (repeat)",
    )
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if not args.port and not args.relay:
        p.error("give --relay PORT=HOST:PORT and/or --port for the HTTP proxy")
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
