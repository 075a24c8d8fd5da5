"""Pure pieces of the hub side: Outpost settings, addresses, flavors, options form, hooks."""

from __future__ import annotations

import pytest
from jupyterhub_outpost.hub import outpost_handlers, tunnel_daemon_service
from jupyterhub_outpost.hub.addresses import (
    AddressError,
    ServiceAddress,
    parse_service_address,
    target_allowed,
)
from jupyterhub_outpost.hub.flavors import flavor_is_full, normalize_flavors
from jupyterhub_outpost.hub.hooks import resolve_hook
from jupyterhub_outpost.hub.options_form import options_from_form, render_options_form
from jupyterhub_outpost.hub.outposts import OutpostConfigError, parse_outposts

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHVzZXJfdGVzdF9ob3N0X2tleV9ub3RfcmVhbDAwMDA"


def remote(**extra):
    base = {
        "url": "https://outpost.example.org",
        "hub_name": "hub",
        "secret": "pw",
        "ssh": {"host": "outpost.example.org", "port": 8022, "user": "hub", "host_key": KEY},
    }
    base.update(extra)
    return base


def test_outposts_config_is_parsed_and_secret_not_in_repr(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("from-file\n")
    outposts = parse_outposts(
        {
            "remote": remote(),
            "local": {
                "url": "http://outpost.outpost.svc:8080",
                "hub_name": "hub",
                "secret_file": str(secret),
                "direct": True,
            },
        }
    )
    assert list(outposts) == ["remote", "local"]
    assert outposts["local"].secret == "from-file"
    assert outposts["remote"].ssh.port == 8022
    assert "pw" not in repr(outposts["remote"])


@pytest.mark.parametrize(
    "name, settings, fragment",
    [
        ("bad.name", remote(), "name must match"),
        ("remote\n", remote(), "name must match"),
        ("r", remote(flavors_update_token="a", flavors_update_token_file="/f"), "not both"),
        ("r", remote(flavors_update_token_file="/nonexistent"), "cannot read"),
        ("r", remote(flavors_update_token=5), "must be a string"),
        ("r", remote(url="ftp://x"), "url"),
        ("r", remote(secret=None), "exactly one"),
        ("r", {**remote(), "ssh": None}, "needs 'ssh'"),
        ("r", remote(ssh={"host": "h", "user": "u", "host_key": "not-a-key"}), "host_key"),
        ("r", remote(sshh={}), "unknown keys"),
        ("r", remote(ssh={"host": "h", "user": "u", "host_key": KEY, "port": 0}), "port"),
    ],
)
def test_outposts_config_errors_name_entry_and_key(name, settings, fragment):
    with pytest.raises(OutpostConfigError) as info:
        parse_outposts({name: settings})
    assert fragment in str(info.value)


def test_malformed_outpost_is_left_out_and_reported_when_asked():
    errors = []
    outposts = parse_outposts(
        {"ok": remote(), "broken": remote(url="nope")}, on_error=errors.append
    )
    assert list(outposts) == ["ok"]
    assert len(errors) == 1 and "broken" in errors[0] and "url" in errors[0]


@pytest.mark.parametrize(
    "value, expected",
    [
        ("10.0.0.5:8888", ServiceAddress("10.0.0.5", 8888)),
        ("jupyter-abc.ns.svc:8888", ServiceAddress("jupyter-abc.ns.svc", 8888)),
        ("[fd00::5]:80", ServiceAddress("fd00::5", 80)),
        ("https://node1:9443/user/x/", ServiceAddress("node1", 9443, "https")),
    ],
)
def test_service_address_parsing(value, expected):
    assert parse_service_address(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "host",
        "host:0",
        "host:70000",
        "h;id:80",
        "h$(id):80",
        "h `id`:80",
        "-oProxyCommand=x:22",
        "user@host:22",
        "0.0.0.0:80",
        "169.254.169.254:80",
        "224.0.0.1:80",
        "host:80 -R",
        "a|b:80",
        "http://u:p@host:80",
        "[::1:80",
        "ho\nst:80",
        "host:+80",
    ],
)
def test_service_address_rejects_metacharacters_and_non_targets(value):
    with pytest.raises(AddressError):
        parse_service_address(value)


def test_url_not_accepted_where_host_port_is_required():
    with pytest.raises(AddressError):
        parse_service_address("http://host:80", allow_url=False)


def test_target_patterns_match_cidr_glob_and_port_range():
    patterns = ["10.20.0.0/16:8000-9000", "*.compute.example.org:8888", "[fd00::/8]:*"]
    assert target_allowed(ServiceAddress("10.20.3.4", 8500), patterns)
    assert not target_allowed(ServiceAddress("10.21.3.4", 8500), patterns)
    assert not target_allowed(ServiceAddress("10.20.3.4", 22), patterns)
    assert target_allowed(ServiceAddress("n1.compute.example.org", 8888), patterns)
    assert not target_allowed(ServiceAddress("n1.compute.example.org.evil", 8888), patterns)
    assert target_allowed(ServiceAddress("fd00::1", 1), patterns)
    assert target_allowed(ServiceAddress("anything", 1), None)


def test_flavors_normalized_and_full_detected():
    flavors = normalize_flavors(
        {"flavors": {"a": {"max": 2, "current": 2, "weight": 1, "extra": "x"}}}
    )
    assert flavors == {"a": {"max": 2, "current": 2, "weight": 1}}
    assert flavor_is_full(flavors["a"])
    assert not flavor_is_full({"max": -1, "current": 100})
    with pytest.raises(ValueError):
        normalize_flavors({"a": {"max": "ten"}})
    with pytest.raises(ValueError):
        normalize_flavors(["a"])


def test_options_form_shows_full_flavor_disabled_and_escapes():
    outposts = parse_outposts({"remote": remote(display_name="Remote <site>")})
    html = render_options_form(
        outposts,
        {
            "remote": {
                "small": {"max": 5, "current": 1, "weight": 10, "display_name": "Small"},
                "big": {"max": 1, "current": 1, "weight": 5, "display_name": "Big <GPU>"},
            }
        },
    )
    assert "Remote &lt;site&gt;" in html and "<site>" not in html
    big = next(line for line in html.splitlines() if 'value="big"' in line)
    small = next(line for line in html.splitlines() if 'value="small"' in line)
    assert 'disabled="disabled"' in big and "checked" not in big
    assert 'checked="checked"' in small and "disabled" not in small
    assert "Big &lt;GPU&gt; (1/1 in use)" in html


def test_options_from_form_takes_outpost_and_flavor():
    assert options_from_form({"outpost": ["remote"], "flavor": ["small"], "other": ["x"]}) == {
        "outpost": "remote",
        "flavor": "small",
    }
    assert options_from_form({}) == {}


async def test_resolve_hook_value_function_coroutine():
    async def coro(a, b):
        return a + b

    assert await resolve_hook(5, 1, 2) == 5
    assert await resolve_hook(lambda a, b: a * b, 3, 4) == 12
    assert await resolve_hook(coro, 3, 4) == 7


def test_extra_handlers_for_config():
    paths = [h[0] for h in outpost_handlers()]
    assert r"/api/outpost/flavors" in paths
    assert any(p.startswith("/api/outpost/events/") for p in paths)
    assert any(p.startswith("/api/outpost/setuptunnel/") for p in paths)


def test_tunnel_daemon_service_runs_daemon_with_token_in_env(monkeypatch):
    monkeypatch.setenv("OUTPOST_TUNNEL_API_TOKEN", "t0k")
    svc = tunnel_daemon_service(ssh_key="/k", state_file="/s.json", api_port=9999)
    assert svc["environment"] == {"OUTPOST_TUNNEL_API_TOKEN": "t0k"}
    cmd = svc["command"]
    assert cmd[1:4] == ["-m", "jupyterhub_outpost", "tunnels"]
    assert cmd[cmd.index("--api-port") + 1] == "9999"
    assert "t0k" not in " ".join(cmd)
    monkeypatch.delenv("OUTPOST_TUNNEL_API_TOKEN")
    with pytest.raises(ValueError):
        tunnel_daemon_service(ssh_key="/k")


def test_example_jupyterhub_config_loads_and_its_outposts_parse(tmp_path, monkeypatch):
    from pathlib import Path

    from traitlets.config.loader import PyFileConfigLoader

    monkeypatch.setenv("OUTPOST_TUNNEL_API_TOKEN", "t")
    example = Path(__file__).resolve().parents[2] / "examples" / "jupyterhub_config.py"
    c = PyFileConfigLoader(example.name, str(example.parent)).load_config()
    assert c.JupyterHub.spawner_class == "outpost"
    assert [h[0] for h in c.JupyterHub.extra_handlers] == [h[0] for h in outpost_handlers()]
    names = [s["name"] for s in c.JupyterHub.services]
    assert names == ["outpost-tunnels"]
    outposts = dict(c.OutpostSpawner.outposts)
    for settings in outposts.values():  # the example's secret files, made real here
        for key in ("secret_file", "flavors_update_token_file"):
            if key in settings:
                secret = tmp_path / settings[key].rsplit("/", 1)[1]
                secret.write_text("pw")
                settings[key] = str(secret)
    outposts["hpc"]["ssh"] = dict(outposts["hpc"]["ssh"], host_key=KEY)
    parsed = parse_outposts(outposts)
    assert parsed["local"].direct and not parsed["hpc"].direct
    assert parsed["hpc"].flavors_update_token == "pw" and not parsed["local"].flavors_update_token


@pytest.mark.parametrize(
    "raw",
    [b'{"status": NaN}', b'{"status": ' + b"1" * 5000 + b"}", b"5", b'"x"', b'{"services": 7}'],
    ids=["nan", "5000-digits", "number", "string", "services-not-a-list"],
)
async def test_outpost_answers_that_are_not_strict_json_of_the_right_shape_are_errors_not_crashes(
    raw,
):
    """What an Outpost answers is another party's input too: never a crash of the hub."""
    from jupyterhub_outpost.hub.outposts import OutpostAPI, OutpostError, parse_outpost
    from tornado import web
    from tornado.httpserver import HTTPServer

    from tests.helpers.outpost_process import free_port

    class Answer(web.RequestHandler):
        def get(self, _path):
            self.set_header("Content-Type", "application/json")
            self.finish(raw)

    port = free_port()
    server = HTTPServer(web.Application([(r"/(.*)", Answer)]))
    server.listen(port, "127.0.0.1")
    try:
        api = OutpostAPI(parse_outpost("o", remote(url=f"http://127.0.0.1:{port}")), timeout=5)
        if raw.startswith(b"{") and b"status" in raw:
            with pytest.raises(OutpostError, match="invalid JSON"):
                await api.status("jh1", "s1")
        else:
            assert await api.list() == []
    finally:
        server.stop()
