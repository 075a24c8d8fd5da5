"""Forward rights are bound to one live server of the hub, not to a stale record.

Before: the SSH endpoint let a hub forward to any address that one of its servers had in
the database as running. Spawners reuse addresses (a fixed port, a pod IP after the pod
died, a batch node), so when hub B's server died unnoticed and hub A's new server got the
same address, hub B's key reached hub A's server. Now an address is held by the live
server that reported it; another hub's server at the same address, a poll that finds the
server gone, a stop or an Outpost restart end the right, and open forwards are closed.

The first test runs it for real: an Outpost process with its SSH endpoint and a spawner
that hands every server the same fixed port, two hubs with their own SSH keys, each with
its own real tunnel daemon process; HTTP goes through the daemons' local ports.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from jupyterhub_outpost.hub.tunnel_client import TunnelClient
from jupyterhub_outpost.keys import generate_ssh_key
from jupyterhub_outpost.outpost.ssh_endpoint import load_or_create_host_key, public_key_line

from tests.helpers.outpost_process import free_port, process_alive
from tests.outpost.support import MINI_SINGLEUSER, Api, fetch_or_none, start_body, wait_for

HUBS = {"hubA": "secret-of-hub-a", "hubB": "secret-of-hub-b"}
DAEMON_TOKEN = "daemon-token-" + os.urandom(6).hex()


async def through(port: int) -> dict | None:
    """What answers a GET through a forward's local port (a new SSH channel each time)."""
    return await fetch_or_none(f"127.0.0.1:{port}")


class TunnelDaemon:
    """A hub's real tunnel daemon process (``jupyterhub-outpost tunnels``) with its key."""

    def __init__(self, tmp: Path, hub: str):
        tmp.mkdir()
        self.hub = hub
        self.key_path = tmp / "hub_key"
        self.public_key = generate_ssh_key(str(self.key_path)).export_public_key().decode()
        self.api_port = free_port()
        self.log = open(tmp / "daemon.log", "ab")  # noqa: SIM115 - closed in close()
        argv = [sys.executable, "-m", "jupyterhub_outpost", "tunnels", "--api-port"]
        argv += [str(self.api_port), "--ssh-key", str(self.key_path)]
        argv += ["--state-file", str(tmp / "tunnels.json"), "--log-level", "DEBUG"]
        argv += [
            "--TunnelDaemon.reconnect_initial_delay=0.1",
            "--TunnelDaemon.reconnect_max_delay=0.5",
        ]
        env = dict(os.environ, OUTPOST_TUNNEL_API_TOKEN=DAEMON_TOKEN)
        self.proc = subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.client = TunnelClient(f"http://127.0.0.1:{self.api_port}", DAEMON_TOKEN)

    async def forward(self, key: str, ssh: dict, address: str) -> int:
        host, _, port = address.rpartition(":")
        ssh = dict(ssh, user=self.hub)
        fwd = await self.client.put_forward(key, ssh=ssh, target_host=host, target_port=int(port))
        return fwd["local_port"]

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


@pytest.fixture
async def site(tmp_path, outpost_process_factory):
    """An Outpost process whose spawner puts every server on the same fixed port, and a
    tunnel daemon per hub."""
    daemons = {hub: TunnelDaemon(tmp_path / hub, hub) for hub in HUBS}
    ssh_port, fixed_port = free_port(), free_port()
    host_key = load_or_create_host_key(str(tmp_path / "data" / "ssh_host_ed25519_key"))
    keys = {hub: [daemon.public_key.strip()] for hub, daemon in daemons.items()}
    config = tmp_path / "outpost_config.py"
    config.write_text(
        f"""
c.JupyterHubOutpost.spawner_class = "jupyterhub.spawner.SimpleLocalProcessSpawner"
c.SimpleLocalProcessSpawner.cmd = [{sys.executable!r}, {str(MINI_SINGLEUSER)!r}]
c.SimpleLocalProcessSpawner.home_dir_template = {str(tmp_path / "home" / "{username}")!r}
c.SimpleLocalProcessSpawner.ip = "127.0.0.1"
c.SimpleLocalProcessSpawner.port = {fixed_port}  # every server gets the same address
c.SimpleLocalProcessSpawner.interrupt_timeout = 2
c.JupyterHubOutpost.ssh_ip = "127.0.0.1"
c.JupyterHubOutpost.ssh_port = {ssh_port}
c.JupyterHubOutpost.ssh_authorized_keys = {keys!r}
"""
    )
    outpost = outpost_process_factory(
        config, tmp_path / "data", hub_credentials=HUBS, ssh=True, start=False
    )
    await outpost.astart(timeout=90)  # a busy shared machine starts it slowly
    for daemon in daemons.values():
        await wait_for(daemon.client.ping, "the tunnel daemon answers")
    ssh = {"host": "127.0.0.1", "port": ssh_port, "host_key": public_key_line(host_key)}
    try:
        yield outpost, Api(outpost.url, HUBS), daemons, ssh
    finally:
        for daemon in daemons.values():
            daemon.close()


async def test_a_hub_cannot_reach_another_hubs_new_server_at_its_old_servers_address(site):
    outpost, api, daemons, ssh = site
    # hub B's server runs; hub B reaches it through its tunnel
    code, data = await api.call("POST", "/services", hub="hubB", body=start_body("b1", user="bob"))
    assert code == 200, data
    address = data["service"]
    b_port = await daemons["hubB"].forward("b.b1", ssh, address)
    bob = await wait_for(lambda: through(b_port), "hub B reaches its server")
    assert bob["user"] == "bob"

    # it dies without the Outpost noticing; hub A's new server gets the same address
    os.kill(bob["pid"], signal.SIGKILL)
    await wait_for(lambda: not process_alive(bob["pid"]), "hub B's server gone")
    code, data = await api.call("POST", "/services", hub="hubA", body=start_body("a1"))
    assert code == 200 and data["service"] == address, data
    a_port = await daemons["hubA"].forward("a.a1", ssh, address)
    alice = await wait_for(lambda: through(a_port), "hub A reaches its server")
    assert alice["user"] == "alice"

    # hub B's key no longer reaches that address: not hub A's server, not anything
    for _ in range(3):
        assert await through(b_port) is None
    assert "SSH endpoint refused forward for hub hubB" in outpost.log_text()
    # the check found hub B's server gone: hub B's poll says so
    code, data = await api.call("GET", "/services/b1", hub="hubB")
    assert code == 200 and data["status"] is not None, data
    assert (await through(a_port))["user"] == "alice"

    # an Outpost restart keeps hub A's right (its server is recovered) and not hub B's
    outpost.kill()
    await outpost.astart(timeout=90)  # a busy shared machine starts it slowly
    assert (await wait_for(lambda: through(a_port), "hub A after the restart"))["user"] == "alice"
    assert await through(b_port) is None

    # hub A's stop ends hub A's right too
    assert (await api.call("DELETE", "/services/a1", hub="hubA"))[0] == 200
    await wait_for(lambda: not process_alive(alice["pid"]), "hub A's server gone")
    assert await through(a_port) is None


# ------------------------------------------------------------------ in-process details
class Listener:
    """A TCP server that is not a spawner's process: it outlives the server's stop, as a
    reused address would (another pod, another job)."""

    def __init__(self):
        self.server = None
        self.connections: list[asyncio.StreamWriter] = []

    async def start(self):
        async def handle(reader, writer):
            self.connections.append(writer)
            while data := await reader.read(1024):
                writer.write(data)  # an echo
                await writer.drain()
            writer.close()

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    def close(self):
        self.server.close()


ADDRESS_SPAWNER = '''
from jupyterhub.spawner import Spawner


class AddressSpawner(Spawner):
    """Answers the address in user_options; "runs" until stopped or marked dead."""

    DEAD = set()

    async def start(self):
        self._running = True
        return ("127.0.0.1", int(self.user_options["port"]))

    async def poll(self):
        if self.name in AddressSpawner.DEAD:
            return 1
        return None if getattr(self, "_running", True) else 0

    async def stop(self, now=False):
        self._running = False
'''


@pytest.fixture
async def address_outpost(make_outpost, tmp_path):
    namespace: dict = {}
    exec(compile(ADDRESS_SPAWNER, "address_spawner", "exec"), namespace)  # noqa: S102
    spawner = namespace["AddressSpawner"]
    outpost = await make_outpost(
        spawner_class=spawner,
        hub_credentials=dict(HUBS),
        allowed_forward_targets=["127.0.0.1/32:41000-41010"],
    )
    return outpost, spawner, Api(outpost.url, HUBS)


def body(name, port, user="alice"):
    return start_body(
        name, user=user, env={"JUPYTERHUB_SERVER_NAME": name}, user_options={"port": port}
    )


async def test_an_address_held_by_servers_of_two_hubs_is_refused_to_both_until_polls_tell(
    address_outpost,
):
    outpost, spawner, api = address_outpost
    authorize = outpost.app.manager.authorize_forward
    assert (await api.call("POST", "/services", hub="hubB", body=body("b", 40001)))[0] == 200
    assert await authorize("hubB", "127.0.0.1", 40001) is True
    # both "live" at once (a shared address): nobody may forward to it
    assert (await api.call("POST", "/services", hub="hubA", body=body("a", 40001)))[0] == 200
    assert await authorize("hubA", "127.0.0.1", 40001) is False
    assert await authorize("hubB", "127.0.0.1", 40001) is False
    # hub B's server turns out dead: hub A's is the one there
    spawner.DEAD.add("b")
    assert await authorize("hubA", "127.0.0.1", 40001) is True
    assert await authorize("hubB", "127.0.0.1", 40001) is False
    assert (await api.call("GET", "/services/b", hub="hubB"))[1]["status"] == 1


async def test_a_server_that_fails_a_poll_loses_its_forward_right_before_the_next_forward(
    address_outpost,
):
    outpost, spawner, api = address_outpost
    outpost.app.forward_recheck_interval = 0  # every forward polls
    authorize = outpost.app.manager.authorize_forward
    assert (await api.call("POST", "/services", hub="hubB", body=body("b", 40002)))[0] == 200
    assert await authorize("hubB", "127.0.0.1", 40002) is True
    spawner.DEAD.add("b")  # gone; whatever listens there now is not hub B's
    assert await authorize("hubB", "127.0.0.1", 40002) is False
    assert await authorize("hubB", "[::ffff:127.0.0.1]", 40002) is False


async def test_addresses_are_compared_in_one_canonical_form(address_outpost):
    outpost, _, api = address_outpost
    authorize = outpost.app.manager.authorize_forward
    assert (await api.call("POST", "/services", hub="hubA", body=body("a", 40003)))[0] == 200
    for host in ("127.0.0.1", "[127.0.0.1]"):
        assert await authorize("hubA", host, 40003) is True
        assert await authorize("hubB", host, 40003) is False
    assert await authorize("hubA", "127.0.0.01", 40003) is False  # not an address
    assert await authorize("hubA", "127.0.0.1\n", 40003) is False


async def test_allowed_forward_targets_never_open_an_address_another_hubs_server_holds(
    address_outpost,
):
    outpost, _, api = address_outpost
    authorize = outpost.app.manager.authorize_forward
    assert (await api.call("POST", "/services", hub="hubA", body=body("a", 41004)))[0] == 200
    assert await authorize("hubB", "127.0.0.1", 41004) is False  # inside the targets, but hub A's
    assert await authorize("hubB", "127.0.0.1", 41005) is True  # a target nobody holds
    assert await authorize("hubB", "127.0.0.1", 41011) is False  # outside the targets


async def test_stopping_a_server_closes_its_hubs_open_forwards_even_if_the_address_lives_on(
    address_outpost, tmp_path
):
    """The target (a listener that is not the spawner's) outlives the stop: the open
    forward must still end, at once, through the real SSH endpoint."""
    import asyncssh

    outpost, _, api = address_outpost
    app = outpost.app
    key = asyncssh.generate_private_key("ssh-ed25519")
    listener = Listener()
    port = await listener.start()
    app.authorized_keys.source = {"hubA": [key.export_public_key().decode()]}
    app.ssh_ip, app.ssh_port = "127.0.0.1", 0
    app.ssh_host_key_file = str(tmp_path / "host_key")
    await app.start_ssh_endpoint()
    try:
        assert (await api.call("POST", "/services", hub="hubA", body=body("a", port)))[0] == 200
        async with asyncssh.connect(
            "127.0.0.1",
            app.ssh_endpoint.bound_port,
            username="hubA",
            client_keys=[key],
            known_hosts=None,
        ) as conn:
            reader, writer = await conn.open_connection("127.0.0.1", port)
            writer.write(b"ping")
            assert await asyncio.wait_for(reader.read(4), 5) == b"ping"
            assert (await api.call("DELETE", "/services/a", hub="hubA"))[0] == 200
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the Outpost
            assert listener.server.is_serving()  # the address itself lives on
            with pytest.raises(asyncssh.ChannelOpenError):
                await conn.open_connection("127.0.0.1", port)
    finally:
        await app.ssh_endpoint.stop()
        listener.close()
