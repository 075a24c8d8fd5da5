"""Kind mode's releases: what each chart gets, installed in the order docs/charts.md gives.

The two sides exchange what operators exchange: the hub's password and SSH public key go
to the Outpost; the Outpost's API and SSH addresses (MetalLB LoadBalancers) and its host
key go to the hub. Values come from ``scenarios/<name>/kind/*.yaml`` plus what one run
generates (keys, passwords, addresses).
"""

from __future__ import annotations

import copy
import json
import secrets
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING

import asyncssh
import yaml

from .source import source_root

if TYPE_CHECKING:
    from .kind import Cluster

HUB_NS = "jhub"
OUTPOST_NS = "outpost"
LOCAL_OUTPOST_NS = "outpost-local"


def merge(base: dict, *overrides: dict) -> dict:
    """Helm's -f semantics: maps merge deeply, anything else (lists too) is replaced."""
    out = copy.deepcopy(base)
    for override in overrides:
        for key, value in override.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merge(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
    return out


def scenario_values(scenario: str, name: str) -> dict:
    path = source_root() / "scenarios" / scenario / "kind" / name
    return yaml.safe_load(path.read_text()) or {}


def z2jh_chart():
    """The z2jh-compatible hub chart (scenario-runner/charts/jupyterhub): z2jh's own chart
    cannot be fetched here (docs/kind.md says what differs)."""
    return source_root() / "scenario-runner" / "charts" / "jupyterhub"


@dataclass
class Keys:
    """Generated per run: what operators exchange between the two sides."""

    hub_private: str
    hub_public: str
    host_private: str
    host_public: str
    password: str

    @classmethod
    def generate(cls) -> Keys:
        hub = asyncssh.generate_private_key("ssh-ed25519")
        host = asyncssh.generate_private_key("ssh-ed25519")
        return cls(
            hub_private=hub.export_private_key().decode(),
            hub_public=hub.export_public_key().decode().strip(),
            host_private=host.export_private_key().decode(),
            host_public=host.export_public_key().decode().strip(),
            password=secrets.token_hex(24),
        )


def outpost_values(scenario: str, keys: Keys, hub_api_url: str | None = None) -> dict:
    """The remote Outpost's values: the scenario's file, the hub's password and public
    key, the host key generated for this run and, once the hub's URL is known, where the
    Outpost may call the hub (``hubs.hub.apiUrl``: progress, flavor usage, tunnels)."""
    name = "outpost-remote.yaml" if scenario == "remote-local" else "outpost.yaml"
    hub = {"password": keys.password, "sshPublicKeys": [keys.hub_public]}
    if hub_api_url:
        hub["apiUrl"] = hub_api_url
    return merge(
        scenario_values(scenario, name),
        {
            "hubs": {"hub": hub},
            "ssh": {"hostKey": keys.host_private},
        },
    )


def local_outpost_values(scenario: str, password: str) -> dict:
    return merge(
        scenario_values(scenario, "outpost-local.yaml"), {"hubs": {"hub": {"password": password}}}
    )


def addons_values(
    scenario: str,
    keys: Keys,
    *,
    api: tuple[str, int],
    ssh: tuple[str, int],
    hub_api_url: str,
    local_password: str | None = None,
) -> dict:
    """hub-addons' values: the scenario's file plus the remote Outpost's addresses, the
    pinned host key and the credentials of this run."""
    outposts = {
        "remote": {
            "url": f"http://{api[0]}:{api[1]}",
            "password": keys.password,
            "hubApiUrl": hub_api_url,
            "ssh": {"host": ssh[0], "port": ssh[1], "hostKey": keys.host_public},
        }
    }
    if local_password:
        outposts["local"] = {"password": local_password}
    return merge(
        scenario_values(scenario, "hub-addons.yaml"),
        {"sshKey": keys.hub_private, "outposts": outposts},
    )


def z2jh_values(scenario: str, addons_z2jh_values: dict, e2e_token: str) -> dict:
    """The hub chart's values: the scenario's jupyterhub.yaml, then what hub-addons
    rendered (as a second -f file), then an admin service token (for the e2e test and
    for waiting on the hub API)."""
    return merge(
        scenario_values(scenario, "jupyterhub.yaml"),
        addons_z2jh_values,
        {
            "hub": {
                "services": {"e2e": {"apiToken": e2e_token}},
                "loadRoles": {
                    "e2e": {
                        "services": ["e2e"],
                        "scopes": [
                            "admin:users",
                            "admin:servers",
                            "access:servers",
                            "list:users",
                            "read:users",
                            "tokens",
                        ],
                    }
                },
            },
        },
    )


def demo_login(scenario: str) -> str:
    """What to type on the login page (the scenario's DummyAuthenticator password)."""
    config = scenario_values(scenario, "jupyterhub.yaml").get("hub", {}).get("config", {})
    password = config.get("DummyAuthenticator", {}).get("password")
    if password:
        return f"any user name, password {password}"
    return f"see hub.config in scenarios/{scenario}/kind/jupyterhub.yaml"


class Hub:
    """The hub's REST API through its proxy, with an admin service token."""

    def __init__(self, url: str, token: str):
        self.url = url.rstrip("/")
        self.token = token

    def request(self, method: str, path: str, body: dict | None = None, timeout: float = 30):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(  # noqa: S310 (http on the kind network)
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
                text = resp.read().decode()
                return resp.status, (
                    json.loads(text) if text.strip().startswith(("{", "[")) else text
                )
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except (urllib.error.URLError, OSError) as e:
            return 0, str(e)

    def wait(self, what: str, check, timeout: float = 900):
        """Back off (0.2 s doubling to 5 s) until ``check()`` is true; TimeoutError after."""
        deadline = time.monotonic() + timeout
        delay = 0.2
        while True:
            result = check()
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(delay)
            delay = min(delay * 2, 5)


def deploy(
    scenario: str, hub: Cluster, remote: Cluster, outpost_overrides: dict | None = None
) -> Hub:
    """Install both sides of a scenario the way docs/charts.md tells an operator to;
    ``outpost_overrides`` are merged into the remote Outpost's values (a variant of the
    scenario, e.g. PostgreSQL and replicas)."""
    root = source_root()
    outpost_chart = root / "charts" / "jupyterhub-outpost"
    addons_chart = root / "charts" / "hub-addons"
    keys = Keys.generate()
    e2e_token = secrets.token_hex(32)

    # 1. The Outpost cluster (and, for remote-local, the local Outpost on the hub cluster).
    overrides = outpost_overrides or {}
    remote.install(
        "outpost", outpost_chart, merge(outpost_values(scenario, keys), overrides), OUTPOST_NS
    )
    api = remote.service_address(OUTPOST_NS, "outpost-jupyterhub-outpost")
    ssh = remote.service_address(OUTPOST_NS, "outpost-jupyterhub-outpost-ssh")
    local_password = None
    if scenario == "remote-local":
        local_password = secrets.token_hex(24)
        hub.install(
            "outpost-local",
            outpost_chart,
            local_outpost_values(scenario, local_password),
            LOCAL_OUTPOST_NS,
        )

    # 2. hub-addons, then the hub chart with the values hub-addons renders.
    def addons(hub_api_url: str) -> dict:
        return addons_values(
            scenario, keys, api=api, ssh=ssh, hub_api_url=hub_api_url, local_password=local_password
        )

    hub.install("hub-addons", addons_chart, addons("http://hub.invalid/hub/api"), HUB_NS)
    configmap = hub.json("get", "configmap", "-n", HUB_NS, "hub-addons-hub-config")
    rendered = yaml.safe_load(configmap["data"]["z2jh-values.yaml"])
    hub.install("jupyterhub", z2jh_chart(), z2jh_values(scenario, rendered, e2e_token), HUB_NS)
    proxy_host, proxy_port = hub.service_address(HUB_NS, "proxy-public")
    hub_url = f"http://{proxy_host}:{proxy_port}"

    # 3. Now the hub's public URL is known: tell the Outposts' servers, restart the hub,
    # and tell the remote Outpost where it may call the hub (a restart reads it at once).
    hub_api_url = f"{hub_url}/hub/api"
    hub.install("hub-addons", addons_chart, addons(hub_api_url), HUB_NS)
    hub.rollout_restart(HUB_NS, "hub")
    remote.install(
        "outpost",
        outpost_chart,
        merge(outpost_values(scenario, keys, hub_api_url), overrides),
        OUTPOST_NS,
    )
    remote.rollout_restart(OUTPOST_NS, "outpost-jupyterhub-outpost")
    client = Hub(hub_url, e2e_token)
    client.wait("the hub API", lambda: client.request("GET", "/hub/api/")[0] == 200, timeout=300)
    # An Outpost reads changed hub credentials from its Secret's files, which the kubelet
    # updates within a minute or two of an upgrade: the rollout is done when every Outpost
    # accepts the credential its hub was given.
    outposts = [(remote, OUTPOST_NS, "outpost", keys.password)]
    if local_password is not None:
        outposts.append((hub, LOCAL_OUTPOST_NS, "outpost-local", local_password))
    for cluster, namespace, release, password in outposts:
        client.wait(
            f"the Outpost in {namespace} to accept the hub's credential",
            lambda c=cluster, n=namespace, r=release, p=password: outpost_accepts(c, n, r, p),
            timeout=300,
        )
    return client


# Run in the Outpost's container: GET /flavors on its own port with "hub:password" (stdin).
_ACCEPTS = """
import base64, sys, urllib.error, urllib.request
auth = base64.b64encode(sys.stdin.read().strip().encode()).decode()
req = urllib.request.Request("http://127.0.0.1:8080/flavors", headers={"Authorization": "Basic " + auth})
try:
    print(urllib.request.urlopen(req, timeout=10).status)
except urllib.error.HTTPError as e:
    print(e.code)
"""


def outpost_accepts(cluster: Cluster, namespace: str, release: str, password: str) -> bool:
    """Whether the Outpost of ``release`` answers the hub "hub" with this password."""
    try:
        answer = cluster.kubectl_input(
            f"hub:{password}".encode(),
            "exec",
            "-i",
            "-n",
            namespace,
            f"deployment/{release}-jupyterhub-outpost",
            "--",
            "python3",
            "-c",
            _ACCEPTS,
        )
    except Exception:  # noqa: BLE001 (pod not there yet: ask again)
        return False
    return answer.strip() == "200"


def teardown(scenario: str, hub: Cluster, remote: Cluster) -> None:
    """Uninstall every release of a scenario (the clusters stay)."""
    for release in ("jupyterhub", "hub-addons"):
        hub.uninstall(release, HUB_NS)
    hub.delete_namespace(HUB_NS)
    if scenario == "remote-local":
        hub.uninstall("outpost-local", LOCAL_OUTPOST_NS)
        hub.delete_namespace(LOCAL_OUTPOST_NS)
    remote.uninstall("outpost", OUTPOST_NS)
    remote.delete_namespace(OUTPOST_NS)  # the kept Secret and PVC go with it
