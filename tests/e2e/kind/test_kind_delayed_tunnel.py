"""scenarios/delayed-tunnel on kind: the Outpost answers a start before it knows the
server's address; the server's pod posts its address to the hub's setuptunnel URL once
it runs, and the hub then tunnels to it through the Outpost's SSH endpoint, which allows
such forwards only to its admin's ``allowedForwardTargets`` (the Outpost cluster's pod
network, port 8888)."""

from __future__ import annotations

import pytest

from .kind_user import REMOTE
from .scenario_fixtures import scenario_fixture

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

scenario = scenario_fixture("delayed-tunnel", REMOTE)


def test_server_reports_its_address_later_and_the_user_reaches_it(scenario):
    scenario.start_as_user("alice", "lab", REMOTE)
    [pod] = scenario.user_pods(REMOTE)
    [service] = scenario.forward_services()
    session = scenario.lab_and_kernel("alice", "lab")
    assert (
        session.run("import socket; print(socket.gethostbyname(socket.gethostname()))")
        == (pod["status"]["podIP"])
    ), "the tunnel ends at the address the pod reported"
    assert service["metadata"]["name"]
    scenario.stop_and_assert_clean("alice", "lab", REMOTE)
