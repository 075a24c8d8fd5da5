"""Figure 5 [tunnels]: many forwards over one SSH connection.

The real tunnel daemon (``jupyterhub-outpost tunnels``) holds ``forwards`` forwards to a
real jupyter-server, all through one SSH endpoint (tunnel_compare's ``endpoint_server``)
and so over one SSH connection, which runs through ``bench.relay`` so that it can be cut.

- setup_s: from the first PUT /forwards (16 at a time) until every forward answered
  ``GET /api`` with 200;
- rss_mb: the daemon's resident memory then (and idle, before the first forward);
- recover_s: from the cut until every forward answered ``GET /api`` with 200 again.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.request
from pathlib import Path

import aiohttp

from bench import tunnel_compare as tc
from bench.common import PYTHON, ROOT, async_get, background, free_port, rss_kb

CONCURRENCY = 16


async def put_all(api: str, token: str, ssh: dict, target_port: int, n: int) -> list[int]:
    """PUT forwards fwd-0..fwd-(n-1); their local ports."""
    gate = asyncio.Semaphore(CONCURRENCY)
    headers = {"Authorization": f"token {token}"}
    async with aiohttp.ClientSession(headers=headers) as session:

        async def one(i: int) -> int:
            body = {"ssh": ssh, "target_host": "127.0.0.1", "target_port": target_port}
            async with gate, session.put(f"{api}/forwards/fwd-{i}", json=body) as response:
                if response.status != 200:
                    raise RuntimeError(f"PUT fwd-{i}: {response.status} {await response.text()}")
                return (await response.json())["local_port"]

        return list(await asyncio.gather(*(one(i) for i in range(n))))


async def all_answer(ports: list[int], deadline: float) -> None:
    """GET /api through every port until each answered 200 once (bounded by ``deadline``)."""
    todo = set(ports)
    gate = asyncio.Semaphore(CONCURRENCY * 2)
    delay = 0.01

    async def check(port: int) -> bool:
        async with gate:
            try:
                status, _ = await async_get(port, "/api", timeout=5)
            except (OSError, asyncio.TimeoutError):
                return False
            return status == 200

    while todo:
        results = await asyncio.gather(*(check(p) for p in todo))
        todo = {p for p, ok in zip(list(todo), results, strict=True) if not ok}
        if not todo:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(todo)} of {len(ports)} forwards still not answering")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.25)


def relay_count(path: Path) -> int:
    try:
        return int(path.read_text() or 0)
    except (OSError, ValueError):
        return 0


def run(workdir: Path, p: dict, log=print) -> dict:
    n = p["forwards"]
    work = workdir / "forwards"
    work.mkdir()
    token = os.urandom(16).hex()
    log(f"  tunnels: {n} forwards over one SSH connection")
    with tc.jupyter_server(work, 1, token) as (jport, _path, _size):
        with tc.endpoint_server(work, jport) as server:
            relay_port, status_file = free_port(), work / "relay.status"
            relay_argv = [PYTHON, "-m", "bench.relay", "--listen-port", str(relay_port)]
            relay_argv += ["--target-port", str(server.port), "--status", str(status_file)]
            with background(
                relay_argv, work / "relay.log", env=dict(os.environ, PYTHONPATH=str(ROOT))
            ) as relay:
                tc.wait_for(lambda: tc.port_open(relay_port), "relay")
                api_port, api_token = free_port(), os.urandom(16).hex()
                argv = [PYTHON, "-m", "jupyterhub_outpost", "tunnels", "--api-port", str(api_port)]
                argv += ["--ssh-key", str(server.client_key_path)]
                argv += ["--state-file", str(work / "state.json"), "--log-level", "INFO"]
                env = dict(os.environ, OUTPOST_TUNNEL_API_TOKEN=api_token)
                with background(argv, work / "daemon.log", env=env) as daemon:
                    tc.wait_for(lambda: tc.port_open(api_port), "tunnel daemon")
                    time.sleep(0.5)
                    idle_kb = rss_kb(daemon.pid)
                    ssh = {
                        "host": "127.0.0.1",
                        "port": relay_port,
                        "user": server.user,
                        "host_key": server.host_key,
                    }
                    api = f"http://127.0.0.1:{api_port}"

                    split: dict = {}

                    async def setup() -> list[int]:
                        ports = await put_all(api, api_token, ssh, jport, n)
                        split["put_s"] = time.perf_counter() - t0
                        await all_answer(ports, time.monotonic() + 120)
                        return ports

                    before = relay_count(status_file)  # the readiness probe's connection
                    t0 = time.perf_counter()
                    ports = asyncio.run(setup())
                    setup_s = time.perf_counter() - t0
                    log(f"    every PUT answered after {split['put_s']:.2f}s")
                    rss_mb = rss_kb(daemon.pid) / 1024
                    connections = relay_count(status_file)
                    log(
                        f"    set up in {setup_s:.2f}s over {connections - before} SSH connection(s)"
                    )
                    t0 = time.perf_counter()
                    relay.send_signal(signal.SIGUSR1)
                    tc.wait_for(
                        lambda: relay_count(status_file) > connections,
                        "the daemon to reconnect",
                        timeout=60,
                    )
                    asyncio.run(all_answer(ports, time.monotonic() + 120))
                    recover_s = time.perf_counter() - t0
                    log(f"    recovered in {recover_s:.2f}s")
                    forwards = json.loads(api_get(api + "/forwards", api_token))["forwards"]
                    if len(forwards) != n:
                        raise RuntimeError(f"the daemon holds {len(forwards)} of {n} forwards")
    return {
        # the keys keep the names (…_500) whatever ``forwards`` is; "forwards" says n
        "setup_s_500": setup_s,
        "rss_mb_500": rss_mb,
        "recover_s_500": recover_s,
        "rss_mb_idle": idle_kb / 1024,
        "put_s": split["put_s"],  # of setup_s: until the last PUT was answered
        "forwards": n,
        "ssh_connections": connections - before,
    }


def api_get(url: str, token: str) -> bytes:
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - 127.0.0.1
        return response.read()
