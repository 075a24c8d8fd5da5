"""Host key pinning, reconnects and restarts: forwards come back on the same local port."""

import asyncio

import asyncssh
from conftest import Daemon, Endpoint, http_get, port_open, wait_until


async def test_daemon_refuses_endpoint_with_wrong_host_key(daemon, endpoint, target):
    other_key = asyncssh.generate_private_key("ssh-ed25519")
    wrong = " ".join(other_key.export_public_key().decode().split()[:2])
    f = await daemon.client.put_forward(
        "remote.pinned",
        ssh=endpoint.ssh(host_key=wrong),
        target_host="127.0.0.1",
        target_port=target.port,
    )
    failed = await daemon.wait_state("remote.pinned", "error")
    assert failed["error"].startswith("host key mismatch")
    assert failed["permanent"] is True, "a hub fails the start at once: waiting cannot fix it"
    assert "host key mismatch" in daemon.proc.log
    assert f"hub@127.0.0.1:{endpoint.port}" in daemon.proc.log
    # no login happened, and nothing reaches the target through the forward: the client is
    # closed at once (waiting cannot fix a wrong host key), not held for hold_timeout (10 s)
    assert endpoint.logins == 0
    t0 = asyncio.get_running_loop().time()
    assert await http_get(f["local_port"]) == (0, b"")
    assert asyncio.get_running_loop().time() - t0 < 5


async def test_wrong_hub_key_is_refused_by_endpoint(procs, tmp_path, endpoint, target):
    from conftest import HubKey

    stranger = HubKey(tmp_path / "stranger_key")
    d = Daemon(procs, tmp_path, stranger.path)
    await d.start()
    await d.client.put_forward(
        "remote.x", ssh=endpoint.ssh(), target_host="127.0.0.1", target_port=target.port
    )
    failed = await d.wait_state("remote.x", "error")
    assert "SSH login refused" in failed["error"]
    assert endpoint.logins == 0


async def test_endpoint_restart_forward_returns_on_same_port_without_api_call(
    daemon, endpoint, target
):
    f = await daemon.client.put_forward(
        "remote.r", ssh=endpoint.ssh(), target_host="127.0.0.1", target_port=target.port
    )
    port = f["local_port"]
    assert (await http_get(port))[0] == 200
    endpoint.stop()
    down = await daemon.wait_state("remote.r", "error")  # reconnect attempts fail while down
    assert down["permanent"] is False, "a hub waits this out"
    assert await port_open(port)  # the local listener stays bound
    await endpoint.start()
    await daemon.wait_state("remote.r", "up")
    assert await http_get(port) == (200, b"hello from target")
    assert endpoint.logins == 2


async def test_connection_made_while_endpoint_is_down_is_held_until_it_returns(
    daemon, endpoint, target
):
    f = await daemon.client.put_forward(
        "remote.h", ssh=endpoint.ssh(), target_host="127.0.0.1", target_port=target.port
    )
    await daemon.wait_state("remote.h", "up")
    endpoint.stop()
    await daemon.wait_state("remote.h", "error")
    pending = asyncio.create_task(http_get(f["local_port"]))
    await endpoint.start()
    assert await asyncio.wait_for(pending, 15) == (200, b"hello from target")


async def test_daemon_sigkill_and_restart_restores_forwards_from_state_file(
    procs, tmp_path, hub_key, endpoint, target
):
    d = Daemon(procs, tmp_path, hub_key.path)
    await d.start()
    ports = {}
    for name in ("a", "b", "c"):
        f = await d.client.put_forward(
            f"remote.{name}", ssh=endpoint.ssh(), target_host="127.0.0.1", target_port=target.port
        )
        ports[f["key"]] = f["local_port"]
    await d.client.delete_forward("remote.c")
    del ports["remote.c"]
    d.proc.kill()
    await wait_until(lambda: d.proc.popen.poll() is not None, "daemon did not die")
    await d.start()  # same state file, same API port
    forwards = {f["key"]: f["local_port"] for f in await d.client.list_forwards()}
    assert forwards == ports
    for port in ports.values():
        assert await http_get(port) == (200, b"hello from target")


async def test_two_endpoints_get_one_connection_each(procs, tmp_path, hub_key, daemon, target):
    first = Endpoint(procs, tmp_path, {"hub": [hub_key.public]}, ["127.0.0.1:1024-65535"], "ep1")
    second = Endpoint(procs, tmp_path, {"hub": [hub_key.public]}, ["127.0.0.1:1024-65535"], "ep2")
    await first.start()
    await second.start()
    for i in range(3):
        for ep in (first, second):
            f = await daemon.client.put_forward(
                f"{ep.proc.name}.s{i}",
                ssh=ep.ssh(),
                target_host="127.0.0.1",
                target_port=target.port,
            )
            assert (await http_get(f["local_port"]))[0] == 200
    assert (first.logins, second.logins) == (1, 1)
    # removing the last forward of an endpoint closes its SSH connection
    for i in range(3):
        await daemon.client.delete_forward(f"ep1.s{i}")
    await wait_until(
        lambda: "SSH connection of hub hub from" in first.proc.log, "ep1 connection not closed"
    )


async def test_connection_is_closed_after_hold_timeout_while_ssh_stays_down(
    procs, tmp_path, hub_key, endpoint, target
):
    d = Daemon(procs, tmp_path, hub_key.path, hold_timeout=0.5)
    await d.start()
    f = await d.client.put_forward(
        "remote.down", ssh=endpoint.ssh(), target_host="127.0.0.1", target_port=target.port
    )
    await d.wait_state("remote.down", "up")
    endpoint.stop()
    await d.wait_state("remote.down", "error")
    assert await asyncio.wait_for(http_get(f["local_port"]), 10) == (0, b"")
    await wait_until(lambda: "not up within 0.5s" in d.proc.log, "held connection not logged")


async def test_restored_forward_whose_port_is_taken_retries_until_it_is_free(
    procs, tmp_path, hub_key, endpoint, target
):
    import socket

    d = Daemon(procs, tmp_path, hub_key.path)
    await d.start()
    f = await d.client.put_forward(
        "remote.busy", ssh=endpoint.ssh(), target_host="127.0.0.1", target_port=target.port
    )
    port = f["local_port"]
    d.proc.kill()
    await wait_until(lambda: d.proc.popen.poll() is not None, "daemon did not die")
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", port))
    squatter.listen()
    try:
        await d.start()
        failed = await d.wait_state("remote.busy", "error")
        assert f"cannot listen on 127.0.0.1:{port}" in failed["error"]
    finally:
        squatter.close()
    await d.wait_state("remote.busy", "up")
    assert await http_get(port) == (200, b"hello from target")


async def test_sigterm_stops_daemon_cleanly_and_keeps_the_state_file(
    procs, tmp_path, hub_key, endpoint, target
):
    d = Daemon(procs, tmp_path, hub_key.path)
    await d.start()
    f = await d.client.put_forward(
        "remote.t", ssh=endpoint.ssh(), target_host="127.0.0.1", target_port=target.port
    )
    d.proc.stop()  # SIGTERM
    assert d.proc.popen.returncode == 0
    assert not await port_open(f["local_port"])
    assert '"remote.t"' in d.state_file.read_text()
    assert "Stopping the tunnel daemon" in d.proc.log


async def test_restart_with_other_forward_ip_moves_forwards_and_keeps_ports(
    procs, tmp_path, hub_key, endpoint, target
):
    d = Daemon(procs, tmp_path, hub_key.path)
    await d.start()
    f = await d.client.put_forward(
        "remote.ip", ssh=endpoint.ssh(), target_host="127.0.0.1", target_port=target.port
    )
    d.proc.stop()
    moved = Daemon(procs, tmp_path, hub_key.path, forward_ip="127.0.0.2")
    await moved.start()
    [g] = await moved.client.list_forwards()
    assert (g["local_host"], g["local_port"]) == ("127.0.0.2", f["local_port"])
    assert await http_get(f["local_port"], host="127.0.0.2") == (200, b"hello from target")
    assert '"127.0.0.2"' in moved.state_file.read_text()


async def test_concurrent_puts_and_deletes_survive_sigkill_right_after_the_last_answer(
    procs, tmp_path, hub_key, endpoint, target
):
    """Group commit: requests share saves of the state file, but each one is answered only
    once a save holds its change, so a SIGKILL right after the last answer loses nothing."""
    d = Daemon(procs, tmp_path, hub_key.path)
    await d.start()
    ssh = endpoint.ssh()

    async def put(key: str) -> tuple[str, int]:
        f = await d.client.put_forward(
            key, ssh=ssh, target_host="127.0.0.1", target_port=target.port
        )
        return key, f["local_port"]

    old = dict(await asyncio.gather(*(put(f"old.{i}") for i in range(10))))
    gone = [f"old.{i}" for i in range(5)]
    results = await asyncio.gather(
        *(put(f"burst.{i}") for i in range(50)),
        *(d.client.delete_forward(key) for key in gone),
    )
    d.proc.kill()  # at once: no request is in flight any more, every one was answered
    await wait_until(lambda: d.proc.popen.poll() is not None, "daemon did not die")
    expected = {k: p for k, p in old.items() if k not in gone}
    expected.update(r for r in results if isinstance(r, tuple))
    assert len(expected) == 55
    await d.start()
    restored = {f["key"]: f["local_port"] for f in await d.client.list_forwards()}
    assert restored == expected
    answers = await asyncio.gather(*(http_get(port) for port in restored.values()))
    assert all(a == (200, b"hello from target") for a in answers)


async def test_a_new_forward_cuts_a_reconnect_backoff_short(procs, tmp_path, hub_key, target):
    """A hub that puts a forward waits for it: the link tries at once instead of sleeping
    out its backoff (30 s here) while the endpoint is back already."""
    endpoint = Endpoint(procs, tmp_path, {"hub": [hub_key.public]}, ["127.0.0.1:1024-65535"])
    await endpoint.start()
    endpoint.stop()
    d = Daemon(procs, tmp_path, hub_key.path, reconnect_initial_delay=30, reconnect_max_delay=60)
    await d.start()
    args = {"ssh": endpoint.ssh(), "target_host": "127.0.0.1", "target_port": target.port}
    await d.client.put_forward("remote.first", **args)
    await d.wait_state("remote.first", "error")  # refused; the next attempt in 30 s
    await endpoint.start()
    await d.client.put_forward("remote.second", **args)
    await d.wait_state("remote.second", "up", timeout=10)
