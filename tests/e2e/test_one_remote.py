"""scenarios/one-remote in local mode: a hub and one remote Outpost whose servers are
reachable only through the SSH tunnel."""

import signal

from .scenario import (
    REMOTE_SITE,
    ScenarioInfo,
    down_leaves_nothing,
    kernel_server_fixture,
    restart_hub,
    scenario_fixture,
    two_users_at_once,
)

INFO = ScenarioInfo(
    name="one-remote", outposts=(REMOTE_SITE,), tunnel_host="hub", tunnel_port=("hub", "tunnels")
)
scenario = scenario_fixture(INFO)
kernel_server = kernel_server_fixture()


def test_two_users_start_named_servers_at_once_progress_data_path_and_clean_stop(
    scenario, kernel_server
):
    # kernel_server (for the faults below) starts alongside, a third server at once
    two_users_at_once(scenario)


def test_killed_outpost_restarts_and_server_answers_again_with_same_kernel(scenario, kernel_server):
    kernel_server.survives(lambda: scenario.topo.kill_service("outpost", signal.SIGKILL))


def test_restarted_hub_routes_to_the_same_server_and_kernel(scenario, kernel_server):
    kernel_server.survives(lambda: restart_hub(scenario))


def test_server_that_survived_the_faults_stops_clean(kernel_server):
    kernel_server.stop()


def test_down_leaves_no_process_namespace_veth_or_bridge(scenario):
    down_leaves_nothing(scenario)
