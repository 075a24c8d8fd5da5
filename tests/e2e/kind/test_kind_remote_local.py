"""scenarios/remote-local on kind: one hub with two Outposts, a remote one (its own
cluster, reached through the SSH tunnel) and a local one on the hub's own cluster (its
servers reached directly through cluster DNS). Two users at once, one on each."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from .kind_user import LOCAL, REMOTE
from .scenario_fixtures import scenario_fixture

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

scenario = scenario_fixture("remote-local", REMOTE, LOCAL)


def test_two_users_at_once_one_on_the_remote_cluster_one_on_the_hub_cluster(scenario):
    plan = [("alice", REMOTE), ("bob", LOCAL)]
    with ThreadPoolExecutor(len(plan)) as pool:
        starts = [pool.submit(scenario.start_as_user, user, "lab", site) for user, site in plan]
        for f in starts:
            f.result()
    assert len(scenario.user_pods(REMOTE)) == 1 and len(scenario.user_pods(LOCAL)) == 1
    # only the remote server needs a forward; the local one is reached directly
    assert len(scenario.forward_services()) == 1
    for user, _ in plan:
        session = scenario.lab_and_kernel(user, "lab")
        assert session.run("print(6 * 7)") == "42"
    for user, site in plan:
        scenario.stop_and_assert_clean(user, "lab", site)
