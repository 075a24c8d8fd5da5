"""scenarios/one-remote in local mode: a hub and one remote Outpost whose servers are
reachable only through the SSH tunnel."""

import signal

from .scenario import (
    OutpostInfo,
    ScenarioInfo,
    down_leaves_nothing,
    kernel_server_fixture,
    scenario_fixture,
    two_users_at_once,
)

REMOTE = OutpostInfo(
    name="remote",
    service="outpost",
    host="outpost",
    secret="outpost_password",
    flavor="small",
    message="Remote site: starting JupyterLab",
)
INFO = ScenarioInfo(
    name="one-remote", outposts=(REMOTE,), tunnel_host="hub", tunnel_port=("hub", "tunnels")
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
    def restart_hub():
        scenario.call(scenario.topo.stop_service("hub"))
        scenario.call(scenario.topo.start_service("hub"), timeout=180)

    kernel_server.survives(restart_hub)


def test_server_that_survived_the_faults_stops_clean(kernel_server):
    kernel_server.stop()


def test_down_leaves_no_process_namespace_veth_or_bridge(scenario):
    down_leaves_nothing(scenario)
