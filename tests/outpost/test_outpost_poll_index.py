"""The in-memory index of running servers that polls and SSH forwards use stays
consistent with the store: start, stop, an end seen by a poll, the reaper, recovery."""

import os
import signal

from jupyterhub_outpost.outpost.forward_rights import ForwardRights, address_key

from tests.helpers.outpost_process import process_alive

from .support import fetch_or_none, pass_runtime_deadline, start_body, wait_for


async def _start(outpost, name, **extra):
    code, data = await outpost.api.call("POST", "/services", body=start_body(name, **extra))
    assert code == 200, data
    address = data["service"]
    pid = (await wait_for(lambda: fetch_or_none(address), f"{name} answers"))["pid"]
    return address, pid


def _split(address):
    host, port = address.rsplit(":", 1)
    return host, int(port)


def _holders(manager, address) -> list[tuple[str, int]]:
    """(hub, row id) of every server that holds ``address`` for SSH forwards."""
    return [(h.hub, h.row_id) for h in manager.rights.holders(address_key(*_split(address)))]


async def test_index_follows_start_and_stop_and_keeps_hubs_apart(outpost):
    manager, api = outpost.app.manager, outpost.api
    address, pid = await _start(outpost, "a")
    assert ("hub1", "a") in manager._running
    assert await api.call("GET", "/services/a") == (200, {"status": None})
    # another hub never sees hub1's server, through the index or the store
    assert (await api.call("GET", "/services/a", hub="hub2"))[0] == 404
    assert (await api.call("GET", "/services/a/other-start-id"))[0] == 404
    assert await manager.authorize_forward("hub1", *_split(address)) is True
    assert await manager.authorize_forward("hub2", *_split(address)) is False

    assert (await api.call("DELETE", "/services/a"))[0] == 200
    assert not process_alive(pid)
    assert manager._running == {} and _holders(manager, address) == []
    assert (await api.call("GET", "/services/a"))[0] == 404
    assert await manager.authorize_forward("hub1", *_split(address)) is False


async def test_an_end_seen_by_a_poll_is_stored_once_and_unindexed(outpost):
    manager, api, store = outpost.app.manager, outpost.api, outpost.app.store
    address, pid = await _start(outpost, "b")
    assert await api.call("GET", "/services/b") == (200, {"status": None})
    os.kill(pid, signal.SIGTERM)
    await wait_for(lambda: not process_alive(pid), "server b gone")

    async def ended():
        _, poll = await api.call("GET", "/services/b")
        return poll["status"] is not None and poll

    first = await wait_for(ended, "poll reports the end")
    assert ("hub1", "b") not in manager._running
    row = await store.get("hub1", "b")
    assert row.status == "stopped" and row.exit_status == first["status"]
    assert await api.call("GET", "/services/b") == (200, first)  # answered from the row
    assert await manager.authorize_forward("hub1", *_split(address)) is False
    _, flavors = await api.call("GET", "/flavors")
    assert all(f.get("current", 0) == 0 for f in flavors.values())
    assert (await api.call("DELETE", "/services/b"))[0] == 200


async def test_recovery_rebuilds_the_index_from_the_store(outpost):
    manager, api = outpost.app.manager, outpost.api
    address, pid = await _start(outpost, "c")
    # what a restarted Outpost has: the store only
    manager._spawners.clear()
    manager._running.clear()
    manager.rights = ForwardRights()
    assert await manager.authorize_forward("hub1", *_split(address)) is True  # from the store
    await manager.recover()
    assert ("hub1", "c") in manager._running
    assert _holders(manager, address) == [("hub1", manager._running[("hub1", "c")])]
    assert await api.call("GET", "/services/c") == (200, {"status": None})
    assert (await api.call("DELETE", "/services/c"))[0] == 200
    assert not process_alive(pid)
    assert manager._running == {}


async def test_a_poll_indexes_a_running_server_the_index_missed(outpost):
    manager, api = outpost.app.manager, outpost.api
    await _start(outpost, "d")
    manager._running.clear()
    manager.rights = ForwardRights()
    assert await api.call("GET", "/services/d") == (200, {"status": None})
    assert ("hub1", "d") in manager._running
    assert (await api.call("DELETE", "/services/d"))[0] == 200


async def test_the_reaper_unindexes_what_it_stops(make_outpost):
    flavors = {"hourly": {"max": 2, "weight": 1, "runtime": {"hours": 1}}}
    outpost = await make_outpost(flavors=flavors, runtime_check_interval=0.2)
    manager, api = outpost.app.manager, outpost.api
    address, pid = await _start(outpost, "e", user_options={"flavor": "hourly"})
    assert ("hub1", "e") in manager._running
    await pass_runtime_deadline(outpost, "e")

    async def ended():
        _, poll = await api.call("GET", "/services/e")
        return poll["status"] is not None and poll

    poll = await wait_for(ended, "the reaper stopped the server", timeout=15)
    assert "runtime" in poll["error"]
    assert not process_alive(pid)
    assert manager._running == {} and _holders(manager, address) == []
    assert (await api.call("DELETE", "/services/e"))[0] == 200


async def test_the_spawner_knows_its_servers_address_after_start_and_after_recovery(outpost):
    """The hub stores start()'s answer in spawner.server; spawners compare it with where
    the server is at each poll (KubeSpawner warned "url changed!" at every first poll on
    kind, because the Outpost left ip "" and port 0)."""
    manager = outpost.app.manager
    address, _ = await _start(outpost, "e")
    host, port = _split(address)
    row = await outpost.app.store.get("hub1", "e")
    assert (
        manager._spawners[row.id].spawner.server.ip,
        manager._spawners[row.id].spawner.server.port,
    ) == (host, port)
    manager._spawners.clear()
    manager._running.clear()
    await manager.recover()
    server = manager._spawners[row.id].spawner.server
    assert (server.ip, server.port) == (host, port)
    assert (await outpost.api.call("DELETE", "/services/e"))[0] == 200


async def test_a_poll_of_a_running_indexed_server_reads_nothing_from_the_store(outpost):
    """One process on SQLite makes every change of the store itself: a poll of a server its
    index holds as running is answered from the index and the live spawner, without a
    statement; the end a poll finds is written (and the next poll reads the row)."""
    from sqlalchemy import event

    api = outpost.api
    _, pid = await _start(outpost, "f")
    assert await api.call("GET", "/services/f") == (200, {"status": None})
    statements = []

    def record(_conn, _cursor, statement, *_args):
        statements.append(statement.split(None, 1)[0].upper())

    engine = outpost.app.store.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        for _ in range(5):
            assert await api.call("GET", "/services/f") == (200, {"status": None})
        assert statements == []
        os.kill(pid, signal.SIGTERM)
        await wait_for(lambda: not process_alive(pid), "server f gone")
        _, poll = await api.call("GET", "/services/f")
        assert poll["status"] is not None
        assert "UPDATE" in statements
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert (await api.call("DELETE", "/services/f"))[0] == 200


async def test_an_answered_poll_makes_a_log_record_only_when_a_handler_writes_debug(
    make_outpost,
):
    import io
    import logging

    outpost = await make_outpost(log_level="INFO")
    api, log = outpost.api, outpost.app.log
    await _start(outpost, "g")
    made = []

    def spy(record):
        made.append(record.getMessage())
        return True

    log.addFilter(spy)
    written = io.StringIO()
    handler = logging.StreamHandler(written)
    try:
        assert await api.call("GET", "/services/g") == (200, {"status": None})
        assert not [line for line in made if "GET /services/g" in line]  # no record at INFO
        handler.setLevel(logging.DEBUG)
        log.addHandler(handler)
        assert await api.call("GET", "/services/g") == (200, {"status": None})
        assert "200 GET /services/g " in written.getvalue()
    finally:
        log.removeFilter(spy)
        log.removeHandler(handler)
    assert (await api.call("DELETE", "/services/g"))[0] == 200
