"""Flavor limits under concurrency, runtime expiry, usage reports to the hub."""

import asyncio
from datetime import timedelta

import pytest
from jupyterhub_outpost.outpost.models import utcnow

from tests.helpers.outpost_process import process_alive

from .support import fetch_or_none, pass_runtime_deadline, start_body, wait_for

FLAVORS = {
    "small": {
        "max": 5,
        "weight": 10,
        "display_name": "Small",
        "description": "1 CPU",
        "runtime": {"hours": 2},
    },
}


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
async def test_max_holds_exactly_under_30_concurrent_starts(make_outpost, database, request):
    options = {}
    if database == "postgresql":
        options["db_url"] = request.getfixturevalue("postgres_server").create_database().url
    outpost = await make_outpost(flavors=FLAVORS, **options)
    bodies = [start_body(f"race-{i}", user_options={"flavor": "small"}) for i in range(30)]
    results = await asyncio.gather(*(outpost.api.call("POST", "/services", body=b) for b in bodies))
    codes = sorted(code for code, _ in results)
    assert codes == [200] * 5 + [403] * 25
    refusals = [data["error"] for code, data in results if code == 403]
    assert all("'small'" in e and "limit" in e for e in refusals)
    # refused starts leave no trace: 5 rows, 5 running servers
    rows = await outpost.app.store.list_hub("hub1")
    assert len(rows) == 5 and {r.status for r in rows} == {"running"}
    code, flavors = await outpost.api.call("GET", "/flavors")
    assert flavors["small"]["current"] == 5 and flavors["small"]["max"] == 5
    # a stop frees a slot
    started = [b["name"] for b, (code, _) in zip(bodies, results) if code == 200]
    assert (await outpost.api.call("DELETE", f"/services/{started[0]}"))[0] == 200
    code, _ = await outpost.api.call(
        "POST", "/services", body=start_body("again", user_options={"flavor": "small"})
    )
    assert code == 200


async def test_flavors_are_per_hub_and_hook_may_be_a_coroutine(make_outpost):
    async def flavors(hub_name):
        return {"only": {"max": 1 if hub_name == "hub1" else 2}}

    outpost = await make_outpost(flavors=flavors, flavors_undefined_max=0)
    api = outpost.api
    assert (
        await api.call("POST", "/services", body=start_body("a", user_options={"flavor": "only"}))
    )[0] == 200
    assert (
        await api.call("POST", "/services", body=start_body("b", user_options={"flavor": "only"}))
    )[0] == 403
    for name in ("a", "b"):
        body = start_body(name, user_options={"flavor": "only"})
        assert (await api.call("POST", "/services", hub="hub2", body=body))[0] == 200
    code, data = await api.call("GET", "/flavors", hub="hub2")
    assert data == {
        "only": {
            "max": 2,
            "current": 2,
            "weight": 0,
            "display_name": "only",
            "description": "",
            "runtime": None,
        }
    }


async def test_undefined_max_limits_unknown_and_missing_flavors(make_outpost):
    outpost = await make_outpost(flavors=FLAVORS, flavors_undefined_max=0)
    api = outpost.api
    for options in ({}, {"flavor": "gpu"}):
        code, data = await api.call("POST", "/services", body=start_body("u", user_options=options))
        assert code == 403, data
        assert "without a known flavor" in data["error"] or "'gpu'" in data["error"]
    assert await outpost.app.store.list_hub("hub1") == []


async def test_server_past_its_runtime_is_stopped_by_the_outpost(make_outpost):
    outpost = await make_outpost(flavors=FLAVORS, runtime_check_interval=0.2)
    api = outpost.api
    before = utcnow()
    code, data = await api.call(
        "POST", "/services", body=start_body("brief", user_options={"flavor": "small"})
    )
    after = utcnow()
    assert code == 200
    pid = (await wait_for(lambda: fetch_or_none(data["service"]), "server answers"))["pid"]
    # the deadline is the start plus the flavor's runtime (2 hours) ...
    deadline = (await outpost.app.store.get("hub1", "brief")).runtime_deadline
    assert before + timedelta(hours=2) <= deadline <= after + timedelta(hours=2)
    # ... and once the clock has passed it, the Outpost's reaper stops the server
    assert await api.call("GET", "/services/brief") == (200, {"status": None})
    await pass_runtime_deadline(outpost, "brief")

    async def ended():
        _, poll = await api.call("GET", "/services/brief")
        return poll["status"] is not None and poll

    poll = await wait_for(ended, "runtime reaper stopped the server", timeout=15)
    assert "runtime" in poll["error"] and "'small'" in poll["error"]
    assert not process_alive(pid)
    _, flavors = await api.call("GET", "/flavors")
    assert flavors["small"]["current"] == 0
    assert (await api.call("DELETE", "/services/brief"))[0] == 200


async def test_flavor_usage_is_posted_to_the_hub_after_start_and_stop(make_outpost, receiver):
    outpost = await make_outpost(
        flavors=FLAVORS, hub_api=receiver.hub_api(flavors_update_token="flavor-token")
    )
    body = start_body("f1", user_options={"flavor": "small"})
    assert (await outpost.api.call("POST", "/services", body=body))[0] == 200
    await wait_for(lambda: receiver.posts_to("/hub/api/outpost/flavors/site"), "update after start")
    headers, doc = receiver.posts_to("/hub/api/outpost/flavors/site")[0]
    assert headers["Authorization"] == "token flavor-token"
    assert doc["small"]["current"] == 1
    assert (await outpost.api.call("DELETE", "/services/f1"))[0] == 200
    await wait_for(
        lambda: len(receiver.posts_to("/hub/api/outpost/flavors/site")) >= 2, "update after stop"
    )
    assert receiver.posts_to("/hub/api/outpost/flavors/site")[-1][1]["small"]["current"] == 0


async def test_failing_flavor_update_never_breaks_a_start(make_outpost, receiver):
    def token(hub_name):
        raise RuntimeError("no token configured for this hub")

    outpost = await make_outpost(
        flavors=FLAVORS, flavors_update_token=token, hub_api=receiver.hub_api()
    )
    flavors = "/hub/api/outpost/flavors/site"
    assert (await outpost.api.call("POST", "/services", body=start_body("t1")))[0] == 200
    # a hub that answers 500 does not break it either
    outpost.app.flavors_update_token = "tok"
    receiver.fail_paths.add(flavors)
    assert (await outpost.api.call("POST", "/services", body=start_body("t2")))[0] == 200
    await wait_for(lambda: receiver.posts_to(flavors), "update attempted")
    assert await outpost.api.call("GET", "/services/t2") == (200, {"status": None})


async def test_malformed_flavors_are_refused_at_start_up_or_reported_as_admin_errors(make_outpost):
    from jupyterhub_outpost.outpost.app import StartupError

    with pytest.raises(StartupError, match="runtime"):
        await make_outpost(flavors={"bad": {"max": 1, "runtime": {"fortnights": 1}}})

    outpost = await make_outpost(flavors=lambda hub: {"bad": {"max": "one", "colour": "red"}})
    code, data = await outpost.api.call(
        "POST", "/services", body=start_body("x", user_options={"flavor": "bad"})
    )
    assert code == 500 and "max must be an integer" in data["error"], data
    assert "administrator" in data["error"]
    assert await outpost.app.store.list_hub("hub1") == []
