"""minibatch and report_address: jobs really queue, start on the compute host, report, cancel."""

import asyncio
import json
import os
import shlex
import sys

import pytest
from jupyterhub.utils import exponential_backoff
from outpost_scenarios import netns
from outpost_scenarios.minibatch import ScriptError, parse_script
from tornado import web

MB = [sys.executable, "-m", "outpost_scenarios.minibatch"]
REPORT = f"{sys.executable} -m outpost_scenarios.report_address"
HUB_TOKEN = "server-token-123"


class FakeHub:
    """Receives setuptunnel POSTs like the hub's handler would (token checked)."""

    def __init__(self):
        self.reports = []
        hub = self

        class SetupTunnel(web.RequestHandler):
            def check_xsrf_cookie(self):
                pass

            def post(self, user, server):
                if self.request.headers.get("Authorization") != f"token {HUB_TOKEN}":
                    raise web.HTTPError(403)
                hub.reports.append((user, server, json.loads(self.request.body)))
                self.finish({})

        self.app = web.Application([(r"/hub/api/outpost/setuptunnel/([^/]+)/([^/]+)", SetupTunnel)])


@pytest.fixture
async def site(tmp_path):
    """A compute host running minibatch, an Outpost host that submits, a hub that listens."""
    lab = netns.Lab(isolation=True)
    try:
        # host_access: the fake hub in this (root) namespace is reachable from the node
        lab.add_network("compute", host_access=True)
        outpost = lab.add_host("outpost", ["compute"])
        node = lab.add_host("node", ["compute"])
        gateway = lab.networks["compute"].gateway
        hub = FakeHub()
        server = hub.app.listen(0, address=gateway)
        hub_port = next(iter(server._sockets.values())).getsockname()[1]
        token_file = tmp_path / "token"
        token_file.write_text("mb-token\n")
        site = type("Site", (), {})()
        site.lab, site.outpost, site.node, site.hub = lab, outpost, node, hub
        site.token_file = str(token_file)
        site.server = f"http://{node.ip}:6820"
        site.setuptunnel = f"http://{gateway}:{hub_port}/hub/api/outpost/setuptunnel/alice/_default"
        site.state_dir = str(tmp_path / "state")

        async def start_daemon(*extra):
            site.daemon = await node.create_subprocess_exec(
                *MB,
                "serve",
                "--ip",
                node.ip,
                "--port",
                "6820",
                "--state-dir",
                site.state_dir,
                "--token-file",
                site.token_file,
                *extra,
            )
            await exponential_backoff(
                lambda: outpost.can_connect(node.ip, 6820), "minibatch daemon", timeout=20
            )

        site.start_daemon = start_daemon
        yield site
        server.stop()
    finally:
        await lab.aclose()


async def mb(site, *args, stdin=None, env=None):
    """Run a minibatch client command on the Outpost host."""
    full_env = dict(os.environ, MINIBATCH_SERVER=site.server, MINIBATCH_TOKEN_FILE=site.token_file)
    full_env.update(env or {})
    proc = await site.outpost.create_subprocess_exec(
        *MB,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=full_env,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin else None), 30)
    return proc.returncode, out.decode().strip(), err.decode().strip()


async def status(site, job_id):
    rc, out, err = await mb(site, "status", job_id)
    assert rc == 0, err
    return dict(part.split("=", 1) for part in shlex.split(out) if "=" in part)


async def wait_state(site, job_id, predicate, what, timeout=30):
    async def check():
        return predicate(await status(site, job_id))

    await exponential_backoff(check, f"job {job_id}: {what}", timeout=timeout)
    return await status(site, job_id)


def job_processes(site, job_id):
    """pids on the compute host whose environment names this job."""
    pids = []
    out = netns._ip("netns", "pids", site.node.netns, check=False).stdout
    for pid in out.split():
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if f"MINIBATCH_JOB_ID={job_id}".encode() in f.read().split(b"\0"):
                    pids.append(int(pid))
        except OSError:
            pass
    return pids


SERVER_SCRIPT = f"""#!minibatch
#MB name=server
# report_address picks a port, starts the server, reports it to the hub and to minibatch
{REPORT} --timeout 30 -- {sys.executable} -m http.server --bind {{ip}} {{port}}
"""


@pytest.mark.netns
async def test_job_queues_starts_reports_its_address_and_is_cancelled(site):
    await site.start_daemon("--slots", "1")
    env = {"JUPYTERHUB_SETUPTUNNEL_URL": site.setuptunnel, "JUPYTERHUB_API_TOKEN": HUB_TOKEN}
    rc, first, err = await mb(site, "submit", stdin=SERVER_SCRIPT, env=env)
    assert rc == 0, err
    rc, second, err = await mb(site, "submit", stdin=SERVER_SCRIPT, env=env)
    assert rc == 0 and first != second

    running = await wait_state(site, first, lambda s: "address" in s, "reports its address")
    assert running["state"] == "RUNNING" and running["host"] == site.node.ip
    # one slot: the second job really waits in the queue
    assert (await status(site, second))["state"] == "PENDING"
    # the hub got the same address, with the server's token
    assert site.hub.reports == [("alice", "_default", {"service": running["address"]})]
    host, port = running["address"].rsplit(":", 1)
    assert host == site.node.ip
    assert await site.outpost.can_connect(host, int(port))
    assert job_processes(site, first)

    rc, out, err = await mb(site, "cancel", first)
    assert rc == 0 and "state=CANCELLED" in out, err
    assert job_processes(site, first) == []
    assert not await site.outpost.can_connect(host, int(port))
    assert not os.path.exists(os.path.join(site.state_dir, "jobs", first))

    # the freed slot starts the queued job
    await wait_state(site, second, lambda s: "address" in s, "second job reports")
    rc, out, _ = await mb(site, "list")
    assert f"job={first} state=CANCELLED" in out and f"job={second} state=RUNNING" in out


@pytest.mark.netns
async def test_job_that_never_reports_an_address_is_cancelled_and_leaves_nothing(site, tmp_path):
    await site.start_daemon("--address-timeout", "1", "--cancel-grace", "2")
    pid_file = tmp_path / "job.pid"
    # the job writes down its pid (outside its working dir) and never reports an address
    script = (
        "#MB name=silent\n"
        f"{sys.executable} -c 'import os, time; "
        f'open("{pid_file}.tmp", "w").write(str(os.getpid())); '
        f'os.rename("{pid_file}.tmp", "{pid_file}"); time.sleep(600)\'\n'
    )
    rc, job, err = await mb(site, "submit", stdin=script)
    assert rc == 0, err
    final = await wait_state(site, job, lambda s: s["state"] == "CANCELLED", "cancelled", 60)
    assert final["reason"] == "no address reported within 1s"
    pid = int(pid_file.read_text())  # it really ran
    assert not os.path.exists(f"/proc/{pid}") or netns._is_zombie(pid)
    assert job_processes(site, job) == []
    assert os.listdir(os.path.join(site.state_dir, "jobs")) == []


@pytest.mark.netns
async def test_daemon_stop_ends_every_job(site):
    await site.start_daemon("--slots", "2")
    jobs = [(await mb(site, "submit", stdin="sleep 600\n"))[1] for _ in range(2)]
    for job in jobs:
        await wait_state(site, job, lambda s: s["state"] == "RUNNING", "runs")
    site.daemon.terminate()
    assert await asyncio.wait_for(site.daemon.wait(), 30) == 0
    assert all(job_processes(site, job) == [] for job in jobs)


@pytest.mark.netns
async def test_client_errors_are_clear(site):
    await site.start_daemon()
    rc, _, err = await mb(site, "status", "999")
    assert rc == 1 and "no job 999" in err
    rc, _, err = await mb(site, "submit", stdin="#MB name=x\n")
    assert rc == 1 and "no command line" in err
    rc, _, err = await mb(site, "status", "1", env={"MINIBATCH_TOKEN_FILE": "/dev/null"})
    assert rc == 1 and "403" in err


def test_job_script_is_parsed_without_a_shell():
    script = parse_script(
        "#!minibatch\n#MB name=lab runtime=01:30 export=A,B\n\n# comment\n"
        "echo 'a b' \"c\"\nprog --x=1\n"
    )
    assert script.name == "lab" and script.runtime == 90 and script.export == "A,B"
    assert script.commands == [["echo", "a b", "c"], ["prog", "--x=1"]]
    multi = parse_script("python -c 'a = 1\nprint(a)' --x \\\n  --y\ntrue\n")
    assert multi.commands == [["python", "-c", "a = 1\nprint(a)", "--x", "--y"], ["true"]]
    with pytest.raises(ScriptError, match="never ends"):
        parse_script("echo 'open\n")
    with pytest.raises(ScriptError, match="unknown directive"):
        parse_script("#MB nodes=3\ntrue\n")


# a tiny stand-in for jupyterhub-singleuser: listens where JUPYTERHUB_SERVICE_URL says
FAKE_SINGLEUSER = [
    sys.executable,
    "-c",
    "import http.server, os, urllib.parse as u\n"
    "p = u.urlsplit(os.environ['JUPYTERHUB_SERVICE_URL'])\n"
    "http.server.HTTPServer((p.hostname, p.port), http.server.SimpleHTTPRequestHandler).serve_forever()\n",
]


def make_spawner(site, **kwargs):
    from types import SimpleNamespace

    from jupyterhub.objects import Hub
    from outpost_scenarios.minibatch_spawner import MiniBatchSpawner

    user = SimpleNamespace(name="alice", escaped_name="alice", url="/user/alice/", id=1)
    return MiniBatchSpawner(
        user=user,
        hub=Hub(),
        api_token=HUB_TOKEN,
        oauth_client_id="jupyterhub-user-alice",
        cmd=FAKE_SINGLEUSER,
        environment={"JUPYTERHUB_SETUPTUNNEL_URL": site.setuptunnel},
        minibatch_server=site.server,
        minibatch_token_file=site.token_file,
        **kwargs,
    )


@pytest.mark.netns
async def test_minibatch_spawner_delayed_start_reports_to_hub_and_stop_cancels(site):
    await site.start_daemon("--start-delay", "0.5")
    spawner = make_spawner(site)
    assert await asyncio.wait_for(spawner.start(), 60) == ""
    assert spawner.job_id and await spawner.poll() is None
    assert spawner.ip == site.node.ip

    async def reported():
        return bool(site.hub.reports)

    await exponential_backoff(reported, "the job reports to the hub", timeout=30)
    ((_, _, body),) = site.hub.reports
    host, port = body["service"].rsplit(":", 1)
    assert host == site.node.ip and await site.outpost.can_connect(host, int(port))
    job = spawner.job_id
    await spawner.stop(now=True)
    assert job_processes(site, job) == []
    assert await spawner.poll() == 1


@pytest.mark.netns
async def test_minibatch_spawner_returns_the_reported_address_when_not_delayed(site):
    await site.start_daemon()
    spawner = make_spawner(site, delayed_address=False)
    host, port = await asyncio.wait_for(spawner.start(), 60)
    assert host == site.node.ip and await site.outpost.can_connect(host, port)
    await spawner.stop(now=True)


async def test_minibatch_spawner_stop_after_a_failed_submission_succeeds(tmp_path):
    from types import SimpleNamespace

    token_file = tmp_path / "token"
    token_file.write_text("t")
    nowhere = SimpleNamespace(
        setuptunnel="http://127.0.0.1:1/x", server="http://127.0.0.1:1", token_file=str(token_file)
    )
    spawner = make_spawner(nowhere)
    with pytest.raises(RuntimeError, match="cannot reach the scheduler"):
        await spawner.start()
    assert not spawner.job_id
    await spawner.stop(now=True)  # was: `minibatch cancel` run without a job id, which failed
