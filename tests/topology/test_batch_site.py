"""The delayed-tunnel network shape, as a topology: a job on a node the hub cannot reach
reports its address to the hub through the site's egress on the login host."""

import os
import re
import sys

import pytest
from jupyterhub.utils import exponential_backoff
from outpost_scenarios.runner import Topology

SCENARIO = os.path.join(os.path.dirname(__file__), "batch_site")
REPORT = f"{sys.executable} -m outpost_scenarios.report_address"
MB = [sys.executable, "-m", "outpost_scenarios.minibatch"]


def job_env(topo, **extra):
    """What the Outpost's spawner would hand the job (the hub's own URLs)."""
    hub = f"http://{topo.host('hub').ip}:{topo.port('hub', 'http')}"
    return dict(
        os.environ,
        MINIBATCH_SERVER=f"http://{topo.host('node1').ip}:{topo.port('minibatch', 'api')}",
        MINIBATCH_TOKEN_FILE=topo.path("secrets/minibatch"),
        JUPYTERHUB_API_TOKEN=topo.secret("server_token"),
        JUPYTERHUB_API_URL=f"{hub}/hub/api",
        JUPYTERHUB_SETUPTUNNEL_URL=f"{hub}/hub/api/outpost/setuptunnel/alice/_default",
        **extra,
    )


async def minibatch(topo, *args, stdin="", env):
    proc = await topo.host("login").create_subprocess_exec(
        *MB, *args, stdin=-1, stdout=-1, stderr=-1, env=env
    )
    out, err = await proc.communicate(stdin.encode())
    assert proc.returncode == 0, err
    return out.decode().strip()


async def reported_address(topo, timeout=60):
    def reported():
        for line in topo.service("hub").tail:
            m = re.search(r"setuptunnel alice/_default service=(\S+)", line)
            if m:
                return m.group(1)
        return None

    async def check():
        return reported() is not None

    await exponential_backoff(check, "the job reports to the hub", timeout=timeout)
    host, port = reported().rsplit(":", 1)
    return host, int(port)


@pytest.mark.netns
async def test_batch_job_reports_to_unreachable_hub_through_the_site_relay(tmp_path):
    async with Topology.up(SCENARIO, run_dir=str(tmp_path), sink=lambda name, line: None) as topo:
        hub, login = topo.host("hub"), topo.host("login")
        env = job_env(topo)
        script = f"{REPORT} -- {sys.executable} -m http.server --bind {{ip}} {{port}}\n"
        job = await minibatch(topo, "submit", stdin=script, env=env)
        host, port = await reported_address(topo)
        assert host == topo.host("node1").ip
        # the hub got the address but cannot reach it; the Outpost host can (the tunnel's way)
        assert not await hub.can_connect(host, port)
        assert await login.can_connect(host, port)
        # the job used the hub's URL; the site rewrote it to its relay
        assert any("egress_proxy: relay" in line for line in topo.service("egress").tail)

        assert "state=CANCELLED" in await minibatch(topo, "cancel", job, env=env)
        assert not await login.can_connect(host, port)


@pytest.mark.netns
@pytest.mark.slow
async def test_real_singleuser_on_a_node_checks_the_hub_through_the_relay_and_reports(tmp_path):
    async with Topology.up(SCENARIO, run_dir=str(tmp_path), sink=lambda name, line: None) as topo:
        env = job_env(
            topo,
            HOME=str(tmp_path),
            JUPYTERHUB_SERVICE_URL="http://0.0.0.0:0/user/alice/",
            JUPYTERHUB_USER="alice",
            JUPYTERHUB_CLIENT_ID="jupyterhub-user-alice",
            JUPYTERHUB_BASE_URL="/",
            JUPYTERHUB_SERVICE_PREFIX="/user/alice/",
            JUPYTERHUB_OAUTH_CALLBACK_URL="/user/alice/oauth_callback",
        )
        # jupyterhub-singleuser exits unless it reaches JUPYTERHUB_API_URL first
        script = (
            f"{REPORT} --timeout 90 -- {sys.executable} -m jupyterhub.singleuser --allow-root\n"
        )
        job = await minibatch(topo, "submit", stdin=script, env=env)
        host, port = await reported_address(topo, timeout=90)
        assert host == topo.host("node1").ip
        assert await topo.host("login").can_connect(host, port)
        assert "state=CANCELLED" in await minibatch(topo, "cancel", job, env=env)
