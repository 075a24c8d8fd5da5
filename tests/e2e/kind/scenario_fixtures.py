"""Session fixtures of the kind scenario tests: the clusters every scenario module shares.

``kind_clusters`` builds (or finds) the node image, kind and kubectl
(outpost_scenarios.kindbuild) and the images of images/ (outpost_scenarios.images), then
creates one hub cluster and one Outpost cluster with MetalLB and loads every image the
scenarios run. Each scenario module installs its releases on them and removes them at
its end (``scenario_fixture``), so the clusters are made once per run.

``OUTPOST_KIND_KEEP=1`` keeps the clusters after the run (for looking around with the
kubeconfigs in run/kind/<cluster>/; ``jupyterhub-outpost kind`` can delete them).
What the run measured goes to ``RUN`` and, at the end, to docs/kind-e2e.md (conftest).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from outpost_scenarios import kind

from tests.helpers.hub_process import wait_until

from .kind_user import KindScenario

HUB_CLUSTER = "outpost-e2e-hub"
REMOTE_CLUSTER = "outpost-e2e-remote"

#: what this run measured (seconds, versions), written to docs/kind-e2e.md at the end
RUN: dict = {"steps": {}, "scenarios": {}}


def timed(step: str, fn):
    start = time.monotonic()
    result = fn()
    RUN["steps"][step] = round(time.monotonic() - start, 1)
    return result


@pytest.fixture(scope="session")
def kind_clusters():
    """(hub cluster, Outpost cluster), with every image the scenarios run loaded."""
    said: list[str] = []

    def say(message: str) -> None:
        said.append(message)
        print(f"kind | {message}", flush=True)

    report = os.environ.get("OUTPOST_KIND_IMAGES_REPORT")
    if report and Path(report).exists():  # make e2e-kind: `kind images` ran just before
        built = json.loads(Path(report).read_text())
        RUN["steps"]["node image, kind, kubectl and helm (make kind-images)"] = built["seconds"]
        RUN["cold"] = built["node_image_built"]
    tools = timed("node image, kind and kubectl", lambda: kind.kindcluster().ensure_node_image(say))
    RUN["cold"] = RUN.get("cold") or any(
        m.startswith("node image") and m.endswith(" built") for m in said
    )
    images = timed("images of images/", kind.build_images)
    RUN["node_image"] = tools.image
    RUN["images"] = images
    hub = kind.Cluster(HUB_CLUSTER, kind.HUB_CONFIG, tools)  # kubeconfigs in run/kind/
    remote = kind.Cluster(REMOTE_CLUSTER, kind.REMOTE_CONFIG, tools)
    hub_images, remote_images = kind.images_for(images, "remote-local")  # the superset
    remote_images.append(images["postgresql"])  # test_kind_replicas.py's database
    try:
        for what, cluster, its_images in (
            ("hub", hub, hub_images),
            ("Outpost", remote, remote_images),
        ):
            how = "reused (kept from an earlier run)" if cluster.reusable() else "created"
            timed(
                f"{what} cluster {how}, images loaded", lambda c=cluster, i=its_images: c.create(i)
            )
        yield hub, remote
    finally:
        if not os.environ.get("OUTPOST_KIND_KEEP"):
            kind.down_clusters(hub, remote)


def _pending_servers(hub) -> list[str]:
    status, users = hub.api("GET", "/users")
    assert status == 200, users
    return [
        f"{u['name']}/{name}"
        for u in users
        for name, server in (u.get("servers") or {}).items()
        if server.get("pending")
    ]


def scenario_fixture(name: str, *sites, variant: str = "", prepare=None, outpost_overrides=None):
    """A module-scoped :class:`KindScenario`: the scenario installed on the session's
    clusters, removed at the end of the module. A ``variant`` (recorded under
    "<name> (<variant>)") runs ``prepare(remote cluster)`` first and merges
    ``outpost_overrides`` into the remote Outpost's values."""
    record = f"{name} ({variant})" if variant else name

    @pytest.fixture(scope="module")
    def scenario(kind_clusters):
        hub, remote = kind_clusters
        if prepare is not None:
            prepare(remote)
        sc = KindScenario(name, hub, remote, sites, outpost_overrides)
        if os.environ.get("OUTPOST_KIND_KEEP"):
            # an install kept from an earlier run may still hold its servers (which a hub
            # that has just started may still be checking: JupyterHub refuses to stop those)
            wait_until(lambda: not _pending_servers(sc.hub), 300, "the hub's start-up checks")
            sc.hub.stop_all_servers(timeout=300)
        RUN["scenarios"][record] = {"deploy_seconds": round(sc.deploy_seconds, 1)}
        try:
            yield sc
        finally:
            if os.environ.get("OUTPOST_KIND_KEEP"):
                return  # kept for a look around (the next scenario's install upgrades it)
            started = time.monotonic()
            sc.remove()
            RUN["scenarios"][record]["teardown_seconds"] = round(time.monotonic() - started, 1)

    return scenario
