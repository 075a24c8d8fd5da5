"""A real Outpost process killed with SIGKILL loses nothing: servers are recovered."""

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from tests.helpers.outpost_process import process_alive

from .support import HUBS, MINI_SINGLEUSER, Api, fetch_server, server_answers, start_body, wait_for


def write_config(tmp_path, extra: str = "") -> str:
    path = tmp_path / "outpost_config.py"
    path.write_text(
        textwrap.dedent(
            f"""
            c.JupyterHubOutpost.spawner_class = "jupyterhub.spawner.SimpleLocalProcessSpawner"
            c.SimpleLocalProcessSpawner.cmd = [{sys.executable!r}, {MINI_SINGLEUSER!r}]
            c.SimpleLocalProcessSpawner.home_dir_template = {str(tmp_path / "home" / "{username}")!r}
            c.SimpleLocalProcessSpawner.interrupt_timeout = 3
            """
        )
        + textwrap.dedent(extra)
    )
    return str(path)


async def _start_two(api, receiver):
    addresses = {}
    for name in ("one", "two"):
        code, data = await api.call("POST", "/services", body=start_body(name))
        assert code == 200, data
        addresses[name] = data["service"]
    pids = {}
    for name, address in addresses.items():
        await wait_for(lambda a=address: server_answers(a), f"{name} answers")
        pids[name] = (await fetch_server(address))["pid"]
    return addresses, pids


async def test_sigkill_and_restart_recovers_two_running_servers(
    tmp_path, outpost_process_factory, receiver
):
    config = write_config(
        tmp_path,
        "c.JupyterHubOutpost.ssh_recreate_at_start = True\n"
        f"c.JupyterHubOutpost.hub_api = {receiver.hub_api()!r}\n",
    )
    outpost = outpost_process_factory(config, tmp_path / "data", hub_credentials=HUBS, start=False)
    await outpost.astart()
    api = Api(outpost.url, HUBS)
    addresses, pids = await _start_two(api, receiver)

    outpost.kill()
    assert all(process_alive(pid) for pid in pids.values()), "servers survive the Outpost"
    await outpost.astart()

    code, listing = await api.call("GET", "/services")
    assert code == 200
    assert {(s["name"], s["status"], s["service"]) for s in listing} == {
        (name, "running", address) for name, address in addresses.items()
    }
    for name in addresses:
        assert await api.call("GET", f"/services/{name}") == (200, {"status": None})
    # ssh_recreate_at_start = True: each server's tunnel is asked for again
    for name, address in addresses.items():
        path = f"/hub/api/outpost/setuptunnel/alice/{name}"
        await wait_for(lambda p=path: receiver.posts_to(p), f"setuptunnel {name}")
        headers, body = receiver.posts_to(path)[0]
        assert body == {"service": address}
        assert headers["Authorization"] == f"token token-{name}"
    for name, pid in pids.items():
        assert (await api.call("DELETE", f"/services/{name}"))[0] == 200
        await wait_for(lambda p=pid: not process_alive(p), f"process of {name} gone")
        assert (await api.call("GET", f"/services/{name}"))[0] == 404
    assert await api.call("GET", "/services") == (200, [])


async def test_server_that_died_while_the_outpost_was_down_is_reported_ended(
    tmp_path, outpost_process_factory, receiver
):
    outpost = outpost_process_factory(
        write_config(tmp_path, f"c.JupyterHubOutpost.hub_api = {receiver.hub_api()!r}\n"),
        tmp_path / "data",
        hub_credentials=HUBS,
        start=False,
    )
    await outpost.astart()
    api = Api(outpost.url, HUBS)
    addresses, pids = await _start_two(api, receiver)
    outpost.kill()
    os.kill(pids["two"], signal.SIGTERM)
    await wait_for(lambda: not process_alive(pids["two"]), "server two gone")
    await outpost.astart()
    assert await api.call("GET", "/services/one") == (200, {"status": None})
    code, data = await api.call("GET", "/services/two")
    assert code == 200 and data["status"] is not None
    assert not [p for p, *_ in receiver.posts if "setuptunnel" in p]  # off by default
    assert (await api.call("DELETE", "/services/two"))[0] == 200
    assert (await api.call("DELETE", "/services/one"))[0] == 200
    await wait_for(lambda: not process_alive(pids["one"]), "server one gone")


def test_db_upgrade_subcommand_creates_and_keeps_the_schema(tmp_path, capsys):
    from jupyterhub_outpost.outpost import db_upgrade

    data = tmp_path / "data"
    argv = ["--data-dir", str(data), "--config", str(tmp_path / "missing.py")]
    with pytest.raises(SystemExit) as exit_info:
        db_upgrade.main(argv)
    assert exit_info.value.code == 1
    argv[-1] = write_config(tmp_path)
    # once through the real console entry point, once more in-process: idempotent
    command = [sys.executable, "-m", "jupyterhub_outpost", "db-upgrade", *argv]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    db_upgrade.main(argv)
    db = sqlite3.connect(data / "outpost.sqlite")
    assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [("0002",)]
    assert db.execute("SELECT count(*) FROM outpost_services").fetchone() == (0,)


async def test_server_still_starting_when_the_outpost_died_is_reported_failed(
    make_outpost, tmp_path
):
    from jupyterhub_outpost.outpost.models import STARTING

    data_dir = tmp_path / "same"
    first = await make_outpost(data_dir=data_dir)
    row = await first.app.store.reserve(
        hub="hub1",
        name="halfway",
        start_id="",
        flavor=None,
        limit=-1,
        user_name="alice",
        user_options={},
        misc={},
        secrets={"env": start_body("halfway")["env"]},
        runtime_deadline=None,
    )
    assert row.status == STARTING
    await first.app.stop_outpost()
    second = await make_outpost(data_dir=data_dir)
    code, data = await second.api.call("GET", "/services/halfway")
    assert code == 200 and data["status"] == 1
    assert "restarted while this server was starting" in data["error"]
    assert (await second.api.call("POST", "/services", body=start_body("halfway")))[0] == 200
    assert (await second.api.call("DELETE", "/services/halfway"))[0] == 200


async def _restart_with_two_servers(make_outpost, data_dir, receiver, **options):
    """Start "keep" and "skip", stop the Outpost (servers keep running), start it again
    with ``options``; returns (second Outpost, futures of the reaped processes)."""
    import asyncio

    first = await make_outpost(data_dir=data_dir, hub_api=receiver.hub_api())
    reaped = []
    for name in ("keep", "skip"):
        assert (await first.api.call("POST", "/services", body=start_body(name)))[0] == 200
    for live in first.app.manager._spawners.values():  # reap as init would after a restart
        reaped.append(asyncio.ensure_future(asyncio.to_thread(live.spawner.proc.wait)))
    await first.app.stop_outpost()
    assert not [p for p, *_ in receiver.posts if "setuptunnel" in p]
    second = await make_outpost(data_dir=data_dir, hub_api=receiver.hub_api(), **options)
    return second, reaped


TUNNEL = "/hub/api/outpost/setuptunnel/alice/"  # the receiver's setuptunnel paths


async def test_ssh_recreate_at_start_hook_gets_the_outpost_and_the_hub_name(
    make_outpost, tmp_path, receiver
):
    import asyncio

    calls = []

    async def recreate(outpost, hub_name):  # the original Outpost's signature
        calls.append((outpost, hub_name))
        return hub_name == "hub1"

    second, reaped = await _restart_with_two_servers(
        make_outpost, tmp_path / "same", receiver, ssh_recreate_at_start=recreate
    )
    for name in ("keep", "skip"):
        await wait_for(lambda n=name: receiver.posts_to(TUNNEL + n), f"re-creation of {name}")
    assert calls == [(second.app, "hub1"), (second.app, "hub1")]
    for name in ("keep", "skip"):
        assert (await second.api.call("DELETE", f"/services/{name}"))[0] == 200
    await asyncio.gather(*reaped)


async def test_ssh_recreate_at_start_global_hook_replaces_the_per_server_requests(
    make_outpost, tmp_path, receiver
):
    import asyncio

    calls = []

    def recreate_global(outpost, hub_names):
        calls.append((outpost, hub_names))
        return True  # "done": the per-server option is not consulted

    second, reaped = await _restart_with_two_servers(
        make_outpost,
        tmp_path / "same",
        receiver,
        ssh_recreate_at_start=True,
        ssh_recreate_at_start_global=recreate_global,
    )
    await wait_for(lambda: calls, "the global hook is called")
    assert await second.app.manager.recreate_tunnels() == 0  # the same decision again
    assert calls == [(second.app, ["hub1"])] * 2
    assert not [p for p, *_ in receiver.posts if "setuptunnel" in p]
    for name in ("keep", "skip"):
        assert (await second.api.call("DELETE", f"/services/{name}"))[0] == 200
    await asyncio.gather(*reaped)
