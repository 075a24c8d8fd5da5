"""Fixtures that start real processes on 127.0.0.1: an HTTP target, an SSH endpoint, the daemon.

Every process is stopped at teardown (SIGTERM, then SIGKILL), even when the test fails.
Nothing sleeps to synchronise: :func:`wait_until` polls a condition with exponential backoff.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import asyncssh
import pytest
from jupyterhub.utils import exponential_backoff
from jupyterhub_outpost.hub.tunnel_client import TunnelClient
from jupyterhub_outpost.keys import generate_ssh_key
from jupyterhub_outpost.outpost.ssh_endpoint import load_or_create_host_key, public_key_line

HERE = Path(__file__).parent
PYTHON = sys.executable
TOKEN = "test-token-" + os.urandom(8).hex()
METRICS_TOKEN = "test-metrics-" + os.urandom(8).hex()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_until(predicate, message: str, timeout: float = 20):
    """Wait until ``predicate()`` (sync or async) is truthy; return its value."""
    return await exponential_backoff(
        predicate, message, start_wait=0.02, max_wait=0.5, timeout=timeout
    )


async def port_open(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    return True


async def http_get(
    port: int, path: str = "/", timeout: float = 15, host: str = "127.0.0.1"
) -> tuple[int, bytes]:
    """One HTTP/1.0 GET on a NEW connection; (status, body). status 0: closed (or reset) without an answer."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout)
    except ConnectionResetError:
        data = b""  # closed with unread request data: RST instead of FIN
    finally:
        writer.close()
    if not data:
        return 0, b""
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


class Proc:
    """A child process whose output goes to a log file."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict | None = None):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.env = env
        self.popen: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.popen = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=str(HERE)
        )
        log.close()

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(sig)
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def procs():
    started: list[Proc] = []
    yield started
    for p in reversed(started):
        p.stop()


class HubKey:
    def __init__(self, path: Path):
        self.path = str(path)
        self.key: asyncssh.SSHKey = generate_ssh_key(self.path)
        self.public = self.key.export_public_key().decode().strip()


@pytest.fixture
def hub_key(tmp_path) -> HubKey:
    return HubKey(tmp_path / "hub_key")


class Target:
    def __init__(self, port: int, proc: Proc):
        self.port = port
        self.proc = proc


async def start_target(procs, tmp_path, name="target") -> Target:
    port = free_port()
    proc = Proc(
        name, [PYTHON, str(HERE / "http_target.py"), str(port), name], tmp_path / f"{name}.log"
    )
    procs.append(proc)
    proc.start()
    await wait_until(lambda: port_open(port), f"HTTP target {name} did not start")
    return Target(port, proc)


@pytest.fixture
async def target(procs, tmp_path) -> Target:
    return await start_target(procs, tmp_path)


class Endpoint:
    """An SSHEndpoint process; ``restart()`` keeps its port and host key."""

    def __init__(self, procs, tmp_path: Path, keys: dict, allow: list[str], name="endpoint"):
        self.procs = procs
        self.port = free_port()
        self.host_key_path = tmp_path / f"{name}_host_key"
        self.public_host_key = public_key_line(load_or_create_host_key(str(self.host_key_path)))
        self.keys_path = tmp_path / f"{name}_keys.json"
        self.keys_path.write_text(json.dumps(keys))
        argv = [PYTHON, str(HERE / "endpoint_server.py"), "--host-key", str(self.host_key_path)]
        argv += ["--port", str(self.port), "--authorized-keys", str(self.keys_path)]
        for entry in allow:
            argv += ["--allow", entry]
        self.proc = Proc(name, argv, tmp_path / f"{name}.log")
        procs.append(self.proc)

    def ssh(self, user="hub", host_key=None) -> dict:
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "user": user,
            "host_key": host_key or self.public_host_key,
        }

    async def start(self) -> None:
        self.proc.start()
        await wait_until(lambda: port_open(self.port), "SSH endpoint did not start")

    def stop(self) -> None:
        self.proc.stop()

    async def restart(self) -> None:
        self.stop()
        await self.start()

    @property
    def logins(self) -> int:
        return self.proc.log.count("SSH login of hub")


@pytest.fixture
async def endpoint(procs, tmp_path, hub_key) -> Endpoint:
    ep = Endpoint(
        procs,
        tmp_path,
        {"hub": [hub_key.public]},
        ["127.0.0.1:1024-65535"],
    )
    await ep.start()
    return ep


class Daemon:
    """A tunnel daemon process with its API client."""

    def __init__(self, procs, tmp_path: Path, ssh_key_path: str, **options):
        self.api_port = free_port()
        self.state_file = tmp_path / "tunnels.json"
        self.url = f"http://127.0.0.1:{self.api_port}"
        env = dict(
            os.environ, OUTPOST_TUNNEL_API_TOKEN=TOKEN, OUTPOST_TUNNEL_METRICS_TOKEN=METRICS_TOKEN
        )
        argv = [PYTHON, "-m", "jupyterhub_outpost", "tunnels"]
        argv += ["--api-port", str(self.api_port), "--ssh-key", ssh_key_path]
        argv += ["--state-file", str(self.state_file), "--log-level", "DEBUG"]
        traits = {"reconnect_initial_delay": 0.1, "reconnect_max_delay": 0.5, "hold_timeout": 10}
        traits.update(options)
        argv += [f"--TunnelDaemon.{name}={value}" for name, value in traits.items()]
        self.proc = Proc("daemon", argv, tmp_path / "daemon.log", env=env)
        procs.append(self.proc)
        self.client = TunnelClient(self.url, TOKEN)

    async def start(self) -> None:
        self.proc.start()
        await wait_until(self.client.ping, "tunnel daemon API did not answer /ping")

    async def forward(self, key: str) -> dict:
        for f in await self.client.list_forwards():
            if f["key"] == key:
                return f
        raise KeyError(key)

    async def wait_state(self, key: str, state: str, timeout: float = 20) -> dict:
        async def check():
            f = await self.forward(key)
            return f if f["state"] == state else False

        return await wait_until(check, f"forward {key} never reached state {state}", timeout)


@pytest.fixture
async def daemon(procs, tmp_path, hub_key) -> Daemon:
    d = Daemon(procs, tmp_path, hub_key.path)
    await d.start()
    return d
