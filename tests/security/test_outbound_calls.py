"""The Outpost calls a hub only at URLs of its own configuration (``hub_api``), never at a
URL a start request names, and sends each hub only that hub's flavors token.

Before: the Outpost POSTed progress events, flavor usage (with its flavors token) and tunnel
re-creation requests to JUPYTERHUB_EVENTS_URL / _FLAVORS_UPDATE_URL / _SETUPTUNNEL_URL of
the start request: anyone who could start a server had the Outpost's token sent to any URL
and blind requests made to any internal address. Real HTTP receivers stand in for the hub
and for the attacker's address.
"""

import logging

import pytest

from tests.outpost.support import Receiver, start_body, wait_for

FLAVORS = {"small": {"max": 5, "weight": 1}}


@pytest.fixture
def attacker():
    r = Receiver()
    yield r
    r.close()


def request_urls(attacker: Receiver) -> dict:
    return {
        "JUPYTERHUB_EVENTS_URL": attacker.url("/events"),
        "JUPYTERHUB_FLAVORS_UPDATE_URL": attacker.url("/flavors"),
        "JUPYTERHUB_SETUPTUNNEL_URL": attacker.url("/setuptunnel"),
    }


async def test_urls_in_a_start_request_are_never_called(make_outpost, receiver, attacker, tmp_path):
    data_dir = tmp_path / "kept"
    outpost = await make_outpost(
        data_dir=data_dir,
        flavors=FLAVORS,
        hub_api=receiver.hub_api(flavors_update_token="hub1-flavors-token"),
    )
    body = start_body("s1", env=request_urls(attacker), user_options={"flavor": "small"})
    assert (await outpost.api.call("POST", "/services", body=body))[0] == 200
    flavors = "/hub/api/outpost/flavors/site"
    await wait_for(lambda: receiver.posts_to(flavors), "the flavor update at the hub's URL")
    assert receiver.posts_to("/hub/api/outpost/events/alice/s1"), "events at the hub's URL"
    headers, _ = receiver.posts_to(flavors)[0]
    assert headers["Authorization"] == "token hub1-flavors-token"
    # a restart asks for the tunnel again: at the configured URL too
    await outpost.app.stop_outpost()
    again = await make_outpost(
        data_dir=data_dir,
        flavors=FLAVORS,
        hub_api=receiver.hub_api(flavors_update_token="t"),
        ssh_recreate_at_start=True,
    )
    await wait_for(
        lambda: receiver.posts_to("/hub/api/outpost/setuptunnel/alice/s1"), "tunnel re-creation"
    )
    assert (await again.api.call("DELETE", "/services/s1"))[0] == 200
    await wait_for(lambda: len(receiver.posts_to(flavors)) >= 2, "the update after the stop")
    assert attacker.posts == []


async def test_a_hub_without_hub_api_entry_gets_no_call_and_its_start_works(
    make_outpost, attacker, caplog
):
    outpost = await make_outpost(flavors=FLAVORS, flavors_update_token="global-token")
    caplog.set_level(logging.WARNING)
    outpost.app.log.addHandler(caplog.handler)  # the app's logger does not propagate
    for name in ("n1", "n2"):
        body = start_body(name, env=request_urls(attacker), user_options={"flavor": "small"})
        code, data = await outpost.api.call("POST", "/services", body=body)
        assert code == 200 and data["service"], data
    assert (await outpost.api.call("DELETE", "/services/n1"))[0] == 200
    outpost.app.log.removeHandler(caplog.handler)
    told = [r for r in caplog.records if "no entry in c.JupyterHubOutpost.hub_api" in r.message]
    assert len(told) == 1 and "hub1" in told[0].getMessage()  # once per hub, clearly
    assert attacker.posts == []


async def test_each_hub_gets_only_its_own_flavors_token_at_its_own_url(make_outpost, attacker):
    hub1, hub2 = Receiver(), Receiver()
    try:
        hub_api = {
            **hub1.hub_api("hub1", flavors_update_token="token-of-hub1"),
            **hub2.hub_api("hub2"),  # no token configured: the one hub2 sends is used
        }
        outpost = await make_outpost(flavors=FLAVORS, hub_api=hub_api)
        sent = {"JUPYTERHUB_FLAVORS_UPDATE_TOKEN": "token-hub2-sent", **request_urls(attacker)}
        body = start_body("b1", env=sent, user_options={"flavor": "small"})
        assert (await outpost.api.call("POST", "/services", body=body, hub="hub2"))[0] == 200
        body = start_body("a1", env=request_urls(attacker), user_options={"flavor": "small"})
        assert (await outpost.api.call("POST", "/services", body=body, hub="hub1"))[0] == 200
        flavors = "/hub/api/outpost/flavors/site"
        await wait_for(lambda: hub1.posts_to(flavors) and hub2.posts_to(flavors), "both updates")
        assert {h["Authorization"] for h, _ in hub1.posts_to(flavors)} == {"token token-of-hub1"}
        assert {h["Authorization"] for h, _ in hub2.posts_to(flavors)} == {"token token-hub2-sent"}
        # each hub sees only its own usage
        assert hub1.posts_to(flavors)[-1][1]["small"]["current"] == 1
        assert hub2.posts_to(flavors)[-1][1]["small"]["current"] == 1
        assert attacker.posts == []
        # the token a hub sends is for the Outpost only: it never reaches the server
        manager = outpost.app.manager
        (b1,) = [live for live in manager._spawners.values() if live.key == ("hub2", "b1")]
        assert "JUPYTERHUB_FLAVORS_UPDATE_TOKEN" not in b1.spawner.get_env()
        assert b1.spawner.get_env()["JUPYTERHUB_API_TOKEN"] == "token-b1"
    finally:
        hub1.close()
        hub2.close()


@pytest.mark.parametrize(
    "entry, complaint",
    [
        ({"url": "file:///etc/passwd"}, "http:// or https://"),
        ({"url": "gopher://hub:70/"}, "http:// or https://"),
        ({"url": "javascript:alert(1)"}, "http:// or https://"),
        ({"url": "http:///hub/api"}, "http:// or https://"),
        ({"url": "http://user:pw@hub/hub/api"}, "user:password"),
        ({"url": "http://hub/hub/api?x=1"}, "query"),
        ({"url": "http://hub/hub/api\n"}, "control characters"),
        ({"url": "http://hub:99999/hub/api"}, "not a URL"),
        ({}, "'url'] is required"),
        ({"url": "http://hub/hub/api", "outpost_name": "../x"}, "outpost_name"),
        ({"url": "http://hub/hub/api", "outpost_name": "site\n"}, "outpost_name"),
        ({"url": "http://hub/hub/api", "layout": "mine"}, "layout"),
        ({"url": "http://hub/hub/api", "events_url": "http://x"}, "unknown keys"),
        ({"url": "http://hub/hub/api", "flavors_update_token": 5}, "must be a string"),
    ],
)
async def test_hub_api_entries_are_checked_at_start_up(make_outpost, entry, complaint):
    from jupyterhub_outpost.outpost.app import StartupError

    with pytest.raises(StartupError, match="hub_api") as raised:
        await make_outpost(hub_api={"hub1": entry})
    assert complaint in str(raised.value)


def test_urls_are_built_from_the_entry_with_names_that_cannot_leave_their_segment():
    from jupyterhub_outpost.outpost.hub_api import parse_entry

    ours = parse_entry("h", {"url": "https://hub.example.org/hub/api/", "outpost_name": "site"})
    assert ours.server_url("events", "al ice", "") == (
        "https://hub.example.org/hub/api/outpost/events/al%20ice/_default"
    )
    assert ours.server_url("setuptunnel", "a@b.org", "lab?x#y") == (
        "https://hub.example.org/hub/api/outpost/setuptunnel/a%40b.org/lab%3Fx%23y"
    )
    assert ours.server_url("events", "..", "a/b").endswith("/events/%2E%2E/a%2Fb")
    assert ours.flavors_url() == "https://hub.example.org/hub/api/outpost/flavors/site"
    stock = parse_entry("h", {"url": "http://hub/hub/api", "layout": "outpostspawner"})
    assert (
        stock.server_url("events", "alice", "") == "http://hub/hub/api/users/progress/events/alice"
    )
    assert stock.server_url("setuptunnel", "alice", "lab") == (
        "http://hub/hub/api/users/setuptunnel/alice/lab"
    )
    assert stock.flavors_url() == ""  # no outpost_name: no flavor updates
    named = parse_entry(
        "h", {"url": "http://hub/hub/api", "layout": "outpostspawner", "outpost_name": "site"}
    )
    assert named.flavors_url() == "http://hub/hub/api/outpostflavors/site"
    assert "token" not in repr(parse_entry("h", {"url": "http://h", "flavors_update_token": "s3"}))
