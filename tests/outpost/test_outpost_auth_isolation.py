"""Hub credentials (HTTP Basic, dict or file) and isolation between hubs."""

import base64
import json
import os

import pytest

from .support import HUBS, start_body


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic " + base64.b64encode(b"hub1:wrong").decode()},
        {"Authorization": "Basic " + base64.b64encode(b"nohub:" + HUBS["hub1"].encode()).decode()},
        {"Authorization": "Basic " + base64.b64encode(b"hub2:" + HUBS["hub1"].encode()).decode()},
        {"Authorization": "Basic not-base64!!"},
        {"Authorization": "Bearer " + HUBS["hub1"]},
        {"Authorization": "Basic " + base64.b64encode(b"hub1").decode()},
    ],
    ids=[
        "missing",
        "wrong-secret",
        "unknown-hub",
        "other-hubs-secret",
        "garbage",
        "bearer",
        "no-colon",
    ],
)
async def test_bad_or_missing_credentials_are_401_on_every_route(outpost, headers):
    for method, path, body in [
        ("GET", "/services", None),
        ("POST", "/services", start_body()),
        ("GET", "/services/srv1", None),
        ("DELETE", "/services/srv1", None),
        ("GET", "/flavors", None),
    ]:
        code, data = await outpost.api.call(method, path, hub=None, headers=headers, body=body)
        assert code == 401, (method, path, data)
        assert "credentials" in data["error"]
    assert await outpost.app.store.list_active() == []


async def test_ping_and_openapi_need_no_credentials(outpost):
    code, data = await outpost.api.call("GET", "/ping", hub=None)
    assert code == 200 and data["status"] == "ok"
    code, data = await outpost.api.call("GET", "/openapi.json", hub=None)
    assert code == 200 and data["openapi"].startswith("3.")


async def test_secrets_never_appear_in_the_log(outpost, caplog):
    caplog.set_level("DEBUG")
    await outpost.api.call("POST", "/services", body=start_body("logged"))
    await outpost.api.call("GET", "/services", secret="a-wrong-secret")
    await outpost.api.call("DELETE", "/services/logged")
    text = caplog.text
    for secret in (*HUBS.values(), "a-wrong-secret", "token-logged"):
        assert secret not in text
    # every line of a request carries its context, also those of the start machinery
    starting = [r.getMessage() for r in caplog.records if "Starting server" in r.getMessage()]
    assert starting and starting[0].startswith("[req=") and "hub=hub1 server=logged]" in starting[0]
    access = [r.getMessage() for r in caplog.records if "DELETE /services/logged" in r.getMessage()]
    assert access and access[0].startswith("[req=")


async def test_credentials_from_a_yaml_file_are_reread_when_rotated(make_outpost, tmp_path):
    path = tmp_path / "hubs.yaml"
    path.write_text("hub1: first-secret\n")
    outpost = await make_outpost(hub_credentials=str(path))
    api = outpost.api
    assert (await api.call("GET", "/services", secret="first-secret"))[0] == 200
    path.write_text(json.dumps({"hub1": "second-secret"}))
    os.utime(path, ns=(1, 10**18))  # a new mtime even within the clock's granularity
    assert (await api.call("GET", "/services", secret="first-secret"))[0] == 401
    assert (await api.call("GET", "/services", secret="second-secret"))[0] == 200


async def test_an_outpost_without_hubs_refuses_to_start(make_outpost):
    from jupyterhub_outpost.outpost.app import StartupError

    with pytest.raises(StartupError, match="hub_credentials"):
        await make_outpost(hub_credentials={})


async def test_hub_cannot_see_poll_or_stop_another_hubs_server(outpost):
    api = outpost.api
    code, data = await api.call("POST", "/services", hub="hub1", body=start_body("mine"))
    assert code == 200
    # hub2 learns nothing: the list is empty, poll and stop are plain 404s
    assert await api.call("GET", "/services", hub="hub2") == (200, [])
    code, other = await api.call("GET", "/services/mine", hub="hub2")
    assert code == 404
    code, unknown = await api.call("GET", "/services/never-existed", hub="hub2")
    assert other["error"].replace("mine", "X") == unknown["error"].replace("never-existed", "X")
    assert (await api.call("DELETE", "/services/mine", hub="hub2"))[0] == 404
    # hub1's server still runs
    assert await api.call("GET", "/services/mine", hub="hub1") == (200, {"status": None})


async def test_two_hubs_may_use_the_same_server_name(outpost):
    api = outpost.api
    assert (await api.call("POST", "/services", hub="hub1", body=start_body("same")))[0] == 200
    assert (await api.call("POST", "/services", hub="hub2", body=start_body("same")))[0] == 200
    assert (await api.call("DELETE", "/services/same", hub="hub2"))[0] == 200
    assert await api.call("GET", "/services/same", hub="hub1") == (200, {"status": None})
    assert (await api.call("GET", "/services/same", hub="hub2"))[0] == 404
