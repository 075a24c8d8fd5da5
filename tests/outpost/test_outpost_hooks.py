"""Admin hooks: allow_override, sanitize_start_response; progress event relay."""

import asyncio

from jupyterhub.spawner import SimpleLocalProcessSpawner

from .support import fetch_or_none, local_spawner_config, server_answers, start_body, wait_for

OVERRIDE = {"environment": {"OUTPOST_TEST_EXTRA": "from-misc"}}


def hub_apis(receiver) -> dict:
    """hub_api of an Outpost whose two hubs are the receiver."""
    return {**receiver.hub_api("hub1"), **receiver.hub_api("hub2")}


async def dropped_overrides(receiver, name: str) -> list:
    """The dropped keys the start of ``name`` reported in its progress events."""
    path = f"/hub/api/outpost/events/alice/{name}"
    await wait_for(lambda: receiver.posts_to(path), f"events of {name}")
    reports = [e for _, e in receiver.posts_to(path) if "dropped_overrides" in e]
    assert len(reports) == 1, receiver.posts_to(path)
    assert ", ".join(reports[0]["dropped_overrides"]) in reports[0]["message"]
    assert not reports[0].get("failed")
    return reports[0]["dropped_overrides"]


async def test_override_is_dropped_by_default_reported_to_the_hub_and_the_start_goes_on(
    make_outpost, receiver
):
    outpost = await make_outpost(hub_api=hub_apis(receiver))
    code, data = await outpost.api.call("POST", "/services", body=start_body("o", misc=OVERRIDE))
    assert code == 200, data
    info = await wait_for(lambda: fetch_or_none(data["service"]), "server answers")
    assert info["extra"] == ""  # the Outpost's own configuration, not the override
    assert await dropped_overrides(receiver, "o") == ["environment"]
    (row,) = await outpost.app.store.list_hub("hub1")
    assert row.misc == {}


async def test_allow_override_hook_decides_per_hub_and_misc(make_outpost, receiver):
    calls = []

    async def allow_override(hub_name, misc):
        calls.append((hub_name, misc))
        return hub_name == "hub1" and list(misc) == ["environment"]

    outpost = await make_outpost(allow_override=allow_override, hub_api=hub_apis(receiver))
    api = outpost.api
    code, data = await api.call("POST", "/services", body=start_body("o1", misc=OVERRIDE))
    assert code == 200, data
    info = await wait_for(lambda: fetch_or_none(data["service"]), "server answers")
    assert info["extra"] == "from-misc"  # the override reached the spawner
    body = start_body("o2", misc=OVERRIDE)
    code, data = await api.call("POST", "/services", hub="hub2", body=body)
    assert code == 200, data
    assert (await wait_for(lambda: fetch_or_none(data["service"]), "o2 answers"))["extra"] == ""
    assert await dropped_overrides(receiver, "o2") == ["environment"]
    # empty misc: the hook is not called
    assert (await api.call("POST", "/services", hub="hub2", body=start_body("o3")))[0] == 200
    assert [hub for hub, _ in calls] == ["hub1", "hub2"]


async def test_allow_override_hook_may_name_the_keys_it_allows(make_outpost, receiver):
    outpost = await make_outpost(
        allow_override=lambda hub, misc: {"environment"}, hub_api=hub_apis(receiver)
    )
    misc = dict(OVERRIDE, port=1, dns_name_template="{name}.x")  # as the stock client sends
    code, data = await outpost.api.call("POST", "/services", body=start_body("o", misc=misc))
    assert code == 200, data
    info = await wait_for(lambda: fetch_or_none(data["service"]), "server answers")
    assert info["extra"] == "from-misc"
    assert not data["service"].endswith(":1")
    assert await dropped_overrides(receiver, "o") == ["dns_name_template", "port"]


async def test_allowed_override_of_an_unknown_option_is_dropped(make_outpost, receiver):
    outpost = await make_outpost(allow_override=True, hub_api=hub_apis(receiver))
    misc = dict(OVERRIDE, no_such_option=1)
    code, data = await outpost.api.call("POST", "/services", body=start_body("o", misc=misc))
    assert code == 200, data
    info = await wait_for(lambda: fetch_or_none(data["service"]), "server answers")
    assert info["extra"] == "from-misc"
    assert await dropped_overrides(receiver, "o") == ["no_such_option"]
    (row,) = await outpost.app.store.list_hub("hub1")
    assert row.misc == OVERRIDE


async def test_a_failing_allow_override_hook_applies_nothing(make_outpost, receiver):
    def broken(hub, misc):
        raise RuntimeError("bug in the admin's hook")

    outpost = await make_outpost(allow_override=broken, hub_api=hub_apis(receiver))
    code, data = await outpost.api.call("POST", "/services", body=start_body("o", misc=OVERRIDE))
    assert code == 200, data
    assert (await wait_for(lambda: fetch_or_none(data["service"]), "answers"))["extra"] == ""
    assert await dropped_overrides(receiver, "o") == ["environment"]


async def test_sanitize_start_response_hook_sets_the_address(make_outpost):
    seen = []

    async def sanitize(spawner, response):
        seen.append((spawner.user.name, response))
        return f"localhost:{response[1]}"

    outpost = await make_outpost(sanitize_start_response=sanitize)
    code, data = await outpost.api.call("POST", "/services", body=start_body("s", user="bob"))
    assert code == 200
    ip, port = seen[0][1]
    assert seen[0][0] == "bob@hub1" and ip == "127.0.0.1"  # local_user_name's default
    assert data == {"service": f"localhost:{port}"}
    await wait_for(lambda: server_answers(data["service"]), "server answers at sanitized address")


async def test_empty_sanitized_answer_means_delayed_tunneling(make_outpost):
    outpost = await make_outpost(sanitize_start_response=lambda spawner, response: "")
    code, data = await outpost.api.call("POST", "/services", body=start_body("d"))
    assert (code, data) == (200, {"service": ""})
    assert await outpost.api.call("GET", "/services/d") == (200, {"status": None})


def test_default_sanitize_turns_urls_and_tuples_into_host_port():
    from jupyterhub_outpost.outpost.hooks import default_sanitize_start_response as s

    assert s(None, ("10.0.0.5", 8888)) == "10.0.0.5:8888"
    assert s(None, "http://jupyter-abc-1:8888") == "jupyter-abc-1:8888"
    assert s(None, "https://node7.example.org/user/x/") == "node7.example.org:443"
    assert s(None, ("::1", 9000)) == "[::1]:9000"
    assert s(None, "") == "" and s(None, None) == ""


async def test_progress_events_are_relayed_to_the_hub_with_the_server_token(make_outpost, receiver):
    outpost = await make_outpost(hub_api=receiver.hub_api())
    code, _ = await outpost.api.call("POST", "/services", body=start_body("ev"))
    assert code == 200
    events = receiver.posts_to("/hub/api/outpost/events/alice/ev")
    assert events, "events arrive before the start answer"
    assert all(h["Authorization"] == "token token-ev" for h, _ in events)
    assert events[0][1] == {"progress": 0, "message": "Server requested"}
    assert all("message" in e for _, e in events)


class QueuedSpawner(SimpleLocalProcessSpawner):
    """Reports its state as a batch spawner does, once per poll while its job waits; the
    start goes on once the progress was read (the relay reads progress alongside start)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.progress_read = asyncio.Event()

    async def progress(self):
        for _ in range(20):
            yield {"message": "Pending in queue..."}
        yield {"message": "Cluster job running... waiting to connect"}
        self.progress_read.set()

    async def start(self):
        await self.progress_read.wait()
        return await super().start()


async def test_a_repeated_progress_event_is_relayed_once(make_outpost, tmp_path, receiver):
    c = local_spawner_config(tmp_path)
    c.JupyterHubOutpost.spawner_class = QueuedSpawner
    c.QueuedSpawner.cmd = c.SimpleLocalProcessSpawner.cmd
    c.QueuedSpawner.home_dir_template = c.SimpleLocalProcessSpawner.home_dir_template
    outpost = await make_outpost(c, hub_api=receiver.hub_api())
    code, _ = await outpost.api.call("POST", "/services", body=start_body("q"))
    assert code == 200
    messages = [e["message"] for _, e in receiver.posts_to("/hub/api/outpost/events/alice/q")]
    assert messages == [
        "Server requested",
        "Pending in queue...",
        "Cluster job running... waiting to connect",
    ]
    assert (await outpost.api.call("DELETE", "/services/q"))[0] == 200


async def test_failed_start_sends_a_final_failure_event(make_outpost, tmp_path, receiver):
    c = local_spawner_config(tmp_path)
    c.SimpleLocalProcessSpawner.cmd = ["/nonexistent/singleuser"]
    outpost = await make_outpost(c, hub_api=receiver.hub_api())
    code, data = await outpost.api.call("POST", "/services", body=start_body("bad"))
    assert code == 500
    last = receiver.posts_to("/hub/api/outpost/events/alice/bad")[-1][1]
    assert last["failed"] is True and last["progress"] == 100
    assert "bad" in last["message"] and "nonexistent" in last["message"]


async def test_async_failed_start_is_reported_by_poll_and_event(make_outpost, tmp_path, receiver):
    c = local_spawner_config(tmp_path)
    c.SimpleLocalProcessSpawner.cmd = ["/nonexistent/singleuser"]
    outpost = await make_outpost(c, hub_api=receiver.hub_api())
    code, _ = await outpost.api.call(
        "POST", "/services", body=start_body("bad"), headers={"execution-type": "async"}
    )
    assert code == 202

    async def failed():
        _, data = await outpost.api.call("GET", "/services/bad")
        return data["status"] is not None and data

    data = await wait_for(failed, "failed start visible to poll")
    assert data["status"] == 1 and "nonexistent" in data["error"]
    assert any(e.get("failed") for _, e in receiver.posts_to("/hub/api/outpost/events/alice/bad"))
    # a failed row does not block the name: a new start replaces it (and fails again here)
    code, data = await outpost.api.call("POST", "/services", body=start_body("bad"))
    assert code == 500 and "already running" not in data["error"]


async def test_a_start_slower_than_start_timeout_fails_cleanly(make_outpost, tmp_path):
    c = local_spawner_config(tmp_path)
    c.SimpleLocalProcessSpawner.start_timeout = 1
    c.SimpleLocalProcessSpawner.pre_spawn_hook = None
    outpost = await make_outpost(c)

    import asyncio

    async def slow_start(self):
        await asyncio.Event().wait()

    spawner_class = outpost.app.manager.runner.spawner_class
    original = spawner_class.start
    spawner_class.start = slow_start
    try:
        code, data = await outpost.api.call("POST", "/services", body=start_body("slow"))
    finally:
        spawner_class.start = original
    assert code == 500 and "start_timeout" in data["error"]
    assert await outpost.app.store.list_hub("hub1") == []


async def test_stop_during_a_pending_async_start_cancels_it_and_forgets_the_server(
    make_outpost, tmp_path, receiver
):
    import asyncio

    outpost = await make_outpost(hub_api=receiver.hub_api())
    events = "/hub/api/outpost/events/alice/pending"
    started = asyncio.Event()

    async def never_finishing_start(self):
        started.set()
        await asyncio.Event().wait()

    spawner_class = outpost.app.manager.runner.spawner_class
    original = spawner_class.start
    spawner_class.start = never_finishing_start
    try:
        code, _ = await outpost.api.call(
            "POST",
            "/services",
            body=start_body("pending"),
            headers={"execution-type": "async"},
        )
        assert code == 202
        await asyncio.wait_for(started.wait(), 10)
        assert await outpost.api.call("GET", "/services/pending") == (200, {"status": None})
        assert (await outpost.api.call("DELETE", "/services/pending"))[0] == 200
    finally:
        spawner_class.start = original
    assert (await outpost.api.call("GET", "/services/pending"))[0] == 404
    await wait_for(
        lambda: any(e.get("failed") for _, e in receiver.posts_to(events)), "failure event"
    )
    assert "cancelled by a stop request" in receiver.posts_to(events)[-1][1]["message"]
    assert await outpost.app.store.list_hub("hub1") == []
