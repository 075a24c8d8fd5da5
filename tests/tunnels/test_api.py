"""The daemon's HTTP API: token auth, request validation, conflicts, start-up refusals."""

import json
import os
import subprocess
import sys

import pytest
from conftest import METRICS_TOKEN, TOKEN, free_port, http_get
from jupyterhub_outpost.hub.tunnel_client import TunnelClient, TunnelDaemonError
from tornado.httpclient import AsyncHTTPClient, HTTPRequest


async def raw(daemon, method, path, body=None, token=TOKEN, raw_body=None):
    headers = {}
    if token is not None:
        headers["Authorization"] = f"token {token}"
    if raw_body is None and body is not None:
        raw_body = json.dumps(body)
    if method == "PUT" and raw_body is None:
        raw_body = ""
    if method in ("GET", "DELETE"):
        raw_body = None
    req = HTTPRequest(daemon.url + path, method=method, headers=headers, body=raw_body)
    resp = await AsyncHTTPClient().fetch(req, raise_error=False)
    data = json.loads(resp.body) if resp.body else None
    return resp.code, data


async def test_ping_needs_no_token(daemon):
    assert await raw(daemon, "GET", "/ping", token=None) == (200, {"status": "ok"})


async def test_calls_without_or_with_wrong_token_are_401(daemon, endpoint):
    calls = [("GET", "/forwards"), ("PUT", "/forwards/a.b"), ("DELETE", "/forwards/a.b")]
    for token in [None, "", "wrong", TOKEN + "x", TOKEN[:-1], TOKEN.upper()]:
        for method, path in calls:
            body = good_body(endpoint) if method == "PUT" else None
            code, data = await raw(daemon, method, path, body=body, token=token)
            assert code == 401, (method, path, token)
            assert "token" in data["message"]
    assert await daemon.client.list_forwards() == []


async def test_bearer_scheme_is_not_accepted_as_token_scheme(daemon):
    req = HTTPRequest(daemon.url + "/forwards", headers={"Authorization": f"Bearer {TOKEN}"})
    resp = await AsyncHTTPClient().fetch(req, raise_error=False)
    assert resp.code == 401


async def test_metrics_token_opens_metrics_and_nothing_else(daemon, endpoint):
    for scheme in ("token", "Bearer"):  # Prometheus sends Bearer
        req = HTTPRequest(
            daemon.url + "/metrics", headers={"Authorization": f"{scheme} {METRICS_TOKEN}"}
        )
        resp = await AsyncHTTPClient().fetch(req, raise_error=False)
        assert resp.code == 200 and b"outpost_tunnel_forwards" in resp.body, scheme
    for method, path in [("GET", "/forwards"), ("PUT", "/forwards/a.b"), ("GET", "/forwards/a")]:
        body = good_body(endpoint) if method == "PUT" else None
        code, _ = await raw(daemon, method, path, body=body, token=METRICS_TOKEN)
        assert code == 401, (method, path)
    assert await daemon.client.list_forwards() == []
    code, _ = await raw(daemon, "GET", "/metrics", token="wrong")
    assert code == 401


def good_body(endpoint, target_port=8888):
    return {"ssh": endpoint.ssh(), "target_host": "127.0.0.1", "target_port": target_port}


BAD_BODIES = {
    "not json": ("{nope", "not JSON"),
    "list": ([], "JSON object"),
    "missing ssh": ({"target_host": "h", "target_port": 1}, '"ssh" is missing'),
    "missing target_port": (
        {"ssh": "SSH", "target_host": "h"},
        '"target_port" is missing',
    ),
    "unknown field": ("EXTRA", "unknown fields: extra"),
    "port string": ("PORT_STR", "target_port must be an integer"),
    "port bool": ("PORT_BOOL", "target_port must be an integer"),
    "port 0": ("PORT_0", "target_port must be between 1 and 65535"),
    "port 65536": ("PORT_BIG", "target_port must be between 1 and 65535"),
    "bad host": ("BAD_HOST", "target_host must be a hostname"),
    "bad host key": ("BAD_HOST_KEY", "ssh.host_key must be one OpenSSH public key line"),
    "garbage host key": ("GARBAGE_HOST_KEY", "ssh.host_key is not a readable OpenSSH public key"),
    "ssh not object": ("SSH_STR", '"ssh" must be an object'),
    "ssh missing user": ("SSH_NO_USER", '"ssh.user" is missing'),
    "bad local port": ("LOCAL_0", "local_port must be between 1 and 65535"),
    "host with a trailing newline": ("HOST_NL", "target_host must be a hostname"),
    "user with a trailing newline": ("USER_NL", "ssh.user"),
    "host key with a trailing newline": ("KEY_NL", "ssh.host_key"),
    "port NaN": ("PORT_NAN", "NaN"),
    "port of 5000 digits": ("PORT_HUGE", "too long"),
}


def build_body(spec, endpoint):
    body = good_body(endpoint)
    if spec == "SSH":
        return {"ssh": endpoint.ssh(), "target_host": "h"}
    if spec == "EXTRA":
        body["extra"] = 1
    elif spec == "PORT_STR":
        body["target_port"] = "8888"
    elif spec == "PORT_BOOL":
        body["target_port"] = True
    elif spec == "PORT_0":
        body["target_port"] = 0
    elif spec == "PORT_BIG":
        body["target_port"] = 65536
    elif spec == "BAD_HOST":
        body["target_host"] = "evil host; rm -rf /"
    elif spec == "BAD_HOST_KEY":
        body["ssh"]["host_key"] = "ssh-ed25519 notbase64!!"
    elif spec == "GARBAGE_HOST_KEY":
        body["ssh"]["host_key"] = "ssh-ed25519 AAAAnotakey"
    elif spec == "SSH_STR":
        body["ssh"] = "hub@127.0.0.1"
    elif spec == "SSH_NO_USER":
        del body["ssh"]["user"]
    elif spec == "LOCAL_0":
        body["local_port"] = 0
    elif spec == "HOST_NL":
        body["target_host"] = "127.0.0.1\n"
    elif spec == "USER_NL":
        body["ssh"]["user"] += "\n"
    elif spec == "KEY_NL":
        body["ssh"]["host_key"] += "\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA"
    elif spec in ("PORT_NAN", "PORT_HUGE"):
        number = "NaN" if spec == "PORT_NAN" else "9" * 5000
        return json.dumps(body).replace('"target_port": 8888', f'"target_port": {number}')
    else:
        return spec
    return body


async def test_bad_bodies_are_400_with_message_and_nothing_stored(daemon, endpoint):
    # one daemon for every case (starting one per case costs ~2 s on the shared machine)
    for case, (spec, expected) in sorted(BAD_BODIES.items()):
        body = build_body(spec, endpoint)
        if isinstance(body, str):
            code, data = await raw(daemon, "PUT", "/forwards/a.b", raw_body=body)
        else:
            code, data = await raw(daemon, "PUT", "/forwards/a.b", body=body)
        assert code == 400, (case, data)
        assert expected in data["message"], case
        assert await daemon.client.list_forwards() == [], case
        assert not daemon.state_file.exists(), case


async def test_bad_key_is_400(daemon, endpoint):
    code, data = await raw(daemon, "PUT", "/forwards/" + "x" * 129, body=good_body(endpoint))
    assert code == 400 and "must match" in data["message"]
    code, data = await raw(daemon, "PUT", "/forwards/a%20b", body=good_body(endpoint))
    assert code == 400
    for key in ("a.b%0A", "a.b%0D", "a.b%00", "a.b%E2%80%A8"):
        code, data = await raw(daemon, "PUT", f"/forwards/{key}", body=good_body(endpoint))
        assert code == 400 and "must match" in data["message"], key
    assert await daemon.client.list_forwards() == []


async def test_local_port_in_use_is_409_and_nothing_stored(daemon, endpoint):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        with pytest.raises(TunnelDaemonError) as e:
            await daemon.client.put_forward(
                "a.b", ssh=endpoint.ssh(), target_host="127.0.0.1", target_port=1, local_port=busy
            )
    assert e.value.status == 409
    assert f"cannot listen on 127.0.0.1:{busy}" in e.value.message
    assert await daemon.client.list_forwards() == []


async def test_tunnel_client_raises_daemon_message_on_400(daemon, endpoint):
    with pytest.raises(TunnelDaemonError) as e:
        await daemon.client.put_forward(
            "a.b", ssh=endpoint.ssh(), target_host="127.0.0.1", target_port=70000
        )
    assert e.value.status == 400
    assert "target_port must be between 1 and 65535" in str(e.value)


async def test_tunnel_client_with_wrong_token_raises_401(daemon):
    client = TunnelClient(daemon.url, "wrong")
    with pytest.raises(TunnelDaemonError) as e:
        await client.list_forwards()
    assert e.value.status == 401


async def test_tunnel_client_reports_unreachable_daemon():
    client = TunnelClient(f"http://127.0.0.1:{free_port()}", "t", timeout=2)
    assert await client.ping() is False
    with pytest.raises(TunnelDaemonError) as e:
        await client.list_forwards()
    assert e.value.status is None
    assert "cannot reach the tunnel daemon" in str(e.value)


def test_daemon_refuses_to_start_without_token(tmp_path, hub_key):
    env = {k: v for k, v in os.environ.items() if k != "OUTPOST_TUNNEL_API_TOKEN"}
    argv = [sys.executable, "-m", "jupyterhub_outpost", "tunnels", "--ssh-key", hub_key.path]
    argv += ["--api-port", str(free_port()), "--state-file", str(tmp_path / "s.json")]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "OUTPOST_TUNNEL_API_TOKEN is not set" in out.stderr


def test_daemon_refuses_to_start_with_unreadable_state_file(tmp_path, hub_key):
    state = tmp_path / "s.json"
    state.write_text("{broken")
    env = dict(os.environ, OUTPOST_TUNNEL_API_TOKEN="t")
    argv = [sys.executable, "-m", "jupyterhub_outpost", "tunnels", "--ssh-key", hub_key.path]
    argv += ["--api-port", str(free_port()), "--state-file", str(state)]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode != 0
    assert "cannot read the state file" in out.stderr
    assert state.read_text() == "{broken"


async def test_get_forward_by_key(daemon, endpoint, target):
    f = await daemon.client.put_forward(
        "a.b", ssh=endpoint.ssh(), target_host="127.0.0.1", target_port=target.port
    )
    code, data = await raw(daemon, "GET", "/forwards/a.b")
    assert code == 200 and data["local_port"] == f["local_port"]
    assert (await raw(daemon, "GET", "/forwards/nope"))[0] == 404
    assert (await http_get(f["local_port"]))[0] == 200
