"""End to end on one machine: a real JupyterHub with configurable-http-proxy, real Outposts
running SimpleLocalProcessSpawner with a real ``jupyterhub-singleuser``, the real tunnel
daemon (managed by the hub) and the Outposts' real SSH endpoints, each in its own
network namespace:

    public network (reachable from the test):  hub  outpost1  outpost2
    site1 network:                             outpost1 (its servers bind here)
    site2 network:                             outpost2 (its servers bind here)

The hub's namespace has no route to site1/site2, so a remote server is only reachable
through the tunnel. The ``local`` Outpost runs in the hub's namespace and its servers
are reached directly (``direct: True``).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from outpost_scenarios import netns

from tests.helpers import kernel
from tests.helpers.hub_process import HubProcess, process_alive, wait_until
from tests.helpers.outpost_process import NetnsOutpost, basic_auth, keygen

AVAILABLE, REASON = netns.isolation_available()
if not AVAILABLE:
    pytest.skip(f"needs root and ip netns ({REASON})", allow_module_level=True)

pytestmark = [pytest.mark.slow, pytest.mark.netns]

HUB_NAME = "hub"
OTHER_HUB = "otherhub"
MINI_SINGLEUSER = Path(__file__).resolve().parents[1] / "outpost" / "mini_singleuser.py"
LAUNCHER = Path(__file__).resolve().parent / "delayed_launcher.py"


def outpost_config(
    tmp: Path,
    *,
    site_name: str,
    server_ip: str,
    ssh_ip: str,
    ssh_port: int,
    hub_pub: str,
    hub_api: dict,
    delayed_targets: list[str] | None = None,
) -> str:
    """An Outpost running SiteSpawner (SimpleLocalProcessSpawner + jupyterhub-singleuser).

    With ``delayed_targets`` it supports delayed tunneling: a start with user_options
    ``{"delayed": True}`` is answered with "" and the server reports its own address
    (delayed_launcher.py); the SSH endpoint allows forwards to ``delayed_targets``.
    """
    delayed = ""
    if delayed_targets:
        delayed = f"""
from jupyterhub_outpost.outpost.hooks import default_sanitize_start_response

def sanitize_start_response(spawner, response):
    if (spawner.user_options or {{}}).get("delayed"):
        return ""
    return default_sanitize_start_response(spawner, response)

c.JupyterHubOutpost.sanitize_start_response = sanitize_start_response
c.JupyterHubOutpost.allowed_forward_targets = {delayed_targets!r}
"""
    return f"""
import sys
from jupyterhub.spawner import SimpleLocalProcessSpawner

class SiteSpawner(SimpleLocalProcessSpawner):
    async def progress(self):
        yield {{"progress": 40, "message": "Launching on site {site_name}"}}

    def get_env(self):
        env = super().get_env()
        if (self.user_options or {{}}).get("delayed"):
            env["OUTPOST_TEST_DELAYED"] = "1"
        return env

c.JupyterHubOutpost.spawner_class = SiteSpawner
c.SiteSpawner.cmd = [sys.executable, {str(LAUNCHER)!r}]
# jupyter-server with the jupyterhub extension only: starts in a fraction of the time
c.SiteSpawner.args = ["--allow-root", "--ServerApp.open_browser=False"] + [
    f"--ServerApp.jpserver_extensions={{name}}=False"
    for name in ("jupyterlab", "jupyter_lsp", "notebook_shim", "jupyter_server_terminals")
]
c.SiteSpawner.ip = {server_ip!r}
c.SiteSpawner.home_dir_template = {str(tmp / "home" / "{username}")!r}
c.SiteSpawner.interrupt_timeout = 3
c.SiteSpawner.term_timeout = 3
c.SiteSpawner.kill_timeout = 3
c.JupyterHubOutpost.ssh_ip = {ssh_ip!r}
c.JupyterHubOutpost.ssh_port = {ssh_port}
c.JupyterHubOutpost.ssh_authorized_keys = {{{HUB_NAME!r}: [{hub_pub!r}]}}
c.JupyterHubOutpost.flavors = {{
    "small": {{"max": 10, "weight": 10, "display_name": "Small", "description": "1 CPU"}},
    "gpu": {{"max": 0, "weight": 5, "display_name": "GPU", "description": "none left"}},
}}
c.JupyterHubOutpost.flavors_undefined_max = 0
c.JupyterHubOutpost.hub_api = {hub_api!r}

def allow_override(hub, misc):
    return hub == {OTHER_HUB!r}
c.JupyterHubOutpost.allow_override = allow_override
{delayed}
"""


@dataclass
class Site:
    lab: netns.Lab
    tmp: Path
    hub_host: object
    hosts: dict
    outposts: dict
    secrets: dict
    host_keys: dict
    ssh_ports: dict
    server_ips: dict
    tunnel_port: int = 0
    tunnel_token: str = field(default_factory=lambda: uuid.uuid4().hex)
    # each Outpost's own token for its flavor usage reports
    flavors_tokens: dict = field(default_factory=dict)
    hub: HubProcess | None = None

    @property
    def tunnel_url(self) -> str:
        return f"http://{self.hub_host.ip}:{self.tunnel_port}"

    def tunnel_api(self, method: str, path: str, body=None, token: str | None = None):
        headers = {} if token == "" else {"Authorization": f"token {token or self.tunnel_token}"}
        data = json.dumps(body).encode() if body is not None else None
        if data:
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(
            self.tunnel_url + path, data=data, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(req, timeout=15) as resp:
                raw, code = resp.read(), resp.status
        except urllib.error.HTTPError as e:
            raw, code = e.read(), e.code
        return code, (json.loads(raw) if raw else None)

    def forwards(self) -> dict:
        code, body = self.tunnel_api("GET", "/forwards")
        assert code == 200, body
        return {f["key"]: f for f in body["forwards"]}

    def outpost_services(self, name: str, hub: str = HUB_NAME) -> list:
        outpost = self.outposts[name]
        req = urllib.request.Request(outpost.url + "/services", headers=outpost.auth(hub))
        with urllib.request.urlopen(req, timeout=15) as resp:
            data = json.loads(resp.read())
        return data if isinstance(data, list) else data.get("services", data)

    def can_connect(self, host, ip: str, port: int) -> bool:
        return asyncio.run(host.can_connect(ip, port, timeout=2))


def hub_config(site: Site) -> str:
    outposts = {}
    for name in ("remote", "second"):
        outposts[name] = {
            "url": site.outposts[name].url,
            "hub_name": HUB_NAME,
            "secret": site.secrets[name],
            "ssh": {
                "host": site.hosts[name].address("public"),
                "port": site.ssh_ports[name],
                "user": HUB_NAME,
                "host_key": site.host_keys[name],
            },
            "display_name": f"Site {name}",
            "setuptunnel_targets": [f"{site.server_ips[name]}/32:1024-65535"],
            "flavors_update_token": site.flavors_tokens[name],
        }
    outposts["local"] = {
        "url": site.outposts["local"].url,
        "hub_name": HUB_NAME,
        "secret": site.secrets["local"],
        "direct": True,
        "display_name": "Local",
        "flavors_update_token": site.flavors_tokens["local"],
    }
    # same Outpost as "remote", but the pinned host key is another Outpost's: must be refused
    outposts["badkey"] = dict(
        outposts["remote"], ssh=dict(outposts["remote"]["ssh"], host_key=site.host_keys["second"])
    )
    hub_key = site.tmp / "hub_ed25519"
    return f"""
from jupyterhub_outpost.hub import outpost_handlers, tunnel_daemon_service
c.JupyterHub.spawner_class = "outpost"
c.JupyterHub.extra_handlers = outpost_handlers()
c.JupyterHub.services.append(tunnel_daemon_service(
    ssh_key={str(hub_key)!r}, state_file={str(site.tmp / "tunnels.json")!r}, token={site.tunnel_token!r},
    api_ip={site.hub_host.ip!r}, api_port={site.tunnel_port}, forward_ip={site.hub_host.ip!r}, log_level="DEBUG"))
c.OutpostSpawner.outposts = {outposts!r}
c.OutpostSpawner.tunnel_api_url = {site.tunnel_url!r}
c.OutpostSpawner.tunnel_api_token = {site.tunnel_token!r}
c.OutpostSpawner.tunnel_up_timeout = 20
c.OutpostSpawner.start_async = lambda spawner: bool((spawner.user_options or {{}}).get("async_start"))
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 90  # the remote single-user server starts slowly on 2 cores
c.Spawner.poll_interval = 5
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hubsite")
    lab = netns.Lab()
    made: list = []
    try:
        lab.add_network("public", host_access=True)
        lab.add_network("site1")
        lab.add_network("site2")
        hub_host = lab.add_host("hub", ["public"])
        hosts = {
            "remote": lab.add_host("outpost1", ["public", "site1"]),
            "second": lab.add_host("outpost2", ["public", "site2"]),
            "local": hub_host,
        }
        server_ips = {
            "remote": hosts["remote"].address("site1"),
            "second": hosts["second"].address("site2"),
            "local": hub_host.ip,
        }
        hub_pub = keygen(tmp / "hub_ed25519")
        site = Site(
            lab=lab,
            tmp=tmp,
            hub_host=hub_host,
            hosts=hosts,
            outposts={},
            secrets={},
            host_keys={},
            ssh_ports={},
            server_ips=server_ips,
        )
        site.tunnel_port = hub_host.free_port(hub_host.ip)
        configs = {}
        for name, host in hosts.items():
            data = tmp / f"outpost-{name}"
            data.mkdir()
            site.host_keys[name] = keygen(data / "ssh_host_ed25519_key")
            ssh_ip = host.address("public")
            site.ssh_ports[name] = host.free_port(ssh_ip)
            site.secrets[name] = uuid.uuid4().hex
            site.flavors_tokens[name] = uuid.uuid4().hex
            configs[name] = tmp / f"outpost-{name}.py"
            outpost = NetnsOutpost(
                host,
                ssh_ip,
                configs[name],
                data,
                ssh=(name != "local"),
                hub_credentials={HUB_NAME: site.secrets[name], OTHER_HUB: "other-secret"},
                cwd=str(Path(__file__).resolve().parents[2]),
            )
            made.append(outpost)
            site.outposts[name] = outpost
        # the hub's ports are chosen now: each Outpost's hub_api names its API
        site.hub = HubProcess(
            tmp / "hub", hub_config(site), ip=hub_host.ip, host=hub_host, start=False
        )
        made.append(site.hub)
        for name, host in hosts.items():
            hub_api = {
                HUB_NAME: {
                    "url": site.hub.hub_api_url,
                    "outpost_name": name,
                    "flavors_update_token": site.flavors_tokens[name],
                }
            }
            configs[name].write_text(
                outpost_config(
                    tmp / name,
                    site_name=name,
                    server_ip=server_ips[name],
                    ssh_ip=host.address("public"),
                    ssh_port=site.ssh_ports[name],
                    hub_pub=hub_pub,
                    hub_api=hub_api,
                    delayed_targets=[f"{server_ips[name]}/32:1024-65535"]
                    if name == "second"
                    else None,
                )
            )
        # the three Outposts start in parallel (each waits for its /ping)
        with ThreadPoolExecutor(3) as pool:
            for future in [pool.submit(o.start, timeout=60) for o in site.outposts.values()]:
                future.result()
        site.hub.start()
        wait_until(
            lambda: site.tunnel_api("GET", "/ping")[0] == 200 if _reachable(site) else False,
            30,
            "the managed tunnel daemon",
        )
        site.hub.create_user("alice")
        site.hub.create_user("bob")
        yield site
    finally:
        for thing in reversed(made):
            try:
                thing.close()
            except Exception as e:  # keep cleaning up
                print(f"cleanup of {thing!r} failed: {e}")
        lab.close()


def _reachable(site: Site) -> bool:
    try:
        return site.tunnel_api("GET", "/ping")[0] == 200
    except OSError:
        return False


# ---------------------------------------------------------------------------- helpers
def start_server(hub: HubProcess, user: str, server: str, options: dict) -> list[dict]:
    return hub.start_server(user, server, options, timeout=150)


def prefix(user: str, server: str) -> str:
    """The server's URL prefix through the proxy (the default server has no name part)."""
    return f"/user/{user}/{server}/" if server else f"/user/{user}/"


def status_ok(hub: HubProcess, user: str, server: str) -> bool:
    try:
        status, body = hub.proxy_request("GET", f"{prefix(user, server)}api/status", timeout=10)
    except OSError:
        return False
    return status == 200 and isinstance(body, dict) and "started" in body


def run_code(hub: HubProcess, user: str, server: str, code: str, timeout: float = 60) -> str:
    return kernel.run_code_through_proxy(hub, user, server, code, timeout)


def remote_flavor_usage(hub: HubProcess, flavor: str) -> int:
    status, flavors = hub.api("GET", "/outpost/flavors")
    assert status == 200, flavors
    return flavors["remote"]["flavors"][flavor]["current"]


def server_address(site: Site, outpost: str) -> tuple[str, int]:
    """Where the Outpost says its (only) server of this hub runs."""
    (service,) = site.outpost_services(outpost)
    host, _, port = service["service"].rpartition(":")
    return host, int(port)


def assert_clean(site: Site, outpost: str, address: tuple[str, int] | None = None):
    """Nothing left of any server: no forward in the daemon, no server at the Outpost, and
    (given its address) no process listening where the server was."""
    wait_until(lambda: not site.forwards(), 30, "every forward removed")
    wait_until(lambda: site.outpost_services(outpost) == [], 30, f"no server left at {outpost}")
    if address is not None:
        wait_until(
            lambda: not site.can_connect(site.hosts[outpost], *address),
            30,
            "the server process gone",
        )


# ---------------------------------------------------------------------------- tests
def test_remote_server_through_tunnel_events_status_kernel_and_clean_stop(site):
    hub = site.hub
    events = start_server(hub, "alice", "lab", {"outpost": "remote", "flavor": "small"})
    messages = [e.get("message", "") for e in events]
    # the remote spawner's own progress messages arrive through the Outpost
    assert "Launching on site remote" in messages, messages
    assert len(events) >= 2 and events[-1].get("ready"), events

    assert status_ok(hub, "alice", "lab")
    assert run_code(hub, "alice", "lab", "print(6 * 7)").strip() == "42"

    # the Outpost pushed its flavor usage (the hub's cache was filled before the start)
    wait_until(lambda: remote_flavor_usage(hub, "small") == 1, 30, "the Outpost's flavor update")

    # the server is on site1: reachable from outpost1, not from the hub's namespace
    services = site.outpost_services("remote")
    address = services[0]["service"]
    host, _, port = address.rpartition(":")
    assert host == site.server_ips["remote"]
    assert site.can_connect(site.hosts["remote"], host, int(port))
    assert not site.can_connect(site.hub_host, host, int(port))
    assert [k for k in site.forwards() if k.startswith("remote.")]

    hub.stop_server("alice", "lab")
    assert_clean(site, "remote")
    wait_until(
        lambda: remote_flavor_usage(hub, "small") == 0, 30, "the flavor update after the stop"
    )
    wait_until(
        lambda: not site.can_connect(site.hosts["remote"], host, int(port)),
        30,
        "the server process gone",
    )


def test_local_outpost_default_server_is_direct_without_forward(site):
    hub = site.hub
    events = start_server(hub, "alice", "", {"outpost": "local"})  # the default server
    assert "Launching on site local" in [e.get("message") for e in events], events
    assert status_ok(hub, "alice", "")
    assert run_code(hub, "alice", "", "print('local')").strip() == "local"
    assert site.forwards() == {}
    hub.stop_server("alice", "")
    assert_clean(site, "local")


def test_two_outposts_serve_one_user_at_once(site):
    hub = site.hub
    start_server(hub, "alice", "a", {"outpost": "remote"})
    start_server(hub, "alice", "b", {"outpost": "second"})
    assert status_ok(hub, "alice", "a") and status_ok(hub, "alice", "b")
    keys = sorted(site.forwards())
    assert len(keys) == 2 and keys[0].startswith("remote.") and keys[1].startswith("second.")
    assert run_code(hub, "alice", "b", "import os; print(os.getpid() > 0)").strip() == "True"
    hub.stop_server("alice", "a")
    hub.stop_server("alice", "b")
    assert_clean(site, "remote")
    assert_clean(site, "second")


def test_failed_start_shows_outpost_message_and_leaves_nothing(site):
    hub = site.hub
    status, body = hub.api("POST", "/users/bob/servers/big", {"outpost": "remote", "flavor": "gpu"})
    # the hub refuses a full flavor before asking the Outpost (its GET /flavors said max 0)
    assert status >= 400, body
    assert "full" in json.dumps(body)
    assert site.outpost_services("remote") == []
    assert site.forwards() == {}


def test_async_start_is_followed_until_the_server_runs(site):
    hub = site.hub
    events = start_server(hub, "alice", "bg", {"outpost": "second", "async_start": True})
    assert "Launching on site second" in [e.get("message") for e in events], events
    assert status_ok(hub, "alice", "bg")
    address = server_address(site, "second")
    hub.stop_server("alice", "bg")
    assert_clean(site, "second", address)


def test_outpost_refusal_message_reaches_the_user_and_leaves_nothing(site):
    hub = site.hub
    # a flavor the hub does not know is passed on; this Outpost allows no undefined flavor
    status, body = hub.api(
        "POST", "/users/bob/servers/nope", {"outpost": "remote", "flavor": "huge"}
    )
    if status == 202:
        events = hub.progress_events("bob", "nope", timeout=120)
        message = events[-1].get("message", "")
        assert events[-1].get("failed"), events
    else:
        message = json.dumps(body)
        assert status >= 400, body
    assert "huge" in message or "flavor" in message.lower(), message
    assert message.count("Site remote") <= 1
    wait_until(lambda: hub.server_model("bob", "nope") is None, 60, "the failed server gone")
    assert site.outpost_services("remote") == []
    assert site.forwards() == {}


def test_delayed_tunneling_server_reports_its_address_then_is_reachable(site):
    hub = site.hub
    start_server(hub, "alice", "late", {"outpost": "second", "delayed": True})
    try:
        (service,) = site.outpost_services("second")
        assert service.get("service", "") == ""  # the Outpost did not know the address
        (fwd,) = site.forwards().values()
        assert fwd["target_host"] == site.server_ips["second"]
        assert status_ok(hub, "alice", "late")
    finally:
        hub.stop_server("alice", "late")
    assert_clean(site, "second")


def test_wrong_host_key_is_refused_and_start_leaves_nothing(site):
    hub = site.hub
    status, body = hub.api("POST", "/users/bob/servers/wrongkey", {"outpost": "badkey"})
    if status == 202:
        events = hub.progress_events("bob", "wrongkey", timeout=120)
        assert events[-1].get("failed"), events
        assert "tunnel" in events[-1].get("message", "").lower(), events[-1]
    else:
        assert status >= 400, body
        assert "tunnel" in json.dumps(body).lower(), body
    wait_until(lambda: hub.server_model("bob", "wrongkey") is None, 60, "the failed server gone")
    assert_clean(site, "remote")


def test_setuptunnel_rejects_bad_bodies_and_changes_nothing(site):
    hub = site.hub
    start_server(hub, "alice", "tun", {"outpost": "remote"})
    try:
        before = site.forwards()
        path = "/outpost/setuptunnel/alice/tun"
        bad = [
            ({"service": "10.0.0.1;id:8888"}, 400),
            ({"service": "$(reboot):8888"}, 400),
            ({"service": "host:22 -oProxyCommand=sh"}, 400),
            ({"service": f"{site.server_ips['remote']}:8888", "ssh_key": "x"}, 400),
            ({"service": f"{site.server_ips['remote']}:8888", "user": "root"}, 400),
            ({"service": f"{site.server_ips['remote']}:8888", "command": "id"}, 400),
            ({"service": "8.8.8.8:80"}, 403),  # not in the Outpost's setuptunnel_targets
            ({"service": f"{site.server_ips['remote']}:22"}, 403),
        ]
        for body, expected in bad:
            status, answer = hub.api("POST", path, body)
            assert status == expected, (body, status, answer)
        # a user without access to alice's server cannot touch it
        bob_token = hub.user_token("bob")
        status, _ = hub.api(
            "POST", path, {"service": f"{site.server_ips['remote']}:9999"}, token=bob_token
        )
        assert status in (403, 404)
        status, _ = hub.api(
            "POST", path, {"service": f"{site.server_ips['remote']}:9999"}, token=""
        )
        assert status == 403
        assert site.forwards() == before
        assert status_ok(hub, "alice", "tun")
    finally:
        hub.stop_server("alice", "tun")
    assert_clean(site, "remote")


def test_hub_api_events_and_flavors_need_their_tokens_and_one_outposts_token_moves_no_other(
    site,
):
    hub = site.hub
    bob_token = hub.user_token("bob")
    status, _ = hub.api(
        "POST", "/outpost/events/alice/_default", {"progress": 1, "message": "x"}, token=bob_token
    )
    assert status in (403, 404)
    status, flavors = hub.api("GET", "/outpost/flavors", token=bob_token)
    assert status == 200 and flavors["remote"]["flavors"]["gpu"]["max"] == 0, flavors
    status, _ = hub.api("GET", "/outpost/flavors", token="")
    assert status == 403
    everything_full = {
        "small": {"max": 10, "current": 10, "weight": 10, "display_name": "Small"},
        "gpu": {"max": 0, "current": 0, "weight": 5, "display_name": "GPU"},
    }
    # neither a user's token, the hub admin's token, nor another Outpost's token may
    # change remote's flavors (before: any token of scope custom:outpostflavors:set could
    # mark every flavor of every Outpost full)
    for token in (bob_token, hub.admin_token, site.flavors_tokens["second"], ""):
        status, _ = hub.api("POST", "/outpost/flavors/remote", everything_full, token=token)
        assert status == 403, token
    status, flavors = hub.api("GET", "/outpost/flavors", token=bob_token)
    assert flavors["remote"]["flavors"]["small"]["current"] < 10
    # remote's own token changes remote's flavors, and only them
    update = dict(everything_full, small=dict(everything_full["small"], current=3))
    status, _ = hub.api(
        "POST", "/outpost/flavors/remote", update, token=site.flavors_tokens["remote"]
    )
    assert status == 204
    status, _ = hub.api(
        "POST", "/outpost/flavors/second", update, token=site.flavors_tokens["remote"]
    )
    assert status == 403
    status, flavors = hub.api("GET", "/outpost/flavors", token=bob_token)
    assert flavors["remote"]["flavors"]["small"]["current"] == 3
    assert flavors["second"]["flavors"]["small"]["current"] != 3
    # the spawn page shows the full flavor, disabled
    status, page = hub.browser("bob")("/hub/spawn/bob/formtest")
    assert status == 200 and 'value="gpu"' in page
    gpu = next(line for line in page.splitlines() if 'value="gpu"' in line)
    assert "disabled" in gpu


def test_tunnel_daemon_refuses_calls_without_its_token(site):
    assert site.tunnel_api("GET", "/forwards", token="")[0] in (401, 403)
    assert site.tunnel_api("GET", "/forwards", token="wrong")[0] in (401, 403)
    ssh = {
        "host": site.hosts["remote"].address("public"),
        "port": site.ssh_ports["remote"],
        "user": HUB_NAME,
        "host_key": site.host_keys["remote"],
    }
    assert site.tunnel_api(
        "PUT",
        "/forwards/evil",
        {"ssh": ssh, "target_host": "127.0.0.1", "target_port": 22},
        token="",
    )[0] in (401, 403)
    assert "evil" not in site.forwards()


def _http_through(host, port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/", timeout=5) as resp:
            return resp.status < 500
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def test_hub_key_cannot_forward_to_other_hubs_server_or_arbitrary_address(site):
    # another hub starts a server on the same Outpost (a tiny real server, via misc)
    outpost = site.outposts["remote"]
    body = {
        "name": "other1",
        "env": {
            "JUPYTERHUB_API_TOKEN": "t",
            "JUPYTERHUB_USER": "carol",
            "JUPYTERHUB_SERVER_NAME": "",
            "JUPYTERHUB_SERVICE_PREFIX": "/user/carol/",
            "JUPYTERHUB_API_URL": "http://127.0.0.1:1/hub/api",
        },
        "user_options": {"start_id": "s1", "flavor": "small"},
        "misc": {"cmd": [sys.executable, str(MINI_SINGLEUSER)], "args": []},
        "certs": {},
        "internal_trust_bundles": {},
    }
    req = urllib.request.Request(
        outpost.url + "/services",
        data=json.dumps(body).encode(),
        method="POST",
        headers={**basic_auth(OTHER_HUB, "other-secret"), "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        other = json.loads(resp.read())["service"]
    other_host, _, other_port = other.rpartition(":")
    try:
        wait_until(
            lambda: site.can_connect(site.hosts["remote"], other_host, int(other_port)),
            30,
            "the other hub's server",
        )
        ssh = {
            "host": site.hosts["remote"].address("public"),
            "port": site.ssh_ports["remote"],
            "user": HUB_NAME,
            "host_key": site.host_keys["remote"],
        }
        targets = {
            "steal": (other_host, int(other_port)),  # another hub's server
            "arbitrary": (
                site.hosts["remote"].address("public"),
                outpost.port,
            ),  # the Outpost's own API
        }
        for key, (thost, tport) in targets.items():
            code, fwd = site.tunnel_api(
                "PUT",
                f"/forwards/neg.{key}",
                {"ssh": ssh, "target_host": thost, "target_port": tport},
            )
            assert code == 200, fwd
            # the endpoint refuses the channel: nothing answers through the local port
            assert not _http_through(fwd["local_host"], fwd["local_port"]), key
            assert site.tunnel_api("DELETE", f"/forwards/neg.{key}")[0] == 204
    finally:
        req = urllib.request.Request(
            outpost.url + "/services/other1",
            method="DELETE",
            headers=basic_auth(OTHER_HUB, "other-secret"),
        )
        urllib.request.urlopen(req, timeout=30).close()


# ---------------------------------------------------------------------------- recovery
def test_killed_tunnel_daemon_comes_back_and_server_is_reachable(site):
    hub = site.hub
    start_server(hub, "alice", "rd", {"outpost": "remote"})
    address = server_address(site, "remote")
    try:
        (old,) = hub.child_pids("tunnels")
        key = next(iter(site.forwards()))
        os.kill(old, signal.SIGKILL)
        # JupyterHub restarts its managed service; the daemon reloads its forward table
        wait_until(
            lambda: hub.child_pids("tunnels") not in ([], [old]) and _reachable(site),
            60,
            "a new tunnel daemon",
        )
        assert key in site.forwards()
        wait_until(lambda: status_ok(hub, "alice", "rd"), 60, "the server reachable again")
    finally:
        hub.stop_server("alice", "rd")
    assert_clean(site, "remote", address)


def test_killed_outpost_restarts_and_server_is_reachable_again(site):
    hub = site.hub
    start_server(hub, "alice", "ro", {"outpost": "remote"})
    address = server_address(site, "remote")
    try:
        outpost = site.outposts["remote"]
        outpost.kill()
        # the server keeps running; the hub still considers it running while the Outpost is down
        outpost.start(timeout=60)
        wait_until(
            lambda: status_ok(hub, "alice", "ro"),
            90,
            "the server reachable after the Outpost restart",
        )
        assert hub.server_model("alice", "ro")["ready"]
        assert len(site.outpost_services("remote")) == 1
    finally:
        hub.stop_server("alice", "ro")
    assert_clean(site, "remote", address)


def test_killed_hub_restarts_and_server_is_reachable_without_user_action(site):
    hub = site.hub
    start_server(hub, "alice", "rh", {"outpost": "remote"})
    address = server_address(site, "remote")
    try:
        before = site.forwards()
        old_children = hub.child_pids("tunnels") + hub.child_pids("configurable-http-proxy")
        assert len(old_children) == 2
        hub.restart(kill=True)  # SIGKILL hub, proxy and managed daemon, then start again
        wait_until(lambda: _reachable(site), 60, "the tunnel daemon after the hub restart")
        wait_until(
            lambda: status_ok(hub, "alice", "rh"), 90, "the server reachable after the hub restart"
        )
        after = site.forwards()
        assert sorted(after) == sorted(before)
        # nothing of the killed hub is left running (its proxy and daemon died with it)
        assert not [pid for pid in old_children if process_alive(pid)]
        for key in before:
            assert after[key]["local_port"] == before[key]["local_port"]
        assert run_code(hub, "alice", "rh", "print('again')").strip() == "again"
    finally:
        hub.stop_server("alice", "rh")
    assert_clean(site, "remote", address)
