"""scenarios/delayed-tunnel in local mode: the Outpost submits each server as a minibatch
job on a compute host; the job starts later and reports its own address to the hub's
setuptunnel URL, through the site's egress relay."""

import os
import re
import signal
import subprocess
import sys

from .scenario import (
    OutpostInfo,
    ScenarioInfo,
    assert_clean,
    down_leaves_nothing,
    kernel_server_fixture,
    scenario_fixture,
    start_check_stop,
    two_users_at_once,
    wait_until,
)

HPC = OutpostInfo(
    name="hpc",
    service="outpost",
    host="login",
    secret="outpost_password",
    flavor="batch",
    message="Cluster job running",
)
INFO = ScenarioInfo(
    name="delayed-tunnel", outposts=(HPC,), tunnel_host="hub", tunnel_port=("hub", "tunnels")
)
scenario = scenario_fixture(INFO)
kernel_server = kernel_server_fixture()


def jobs(scenario) -> list[str]:
    """minibatch's status line of every job it still knows that is pending or running."""
    topo = scenario.topo
    env = dict(
        os.environ,
        MINIBATCH_SERVER=f"http://{topo.host('node1').ip}:{topo.port('minibatch', 'api')}",
        MINIBATCH_TOKEN_FILE=topo.path("secrets/minibatch"),
    )
    argv = topo.host("login").argv(
        [sys.executable, "-m", "jupyterhub_outpost.topology.minibatch", "list"]
    )
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30, check=True)
    return [line for line in out.stdout.splitlines() if re.search(r"state=(PENDING|RUNNING)", line)]


def test_job_starts_later_reports_its_address_and_is_reached_through_the_tunnel(scenario):
    start_check_stop(scenario, "alice", "lab", HPC)
    # the address came from the job itself, through the site's relay
    hub_log = scenario.log_tail(400)
    assert "report_address: reported" in hub_log
    assert "POST /hub/api/outpost/setuptunnel/alice/lab" in hub_log
    wait_until(lambda: jobs(scenario) == [], 30, "no job left in minibatch")


def test_job_that_never_reports_fails_the_start_clearly_and_leaves_no_job(scenario):
    hub = scenario.hub
    hub.create_user("carol")
    status, body = hub.api(
        "POST",
        "/users/carol/servers/never",
        {"outpost": "hpc", "flavor": "batch", "e2e_fault": "never-report"},
    )
    assert status == 202, body
    events = hub.progress_events("carol", "never", timeout=120)
    assert events[-1].get("failed"), events
    message = events[-1]["message"]
    assert "no address reported within 45s" in message, message
    wait_until(lambda: hub.server_model("carol", "never") is None, 60, "the failed server gone")
    assert_clean(scenario, HPC, None)
    assert jobs(scenario) == []


def test_killed_outpost_restarts_and_server_answers_again_with_same_kernel(scenario, kernel_server):
    kernel_server.survives(lambda: scenario.topo.kill_service("outpost", signal.SIGKILL))


def test_restarted_hub_routes_to_the_same_server_and_kernel(scenario, kernel_server):
    def restart_hub():
        scenario.call(scenario.topo.stop_service("hub"))
        scenario.call(scenario.topo.start_service("hub"), timeout=180)

    kernel_server.survives(restart_hub)


def test_server_that_survived_the_faults_stops_clean(kernel_server):
    kernel_server.stop()


def test_two_users_with_a_job_each_at_once(scenario):
    two_users_at_once(scenario)
    wait_until(lambda: jobs(scenario) == [], 30, "no job left in minibatch")


def test_down_leaves_no_process_namespace_veth_or_bridge(scenario):
    down_leaves_nothing(scenario)
