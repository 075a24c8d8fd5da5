"""Every error is JSON with a message a person can act on, never a traceback."""

import json

import pytest

from .support import start_body


def _assert_clean_error(data):
    assert isinstance(data, dict) and set(data) == {"error"}, data
    assert data["error"] and "Traceback" not in data["error"] and 'File "' not in data["error"]


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ("{not json", "not valid JSON"),
        ("", "empty"),
        ("[1, 2]", "JSON object"),
        ('"text"', "JSON object"),
        (json.dumps({"env": {}}), "name"),
        (json.dumps(start_body(name="has space")), "Invalid server name"),
        (json.dumps(start_body(name="x" * 64)), "Invalid server name"),
        (json.dumps(start_body(name="ünïcode")), "Invalid server name"),
        (json.dumps(start_body(name="")), "Invalid server name"),
        (json.dumps(start_body(name="../etc")), "Invalid server name"),
        (json.dumps(start_body(name=5)), "name"),
        (json.dumps(start_body(env=["a"])), "env"),
        (json.dumps(start_body(env={"A": 1})), "env.A"),
        (json.dumps(start_body(user_options="flavor")), "user_options"),
        (json.dumps(start_body(user_options={"flavor": 3})), "flavor"),
        (json.dumps(start_body(user_options={"start_id": "a/b"})), "start_id"),
        (json.dumps(start_body(misc=[1])), "misc"),
        (json.dumps(start_body(certs={"keyfile": 1})), "certs"),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 30 else None,
)
async def test_malformed_or_schema_breaking_start_is_400_and_leaves_no_trace(
    outpost, raw, fragment
):
    code, data = await outpost.api.call("POST", "/services", raw_body=raw)
    assert code == 400, data
    _assert_clean_error(data)
    assert fragment in data["error"]
    assert await outpost.app.store.list_hub("hub1") == []


async def test_unknown_server_is_404(outpost):
    for method in ("GET", "DELETE"):
        code, data = await outpost.api.call(method, "/services/nothing-here")
        assert code == 404
        _assert_clean_error(data)
        assert "nothing-here" in data["error"]


async def test_unknown_route_is_json_404(outpost):
    code, data = await outpost.api.call("GET", "/no/such/route")
    assert code == 404
    _assert_clean_error(data)
    assert "/openapi.json" in data["error"]


async def test_wrong_method_is_json_405(outpost):
    code, data = await outpost.api.call("PUT", "/services/x", body={})
    assert code == 405
    _assert_clean_error(data)


async def test_starting_a_running_name_again_is_409(outpost):
    api = outpost.api
    assert (await api.call("POST", "/services", body=start_body("dup")))[0] == 200
    code, data = await api.call("POST", "/services", body=start_body("dup"))
    assert code == 409
    _assert_clean_error(data)
    assert "already running" in data["error"]
    assert len(await outpost.app.store.list_hub("hub1")) == 1


async def test_oversized_body_is_413(make_outpost):
    outpost = await make_outpost(max_body_size=10_000)
    body = start_body("big", env={"BIG": "x" * 20_000})
    code, data = await outpost.api.call("POST", "/services", body=body)
    assert code == 413
    _assert_clean_error(data)
    assert "10000 bytes" in data["error"]
    assert await outpost.app.store.list_hub("hub1") == []
    # the connection is still usable and normal bodies still work
    assert (await outpost.api.call("POST", "/services", body=start_body("small")))[0] == 200


async def test_spawner_that_fails_to_start_is_500_with_the_reason_and_no_row(
    make_outpost, tmp_path
):
    from .support import local_spawner_config

    c = local_spawner_config(tmp_path)
    c.SimpleLocalProcessSpawner.cmd = ["/nonexistent/jupyterhub-singleuser"]
    outpost = await make_outpost(c)
    code, data = await outpost.api.call("POST", "/services", body=start_body("broken"))
    assert code == 500
    _assert_clean_error(data)
    assert "Start of server 'broken' failed" in data["error"]
    assert "nonexistent" in data["error"]
    assert await outpost.app.store.list_hub("hub1") == []


async def test_spawners_own_refusal_reaches_the_hub_word_for_word_and_leaves_no_row(
    make_outpost, tmp_path
):
    """A spawner raising JupyterHub 6's SpawnException(message, reason=...) (a quota, a
    missing allocation) is a refusal written for the user, not an internal error."""
    from jupyterhub.spawner import SimpleLocalProcessSpawner, SpawnException

    from .support import local_spawner_config

    class NoComputeTime(SimpleLocalProcessSpawner):
        async def start(self):
            raise SpawnException("Your project has no compute time left.", reason="quota")

    c = local_spawner_config(tmp_path)
    c.JupyterHubOutpost.spawner_class = NoComputeTime
    outpost = await make_outpost(c)
    code, data = await outpost.api.call("POST", "/services", body=start_body("quota"))
    assert code == 500
    _assert_clean_error(data)
    assert data["error"] == "Your project has no compute time left."
    assert await outpost.app.store.list_hub("hub1") == []


async def test_internal_fault_is_a_generic_500_with_request_id(outpost, monkeypatch):
    async def broken(hub):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(outpost.app.manager, "list", broken)
    code, data = await outpost.api.call("GET", "/services", headers={"X-Request-Id": "req-42"})
    assert code == 500
    _assert_clean_error(data)
    assert "req-42" in data["error"] and "secret internals" not in data["error"]


async def test_error_answers_keep_the_request_id_and_a_401_says_how_to_authenticate(outpost):
    """Tornado's send_error clears the headers set before the error: the request id (which
    the error text of a 500 refers to) and the 401's WWW-Authenticate are set again."""
    wrong = await outpost.api.fetch(
        "GET", "/services", secret="wrong", headers={"X-Request-Id": "req-401"}
    )
    assert wrong.code == 401
    assert wrong.headers["X-Request-Id"] == "req-401"
    assert wrong.headers["WWW-Authenticate"] == 'Basic realm="jupyterhub-outpost"'
    missing = await outpost.api.fetch("GET", "/services/nosuch", headers={"X-Request-Id": "r-404"})
    assert missing.code == 404
    assert missing.headers["X-Request-Id"] == "r-404"
    assert "WWW-Authenticate" not in missing.headers
