"""scenarios/external-tunnel on kind: the tunnel daemon runs in its own pod (hub-addons
``tunnel.mode: deployment``), the per-server Services target it, so servers stay
reachable while the hub pod restarts."""

from __future__ import annotations

import pytest

from tests.helpers.hub_process import wait_until

from .kind_user import REMOTE, KernelSession
from .scenario_fixtures import scenario_fixture

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

scenario = scenario_fixture("external-tunnel", REMOTE)


def test_user_path_through_the_external_tunnel_daemon(scenario):
    scenario.start_as_user("alice", "lab", REMOTE)
    [service] = scenario.forward_services()
    assert service["spec"]["selector"].get("app.kubernetes.io/component") == "tunnels"
    session = scenario.lab_and_kernel("alice", "lab")
    assert session.run("print(6 * 7)") == "42"
    scenario.stop_and_assert_clean("alice", "lab", REMOTE)


def test_kernel_keeps_answering_while_the_hub_pod_is_down(scenario):
    hub, hub_cluster = scenario.hub, scenario.clusters["hub"]
    hub.create_user("carol")
    hub.start_server("carol", "kept", {"outpost": "remote", "flavor": "small"}, timeout=600)
    session = KernelSession(hub, "carol", "kept")

    hub_cluster.kubectl("scale", "-n", "jhub", "deployment/hub", "--replicas=0")
    wait_until(lambda: not hub_cluster.pods("jhub", "component=hub"), 300, "the hub pod gone")
    assert hub.api("GET", "/")[0] != 200, "the hub is down"
    assert session.run("n += 1; print(n)") == "1", "the kernel answers without the hub"

    hub_cluster.kubectl("scale", "-n", "jhub", "deployment/hub", "--replicas=1")
    hub_cluster.rollout_status("jhub", "hub")
    hub.wait_back()
    session.count = 1
    session.still_the_same_kernel()
    assert hub.server_model("carol", "kept")["ready"]
    scenario.stop_and_assert_clean("carol", "kept", REMOTE)
