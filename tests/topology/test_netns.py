"""The netns API: hosts reach exactly the hosts they share a network with; nothing is left."""

import asyncio
import os
import signal
import subprocess

import pytest
from outpost_scenarios import netns

from .conftest import NOTHING, leftovers, start_http_server, start_lab_owner


def three_hosts(lab):
    lab.add_network("public", host_access=True)
    lab.add_network("compute")
    return (
        lab.add_host("hub", ["public"]),
        lab.add_host("outpost", ["public", "compute"]),
        lab.add_host("node", ["compute"]),
    )


@pytest.mark.netns
async def test_compute_host_reachable_from_outpost_but_not_from_hub(lab):
    hub, outpost, node = three_hosts(lab)
    await start_http_server(node)
    assert await outpost.can_connect(node.address("compute"), 8000)
    assert not await hub.can_connect(node.address("compute"), 8000)


@pytest.mark.netns
async def test_hosts_on_one_network_reach_each_other_and_root_reaches_public_hosts(lab):
    hub, outpost, node = three_hosts(lab)
    await start_http_server(outpost)
    assert await hub.can_connect(outpost.address("public"), 8000)
    # the root namespace (this test process) has an address on the public bridge
    _, writer = await asyncio.open_connection(outpost.address("public"), 8000)
    writer.close()


@pytest.mark.netns
def test_namespaces_do_not_forward_between_networks(lab):
    _, outpost, _ = three_hosts(lab)
    rc = outpost.run(["cat", "/proc/sys/net/ipv4/ip_forward"], capture_output=True, text=True)
    assert rc.stdout.strip() == "0"


@pytest.mark.netns
async def test_close_ends_processes_and_removes_namespaces_veths_bridges():
    lab = netns.Lab(isolation=True)
    hub, outpost, node = three_hosts(lab)
    proc = await start_http_server(node)
    # a grandchild in its own session is still ended: it lives in the namespace
    stray = node.popen(["sleep", "600"], start_new_session=True)
    assert leftovers(lab.prefix)["netns"]
    await lab.aclose()
    assert leftovers(lab.prefix) == NOTHING
    assert await proc.wait() is not None
    assert stray.wait(timeout=5) is not None
    assert not os.path.exists(netns._registry_path(lab.prefix))


@pytest.mark.netns
def test_cleanup_stale_removes_leftovers_of_a_killed_run():
    owner, prefix = start_lab_owner()
    assert leftovers(prefix)["netns"] == [f"{prefix}-a"]
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    # a live parallel run is not touched
    with netns.Lab(isolation=True) as live:
        live.add_network("n")
        live.add_host("b", ["n"])
        assert prefix in netns.cleanup_stale()
        assert leftovers(live.prefix)["netns"] == [f"{live.prefix}-b"]
    assert leftovers(prefix) == NOTHING


@pytest.mark.netns
def test_interface_names_fit_linux_limit(lab):
    three_hosts(lab)
    names = leftovers(lab.prefix)["links"]
    assert names and all(len(n) <= 15 for n in names)


async def test_loopback_fallback_when_isolation_is_off(monkeypatch, caplog):
    monkeypatch.setenv(netns.ISOLATION_ENV, "off")
    caplog.set_level("WARNING")
    async with netns.Lab() as lab:
        assert not lab.isolated
        hub, outpost, node = three_hosts(lab)
        assert hub.ip.startswith("127.231.") and len({hub.ip, outpost.ip, node.ip}) == 3
        assert "isolation is OFF" in caplog.text
        await start_http_server(node)
        # no isolation: even the hub reaches the compute host
        assert await hub.can_connect(node.ip, 8000)


@pytest.mark.netns
def test_registry_entry_is_removed_at_close_and_no_lock_file_is_left():
    with netns.Lab(isolation=True) as lab:
        lab.add_network("n")
        lab.add_host("a", ["n"]).popen(["sleep", "600"])
        assert os.path.exists(netns._registry_path(lab.prefix))
    assert not os.path.exists(netns._registry_path(lab.prefix))
    if os.path.isdir(netns.REGISTRY_DIR):  # other runs are live right now
        assert all(n.endswith(".json") for n in os.listdir(netns.REGISTRY_DIR))


async def test_without_root_hosts_become_loopback_addresses_and_the_log_says_why(
    monkeypatch, caplog
):
    monkeypatch.delenv(netns.ISOLATION_ENV, raising=False)
    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    caplog.set_level("WARNING")
    assert netns.isolation_available() == (False, "not running as root")
    with pytest.raises(netns.NetnsError, match="not running as root"):
        netns.Lab(isolation=True)
    async with netns.Lab() as lab:
        lab.add_network("n", host_access=True)
        a, b = lab.add_host("a", ["n"]), lab.add_host("b", ["n"])
        assert a.netns is None and a.argv(["true"]) == ["true"]
        assert "isolation is OFF (not running as root)" in caplog.text
        await start_http_server(b)
        assert await a.can_connect(b.ip, 8000)


@pytest.mark.netns
def test_cleanup_removes_only_the_names_a_lab_gives():
    lab = netns.Lab(isolation=True)
    lab.add_network("n")
    lab.add_host("a", ["n"])
    stranger = f"{lab.prefix}x"  # same prefix, but not a name a Lab makes
    peer = f"{lab.prefix}vx"
    subprocess.run(
        ["ip", "link", "add", stranger, "type", "veth", "peer", "name", peer], check=True
    )
    try:
        lab.close()
        assert sorted(leftovers(lab.prefix)["links"]) == sorted([stranger, peer])
        assert leftovers(lab.prefix)["netns"] == []
    finally:
        subprocess.run(["ip", "link", "delete", stranger], check=True)


@pytest.mark.netns
async def test_a_named_process_sees_its_hosts_name_and_the_machine_keeps_its_own(lab):
    _, _, node = three_hosts(lab)
    proc = await node.create_subprocess_exec("hostname", named=True, stdout=subprocess.PIPE)
    named = (await proc.communicate())[0].decode().strip()
    proc = await node.create_subprocess_exec("hostname", stdout=subprocess.PIPE)
    unnamed = (await proc.communicate())[0].decode().strip()
    assert named == "node"
    assert unnamed == os.uname().nodename != "node"
