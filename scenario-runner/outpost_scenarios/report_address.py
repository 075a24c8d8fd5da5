"""Start a server on a batch node and tell the hub where it listens.

Delayed tunneling: the Outpost cannot know where a batch job's server will listen, so the
job reports it itself once the server accepts connections::

    python -m outpost_scenarios.report_address [--ip IP] [--port N] -- jupyterhub-singleuser [ARGS]
    python -m outpost_scenarios.report_address --service HOST:PORT     # report only

Wrapper mode picks a free port on ``--ip`` (default: this node's address towards the hub,
the one it uses to reach the setuptunnel URL's host), rewrites ``JUPYTERHUB_SERVICE_URL`` to ``http://IP:PORT/...`` (which
``jupyterhub-singleuser`` listens on), replaces ``{ip}`` and ``{port}`` in the command's
arguments, starts the command (no shell), waits until ``IP:PORT`` accepts TCP connections,
and then POSTs ``{"service": "IP:PORT"}`` with ``Authorization: token $JUPYTERHUB_API_TOKEN``
to ``$JUPYTERHUB_SETUPTUNNEL_URL`` (retrying with backoff while the hub is unreachable or
answers 5xx; through ``$http_proxy`` when set, as on sites whose nodes reach out only through
a proxy). It then waits for the command, passes SIGTERM/SIGINT on, and exits with its code. If
the server never listens, or the hub refuses the report, it ends the command and exits 1: the
batch job ends, and the hub, which checks the Outpost while it waits, fails the start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import urllib.error
import urllib.request
from urllib.parse import urlsplit, urlunsplit

from jupyterhub.utils import exponential_backoff


def say(text: str) -> None:
    print(f"report_address: {text}", file=sys.stderr, flush=True)


def free_port(ip: str) -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


class ReportRefused(RuntimeError):
    """The receiver answered with a 4xx: retrying will not help."""


def post_json(url: str, token: str, body: dict, timeout: float = 10) -> int:
    """POST JSON (through ``http_proxy`` when set); the answer's status."""
    if not str(url).startswith(("http://", "https://")):
        raise ValueError(f"only http(s) URLs are used, not {url!r}")
    req = urllib.request.Request(  # noqa: S310 - scheme checked above
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - scheme checked
            return resp.status
    except urllib.error.HTTPError as e:
        if 400 <= e.code < 500 and e.code != 429:
            detail = e.read()[:300].decode(errors="replace")
            raise ReportRefused(f"{url} refused the address: {e.code} {detail}") from None
        return e.code


async def report(url: str, token: str, service: str, timeout: float) -> None:
    """POST ``{"service": service}`` until a 2xx answer (backoff), or raise."""

    async def once() -> bool:
        try:
            status = await asyncio.to_thread(post_json, url, token, {"service": service})
        except (urllib.error.URLError, OSError) as e:
            say(f"{url} not reachable yet ({e}); retrying")
            return False
        if 200 <= status < 300:
            return True
        say(f"{url} answered {status}; retrying")
        return False

    await exponential_backoff(
        once,
        f"could not report {service} to {url} within {timeout:.0f}s",
        max_wait=5,
        timeout=timeout,
    )


async def report_to_hub(service: str, timeout: float) -> None:
    url = os.environ.get("JUPYTERHUB_SETUPTUNNEL_URL")
    if not url:
        raise ReportRefused("JUPYTERHUB_SETUPTUNNEL_URL is not set: nobody to tell")
    await report(url, os.environ.get("JUPYTERHUB_API_TOKEN", ""), service, timeout)
    say(f"reported {service} to {url}")


def address_towards_hub() -> str:
    """The address of this node on the network it reaches the hub (its relay) through: a
    UDP socket "connected" to the setuptunnel URL's host (no packet is sent)."""
    host = urlsplit(os.environ.get("JUPYTERHUB_SETUPTUNNEL_URL", "")).hostname
    if not host:
        return "127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((host, 9))
        return s.getsockname()[0]


async def can_connect(ip: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), 2)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def wrap(args: argparse.Namespace, command: list[str]) -> int:
    ip = args.ip or address_towards_hub()
    port = args.port or free_port(ip)
    env = dict(os.environ)
    service_url = env.get("JUPYTERHUB_SERVICE_URL")
    if service_url:
        parts = urlsplit(service_url)
        env["JUPYTERHUB_SERVICE_URL"] = urlunsplit(parts._replace(netloc=f"{ip}:{port}"))
    argv = [a.replace("{ip}", ip).replace("{port}", str(port)) for a in command]
    proc = await asyncio.create_subprocess_exec(*argv, env=env)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, lambda s=sig: proc.returncode is None and proc.send_signal(s))
    exited = asyncio.ensure_future(proc.wait())

    async def listening() -> bool:
        if exited.done():
            raise RuntimeError(f"{argv[0]} exited with code {proc.returncode} before it listened")
        return await can_connect(ip, port)

    service = f"{ip}:{port}"
    try:
        await exponential_backoff(
            listening,
            f"{argv[0]} did not listen on {service} within {args.timeout:.0f}s",
            max_wait=1,
            timeout=args.timeout,
        )
        await report_to_hub(service, args.timeout)
    except (RuntimeError, ReportRefused, asyncio.TimeoutError, TimeoutError) as e:
        say(str(e))
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(exited, 10)
            except asyncio.TimeoutError:
                proc.kill()
        await exited
        return 1
    rc = await exited
    return rc if rc >= 0 else 128 - rc


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    command: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, command = argv[:i], argv[i + 1 :]
    p = argparse.ArgumentParser(
        prog="python -m outpost_scenarios.report_address",
        description="Start a server and report its address to the hub (delayed tunneling).",
    )
    p.add_argument(
        "--ip", help="address the server listens on (default: this node's address towards the hub)"
    )
    p.add_argument("--port", type=int, help="port (default: a free one)")
    p.add_argument("--service", help="only report this HOST:PORT and exit")
    p.add_argument(
        "--timeout", type=float, default=120, help="seconds to wait for listen and report"
    )
    args = p.parse_args(argv)
    if args.service:
        try:
            asyncio.run(report_to_hub(args.service, args.timeout))
        except (ReportRefused, asyncio.TimeoutError, TimeoutError) as e:
            sys.exit(f"report_address: {e}")
        return
    if not command:
        p.error("give the command after --, or --service HOST:PORT")
    sys.exit(asyncio.run(wrap(args, command)))


if __name__ == "__main__":
    main()
