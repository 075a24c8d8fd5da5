"""A hub cluster and an Outpost cluster on kind, for each scenario.

Hub cluster: zero-to-jupyterhub (the hub image from images/hub) + hub-addons.
Outpost cluster: jupyterhub-outpost with KubeSpawner (images/outpost).
A user starts a server on the Outpost cluster through the Outpost's SSH Service
(LoadBalancer via cloud-provider-kind, else NodePort), reaches it through the hub's
proxy, and stopping it cleans up both clusters (the user pod there, the per-server
Service and the forward here).

The clusters, images and releases come from the product's kind mode
(outpost_scenarios.kind: the same deploy/teardown as
`make scenario-<name> MODE=kind`); the test adds the user-server checks.

Run with `make e2e-kind` (Docker needed; about 10 minutes per scenario, most of it
image pulls). Options: --keep-cluster keeps the clusters, --kind-bin/--kind-kubectl-bin
use given binaries (else kind/kubectl on PATH, else pytest-kind downloads them),
E2E_KIND_SCENARIOS=one-remote,external-tunnel selects scenarios, KIND_VERSION picks the
kind release pytest-kind downloads (NetworkPolicies are enforced from kind v0.24 on).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from outpost_scenarios.kind import (
    HUB_CONFIG,
    HUB_IMAGE,
    HUB_NS,
    OUTPOST_IMAGE,
    OUTPOST_NS,
    REMOTE_CONFIG,
    SCENARIOS,
    Cluster,
    Hub,
    LoadBalancers,
    build_images,
    deploy,
    teardown,
)

SELECTED = [s for s in os.environ.get("E2E_KIND_SCENARIOS", ",".join(SCENARIOS)).split(",") if s]


def binaries(request) -> tuple[Path | None, Path | None]:
    """--kind-bin/--kind-kubectl-bin, else kind/kubectl on PATH, else the ones pytest-kind
    downloads (KIND_VERSION)."""
    kind_bin = request.config.getoption("kind_bin", None)
    kubectl_bin = request.config.getoption("kind_kubectl_bin", None)
    kind_bin = Path(kind_bin) if kind_bin else None
    kubectl_bin = Path(kubectl_bin) if kubectl_bin else None
    if (kind_bin or shutil.which("kind")) and (kubectl_bin or shutil.which("kubectl")):
        return kind_bin, kubectl_bin
    from pytest_kind import KindCluster  # only to download the binaries

    downloader = KindCluster("outpost-e2e", kind_path=kind_bin, kubectl_path=kubectl_bin)
    downloader.ensure_kind()
    downloader.ensure_kubectl()
    return Path(downloader.kind_path), Path(downloader.kubectl_path)


@pytest.fixture(scope="module")
def clusters(request, tmp_path_factory):
    kind_bin, kubectl_bin = binaries(request)
    keep = request.config.getoption("keep_cluster", False)
    workdir = tmp_path_factory.mktemp("kind")
    build_images()
    lbs = LoadBalancers()
    lbs.start()
    hub = Cluster("outpost-e2e-hub", HUB_CONFIG, kind_bin, kubectl_bin, workdir)
    remote = Cluster("outpost-e2e-remote", REMOTE_CONFIG, kind_bin, kubectl_bin, workdir)
    try:
        hub.create([HUB_IMAGE, OUTPOST_IMAGE])
        remote.create([OUTPOST_IMAGE])
        yield hub, remote, lbs
    finally:
        if not keep:
            hub.delete()
            remote.delete()
        lbs.stop()


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
