"""scenarios/delayed-tunnel in local mode: a real Slurm cluster (munged and slurmctld on the
management host, slurmd on the compute host), the Outpost on the login host submitting each
server as a Slurm job. The job starts when Slurm schedules it and reports its own address
to the hub's setuptunnel URL, through the site's egress relay."""

import os
import re
import signal
import threading
from pathlib import Path

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
    # the hub's own event once the Outpost answered "" (Slurm's "Pending in queue..." is
    # relayed only when the job waits; see the queue test)
    message="waiting for the server to report its address",
)
INFO = ScenarioInfo(
    name="delayed-tunnel", outposts=(HPC,), tunnel_host="hub", tunnel_port=("hub", "tunnels")
)
scenario = scenario_fixture(INFO)
kernel_server = kernel_server_fixture()


def slurm(scenario, *argv: str, stdin: str = "") -> str:
    """A Slurm client command on the login host, as the Outpost runs them."""
    topo = scenario.topo
    env = dict(os.environ, SLURM_CONF=topo.path("files/slurm/slurm.conf"))

    async def run():
        proc = await topo.host("login").create_subprocess_exec(
            *argv, stdin=-1, stdout=-1, stderr=-1, env=env
        )
        out, err = await proc.communicate(stdin.encode())
        assert proc.returncode == 0, f"{argv}: {err.decode()}"
        return out.decode().strip()

    return scenario.call(run(), timeout=60)


def jobs(scenario, user: str = "") -> list[str]:
    """``ID STATE REASON`` of every pending or running job of ``user``'s servers."""
    out = slurm(scenario, "squeue", "-h", "-t", "PD,R", "-o", "%i %T %r %j")
    return [
        line.rsplit(" ", 1)[0]
        for line in out.splitlines()
        if line.endswith(f" jupyterhub-{user}") or (not user and " jupyterhub-" in line)
    ]


def job_state(scenario, job: str) -> str:
    return re.search(r"JobState=(\S+)", slurm(scenario, "scontrol", "show", "job", job)).group(1)


def block_the_node(scenario) -> str:
    """A job that takes every CPU of node1 still free; its id, once it runs."""
    node = slurm(scenario, "scontrol", "show", "node", "node1")
    cpus = {k: int(v) for k, v in re.findall(r"\b(CPUAlloc|CPUTot)=(\d+)", node)}
    idle = cpus["CPUTot"] - cpus["CPUAlloc"]
    assert idle > 0, "node1 is full already"
    job = slurm(
        scenario,
        "sbatch",
        "--parsable",
        f"--cpus-per-task={idle}",
        "--job-name=blocker",
        "--output=/dev/null",
        stdin="#!/bin/sh\nsleep 900\n",
    )
    try:
        wait_until(lambda: job_state(scenario, job) == "RUNNING", 60, f"blocker {job} runs")
    except TimeoutError:
        queue = slurm(scenario, "squeue", "-o", "%i %T %r %C %j")
        raise AssertionError(f"blocker {job} for {idle} CPUs did not run:\n{queue}") from None
    return job


def start_in_background(
    scenario, user: str, server: str, **options
) -> tuple[threading.Thread, dict]:
    """Ask the hub to start ``user``'s ``server`` in a thread that follows its progress as
    the user's spawn-pending page does; ``result["events"]`` fills as the events arrive."""
    hub, result = scenario.hub, {"events": []}

    def run():
        try:
            hub.create_user(user)
            result["answer"], _ = hub.follow_start(
                lambda: hub.api(
                    "POST",
                    f"/users/{user}/servers/{server}",
                    {"outpost": "hpc", "flavor": "batch", **options},
                ),
                user,
                server,
                timeout=240,
                into=result["events"],
            )
        except Exception as e:  # reported by the test
            result["error"] = repr(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def messages(events: list[dict]) -> list[str]:
    return [e.get("message", "") for e in list(events)]


def job_processes(scenario, job: str) -> list[int]:
    """The processes of Slurm job ``job`` on node1 (they carry SLURM_JOB_ID)."""
    mark = f"SLURM_JOB_ID={job}".encode()
    pids = []
    for pid in scenario.service_pids():
        try:
            if mark in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                pids.append(pid)
        except OSError:  # ended meanwhile
            pass
    return pids


@pytest.fixture(scope="module")
def never_listening_start(scenario):
    """carol's start of a job whose server never listens, begun in the background as soon as
    the scenario is up: report_address gives up after 15 s and the job ends."""
    return start_in_background(scenario, "carol", "never", e2e_fault="never-listens")


def test_two_users_start_named_servers_at_once_progress_data_path_and_clean_stop(
    scenario, never_listening_start, kernel_server
):
    # carol's failing job and kernel_server (for the faults below) run alongside
    two_users_at_once(scenario)
    # each address came from the job itself, through the site's relay
    lines = scenario.log_tail(3000)
    for user, server in (("alice", "lab"), ("bob", "lab2")):
        assert f"POST /hub/api/outpost/setuptunnel/{user}/{server} " in lines, user
    assert "egress_proxy: relay" in lines
    job_logs = "".join(p.read_text() for p in Path(scenario.topo.path("homes/bob")).glob("*.log"))
    assert "report_address: reported" in job_logs


def test_job_that_dies_before_it_reports_fails_the_start_clearly_and_leaves_no_job(
    scenario, never_listening_start
):
    thread, result = never_listening_start
    thread.join(240)
    assert not thread.is_alive(), "carol's start neither failed nor succeeded"
    assert "error" not in result, result
    status, body = result["answer"]
    assert status == 202, body
    events = result["events"]
    assert events[-1].get("failed"), events
    message = events[-1]["message"]
    assert "ended (exit status 1) before it reported its address" in message, message
    wait_until(
        lambda: scenario.hub.server_model("carol", "never") is None, 60, "the failed server gone"
    )
    assert jobs(scenario, "carol") == []
    assert not [s for s in scenario.outpost_services(HPC) if s["name"].endswith("-never")]


def test_start_waits_in_the_queue_while_the_node_is_full_and_runs_when_it_frees(scenario):
    blocker = block_the_node(scenario)
    try:
        thread, result = start_in_background(scenario, "dave", "queued")
        try:
            wait_until(
                lambda: [j for j in jobs(scenario, "dave") if j.endswith("PENDING Resources")],
                60,
                "dave's job waiting for node1's CPUs",
            )
            # what dave's progress page shows while the job waits
            try:
                wait_until(
                    lambda: "Pending in queue..." in messages(result["events"]),
                    60,
                    "the wait in dave's progress stream",
                )
            except TimeoutError:
                raise AssertionError(f"dave's progress never showed the wait: {result}") from None
            assert thread.is_alive() and scenario.hub.server_model("dave", "queued")["pending"]
        finally:
            slurm(scenario, "scancel", blocker)
        thread.join(240)
        assert "error" not in result, result
        assert result["answer"][0] in (201, 202), result["answer"]
        assert result["events"][-1].get("ready"), result["events"]
    finally:  # a failure above leaves no job behind for the tests after it
        scenario.hub.stop_server("dave", "queued", timeout=90)
    wait_until(lambda: jobs(scenario, "dave") == [], 60, "dave's job ended")


def test_start_stopped_while_its_job_is_pending_leaves_no_job_and_no_server(scenario):
    blocker = block_the_node(scenario)
    try:
        thread, result = start_in_background(scenario, "erin", "waiting")
        wait_until(lambda: jobs(scenario, "erin"), 60, "erin's job in the queue")
        (line,) = jobs(scenario, "erin")
        job, state = line.split()[:2]
        assert state == "PENDING"
        status, body = scenario.hub.api("DELETE", "/users/erin/servers/waiting")
        assert status in (202, 204), body
        thread.join(120)
        assert not thread.is_alive() and "error" not in result, result
        wait_until(lambda: job_state(scenario, job) == "CANCELLED", 60, f"job {job} cancelled")
        assert "RunTime=00:00:00" in slurm(scenario, "scontrol", "show", "job", job)
        wait_until(
            lambda: scenario.hub.server_model("erin", "waiting") is None, 60, "no server at the hub"
        )
        assert not [s for s in scenario.outpost_services(HPC) if s["name"].endswith("-waiting")]
        assert not [k for k in scenario.forwards() if k.endswith("-waiting")]
    finally:
        slurm(scenario, "scancel", blocker)


def test_server_whose_job_dies_is_stopped_at_the_hub_and_leaves_nothing(scenario):
    scenario.hub.create_user("frank")
    events = scenario.hub.start_server(
        "frank", "doomed", {"outpost": "hpc", "flavor": "batch"}, timeout=180
    )
    assert events[-1].get("ready"), events
    (line,) = jobs(scenario, "frank")
    job = line.split()[0]
    pids = job_processes(scenario, job)
    assert pids
    for pid in pids:  # the job dies: its batch script, srun and the server are killed
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: job_state(scenario, job) == "FAILED", 60, f"job {job} failed")
    # the hub's poll (every 10 s here) asks the Outpost, which asks Slurm
    wait_until(
        lambda: not (scenario.hub.server_model("frank", "doomed") or {}).get("ready"),
        90,
        "the hub to see the server gone",
    )
    wait_until(
        lambda: not [k for k in scenario.forwards() if k.endswith("-doomed")], 60, "forward removed"
    )
    wait_until(
        lambda: (
            not [
                s
                for s in scenario.outpost_services(HPC)
                if s["name"].endswith("-doomed") and s.get("status") == "running"
            ]
        ),
        60,
        "the Outpost to see the server ended",
    )
    scenario.hub.api("DELETE", "/users/frank/servers/doomed")


def test_killed_outpost_restarts_and_server_answers_again_with_same_kernel(scenario, kernel_server):
    kernel_server.survives(lambda: scenario.topo.kill_service("outpost", signal.SIGKILL))


def test_restarted_hub_routes_to_the_same_server_and_kernel(scenario, kernel_server):
    kernel_server.survives(lambda: restart_hub(scenario))


def test_server_that_survived_the_faults_stops_clean(kernel_server):
    kernel_server.stop()


def test_down_leaves_no_job_process_namespace_veth_or_bridge(scenario):
    wait_until(lambda: jobs(scenario) == [], 60, "no job left in Slurm")
    down_leaves_nothing(scenario)
