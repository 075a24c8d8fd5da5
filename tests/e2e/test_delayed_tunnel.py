"""scenarios/delayed-tunnel in local mode: the Outpost submits each server as a minibatch
job on a compute host; the job starts later and reports its own address to the hub's
setuptunnel URL, through the site's egress relay."""

import os
import re
import signal
import subprocess
import sys
import threading

import pytest

from .scenario import (
    OutpostInfo,
    ScenarioInfo,
    down_leaves_nothing,
    kernel_server_fixture,
    restart_hub,
    scenario_fixture,
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


def jobs(scenario, user: str = "") -> list[str]:
    """minibatch's status line of every pending or running job (of ``user``'s servers)."""
    topo = scenario.topo
    env = dict(
        os.environ,
        MINIBATCH_SERVER=f"http://{topo.host('node1').ip}:{topo.port('minibatch', 'api')}",
        MINIBATCH_TOKEN_FILE=topo.path("secrets/minibatch"),
    )
    argv = topo.host("login").argv([sys.executable, "-m", "outpost_scenarios.minibatch", "list"])
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30, check=True)
    return [
        line
        for line in out.stdout.splitlines()
        if re.search(r"state=(PENDING|RUNNING)", line) and f"name=jupyterhub-{user}" in line
    ]


@pytest.fixture(scope="module")
def never_reporting_start(scenario):
    """carol's start of a job that never reports its address, begun in the background as
    soon as the scenario is up (it takes minibatch's address timeout, 45 s, to fail)."""
    hub, result = scenario.hub, {}

    def run():
        try:
            hub.create_user("carol")
            result["answer"] = hub.api(
                "POST",
                "/users/carol/servers/never",
                {"outpost": "hpc", "flavor": "batch", "e2e_fault": "never-report"},
            )
            result["events"] = hub.progress_events("carol", "never", timeout=150)
        except Exception as e:  # reported by the test
            result["error"] = repr(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def test_two_users_start_named_servers_at_once_progress_data_path_and_clean_stop(
    scenario, never_reporting_start, kernel_server
):
    # carol's never-reporting job and kernel_server (for the faults below) run alongside
    two_users_at_once(scenario)
    # each address came from the job itself, through the site's relay
    lines = scenario.log_tail(2000)
    for user, server in (("alice", "lab"), ("bob", "lab2")):
        assert f"POST /hub/api/outpost/setuptunnel/{user}/{server} " in lines, user
    assert "report_address: reported" in lines
    assert "egress_proxy: relay" in lines


def test_job_that_never_reports_fails_the_start_clearly_and_leaves_no_job(
    scenario, never_reporting_start
):
    thread, result = never_reporting_start
    thread.join(180)
    assert not thread.is_alive(), "carol's start neither failed nor succeeded"
    assert "error" not in result, result
    status, body = result["answer"]
    assert status == 202, body
    events = result["events"]
    assert events[-1].get("failed"), events
    message = events[-1]["message"]
    assert "no address reported within 45s" in message, message
    wait_until(
        lambda: scenario.hub.server_model("carol", "never") is None, 60, "the failed server gone"
    )
    wait_until(lambda: jobs(scenario, "carol") == [], 30, "no job of carol's left in minibatch")
    assert not [s for s in scenario.outpost_services(HPC) if s["name"].endswith("-never")]


def test_killed_outpost_restarts_and_server_answers_again_with_same_kernel(scenario, kernel_server):
    kernel_server.survives(lambda: scenario.topo.kill_service("outpost", signal.SIGKILL))


def test_restarted_hub_routes_to_the_same_server_and_kernel(scenario, kernel_server):
    kernel_server.survives(lambda: restart_hub(scenario))


def test_server_that_survived_the_faults_stops_clean(kernel_server):
    kernel_server.stop()


def test_down_leaves_no_process_namespace_veth_or_bridge(scenario):
    wait_until(lambda: jobs(scenario) == [], 30, "no job left in minibatch")
    down_leaves_nothing(scenario)
