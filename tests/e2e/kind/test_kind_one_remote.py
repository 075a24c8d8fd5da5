"""scenarios/one-remote on kind: a hub cluster and an Outpost cluster, the user's server in
a KubeSpawner pod on the Outpost cluster, reached through the hub-side tunnel daemon (a
sidecar of the hub pod) and the Outpost's SSH endpoint behind a MetalLB LoadBalancer.

Besides the user's whole path, the faults: the Outpost pod deleted in the middle of a
start, the Outpost pod (API and SSH endpoint) restarted under a running server, and the
hub pod restarted. No server is lost and nothing is left: pods, per-server Services,
servers at the Outpost.
"""

from __future__ import annotations

import json
import threading

import pytest

from tests.helpers.hub_process import HubError, wait_until

from .kind_user import REMOTE, KernelSession
from .scenario_fixtures import scenario_fixture

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

scenario = scenario_fixture("one-remote", REMOTE)


def test_user_logs_in_picks_the_remote_cluster_sees_its_progress_runs_a_kernel_and_stops_clean(
    scenario,
):
    """The user's pod is held in its init container (as an image pull would hold it) until
    the hub's progress stream shows the remote cluster's own pod event: KubeSpawner reports
    pod events only while the pod is pending (an instant start has none to show)."""
    node = "outpost-e2e-remote-control-plane"
    user = "slowstart-alice"
    scenario.hub.create_user(user)
    released = scenario.release_held_pod_when(
        lambda: scenario.hub.progress_events(
            user, "lab", timeout=300, until=lambda e: node in e.get("message", "")
        )
    )
    events = scenario.start_as_user(user, "lab", REMOTE)
    released.join(60)
    assert any(node in e.get("message", "") for e in events), (
        "the progress shows the remote cluster's own pod events",
        events,
    )
    [pod] = scenario.user_pods(REMOTE)
    assert pod["spec"]["nodeName"] == node
    assert len(scenario.forward_services()) == 1, "the proxy reaches it through a Service"
    session = scenario.lab_and_kernel(user, "lab")
    assert session.run("import socket; print(socket.gethostname())") == pod["metadata"]["name"]
    scenario.stop_and_assert_clean(user, "lab", REMOTE)


def test_the_remote_outpost_enforces_its_flavor_limit(scenario):
    hub = scenario.hub
    hub.create_user("bob")
    hub.start_server("bob", "big1", {"outpost": "remote", "flavor": "large"}, timeout=600)
    with pytest.raises(HubError) as refused:
        hub.start_server("bob", "big2", {"outpost": "remote", "flavor": "large"}, timeout=300)
    # the hub's message for the user names the flavor as the Outpost shows it
    assert "The flavor 'Large' on Remote kind cluster is full" in str(refused.value), refused.value
    assert len(scenario.user_pods(REMOTE)) == 1, "the second large server got no pod"
    hub.stop_server("bob", "big2", timeout=120)
    scenario.stop_and_assert_clean("bob", "big1", REMOTE)


def test_outpost_pod_deleted_in_the_middle_of_a_start_fails_it_clearly_and_leaves_nothing(
    scenario,
):
    hub, remote = scenario.hub, scenario.cluster(REMOTE)
    hub.create_user("slowstart")
    answer: dict = {}

    def start():
        status, body = hub.api(
            "POST",
            "/users/slowstart/servers/held",
            {"outpost": "remote", "flavor": "small"},
            timeout=600,
        )
        answer["start"] = (status, body)

    thread = threading.Thread(target=start, daemon=True)
    thread.start()
    wait_until(lambda: scenario.user_pods(REMOTE), 300, "the held user pod")
    old = scenario.outpost_pod(REMOTE)["metadata"]["name"]
    remote.kubectl("delete", "pod", "-n", REMOTE.namespace, old, "--wait=false")

    # the hub gives the start up with a message, the server is not running
    def start_ended():
        model = hub.server_model("slowstart", "held")
        return model is None or not model.get("pending")

    wait_until(start_ended, 600, "the hub to give up the start")
    model = hub.server_model("slowstart", "held")
    assert model is None or not model.get("ready"), model
    thread.join(60)

    # the Outpost is back (new pod): the half-started pod is ended, nothing is left
    wait_until(
        lambda: scenario.outpost_pod(REMOTE)["metadata"]["name"] != old, 300, "a new Outpost pod"
    )
    remote.rollout_status(REMOTE.namespace, "outpost-jupyterhub-outpost")
    scenario.assert_nothing_left(REMOTE)

    # and the user can start again (released at once this time)
    released = scenario.release_held_pod_when(lambda: True)
    hub.start_server("slowstart", "held", {"outpost": "remote", "flavor": "small"}, timeout=600)
    released.join(60)
    scenario.stop_and_assert_clean("slowstart", "held", REMOTE)


@pytest.fixture(scope="module")
def kept(scenario):
    """One server and one kernel kept across the restarts below."""
    scenario.hub.create_user("carol")
    scenario.hub.start_server(
        "carol", "kept", {"outpost": "remote", "flavor": "small"}, timeout=600
    )
    session = KernelSession(scenario.hub, "carol", "kept")
    yield session
    scenario.stop_and_assert_clean("carol", "kept", REMOTE)


def test_outpost_pod_with_its_ssh_endpoint_restarted_server_and_kernel_answer_again(scenario, kept):
    [pod] = scenario.user_pods(REMOTE)
    scenario.cluster(REMOTE).rollout_restart(REMOTE.namespace, "outpost-jupyterhub-outpost")
    took = kept.still_the_same_kernel(within=300)
    print(f"the server answered again {took:.1f}s after the Outpost's restart")
    [same] = scenario.user_pods(REMOTE)
    assert same["metadata"]["uid"] == pod["metadata"]["uid"], "the user pod was not replaced"


def test_hub_pod_restarted_routes_to_the_same_server_and_kernel(scenario, kept):
    hub_cluster = scenario.clusters["hub"]
    before = json.dumps(scenario.hub.server_model("carol", "kept"))
    hub_cluster.rollout_restart("jhub", "hub")
    scenario.hub.wait_back()
    took = kept.still_the_same_kernel(within=300)
    print(f"the server answered again {took:.1f}s after the hub's restart ({before})")
    assert scenario.hub.server_model("carol", "kept")["ready"]
    assert len(scenario.forward_services()) == 1
