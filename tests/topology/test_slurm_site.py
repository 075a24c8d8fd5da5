"""A real Slurm cluster under the topology runner (Debian's munged, slurmctld, slurmd), driven
by LabSlurmSpawner as the delayed-tunnel scenario's Outpost drives it: jobs run on the
compute host, wait in the queue while it is full, can be cancelled while pending, and a job
that dies is seen by ``poll``. The spawner runs in this process; its Slurm commands run on
the login host (batchspawner's ``exec_prefix``)."""

import asyncio
import os
import re
import signal
import subprocess
import sys
from types import SimpleNamespace

import pytest
import pytest_asyncio
from jupyterhub.objects import Hub
from jupyterhub.utils import exponential_backoff
from outpost_scenarios.runner import Topology
from outpost_scenarios.slurm_spawner import LabSlurmSpawner

SCENARIO = os.path.join(os.path.dirname(__file__), "slurm_site")
pytestmark = [pytest.mark.netns, pytest.mark.asyncio(loop_scope="module")]

# a tiny stand-in for jupyterhub-singleuser: listens where JUPYTERHUB_SERVICE_URL says
FAKE_SINGLEUSER = [
    sys.executable,
    "-c",
    "import http.server, os, urllib.parse as u\n"
    "p = u.urlsplit(os.environ['JUPYTERHUB_SERVICE_URL'])\n"
    "http.server.HTTPServer((p.hostname, p.port), http.server.SimpleHTTPRequestHandler)"
    ".serve_forever()\n",
]


class Site:
    def __init__(self, topo: Topology):
        self.topo = topo
        self.conf = topo.path("files/slurm/slurm.conf")
        self.env = dict(os.environ, SLURM_CONF=self.conf)

    async def slurm(self, host: str, *argv: str, stdin: str = "") -> str:
        """A Slurm command on ``host`` (by its name); its output (fails the test on an error)."""
        proc = await self.topo.host(host).create_subprocess_exec(
            *argv, named=True, stdin=-1, stdout=-1, stderr=-1, env=self.env
        )
        out, err = await proc.communicate(stdin.encode())
        assert proc.returncode == 0, f"{argv}: {err.decode()}"
        return out.decode().strip()

    async def job_state(self, job: str) -> str:
        out = await self.slurm("login", "scontrol", "show", "job", job)
        return re.search(r"JobState=(\S+)", out).group(1)

    async def block_the_node(self) -> str:
        """A job that takes every CPU of node1; its id."""
        script = "#!/bin/sh\nsleep 600\n"
        job = await self.slurm(
            "login",
            "sbatch",
            "--parsable",
            "--cpus-per-task=4",
            "--job-name=blocker",
            "--output=/dev/null",
            stdin=script,
        )
        await self.until(lambda: self.job_state(job), "RUNNING", f"blocker {job} runs")
        return job

    def job_processes(self, job: str) -> list[int]:
        """The processes of Slurm job ``job`` on node1 (they carry SLURM_JOB_ID)."""
        ns = self.topo.host("node1").netns
        listed = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
        mark = f"SLURM_JOB_ID={job}".encode()
        pids = []
        for pid in map(int, listed.stdout.split()):
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    if mark in f.read().split(b"\0"):
                        pids.append(pid)
            except OSError:  # ended meanwhile
                pass
        return pids

    def reports(self) -> list[str]:
        """The addresses the stand-in hub was sent, in order."""
        return re.findall(r"setuptunnel alice/_default service=(\S+)", "\n".join(self.hub_lines()))

    def hub_lines(self) -> list[str]:
        with open(self.topo.path("logs/hub.log")) as f:
            return f.read().splitlines()

    @staticmethod
    async def until(get, expected, what: str, timeout: float = 60):
        async def check():
            return await get() == expected

        await exponential_backoff(check, f"{what} (expected {expected})", timeout=timeout)

    def spawner(self, **kwargs) -> LabSlurmSpawner:
        topo = self.topo
        relay = f"http://{topo.host('login').address('site')}:{topo.port('egress', 'hub')}"
        user = SimpleNamespace(name="alice", escaped_name="alice", url="/user/alice/", id=1)
        login_ns = topo.host("login").netns
        return LabSlurmSpawner(
            user=user,
            hub=Hub(),
            api_token=topo.secret("server_token"),
            oauth_client_id="jupyterhub-user-alice",
            cmd=FAKE_SINGLEUSER,
            environment={
                "JUPYTERHUB_SETUPTUNNEL_URL": f"{relay}/hub/api/outpost/setuptunnel/alice/_default"
            },
            homes_dir=topo.path("homes"),
            exec_prefix=f"ip netns exec {login_ns}" if login_ns else "",
            **kwargs,
        )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("slurm-site")
    async with Topology.up(SCENARIO, run_dir=str(run_dir), sink=lambda name, line: None) as topo:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("SLURM_CONF", topo.path("files/slurm/slurm.conf"))  # for the spawner
            yield Site(topo)


async def test_a_job_runs_on_the_compute_host_and_reports_its_address_through_the_relay(site):
    spawner = site.spawner()
    assert await asyncio.wait_for(spawner.start(), 60) == ""  # delayed tunneling
    assert spawner.ip == "node1"  # the node Slurm picked, by its name
    assert await site.job_state(spawner.job_id) == "RUNNING"

    async def reported():
        return bool(site.reports())

    await exponential_backoff(reported, "the job reports its address", timeout=60)
    host, port = site.reports()[-1].rsplit(":", 1)
    assert host == site.topo.host("node1").ip
    # the hub cannot reach the job's server; the login host (the tunnel's way) can
    assert not await site.topo.host("hub").can_connect(host, int(port))
    assert await site.topo.host("login").can_connect(host, int(port))
    job = spawner.job_id
    await spawner.stop()
    assert await site.job_state(job) == "CANCELLED"
    assert await spawner.poll() == 1
    assert not await site.topo.host("login").can_connect(host, int(port))


async def test_a_job_waits_in_the_queue_while_the_node_is_full_then_runs(site):
    blocker, spawner, start = await _start_on_a_full_node(site)
    try:
        events = spawner.progress()
        assert (await anext(events))["message"] == "Pending in queue..."
        await events.aclose()
        assert not start.done()
        job = spawner.job_id
        # the scheduler looked at it and found node1's CPUs taken
        await site.until(
            lambda: site.slurm("login", "squeue", "-h", "-j", job, "-o", "%r"),
            "Resources",
            "the reason it waits",
        )
        assert await site.job_state(job) == "PENDING" and not start.done()
        await site.slurm("login", "scancel", blocker)
        assert await asyncio.wait_for(start, 60) == ""
        assert await site.job_state(job) == "RUNNING"
    finally:
        await _end(start)
        await spawner.stop(now=True)
        await site.slurm("login", "scancel", blocker)


async def test_a_job_cancelled_while_pending_is_gone_and_nothing_of_it_ran(site):
    blocker, spawner, start = await _start_on_a_full_node(site)
    try:
        job = spawner.job_id
        await _end(start)  # what the Outpost does when the hub stops a pending start
        await spawner.stop()
        assert await site.job_state(job) == "CANCELLED"
        assert "RunTime=00:00:00" in await site.slurm("login", "scontrol", "show", "job", job)
        assert await spawner.poll() == 1
    finally:
        await site.slurm("login", "scancel", blocker)


async def test_a_job_that_dies_is_seen_by_poll(site):
    spawner = site.spawner()
    assert await asyncio.wait_for(spawner.start(), 60) == ""
    job = spawner.job_id
    assert await spawner.poll() is None

    async def launched():
        return bool(site.job_processes(job))

    await exponential_backoff(launched, "the job's processes on node1", timeout=30)
    pids = site.job_processes(job)
    for pid in pids:  # the job's processes die (the batch script, srun, the server)
        os.kill(pid, signal.SIGKILL)

    async def ended():
        return await spawner.poll() == 1

    await exponential_backoff(ended, "poll to see the job gone", timeout=60)
    assert await site.job_state(job) == "FAILED"
    assert site.job_processes(job) == []


async def test_user_options_cannot_replace_the_jobs_command(site):
    # batchspawner merges user_options (the hub's users choose them) over the job script's
    # values; the job Slurm got still runs the site's command in the user's home
    spawner = site.spawner()
    spawner.user_options = {"cmd": "touch /tmp/should-not-run", "srun": "", "homedir": "/"}
    assert await asyncio.wait_for(spawner.start(), 60) == ""
    try:
        script = await site.slurm("login", "scontrol", "write", "batch_script", spawner.job_id, "-")
    finally:
        await spawner.stop(now=True)
    assert "should-not-run" not in script
    assert "srun " in script and "outpost_scenarios.report_address" in script
    assert f'--chdir="{spawner.req_homedir}"' in script


async def _end(task: asyncio.Future) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _start_on_a_full_node(site):
    """A start whose job waits in the queue behind a job that takes node1's CPUs:
    (the blocker's job id, the spawner, its start task)."""
    blocker = await site.block_the_node()
    spawner = site.spawner()
    start = asyncio.ensure_future(spawner.start())

    async def pending():
        return bool(spawner.job_id) and await site.job_state(spawner.job_id) == "PENDING"

    await exponential_backoff(pending, "the server's job pending in the queue", timeout=30)
    return blocker, spawner, start
