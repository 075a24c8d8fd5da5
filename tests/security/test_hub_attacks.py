"""What a connected hub may try against an Outpost's REST API, and what it gets: refused,
with nothing changed. Every test is named for the attack."""

import asyncio
import json
import sys
from pathlib import Path

import pytest
from jupyterhub.spawner import SimpleLocalProcessSpawner

from tests.helpers.outpost_process import process_alive
from tests.outpost.support import fetch_or_none, local_spawner_config, start_body, wait_for


@pytest.fixture
def canary(tmp_path):
    path = tmp_path / "canary"
    path.mkdir()
    yield path
    assert sorted(p.name for p in path.iterdir()) == [], "an injected command ran"


def touch(canary: Path, name: str) -> list[str]:
    return [sys.executable, "-c", f"open({str(canary / name)!r}, 'w')"]


# ---------------------------------------------------------------- another hub's servers
async def test_hub_cannot_list_poll_stop_or_replace_another_hubs_server(outpost):
    api = outpost.api
    code, data = await api.call("POST", "/services", hub="hub1", body=start_body("mine"))
    assert code == 200, data
    address = data["service"]
    info = await wait_for(lambda: fetch_or_none(address), "hub1's server answers")
    (row,) = await outpost.app.store.list_hub("hub1")

    assert (await api.call("GET", "/services", hub="hub2")) == (200, [])
    for method in ("GET", "DELETE"):
        for path in ("/services/mine", f"/services/mine/{row.start_id or 'x'}"):
            code, data = await api.call(method, path, hub="hub2")
            assert code == 404 and "mine" in data["error"], (method, path, data)
    # the same name from hub2 is hub2's own server; hub1's is untouched
    code, data = await api.call(
        "POST", "/services", hub="hub2", body=start_body("mine", user="mallory")
    )
    assert code == 200 and data["service"] != address
    assert (await api.call("DELETE", "/services/mine", hub="hub2"))[0] == 200
    assert (await api.call("DELETE", "/services/mine", hub="hub2"))[0] == 404

    (after,) = await outpost.app.store.list_hub("hub1")
    assert (after.id, after.status, after.service_address) == (row.id, "running", address)
    assert (await fetch_or_none(address))["pid"] == info["pid"]
    assert process_alive(info["pid"])


# ---------------------------------------------------------------------- allow_override
@pytest.mark.parametrize(
    "misc_of",
    [
        lambda c: {"cmd": touch(c, "cmd")},
        lambda c: {"args": ["--x"]},
        lambda c: {"Cmd": touch(c, "Cmd")},
        lambda c: {"spawner_class": "jupyterhub.spawner.LocalProcessSpawner"},
        lambda c: {"SimpleLocalProcessSpawner": {"cmd": touch(c, "nested")}},
        lambda c: {"environment": {"LD_PRELOAD": "/tmp/x.so"}},
        lambda c: {"JupyterHubOutpost": {"allow_override": True}},
    ],
)
async def test_override_of_command_class_or_options_is_dropped_by_default(outpost, canary, misc_of):
    misc = misc_of(canary)
    code, data = await outpost.api.call("POST", "/services", body=start_body("o", misc=misc))
    await assert_started_without_overrides(outpost, code, data)


async def assert_started_without_overrides(outpost, code, data, applied=None):
    """The start went on with the Outpost's own configuration: nothing of misc applied
    (the canary fixture proves no injected command ran)."""
    assert code == 200, data
    info = await wait_for(lambda: fetch_or_none(data["service"]), "the server answers")
    assert info["extra"] == ""
    (row,) = await outpost.app.store.list_hub("hub1")
    assert row.misc == (applied or {})
    assert (await outpost.api.call("DELETE", "/services/o"))[0] == 200


def only_environment(hub, misc):
    """A typical admin policy: hubs may set extra environment variables, nothing else."""
    return set(misc) <= {"environment"}


@pytest.mark.parametrize(
    "misc_of",
    [
        lambda c: {"environment": {"A": "1"}, "cmd": touch(c, "extra-key")},
        lambda c: {"Environment": {"A": "1"}},
        lambda c: {"ENVIRONMENT": {"A": "1"}},
        lambda c: {"environment ": {"A": "1"}},
        lambda c: {"environment.cmd": touch(c, "dotted")},
        lambda c: {"SimpleLocalProcessSpawner.cmd": touch(c, "qualified")},
    ],
)
async def test_override_bypass_attempts_past_an_allow_list_are_dropped(
    make_outpost, canary, misc_of
):
    outpost = await make_outpost(allow_override=only_environment)
    code, data = await outpost.api.call(
        "POST", "/services", body=start_body("o", misc=misc_of(canary))
    )
    await assert_started_without_overrides(outpost, code, data)


@pytest.mark.parametrize(
    "misc_of",
    [
        lambda c: {"Cmd": touch(c, "Cmd")},
        lambda c: {"spawner_class": "jupyterhub.spawner.LocalProcessSpawner"},
        lambda c: {"SimpleLocalProcessSpawner": {"cmd": touch(c, "nested")}},
        lambda c: {"__class__": "x"},
        lambda c: {"_outpost_hub_env": {"JUPYTERHUB_API_TOKEN": "x"}},
        lambda c: {"api_token": "stolen"},
        lambda c: {"user": "root"},
        lambda c: {"start": "x"},
    ],
)
async def test_even_allowed_overrides_may_only_name_configurable_spawner_options(
    make_outpost, canary, misc_of
):
    outpost = await make_outpost(allow_override=True)
    code, data = await outpost.api.call(
        "POST", "/services", body=start_body("o", misc=misc_of(canary))
    )
    await assert_started_without_overrides(outpost, code, data)


async def test_allowed_environment_override_is_data_and_user_options_change_no_command(
    make_outpost, canary
):
    outpost = await make_outpost(allow_override=only_environment)
    body = start_body(
        "o",
        misc={"environment": {"OUTPOST_TEST_EXTRA": f"$(touch {canary}/env)"}},
        user_options={"cmd": touch(canary, "user-options"), "spawner_class": "x"},
    )
    code, data = await outpost.api.call("POST", "/services", body=body)
    assert code == 200, data
    info = await wait_for(lambda: fetch_or_none(data["service"]), "the server answers")
    assert info["extra"] == f"$(touch {canary}/env)"
    assert (await outpost.api.call("DELETE", "/services/o"))[0] == 200


# ------------------------------------------------------------------------ flavor race
@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
async def test_fifty_concurrent_starts_against_max_ten_run_exactly_ten(
    make_outpost, tmp_path, request, database
):
    options = {}
    if database == "postgresql":
        options["db_url"] = request.getfixturevalue("postgres_server").create_database().url
    outpost = await make_outpost(
        local_spawner_config(tmp_path), flavors={"ten": {"max": 10}}, **options
    )
    bodies = [start_body(f"race-{i}", user_options={"flavor": "ten"}) for i in range(50)]
    results = await asyncio.gather(*(outpost.api.call("POST", "/services", body=b) for b in bodies))
    codes = sorted(code for code, _ in results)
    assert codes == [200] * 10 + [403] * 40, codes
    rows = await outpost.app.store.list_hub("hub1")
    assert len(rows) == 10 and {r.status for r in rows} == {"running"}
    pids = set()
    for code, data in results:
        if code == 200:
            info = await wait_for(lambda d=data: fetch_or_none(d["service"]), "server answers")
            pids.add(info["pid"])
    assert len(pids) == 10
    assert (await outpost.api.call("GET", "/flavors"))[1]["ten"]["current"] == 10


# ------------------------------------------------------------------------------ bodies
@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b"not json",
        b"\xff\xfe{}",
        b"[]",
        b"null",
        b'"name"',
        b"[" * 100_000,
        b'{"name": "x", "misc": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_000 + b"}",
        b'{"name": "x", "user_options": {"k": ' + b"[" * 500 + b"]" * 500 + b"}}",
        json.dumps({"name": 5}).encode(),
        json.dumps({"name": "x", "env": []}).encode(),
        json.dumps({"name": "x", "env": {"A": 1}}).encode(),
        json.dumps({"name": "x", "user_options": "flavor"}).encode(),
        json.dumps({"name": "x", "user_options": {"flavor": 7}}).encode(),
        json.dumps({"name": "x", "user_options": {"start_id": "../x"}}).encode(),
        json.dumps({"name": "x", "misc": []}).encode(),
        json.dumps({"name": "x", "certs": {"keyfile": 1}}).encode(),
        json.dumps({"env": {}}).encode(),
        b'{"name": "x", "env": {"A": "\\ud800"}}',  # unpaired surrogate: not text
        json.dumps({"name": "x", "internal_trust_bundles": {"../../x": "PEM"}}).encode(),
        json.dumps({"name": "x", "internal_trust_bundles": {"a/b": "PEM"}}).encode(),
    ],
    ids=lambda raw: raw[:40].decode(errors="replace"),
)
async def test_malformed_or_wrongly_typed_bodies_are_400_with_a_message_and_nothing_stored(
    outpost, raw
):
    code, data = await outpost.api.call("POST", "/services", raw_body=raw)
    assert code == 400, data
    assert isinstance(data, dict) and data["error"], data
    assert "Traceback" not in data["error"] and "File " not in data["error"]
    assert await outpost.app.store.list_hub("hub1") == []


async def test_body_over_the_size_limit_is_413_and_nothing_stored(make_outpost):
    outpost = await make_outpost(max_body_size=10_000)
    body = start_body("big", user_options={"x": "y" * 20_000})
    code, data = await outpost.api.call("POST", "/services", body=body)
    assert code == 413 and "max_body_size" in data["error"], data
    code, data = await outpost.api.call("POST", "/services", raw_body=b"{" + b" " * 500_000)
    assert code == 413, data
    assert await outpost.app.store.list_hub("hub1") == []


_ = SimpleLocalProcessSpawner  # the spawner every Outpost here runs (local_spawner_config)
