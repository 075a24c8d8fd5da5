"""A hub site on 127.0.0.1 for figures 2 and 3, from the tests' own fixtures:

- ``hub_with_outpost``: a real JupyterHub (+ configurable-http-proxy) whose spawner is
  ``outpost``, its managed tunnel daemon, and one real Outpost (REST API + SSH endpoint)
  running ``SimpleLocalProcessSpawner`` with ``jupyterhub-singleuser`` (jupyter-server).
  The Outpost is not ``direct``, so every request to a server runs through the tunnel.
- ``hub_with_local_spawner``: the same hub with ``SimpleLocalProcessSpawner`` on the hub
  itself (the baseline of figure 3).

Every server's home directory holds ``big.bin`` (figure 2 downloads it through the proxy).
"""

from __future__ import annotations

import os
import secrets
from contextlib import ExitStack, contextmanager
from pathlib import Path

import asyncssh

from bench import tunnel_compare as tc
from bench.common import BIN, free_port
from bench.outpost import BenchOutpost
from tests.helpers.hub_process import HubProcess

HUB_NAME = "hub"


def spawner_lines(prefix: str, home: Path) -> str:
    """Config of SimpleLocalProcessSpawner (as ``prefix``) running jupyterhub-singleuser."""
    args = ["--ServerApp.open_browser=False"]
    args += ["--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if os.geteuid() == 0:
        args.append("--allow-root")
    return f"""
c.{prefix}.cmd = [{str(BIN / "jupyterhub-singleuser")!r}]
c.{prefix}.args = {args!r}
c.{prefix}.ip = "127.0.0.1"
c.{prefix}.home_dir_template = {str(home / "{username}")!r}
c.{prefix}.interrupt_timeout = 3
c.{prefix}.term_timeout = 3
c.{prefix}.kill_timeout = 3
"""


def hub_common() -> str:
    return """
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 90
c.Spawner.poll_interval = 30
c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 120}
c.JupyterHub.last_activity_interval = 3600
"""


def make_homes(home: Path, users: list[str], size_mb: int) -> None:
    """Each user's home with ``big.bin`` (random bytes, ``size_mb`` MiB)."""
    block = os.urandom(1 << 20)
    for user in users:
        d = home / user
        d.mkdir(parents=True, exist_ok=True)
        with open(d / "big.bin", "wb") as f:
            for _ in range(size_mb):
                f.write(block)


@contextmanager
def hub_with_local_spawner(workdir: Path, users: list[str], size_mb: int):
    home = workdir / "home-local"
    make_homes(home, users, size_mb)
    config = (
        'c.JupyterHub.spawner_class = "simple"\n'
        + spawner_lines("SimpleLocalProcessSpawner", home)
        + hub_common()
    )
    with HubProcess(workdir / "hub-local", config, log_level="INFO") as hub:
        for user in users:
            hub.create_user(user)
        yield hub


@contextmanager
def hub_with_outpost(workdir: Path, users: list[str], size_mb: int):
    """Yields (hub, user_options for a start through the Outpost, outpost process)."""
    home = workdir / "home-outpost"
    make_homes(home, users, size_mb)
    d = workdir / "outpost-site"
    d.mkdir()
    hub_key, host_key = (asyncssh.generate_private_key("ssh-ed25519") for _ in range(2))
    tc.write_key(d / "hub_ed25519", hub_key)
    data = d / "outpost-data"
    data.mkdir()
    tc.write_key(data / "ssh_host_ed25519_key", host_key)
    ssh_port, tunnel_port = free_port(), free_port()
    secret, tunnel_token = secrets.token_hex(16), secrets.token_hex(16)
    (d / "outpost_config.py").write_text(
        "from jupyterhub.spawner import SimpleLocalProcessSpawner\n"
        "c.JupyterHubOutpost.spawner_class = SimpleLocalProcessSpawner\n"
        + spawner_lines("SimpleLocalProcessSpawner", home)
        + f"""
c.JupyterHubOutpost.ssh_ip = "127.0.0.1"
c.JupyterHubOutpost.ssh_port = {ssh_port}
c.JupyterHubOutpost.ssh_authorized_keys = {{{HUB_NAME!r}: [{tc.public_line(hub_key)!r}]}}
"""
    )
    outposts = {
        "bench": {
            "url": "",  # set below
            "hub_name": HUB_NAME,
            "secret": secret,
            "ssh": {
                "host": "127.0.0.1",
                "port": ssh_port,
                "user": HUB_NAME,
                "host_key": tc.public_line(host_key),
            },
            "display_name": "Bench Outpost",
        }
    }
    with ExitStack() as stack:
        outpost = BenchOutpost(
            d / "outpost_config.py",
            data,
            hub_credentials={HUB_NAME: secret},
            ssh=True,
            cwd=str(tc.ROOT),
        )
        stack.callback(outpost.close)
        outpost.start(timeout=60)
        outposts["bench"]["url"] = outpost.url
        config = f"""
from jupyterhub_outpost.hub import outpost_handlers, tunnel_daemon_service
c.JupyterHub.spawner_class = "outpost"
c.JupyterHub.extra_handlers = outpost_handlers()
c.JupyterHub.services.append(tunnel_daemon_service(
    ssh_key={str(d / "hub_ed25519")!r}, state_file={str(d / "tunnels.json")!r},
    token={tunnel_token!r}, api_port={tunnel_port}))
c.OutpostSpawner.outposts = {outposts!r}
c.OutpostSpawner.tunnel_api_url = "http://127.0.0.1:{tunnel_port}"
c.OutpostSpawner.tunnel_api_token = {tunnel_token!r}
c.OutpostSpawner.tunnel_up_timeout = 30
""" + hub_common()
        hub = stack.enter_context(HubProcess(d / "hub", config, log_level="INFO"))
        tc.wait_for(lambda: tc.port_open(tunnel_port), "the managed tunnel daemon", 30)
        for user in users:
            hub.create_user(user)
        yield hub, {"outpost": "bench"}, outpost
