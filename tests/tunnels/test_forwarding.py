"""The tunnel daemon forwards through a real SSH endpoint to a real HTTP target."""

import asyncio
import os
import stat
import statistics
import time

from conftest import http_get, wait_until


async def test_forward_reaches_http_target_through_endpoint(daemon, endpoint, target):
    f = await daemon.client.put_forward(
        "remote.alice", ssh=endpoint.ssh(), target_host="127.0.0.1", target_port=target.port
    )
    assert f["key"] == "remote.alice"
    assert f["local_host"] == "127.0.0.1" and f["local_port"] > 0
    assert f["target_port"] == target.port
    # the listener is bound at once; a request made before the SSH connection is up is held
    status, body = await http_get(f["local_port"])
    assert (status, body) == (200, b"hello from target")
    up = await daemon.wait_state("remote.alice", "up")
    assert "error" not in up


async def test_state_file_is_private_and_lists_the_forward(daemon, endpoint, target):
    f = await daemon.client.put_forward(
        "remote.bob", ssh=endpoint.ssh(), target_host="127.0.0.1", target_port=target.port
    )
    mode = stat.S_IMODE(os.stat(daemon.state_file).st_mode)
    assert mode == 0o600
    text = daemon.state_file.read_text()
    assert '"remote.bob"' in text and str(f["local_port"]) in text
    assert not [n for n in os.listdir(daemon.state_file.parent) if n.endswith(".tmp")]


async def test_put_of_existing_key_keeps_local_port_and_repoints_target(
    daemon, endpoint, target, procs, tmp_path
):
    from conftest import start_target

    other = await start_target(procs, tmp_path, name="other")
    first = await daemon.client.put_forward(
        "remote.carol", ssh=endpoint.ssh(), target_host="127.0.0.1", target_port=target.port
    )
    assert (await http_get(first["local_port"]))[1] == b"hello from target"
    second = await daemon.client.put_forward(
        "remote.carol", ssh=endpoint.ssh(), target_host="127.0.0.1", target_port=other.port
    )
    assert second["local_port"] == first["local_port"]
    assert (await http_get(first["local_port"]))[1] == b"hello from other"


async def test_put_with_explicit_local_port_uses_it(daemon, endpoint, target):
    from conftest import free_port

    port = free_port()
    f = await daemon.client.put_forward(
        "remote.dave",
        ssh=endpoint.ssh(),
        target_host="127.0.0.1",
        target_port=target.port,
        local_port=port,
    )
    assert f["local_port"] == port
    assert (await http_get(port))[0] == 200


async def test_delete_closes_local_port_and_unknown_key_is_404(daemon, endpoint, target):
    from conftest import port_open

    f = await daemon.client.put_forward(
        "remote.erin", ssh=endpoint.ssh(), target_host="127.0.0.1", target_port=target.port
    )
    assert await daemon.client.delete_forward("remote.erin") is True
    assert not await port_open(f["local_port"])
    assert await daemon.client.delete_forward("remote.erin") is False
    assert await daemon.client.list_forwards() == []


async def test_large_download_arrives_complete(daemon, endpoint, target):
    f = await daemon.client.put_forward(
        "remote.big", ssh=endpoint.ssh(), target_host="127.0.0.1", target_port=target.port
    )
    n = 20 * 1024 * 1024
    status, body = await http_get(f["local_port"], f"/bytes/{n}", timeout=60)
    assert status == 200 and len(body) == n


async def test_fifty_forwards_with_concurrent_clients_share_one_ssh_connection(
    daemon, endpoint, target
):
    ports = []
    for i in range(50):
        f = await daemon.client.put_forward(
            f"remote.user{i}", ssh=endpoint.ssh(), target_host="127.0.0.1", target_port=target.port
        )
        ports.append(f["local_port"])
    assert len(set(ports)) == 50
    answers = await asyncio.gather(*(http_get(port) for port in ports for _ in range(2)))
    assert set(answers) == {(200, b"hello from target")}
    forwards = await daemon.client.list_forwards()
    assert len(forwards) == 50 and {f["state"] for f in forwards} == {"up"}
    assert endpoint.logins == 1


async def test_endpoint_refusal_closes_client_connection(daemon, procs, tmp_path, hub_key, target):
    from conftest import Endpoint

    # this endpoint allows only port 1, so the target is refused by authorize_forward
    strict = Endpoint(procs, tmp_path, {"hub": [hub_key.public]}, ["127.0.0.1:1"], name="strict")
    await strict.start()
    f = await daemon.client.put_forward(
        "remote.refused", ssh=strict.ssh(), target_host="127.0.0.1", target_port=target.port
    )
    assert await http_get(f["local_port"]) == (0, b"")
    await wait_until(
        lambda: "refused a channel" in daemon.proc.log, "daemon did not log the refused channel"
    )
    assert f"to 127.0.0.1:{target.port}: target not allowed" in strict.proc.log


async def test_small_split_answers_are_not_delayed_by_nagle(daemon, endpoint, target):
    """Stock `ssh -L` adds ~40 ms per new connection here; TCP_NODELAY everywhere must not."""
    f = await daemon.client.put_forward(
        "remote.fast", ssh=endpoint.ssh(), target_host="127.0.0.1", target_port=target.port
    )
    assert await http_get(f["local_port"], "/split") == (200, b"head-tail")
    times = []
    for _ in range(30):
        t0 = time.perf_counter()
        assert await http_get(f["local_port"], "/split") == (200, b"head-tail")
        times.append(time.perf_counter() - t0)
    assert statistics.median(times) < 0.030, times


async def test_metrics_count_forwards_connections_and_bytes(daemon, endpoint, target):
    from conftest import TOKEN
    from tornado.httpclient import AsyncHTTPClient, HTTPRequest

    f = await daemon.client.put_forward(
        "remote.m", ssh=endpoint.ssh(), target_host="127.0.0.1", target_port=target.port
    )
    n = 100_000
    assert (await http_get(f["local_port"], f"/bytes/{n}"))[0] == 200
    client = AsyncHTTPClient()
    denied = await client.fetch(daemon.url + "/metrics", raise_error=False)
    assert denied.code == 401

    async def scraped():
        resp = await client.fetch(
            HTTPRequest(daemon.url + "/metrics", headers={"Authorization": f"token {TOKEN}"})
        )
        text = resp.body.decode()
        lines = dict(
            line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#")
        )
        return (
            lines
            if float(lines.get('outpost_tunnel_bytes_total{direction="from_target"}', 0)) > n
            else False
        )

    lines = await wait_until(scraped, "bytes not counted")
    assert float(lines["outpost_tunnel_forwards"]) == 1
    assert float(lines['outpost_tunnel_client_connections_total{result="forwarded"}']) == 1
    assert (
        float(
            lines[f'outpost_tunnel_ssh_connects_total{{endpoint="hub@127.0.0.1:{endpoint.port}"}}']
        )
        == 1
    )
