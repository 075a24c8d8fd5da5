"""The Outpost's SSH endpoint: who may log in, and that a hub can do nothing but allowed forwards.

The endpoint runs in the test's event loop; clients are real asyncssh clients over
127.0.0.1, and the forward target is a real HTTP server on 127.0.0.1.
"""

import asyncio
import logging
import os
import stat

import asyncssh
import pytest
from jupyterhub.utils import exponential_backoff
from jupyterhub_outpost.outpost.ssh_endpoint import (
    HostKeyError,
    SSHEndpoint,
    load_or_create_host_key,
)


@pytest.fixture
async def http_target():
    async def handle(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()


class Setup:
    def __init__(self, tmp_path, target_port):
        self.hub_key = asyncssh.generate_private_key("ssh-ed25519")
        self.other_key = asyncssh.generate_private_key("ssh-ed25519")
        self.keys = {
            "hub": [self.hub_key.export_public_key().decode()],
            "other": [self.other_key.export_public_key().decode()],
        }
        self.target_port = target_port
        self.asked = []
        self.log = logging.getLogger("test-ssh-endpoint")
        self.endpoint = SSHEndpoint(
            host_key_path=str(tmp_path / "host_key"),
            listen_host="127.0.0.1",
            listen_port=0,
            authorized_keys=lambda: self.keys,
            authorize_forward=self.authorize,
            log=self.log,
        )

    async def authorize(self, hub, host, port):
        self.asked.append((hub, host, port))
        return hub == "hub" and host == "127.0.0.1" and port == self.target_port

    def connect(self, username="hub", key=None, **kwargs):
        options = dict(
            username=username,
            client_keys=[key or self.hub_key],
            known_hosts=([asyncssh.import_public_key(self.endpoint.public_host_key)], [], []),
            config=[],
            agent_path=None,
        )
        options.update(kwargs)
        return asyncssh.connect("127.0.0.1", self.endpoint.bound_port, **options)


@pytest.fixture
async def ep(tmp_path, http_target):
    s = Setup(tmp_path, http_target)
    await s.endpoint.start()
    yield s
    await s.endpoint.stop()


async def get_through(conn, port):
    reader, writer = await conn.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.0\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return data


def test_host_key_is_created_once_with_mode_0600_and_kept(tmp_path):
    path = tmp_path / "keys" / "host_key"
    first = load_or_create_host_key(str(path))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = load_or_create_host_key(str(path))
    assert again.get_fingerprint("sha256") == first.get_fingerprint("sha256")
    assert first.get_algorithm() == "ssh-ed25519"


def test_unreadable_host_key_is_a_clear_error_and_is_not_replaced(tmp_path):
    path = tmp_path / "host_key"
    path.write_text("not a key")
    with pytest.raises(HostKeyError, match="cannot read the SSH host key"):
        load_or_create_host_key(str(path))
    assert path.read_text() == "not a key"


async def test_endpoint_exposes_fingerprint_and_public_key_that_survive_restart(ep, tmp_path):
    line = ep.endpoint.public_host_key
    assert line.startswith("ssh-ed25519 AAAA") and len(line.split()) == 2
    assert ep.endpoint.fingerprint.startswith("SHA256:")
    again = SSHEndpoint(
        host_key_path=str(tmp_path / "host_key"),
        listen_host="127.0.0.1",
        listen_port=0,
        authorized_keys=dict,
        authorize_forward=ep.authorize,
        log=ep.log,
    )
    assert again.public_host_key == line and again.fingerprint == ep.endpoint.fingerprint


async def test_allowed_forward_reaches_target(ep):
    async with ep.connect() as conn:
        data = await get_through(conn, ep.target_port)
    assert data.endswith(b"hello")
    assert ep.asked == [("hub", "127.0.0.1", ep.target_port)]


async def test_forward_rejected_by_authorize_forward_is_refused_and_logged(ep, caplog):
    caplog.set_level(logging.WARNING, logger="test-ssh-endpoint")
    async with ep.connect() as conn:
        with pytest.raises(asyncssh.ChannelOpenError) as e:
            await conn.open_connection("10.1.2.3", 22)
        assert e.value.code == asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED
        # the connection is still usable for allowed forwards
        assert (await get_through(conn, ep.target_port)).endswith(b"hello")
    assert "refused forward for hub hub to 10.1.2.3:22: target not allowed" in caplog.text


async def test_refusal_log_cannot_be_forged_with_newlines_in_target(ep, caplog):
    caplog.set_level(logging.WARNING, logger="test-ssh-endpoint")
    async with ep.connect() as conn:
        with pytest.raises(asyncssh.ChannelOpenError):
            await conn.open_connection("evil\nCRITICAL fake line", 22)
    assert "\nCRITICAL fake line" not in caplog.text
    assert "'evil\\nCRITICAL fake line:22'" in caplog.text


async def test_authorize_forward_that_raises_counts_as_refusal(ep):
    async def broken(hub, host, port):
        raise RuntimeError("store down")

    ep.endpoint.authorize_forward = broken
    async with ep.connect() as conn:
        with pytest.raises(asyncssh.ChannelOpenError):
            await conn.open_connection("127.0.0.1", ep.target_port)


@pytest.mark.parametrize("what", ["shell", "exec", "subsystem", "pty"])
async def test_session_channels_are_refused(ep, what):
    async with ep.connect() as conn:
        with pytest.raises(asyncssh.ChannelOpenError):
            if what == "shell":
                await conn.create_process()
            elif what == "exec":
                await conn.run("id")
            elif what == "subsystem":
                await conn.start_sftp_client()
            else:
                await conn.create_process(term_type="xterm")


async def test_agent_forwarding_is_refused(ep, tmp_path):
    # a fake agent socket path is enough: the session carrying the request is refused
    async with ep.connect(agent_forwarding=True, agent_path=str(tmp_path / "agent")) as conn:
        with pytest.raises(asyncssh.ChannelOpenError):
            await conn.create_process("true")


async def test_x11_forwarding_is_refused(ep):
    async with ep.connect() as conn:
        with pytest.raises((asyncssh.ChannelOpenError, OSError)):
            await conn.create_process("true", x11_forwarding=True, x11_display="localhost:10")


async def test_remote_forward_is_refused(ep):
    async with ep.connect() as conn:
        with pytest.raises(asyncssh.ChannelListenError):
            await conn.forward_remote_port("127.0.0.1", 0, "127.0.0.1", ep.target_port)


async def test_unix_socket_forwards_are_refused(ep):
    async with ep.connect() as conn:
        with pytest.raises(asyncssh.ChannelOpenError):
            await conn.open_unix_connection("/run/docker.sock")
        with pytest.raises(asyncssh.ChannelListenError):
            await conn.start_unix_server(lambda: None, "/tmp/outpost-test.sock")


async def test_wrong_key_for_hub_is_refused(ep):
    with pytest.raises(asyncssh.PermissionDenied):
        async with ep.connect(username="hub", key=ep.other_key):
            pass


async def test_refused_login_is_logged_with_hub_but_without_key_material(ep, caplog):
    caplog.set_level(logging.INFO, logger="test-ssh-endpoint")
    with pytest.raises(asyncssh.PermissionDenied):
        async with ep.connect(username="hub", key=ep.other_key):
            pass

    def logged():
        return "SSH login refused for hub 'hub'" in caplog.text

    # connection_lost runs on the server after the client saw the refusal
    await exponential_backoff(logged, "refused login not logged", start_wait=0.01, timeout=10)
    blob = ep.other_key.export_public_key().decode().split()[1]
    assert blob not in caplog.text and blob[:20] not in caplog.text


async def test_unknown_user_is_refused(ep):
    with pytest.raises(asyncssh.PermissionDenied):
        async with ep.connect(username="root"):
            pass


async def test_shared_user_jhuboutpost_logs_in_as_the_hub_whose_key_it_is(ep):
    """The stock OutpostSpawner's default SSH user: the key names the hub."""
    async with ep.connect(username="jhuboutpost", key=ep.hub_key) as conn:
        assert (await get_through(conn, ep.target_port)).endswith(b"hello")
    async with ep.connect(username="jhuboutpost", key=ep.other_key) as conn:
        with pytest.raises(asyncssh.ChannelOpenError):  # "other" may not forward there
            await conn.open_connection("127.0.0.1", ep.target_port)
    assert [hub for hub, _, _ in ep.asked] == ["hub", "other"]


async def test_shared_user_with_a_key_no_hub_or_several_hubs_list_is_refused(ep, caplog):
    caplog.set_level(logging.INFO, logger="test-ssh-endpoint")
    stranger = asyncssh.generate_private_key("ssh-ed25519")
    with pytest.raises(asyncssh.PermissionDenied):
        async with ep.connect(username="jhuboutpost", key=stranger):
            pass
    ep.keys["other"] = ep.keys["other"] + ep.keys["hub"]  # hub's key listed twice
    with pytest.raises(asyncssh.PermissionDenied):
        async with ep.connect(username="jhuboutpost", key=ep.hub_key):
            pass
    assert "listed for several hubs (hub, other)" in caplog.text
    async with ep.connect(username="hub", key=ep.hub_key) as conn:  # its own name still works
        assert (await get_through(conn, ep.target_port)).endswith(b"hello")
    assert ep.asked == [("hub", "127.0.0.1", ep.target_port)]


async def test_password_and_keyboard_interactive_are_not_offered(ep):
    with pytest.raises(asyncssh.PermissionDenied):
        async with ep.connect(client_keys=[], password="secret", kbdint_auth=True):
            pass


async def test_other_hubs_key_cannot_open_this_hubs_forwards(ep):
    async with ep.connect(username="other", key=ep.other_key) as conn:
        with pytest.raises(asyncssh.ChannelOpenError):
            await conn.open_connection("127.0.0.1", ep.target_port)
    assert ep.asked == [("other", "127.0.0.1", ep.target_port)]


async def test_reloaded_keys_take_effect_at_next_login(ep):
    ep.keys = {"hub": [ep.other_key.export_public_key().decode()]}
    with pytest.raises(asyncssh.PermissionDenied):
        async with ep.connect(key=ep.hub_key):
            pass
    async with ep.connect(key=ep.other_key) as conn:
        assert (await get_through(conn, ep.target_port)).endswith(b"hello")


async def test_unreadable_key_lines_are_skipped_without_logging_them(ep, caplog):
    caplog.set_level(logging.INFO, logger="test-ssh-endpoint")
    good = ep.hub_key.export_public_key().decode()
    ep.keys = {"hub": ["ssh-ed25519 SECRETGARBAGE", good]}
    async with ep.connect() as conn:
        assert (await get_through(conn, ep.target_port)).endswith(b"hello")
    assert "Ignoring unreadable SSH public key #1 of hub hub" in caplog.text
    assert "SECRETGARBAGE" not in caplog.text


async def test_stop_closes_open_connections(ep):
    conn = await ep.connect()
    await ep.endpoint.stop()
    await asyncio.wait_for(conn.wait_closed(), 10)


async def test_bracketed_ipv6_target_is_authorized_as_given_and_reached(ep):
    async def handle(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.0 200 OK\r\n\r\nsix")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "::1", 0)
    port = server.sockets[0].getsockname()[1]
    asked = []

    async def authorize(hub, host, p):
        asked.append(host)
        return host in ("[::1]", "::1") and p == port

    ep.endpoint.authorize_forward = authorize
    try:
        async with ep.connect() as conn:
            for host in ("[::1]", "::1"):
                reader, writer = await conn.open_connection(host, port)
                writer.write(b"GET / HTTP/1.0\r\n\r\n")
                assert (await asyncio.wait_for(reader.read(), 10)).endswith(b"six")
                writer.close()
    finally:
        server.close()
    assert asked == ["[::1]", "::1"]
