"""A hub cluster and an Outpost cluster on kind, for each scenario.

Hub cluster: zero-to-jupyterhub (the hub image from images/hub) + hub-addons.
Outpost cluster: jupyterhub-outpost with KubeSpawner (images/outpost).
A user starts a server on the Outpost cluster through the Outpost's SSH Service
(LoadBalancer via cloud-provider-kind, else NodePort), reaches it through the hub's
proxy, and stopping it cleans up both clusters (the user pod there, the per-server
Service and the forward here).

Run with `make e2e-kind` (Docker needed; about 10 minutes per scenario, most of it
image pulls). Options: --keep-cluster keeps the clusters, --kind-bin uses a local kind,
E2E_KIND_SCENARIOS=one-remote,external-tunnel selects scenarios, KIND_VERSION picks the
kind release pytest-kind downloads (NetworkPolicies are enforced from kind v0.24 on).
"""

from __future__ import annotations

import json
import os
import secrets
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.e2e.kind.kind_env import (
    HERE,
    HUB_IMAGE,
    HUB_NS,
    OUTPOST_IMAGE,
    OUTPOST_NS,
    ROOT,
    Z2JH_REPO,
    Z2JH_VERSION,
    Cluster,
    Keys,
    LoadBalancers,
    addons_values,
    build_images,
    local_outpost_values,
    outpost_values,
    z2jh_values,
)

SCENARIOS = ["one-remote", "remote-local", "external-tunnel", "delayed-tunnel"]
SELECTED = [s for s in os.environ.get("E2E_KIND_SCENARIOS", ",".join(SCENARIOS)).split(",") if s]
OUTPOST_CHART = ROOT / "charts" / "jupyterhub-outpost"
ADDONS_CHART = ROOT / "charts" / "hub-addons"


@pytest.fixture(scope="module")
def clusters(request):
    def path_option(name):
        value = request.config.getoption(name, None)
        return Path(value) if value else None

    kind_bin, kubectl_bin = path_option("kind_bin"), path_option("kind_kubectl_bin")
    keep = request.config.getoption("keep_cluster", False)
    build_images()
    lbs = LoadBalancers()
    lbs.start()
    hub = Cluster("outpost-e2e-hub", HERE / "kind-hub.yaml", kind_bin, kubectl_bin)
    remote = Cluster("outpost-e2e-remote", HERE / "kind-outpost.yaml", kind_bin, kubectl_bin)
    try:
        hub.create([HUB_IMAGE, OUTPOST_IMAGE])
        remote.create([OUTPOST_IMAGE])
        yield hub, remote, lbs
    finally:
        if not keep:
            hub.delete()
            remote.delete()
        lbs.stop()


class Hub:
    """The hub's REST API through its proxy, with an admin service token."""

    def __init__(self, url: str, token: str):
        self.url = url.rstrip("/")
        self.token = token

    def request(self, method: str, path: str, body: dict | None = None, timeout: float = 30):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (http on the kind network)
                text = resp.read().decode()
                return resp.status, (
                    json.loads(text) if text.strip().startswith(("{", "[")) else text
                )
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def wait(self, what: str, check, timeout: float = 900, interval: float = 5):
        deadline = time.monotonic() + timeout
        while True:
            result = check()
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}")
            time.sleep(interval)


def deploy(scenario: str, hub: Cluster, remote: Cluster, lbs: LoadBalancers) -> Hub:
    """Install both sides of a scenario the way docs/charts.md tells an operator to."""
    keys = Keys.generate()
    service_type = lbs.service_type()
    e2e_token = secrets.token_hex(32)

    # 1. The Outpost cluster (and, for remote-local, the local Outpost on the hub cluster).
    remote.install(
        "outpost", OUTPOST_CHART, outpost_values(scenario, keys, service_type), OUTPOST_NS
    )
    api = remote.service_address(OUTPOST_NS, "outpost-jupyterhub-outpost")
    ssh = remote.service_address(OUTPOST_NS, "outpost-jupyterhub-outpost-ssh")
    local_password = None
    if scenario == "remote-local":
        local_password = secrets.token_hex(24)
        hub.install(
            "outpost-local",
            OUTPOST_CHART,
            local_outpost_values(scenario, local_password),
            "outpost-local",
        )

    # 2. hub-addons, then zero-to-jupyterhub with the values hub-addons renders.
    def addons(hub_api_url: str) -> dict:
        return addons_values(
            scenario, keys, api=api, ssh=ssh, hub_api_url=hub_api_url, local_password=local_password
        )

    hub.install("hub-addons", ADDONS_CHART, addons("http://hub.invalid/hub/api"), HUB_NS)
    configmap = json.loads(
        hub.kubectl("get", "configmap", "-n", HUB_NS, "hub-addons-hub-config", "-o", "json")
    )
    rendered = yaml.safe_load(configmap["data"]["z2jh-values.yaml"])
    values = z2jh_values(scenario, rendered, service_type, e2e_token)
    hub.install(
        "jupyterhub",
        "jupyterhub",
        values,
        HUB_NS,
        chart_repo_url=Z2JH_REPO,
        chart_version=Z2JH_VERSION,
    )
    proxy_host, proxy_port = hub.service_address(HUB_NS, "proxy-public")
    hub_url = f"http://{proxy_host}:{proxy_port}"

    # 3. Now the hub's public URL is known: tell the Outposts' servers, restart the hub.
    hub.install("hub-addons", ADDONS_CHART, addons(f"{hub_url}/hub/api"), HUB_NS)
    hub.rollout_restart(HUB_NS, "hub")
    client = Hub(hub_url, e2e_token)
    client.wait("the hub API", lambda: client.request("GET", "/hub/api/")[0] == 200, timeout=300)
    return client


def teardown(scenario: str, hub: Cluster, remote: Cluster) -> None:
    for release, namespace in (("jupyterhub", HUB_NS), ("hub-addons", HUB_NS)):
        hub.uninstall(release, namespace)
    hub.delete_namespace(HUB_NS)
    if scenario == "remote-local":
        hub.uninstall("outpost-local", "outpost-local")
        hub.delete_namespace("outpost-local")
    remote.uninstall("outpost", OUTPOST_NS)
    remote.delete_namespace(OUTPOST_NS)  # the kept Secret and PVC go with it


def server_ready(client: Hub, user: str):
    status, model = client.request("GET", f"/hub/api/users/{user}")
    server = (model.get("servers") or {}).get("", {}) if status == 200 else {}
    return server.get("ready") and not server.get("pending")


def server_gone(client: Hub, user: str):
    status, model = client.request("GET", f"/hub/api/users/{user}")
    return status == 200 and not model.get("servers")


@pytest.mark.slow
@pytest.mark.parametrize("scenario", SELECTED)
def test_user_server_on_the_outpost_cluster_through_the_hub(clusters, scenario):
    hub, remote, lbs = clusters
    client = deploy(scenario, hub, remote, lbs)
    try:
        outposts = ["remote", "local"] if scenario == "remote-local" else ["remote"]
        for outpost in outposts:
            user = f"user-{outpost}"
            cluster, namespace = (
                (hub, "outpost-local") if outpost == "local" else (remote, OUTPOST_NS)
            )
            assert client.request("POST", f"/hub/api/users/{user}")[0] in (201, 409)
            status, body = client.request(
                "POST", f"/hub/api/users/{user}/server", {"outpost": outpost}
            )
            assert status in (201, 202), body
            client.wait(f"{user}'s server", lambda: server_ready(client, user))

            # It runs on the Outpost's cluster, and the hub's proxy reaches it.
            assert cluster.pods(namespace, "component=singleuser-server"), "the user pod runs there"
            status, body = client.request("GET", f"/user/{user}/api/status")
            assert status == 200 and "started" in body, body
            if outpost == "remote":
                assert hub.services(HUB_NS, "app.kubernetes.io/component=outpost-forward"), (
                    "per-server Service"
                )

            # Stop cleans both clusters.
            assert client.request("DELETE", f"/hub/api/users/{user}/server")[0] in (202, 204)
            client.wait(f"{user}'s server to stop", lambda: server_gone(client, user), timeout=300)
            client.wait(
                "the user pod to go",
                lambda: not cluster.pods(namespace, "component=singleuser-server"),
                timeout=300,
            )
            client.wait(
                "the per-server Service to go",
                lambda: not hub.services(HUB_NS, "app.kubernetes.io/component=outpost-forward"),
                timeout=120,
            )
    finally:
        teardown(scenario, hub, remote)
