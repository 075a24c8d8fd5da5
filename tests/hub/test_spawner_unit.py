"""OutpostSpawner against a stand-in Outpost and a stand-in tunnel daemon client."""

from __future__ import annotations

import asyncio
import json

import pytest
from jupyterhub.spawner import SpawnException
from jupyterhub.utils import format_exception
from jupyterhub_outpost.hub.addresses import ServiceAddress
from jupyterhub_outpost.hub.poll_and_stop import PollAndStopMixin
from jupyterhub_outpost.hub.spawner import STATE_KEY, STATE_VERSION, make_service_name

from .conftest import outposts_config


async def test_start_sends_wire_contract_body_and_targets_forward(
    make_spawner, fake_outpost, fake_tunnels
):
    spawner = make_spawner("lab1")
    url = await spawner.start()

    post = fake_outpost.requests_of("POST")[0]
    body = post["body"]
    assert post["path"] == "/services"
    assert set(body) == {
        "name",
        "env",
        "user_options",
        "misc",
        "certs",
        "internal_trust_bundles",
        "authentication",
    }
    # the Outpost's per-user flavor rules see the user, in the start and the flavor choice
    assert body["authentication"] == {"name": "alice", "groups": []}
    assert fake_outpost.requests_of("POST", "/userflavors")[0]["body"] == body["authentication"]
    assert body["name"] == make_service_name(spawner.user.id, "lab1")
    assert body["user_options"]["start_id"] == spawner.start_id
    assert body["user_options"]["flavor"] == "small"
    env = body["env"]
    assert env["JUPYTERHUB_API_TOKEN"] == "server-token"
    assert env["JUPYTERHUB_EVENTS_URL"].endswith("/hub/api/outpost/events/alice/lab1")
    assert env["JUPYTERHUB_SETUPTUNNEL_URL"].endswith("/hub/api/outpost/setuptunnel/alice/lab1")
    assert env["JUPYTERHUB_FLAVORS_UPDATE_URL"].endswith("/hub/api/outpost/flavors/remote")
    assert env["JUPYTERHUB_SERVER_NAME"] == "lab1"
    assert env["JUPYTERHUB_USER_ID"] == str(spawner.user.id)
    assert "JUPYTERHUB_SERVICE_URL" not in env

    fwd = fake_tunnels.forwards[f"remote.{body['name']}"]
    assert (fwd["target_host"], fwd["target_port"]) == ("10.0.0.5", 8888)
    assert fwd["ssh"]["host_key"].startswith("ssh-ed25519 ")
    assert url == f"http://127.0.0.1:{fwd['local_port']}"


async def test_the_outposts_own_flavors_token_goes_with_its_starts_and_no_other(
    make_spawner, fake_outpost, fake_tunnels
):
    outposts = outposts_config(fake_outpost)
    outposts["remote"]["flavors_update_token"] = "remote-flavors-token"
    await make_spawner("a", outposts=outposts).start()
    await make_spawner("b", outposts=outposts, user_options={"outpost": "local"}).start()
    first, second = (r["body"]["env"] for r in fake_outpost.requests_of("POST"))
    assert first["JUPYTERHUB_FLAVORS_UPDATE_TOKEN"] == "remote-flavors-token"
    assert "JUPYTERHUB_FLAVORS_UPDATE_TOKEN" not in second  # "local" has no token


async def test_default_server_events_url_uses_default_placeholder(
    make_spawner, fake_outpost, fake_tunnels
):
    spawner = make_spawner("")
    await spawner.start()
    env = fake_outpost.requests_of("POST")[0]["body"]["env"]
    assert env["JUPYTERHUB_EVENTS_URL"].endswith("/outpost/events/alice/_default")


async def test_direct_outpost_returns_server_url_without_forward(
    make_spawner, fake_outpost, fake_tunnels
):
    spawner = make_spawner("x", user_options={"outpost": "local"})
    fake_outpost.start_answer = {"service": "jupyter-x.ns.svc:8888"}
    url = await spawner.start()
    assert url == "http://jupyter-x.ns.svc:8888"
    assert fake_tunnels.forwards == {}


async def test_failed_start_shows_outpost_message_and_leaves_nothing(
    make_spawner, fake_outpost, fake_tunnels
):
    seen = []
    spawner = make_spawner("x", failed_spawn_request_hook=lambda sp, exc: seen.append(str(exc)))
    fake_outpost.start_error = (400, "Flavor 'small' is not allowed for this user")
    with pytest.raises(SpawnException) as info:
        await spawner.start()
    assert "Flavor 'small' is not allowed for this user" in info.value.message
    # what JupyterHub's progress stream shows the user: the message, not the exception's repr
    message, _ = format_exception(info.value)
    assert message == info.value.message and "SpawnException(" not in message
    assert seen and "not allowed" in seen[0]
    # the remote server is asked to go away, no forward stays
    assert fake_outpost.requests_of("DELETE")
    assert fake_tunnels.forwards == {}
    assert spawner.get_state().get(STATE_KEY) is None


async def test_failed_tunnel_deletes_remote_server_and_forward(
    make_spawner, fake_outpost, fake_tunnels
):
    fake_tunnels.fail_state = "error"
    spawner = make_spawner("x")
    with pytest.raises(SpawnException) as info:
        await spawner.start()
    assert "tunnel" in info.value.message
    assert fake_outpost.running == {}
    assert fake_tunnels.forwards == {}


async def test_a_passing_tunnel_error_is_waited_out_and_the_start_succeeds(
    make_spawner, fake_outpost, fake_tunnels
):
    """Found on kind: the SSH endpoint's pod restarted a few seconds before a start, the
    daemon's link was between reconnect attempts, and the start failed at once."""
    fake_tunnels.passing_errors = 3
    spawner = make_spawner("x")
    url = await spawner.start()
    assert url and fake_tunnels.passing_errors == 0
    assert fake_tunnels.forwards[spawner.forward_key]["state"] == "up"


async def test_a_passing_tunnel_error_that_lasts_fails_the_start_with_its_reason(
    make_spawner, fake_outpost, fake_tunnels
):
    fake_tunnels.passing_errors = 10**6
    spawner = make_spawner("x")
    spawner.tunnel_up_timeout = 0.5
    with pytest.raises(SpawnException) as info:
        await spawner.start()
    assert "SSH connection timed out (still after" in info.value.message
    assert fake_outpost.running == {}
    assert fake_tunnels.forwards == {}


async def test_invalid_address_from_outpost_is_refused(make_spawner, fake_outpost, fake_tunnels):
    fake_outpost.start_answer = {"service": "host;rm -rf /:80"}
    spawner = make_spawner("x")
    with pytest.raises(SpawnException):
        await spawner.start()
    assert fake_outpost.running == {}
    assert fake_tunnels.forwards == {}


async def test_delayed_tunneling_waits_for_setuptunnel(make_spawner, fake_outpost, fake_tunnels):
    fake_outpost.start_answer = {"service": ""}
    spawner = make_spawner("x")
    task = asyncio.ensure_future(spawner.start())
    await asyncio.wait_for(
        _until(lambda: spawner._setuptunnel is not None and fake_outpost.running), 10
    )
    assert not task.done()
    await asyncio.wait_for(_until(lambda: spawner._events), 10)
    assert spawner._events[-1]["message"] == "Remote: waiting for the server to report its address"
    assert await spawner.setup_tunnel(ServiceAddress("10.1.2.3", 9000)) == "started"
    url = await asyncio.wait_for(task, 10)
    fwd = fake_tunnels.forwards[spawner.forward_key]
    assert (fwd["target_host"], fwd["target_port"]) == ("10.1.2.3", 9000)
    assert url.endswith(f":{fwd['local_port']}")


async def test_delayed_start_fails_at_once_when_the_server_ends_before_it_reports(
    make_spawner, fake_outpost, fake_tunnels
):
    spawner, task = await _delayed_start_waiting(make_spawner, fake_outpost)
    fake_outpost.status = 1  # the batch job died before its server reported
    with pytest.raises(SpawnException) as info:
        await asyncio.wait_for(task, 10)
    assert "ended (exit status 1) before it reported its address" in str(
        info.value.jupyterhub_message
    )
    assert fake_outpost.running == {}  # stopped there
    assert fake_tunnels.forwards == {}


async def test_delayed_start_fails_when_the_outpost_forgets_the_server(
    make_spawner, fake_outpost, fake_tunnels
):
    spawner, task = await _delayed_start_waiting(make_spawner, fake_outpost)
    fake_outpost.status = "404"
    with pytest.raises(SpawnException) as info:
        await asyncio.wait_for(task, 10)
    assert "no longer knows the server" in str(info.value.jupyterhub_message)


async def test_setuptunnel_moves_only_servers_that_reported_their_own_address(
    make_spawner, fake_outpost, fake_tunnels
):
    # address from the Outpost's answer: a re-post of it re-creates, another is refused
    spawner = make_spawner("x")
    await spawner.start()
    port = spawner.forward["local_port"]
    fake_tunnels.forwards.clear()
    assert await spawner.setup_tunnel(ServiceAddress("10.0.0.5", 8888)) == "updated"
    assert fake_tunnels.forwards[spawner.forward_key]["local_port"] == port
    with pytest.raises(ValueError):
        await spawner.setup_tunnel(ServiceAddress("10.0.0.6", 8888))
    assert fake_tunnels.forwards[spawner.forward_key]["target_host"] == "10.0.0.5"

    # delayed tunneling: the server may report a new address (e.g. its job was requeued)
    fake_outpost.start_answer = {"service": ""}
    delayed = make_spawner("y")
    task = asyncio.ensure_future(delayed.start())
    await asyncio.wait_for(_until(lambda: "jh1-y" in fake_outpost.running), 10)
    await delayed.setup_tunnel(ServiceAddress("10.1.0.1", 9000))
    await asyncio.wait_for(task, 10)
    assert await delayed.setup_tunnel(ServiceAddress("10.1.0.2", 9001)) == "updated"
    fwd = fake_tunnels.forwards[delayed.forward_key]
    assert (fwd["target_host"], fwd["target_port"]) == ("10.1.0.2", 9001)


async def test_async_start_follows_the_outpost_until_running(
    make_spawner, fake_outpost, fake_tunnels
):
    spawner = make_spawner("x", start_async=lambda sp: True)
    task = asyncio.ensure_future(spawner.start())
    await asyncio.wait_for(_until(lambda: spawner.service_name in fake_outpost.rows), 10)
    assert fake_outpost.requests_of("POST")[0]["headers"]["Execution-Type"] == "async"
    assert not task.done()
    fake_outpost.rows[spawner.service_name].update(status="running", service="10.0.0.9:8000")
    url = await asyncio.wait_for(task, 10)
    fwd = fake_tunnels.forwards[spawner.forward_key]
    assert (fwd["target_host"], fwd["target_port"]) == ("10.0.0.9", 8000)
    assert url.endswith(f":{fwd['local_port']}")


async def test_async_start_failure_shows_outpost_error_and_cleans_up(
    make_spawner, fake_outpost, fake_tunnels
):
    spawner = make_spawner("x", start_async=True)
    task = asyncio.ensure_future(spawner.start())
    await asyncio.wait_for(_until(lambda: fake_outpost.rows), 10)
    (row,) = fake_outpost.rows.values()
    row.update(status="failed", error="The batch system rejected the job: no GPU left")
    with pytest.raises(SpawnException) as info:
        await asyncio.wait_for(task, 10)
    assert "no GPU left" in info.value.message
    assert fake_outpost.requests_of("DELETE")
    assert fake_tunnels.forwards == {}


async def test_delayed_tunneling_times_out_within_start_timeout(
    make_spawner, fake_outpost, fake_tunnels
):
    fake_outpost.start_answer = {"service": ""}
    spawner = make_spawner("x", start_timeout=1)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(spawner.start(), spawner.start_timeout)
    # cancelled by the timeout (as JupyterHub does): everything undone
    assert fake_outpost.running == {}
    assert fake_tunnels.forwards == {}


async def test_progress_yields_remote_events_as_they_arrive(
    make_spawner, fake_outpost, fake_tunnels
):
    gate = asyncio.Event()
    fake_outpost.start_gate = gate
    spawner = make_spawner("x")
    spawner._spawn_future = asyncio.ensure_future(spawner.start())
    received = []

    async def consume():
        async for event in spawner.progress():
            received.append(event)

    consumer = asyncio.ensure_future(consume())
    # the Outpost relays events while its start request is in flight
    await asyncio.wait_for(_until(lambda: fake_outpost.requests_of("POST")), 5)
    spawner.add_event({"progress": 0, "message": "Server requested"})  # the hub showed it already
    spawner.add_event(
        {"progress": 10, "message": "Pulling image", "html_message": "<b>x</b>", "evil": 1}
    )
    await asyncio.wait_for(_until(lambda: len(received) == 1), 5)
    assert received[0] == {
        "progress": 10,
        "message": "Pulling image",
        "html_message": "&lt;b&gt;x&lt;/b&gt;",
    }
    spawner.add_event({"progress": 50, "message": "Starting"})
    await asyncio.wait_for(_until(lambda: len(received) == 2), 5)
    gate.set()
    await asyncio.wait_for(spawner._spawn_future, 10)
    await asyncio.wait_for(consumer, 5)
    assert [e["message"] for e in received] == ["Pulling image", "Starting"]


async def test_progress_shows_a_repeated_state_once_and_what_follows_a_long_wait(make_spawner):
    spawner = make_spawner("x")
    for _ in range(900):  # a batch job 15 minutes in the queue: its state every second
        spawner.add_event({"message": "Pending in queue..."})
    spawner.add_event({"message": "Cluster job running... waiting to connect"})
    spawner.add_event({"message": "Pending in queue..."})  # not the one before: shown again
    spawner._spawn_future = asyncio.get_running_loop().create_future()
    spawner._spawn_future.set_result(None)
    received = [event["message"] async for event in spawner.progress()]
    assert received == [
        "Pending in queue...",
        "Cluster job running... waiting to connect",
        "Pending in queue...",
    ]


async def test_poll_reports_running_and_puts_back_lost_forward(
    make_spawner, fake_outpost, fake_tunnels
):
    spawner = make_spawner("x")
    url = await spawner.start()
    state = json.loads(json.dumps(spawner.get_state()))
    port = spawner.forward["local_port"]

    # hub restart + tunnel daemon lost its table
    fake_tunnels.forwards.clear()
    reloaded = make_spawner("x")
    reloaded.load_state(state)
    assert await reloaded.poll() is None
    assert fake_tunnels.forwards[reloaded.forward_key]["local_port"] == port
    assert await reloaded.get_url() == url


async def test_concurrent_polls_share_one_forward_table_request(
    make_spawner, fake_outpost, fake_tunnels
):
    spawners = [make_spawner(f"s{i}") for i in range(5)]
    for spawner in spawners:
        await spawner.start()
    fake_tunnels.calls.clear()
    assert await asyncio.gather(*(sp.poll() for sp in spawners)) == [None] * 5
    assert fake_tunnels.calls.count(("list",)) == 1
    assert [c for c in fake_tunnels.calls if c[0] == "put"] == []


async def test_poll_unknown_server_reports_stopped_and_removes_forward(
    make_spawner, fake_outpost, fake_tunnels
):
    spawner = make_spawner("x")
    await spawner.start()
    fake_outpost.running.clear()
    assert await spawner.poll() == 0
    assert fake_tunnels.forwards == {}


async def test_poll_of_a_server_that_ended_removes_its_record_at_the_outpost(
    make_spawner, fake_outpost, fake_tunnels
):
    spawner = make_spawner("x")
    await spawner.start()
    fake_outpost.status = 137  # it ended by itself (its batch job was killed)
    assert await spawner.poll() == 137
    deletes = fake_outpost.requests_of("DELETE")
    assert [r["path"] for r in deletes] == [f"/services/{spawner.service_name}/{spawner.start_id}"]
    assert fake_outpost.running == {}
    assert fake_tunnels.forwards == {}
    assert not PollAndStopMixin._retries  # removed at once: nothing left to retry


async def test_poll_keeps_running_while_outpost_unreachable(
    make_spawner, fake_outpost, fake_tunnels
):
    spawner = make_spawner("x")
    await spawner.start()
    await fake_outpost.stop()
    assert await spawner.poll() is None
    assert spawner.forward_key in fake_tunnels.forwards


async def test_start_is_recorded_in_the_hub_database_before_the_request_leaves(
    make_spawner, fake_outpost, fake_tunnels
):
    spawner = make_spawner("x")
    seen = {}

    async def on_start(body):
        spawner.user.db.rollback()  # whatever was not committed is gone now
        seen["state"] = spawner.orm_spawner.state
        seen["start_id"] = body["user_options"]["start_id"]

    fake_outpost.on_start = on_start
    await spawner.start()
    recorded = seen["state"][STATE_KEY]
    assert recorded["start_id"] == seen["start_id"]
    assert recorded["service_name"] == make_service_name(spawner.user.id, "x")
    assert recorded["outpost"] == "remote"
    assert recorded["target_url"] == ""


async def test_start_that_cannot_be_recorded_is_refused_before_anything_is_sent(
    make_spawner, fake_outpost, fake_tunnels, monkeypatch
):
    spawner = make_spawner("x")

    def broken_commit():
        raise RuntimeError("database is locked")

    monkeypatch.setattr(spawner.user.db, "commit", broken_commit)
    with pytest.raises(SpawnException) as info:
        await spawner.start()
    assert "could not record the start" in info.value.message
    assert fake_outpost.requests_of("POST") == []
    assert spawner.start_id == "" and STATE_KEY not in spawner.get_state()


async def test_start_interrupted_by_a_hub_restart_is_stopped_at_the_outpost(
    make_spawner, fake_outpost, fake_tunnels
):
    spawner = make_spawner("x")
    fake_outpost.start_gate = asyncio.Event()
    task = asyncio.ensure_future(spawner.start())
    await _until(lambda: fake_outpost.requests_of("POST"))
    body = fake_outpost.requests_of("POST")[0]["body"]
    fake_outpost.running[body["name"]] = body["user_options"]["start_id"]  # the Outpost runs it

    # the hub dies here; the restarted hub has only what the database holds
    state = json.loads(json.dumps(spawner.orm_spawner.state))
    restarted = make_spawner("x")
    restarted.load_state(state)
    assert await restarted.poll() == 1
    assert fake_outpost.running == {}
    deletes = fake_outpost.requests_of("DELETE")
    assert deletes[0]["path"] == f"/services/{body['name']}/{body['user_options']['start_id']}"
    assert STATE_KEY not in restarted.get_state()
    assert await restarted.poll() == 0  # JupyterHub's user.stop() polls again: nothing left

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_interrupted_start_is_stopped_later_when_the_outpost_is_down_at_restart(
    make_spawner, fake_outpost, fake_tunnels
):
    spawner = make_spawner("x", stop_retry_timeout=30)
    spawner.outpost_name, spawner.start_id = "remote", "0123456789abcdef"
    spawner.service_name = make_service_name(spawner.user.id, "x")
    fake_outpost.running[spawner.service_name] = spawner.start_id
    fake_outpost.delete_error = (503, "Outpost is restarting")
    assert await spawner.poll() == 1
    assert fake_outpost.running  # not yet: the stop is retried in the background
    fake_outpost.delete_error = None
    await asyncio.wait_for(_until(lambda: not fake_outpost.running), 20)


async def test_poll_during_a_start_in_this_process_reports_running(
    make_spawner, fake_outpost, fake_tunnels
):
    spawner = make_spawner("x")
    fake_outpost.start_gate = asyncio.Event()
    task = asyncio.ensure_future(spawner.start())
    await _until(lambda: fake_outpost.requests_of("POST"))
    assert await spawner.poll() is None
    assert fake_outpost.requests_of("DELETE") == []
    fake_outpost.start_gate.set()
    await task


async def test_poll_before_any_start_reports_not_running(make_spawner, fake_tunnels):
    assert await make_spawner("x").poll() == 0


async def test_stop_removes_remote_server_and_forward(make_spawner, fake_outpost, fake_tunnels):
    spawner = make_spawner("x")
    await spawner.start()
    await spawner.stop()
    assert fake_outpost.running == {}
    assert fake_tunnels.forwards == {}
    spawner.clear_state()
    assert STATE_KEY not in spawner.get_state()


async def test_stop_during_outpost_outage_is_retried_until_it_succeeds(
    make_spawner, fake_outpost, fake_tunnels
):
    spawner = make_spawner("x", stop_retry_timeout=30)
    await spawner.start()
    fake_outpost.delete_error = (503, "Outpost is restarting")
    await spawner.stop()
    assert fake_tunnels.forwards == {}  # local side cleaned at once
    assert fake_outpost.running
    fake_outpost.delete_error = None
    await asyncio.wait_for(_until(lambda: not fake_outpost.running), 20)


async def test_full_flavor_is_refused_before_any_request(make_spawner, fake_outpost, fake_tunnels):
    spawner = make_spawner("x", user_options={"outpost": "remote", "flavor": "big"})
    with pytest.raises(SpawnException) as info:
        await spawner.start()
    assert "full" in info.value.message
    assert fake_outpost.requests_of("POST") == []


async def test_unknown_outpost_is_refused(make_spawner, fake_outpost, fake_tunnels):
    spawner = make_spawner("x", user_options={"outpost": "nowhere"})
    with pytest.raises(SpawnException) as info:
        await spawner.start()
    assert "nowhere" in info.value.message


@pytest.mark.parametrize("form", ["value", "function", "coroutine"])
async def test_hooks_accept_value_function_and_coroutine(
    make_spawner, fake_outpost, fake_tunnels, form
):
    calls = {}

    def hook(name, value):
        def fn(*args):
            calls[name] = args
            return value

        async def coro(*args):
            calls[name] = args
            return value

        return {"value": value, "function": fn, "coroutine": coro}[form]

    spawner = make_spawner(
        "x",
        request_url=hook("request_url", f"{fake_outpost.url}/services/"),
        request_headers=hook("request_headers", {"X-Site": "a"}),
        custom_env=hook("custom_env", {"SITE_ENV": "1"}),
        custom_user_options=hook("custom_user_options", {"image": "lab:1"}),
        custom_misc=hook("custom_misc", {"image": "lab:1"}),
        ssh_node=hook("ssh_node", "ssh.example.org"),
    )
    if form != "value":
        spawner.check_allowed = hook("check_allowed", None)
        spawner.post_spawn_request_hook = hook("post_spawn_request_hook", None)
    await spawner.start()
    post = fake_outpost.requests_of("POST")[0]
    assert post["headers"]["X-Site"] == "a"
    assert post["body"]["env"]["SITE_ENV"] == "1"
    assert post["body"]["user_options"]["image"] == "lab:1"
    assert post["body"]["misc"] == {"image": "lab:1"}
    assert fake_tunnels.forwards[spawner.forward_key]["ssh"]["host"] == "ssh.example.org"
    if form != "value":
        assert calls["request_url"][0] is spawner and calls["request_url"][1]["outpost"] == "remote"
        assert calls["custom_env"][2].endswith("/hub/api")
        assert calls["check_allowed"][1]["flavor"] == "small"
        assert calls["post_spawn_request_hook"][1] == {"service": "10.0.0.5:8888"}
        assert calls["ssh_node"][1]["key"] == spawner.forward_key


async def test_failing_hook_fails_the_start_before_anything_is_sent(
    make_spawner, fake_outpost, fake_tunnels
):
    def custom_env(spawner, user_options, api_url):
        raise RuntimeError("no project selected")

    spawner = make_spawner("x", custom_env=custom_env)
    with pytest.raises(SpawnException) as info:
        await spawner.start()
    assert "no project selected" in info.value.message
    assert fake_outpost.requests_of("POST") == []
    assert STATE_KEY not in spawner.get_state()


async def test_check_allowed_refusal_is_shown_and_nothing_is_sent(
    make_spawner, fake_outpost, fake_tunnels
):
    def check_allowed(spawner, user_options):
        raise ValueError("Your project has no compute time left")

    spawner = make_spawner("x", check_allowed=check_allowed)
    with pytest.raises(SpawnException) as info:
        await spawner.start()
    assert info.value.message == "Your project has no compute time left"
    assert fake_outpost.requests == [] or fake_outpost.requests_of("POST") == []


async def test_check_allowed_spawn_exception_is_shown_as_its_message(
    make_spawner, fake_outpost, fake_tunnels
):
    def check_allowed(spawner, user_options):
        raise SpawnException("GPUs are for project members only", reason="policy")

    spawner = make_spawner("x", check_allowed=check_allowed)
    with pytest.raises(SpawnException) as info:
        await spawner.start()
    assert info.value.reason == "policy"
    assert format_exception(info.value)[0] == "GPUs are for project members only"
    assert fake_outpost.requests_of("POST") == []


async def test_custom_forward_and_service_hooks_replace_daemon_and_backend(
    make_spawner, fake_outpost, fake_tunnels
):
    log = []

    async def forward(spawner, info):
        log.append(("forward", info["target_host"], info["target_port"]))
        return {"local_host": "tunnel-pod", "local_port": 7000}

    def svc(spawner, info):
        log.append(("svc", info["local_port"]))
        return ("svc-name.ns.svc", 7000)

    spawner = make_spawner(
        "x",
        ssh_custom_forward=forward,
        ssh_custom_forward_remove=lambda sp, info: log.append(("forward_remove", info["key"])),
        ssh_custom_svc=svc,
        ssh_custom_svc_remove=lambda sp, info: log.append(("svc_remove",)),
    )
    url = await spawner.start()
    assert url == "http://svc-name.ns.svc:7000"
    await spawner.stop()
    assert [entry[0] for entry in log] == ["forward", "svc", "svc_remove", "forward_remove"]
    assert fake_tunnels.forwards == {}


async def test_internal_ssl_sends_certs_and_trust_bundles(
    make_spawner, fake_outpost, fake_tunnels, tmp_path
):
    for name in ("key", "cert", "ca", "bundle"):
        (tmp_path / name).write_text(f"-----{name}-----")
    spawner = make_spawner("x")
    spawner.internal_ssl = True
    spawner.cert_paths = {
        "keyfile": str(tmp_path / "key"),
        "certfile": str(tmp_path / "cert"),
        "cafile": str(tmp_path / "ca"),
    }
    spawner.internal_trust_bundles = {"hub-ca": str(tmp_path / "bundle")}
    url = await spawner.start()
    body = fake_outpost.requests_of("POST")[0]["body"]
    assert body["certs"] == {
        "keyfile": "-----key-----",
        "certfile": "-----cert-----",
        "cafile": "-----ca-----",
    }
    assert body["internal_trust_bundles"] == {"hub-ca": "-----bundle-----"}
    assert url.startswith("https://")


def test_state_round_trips_every_field(make_spawner):
    spawner = make_spawner("x")
    spawner.outpost_name = "remote"
    spawner.start_id = "abc123"
    spawner.service_name = "jh1-x"
    spawner.service_address = ServiceAddress("fd00::5", 8888, "https")
    spawner.address_source = "setuptunnel"
    spawner.forward = {"key": "remote.jh1-x", "local_host": "127.0.0.1", "local_port": 40001}
    spawner.k8s_service = {"backend": "kubernetes", "host": "outpost-jh1-x.ns.svc", "port": 40001}
    spawner.target_url = "https://outpost-jh1-x.ns.svc:40001"
    state = json.loads(json.dumps(spawner.get_state()))  # as the database stores it
    assert state[STATE_KEY]["version"] == STATE_VERSION

    other = make_spawner("x")
    other.load_state(state)
    fields = [
        "outpost_name",
        "start_id",
        "service_name",
        "service_address",
        "address_source",
        "forward",
        "k8s_service",
        "target_url",
    ]
    fresh = make_spawner("x")
    for field in fields:
        assert getattr(other, field) == getattr(spawner, field), field
        # the stored value differs from a fresh spawner's, so the check is not vacuous
        assert getattr(fresh, field) != getattr(spawner, field), field
    # every persisted key is covered by the list above
    assert set(state[STATE_KEY]) == {
        "version",
        "outpost",
        "start_id",
        "service_name",
        "service_address",
        "address_source",
        "forward",
        "k8s_service",
        "target_url",
    }
    assert other.get_state() == state


def test_service_names_are_safe_and_distinct():
    names = {
        make_service_name(1, ""),
        make_service_name(1, "lab"),
        make_service_name(12, ""),
        make_service_name(1, "lab 1"),
        make_service_name(1, "lab_1"),
        make_service_name(1, "ü" * 80),
        make_service_name(1, "a/../b;rm"),
    }
    assert len(names) == 7
    import re

    for name in names:
        assert re.fullmatch(r"[A-Za-z0-9._-]{1,63}", name), name


async def _delayed_start_waiting(make_spawner, fake_outpost):
    """A delayed start (the Outpost answered "") that waits for the server's report,
    checking the Outpost every 0.2 s: (spawner, its start task)."""
    fake_outpost.start_answer = {"service": ""}
    spawner = make_spawner("x", delayed_start_check_interval=0.2)
    task = asyncio.ensure_future(spawner.start())
    await asyncio.wait_for(
        _until(lambda: spawner._setuptunnel is not None and fake_outpost.running), 10
    )
    assert not task.done()
    return spawner, task


async def _until(predicate, interval=0.01):
    """Wait until ``predicate()`` is true (callers bound it with wait_for)."""
    delay = interval
    while not predicate():
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)


# ------------------------------------------------- per-user flavors and request_kwargs
async def test_options_form_and_flavor_choice_use_the_users_flavors(
    make_spawner, fake_outpost, fake_tunnels
):
    fake_outpost.user_flavors = {
        "gpu": {"max": 2, "current": 0, "weight": 1, "display_name": "GPU"}
    }
    spawner = make_spawner("uf", user_options={"outpost": "remote"})
    html = await spawner._render_options_form()
    assert 'value="gpu"' in html and 'value="small"' not in html
    await spawner.start()
    body = fake_outpost.requests_of("POST")[0]["body"]
    assert body["user_options"]["flavor"] == "gpu"  # the user's, not the hub-wide "small"


async def test_outpost_authentication_hook_decides_what_the_outpost_matches(
    make_spawner, fake_outpost, fake_tunnels
):
    async def authentication(spawner):
        return {"name": spawner.user.name.upper(), "groups": ["staff"]}

    spawner = make_spawner("ua", outpost_authentication=authentication)
    await spawner.start()
    expected = {"name": "ALICE", "groups": ["staff"]}
    assert fake_outpost.requests_of("POST", "/userflavors")[0]["body"] == expected
    assert fake_outpost.requests_of("POST")[0]["body"]["authentication"] == expected


async def test_outpost_without_userflavors_falls_back_to_its_flavors(
    make_spawner, fake_outpost, fake_tunnels
):
    fake_outpost.user_flavors = "404"
    spawner = make_spawner("nf", user_options={"outpost": "remote"})
    assert 'value="small"' in await spawner._render_options_form()
    await spawner.start()
    assert fake_outpost.requests_of("POST")[0]["body"]["user_options"]["flavor"] == "small"


async def test_request_kwargs_reach_every_request_but_cannot_turn_off_tls(
    make_spawner, fake_outpost, fake_tunnels, caplog
):
    spawner = make_spawner(
        "rk",
        request_kwargs=lambda spawner, user_options: {
            "user_agent": "site-hub/1.0",
            "validate_cert": False,
        },
    )
    await spawner.start()
    await spawner.poll()
    await spawner.stop()
    assert {r["headers"].get("User-Agent") for r in fake_outpost.requests} == {"site-hub/1.0"}
    assert "ignoring validate_cert" in caplog.text
    from jupyterhub_outpost.hub.outposts import checked_request_kwargs

    assert checked_request_kwargs({"validate_cert": False, "ca_certs": "/x"}) == {"ca_certs": "/x"}
