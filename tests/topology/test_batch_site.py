"""The delayed-tunnel network shape, as a topology: a job on a node the hub cannot reach
reports its address to the hub through the site's egress proxy."""

import os
import re
import sys

import pytest
from jupyterhub.utils import exponential_backoff
from jupyterhub_outpost.topology.runner import Topology

SCENARIO = os.path.join(os.path.dirname(__file__), "batch_site")
REPORT = f"{sys.executable} -m jupyterhub_outpost.topology.report_address"
MB = [sys.executable, "-m", "jupyterhub_outpost.topology.minibatch"]


@pytest.mark.netns
async def test_batch_job_reports_to_unreachable_hub_through_egress_proxy(tmp_path):
    async with Topology.up(SCENARIO, run_dir=str(tmp_path), sink=lambda name, line: None) as topo:
        hub, login = topo.host("hub"), topo.host("login")
        env = dict(
            os.environ,
            MINIBATCH_SERVER=f"http://{topo.host('node1').ip}:{topo.port('minibatch', 'api')}",
            MINIBATCH_TOKEN_FILE=topo.path("secrets/minibatch"),
            JUPYTERHUB_API_TOKEN=topo.secret("server_token"),
            JUPYTERHUB_SETUPTUNNEL_URL=(
                f"http://{hub.ip}:{topo.port('hub', 'http')}"
                "/hub/api/outpost/setuptunnel/alice/_default"
            ),
        )
        script = f"{REPORT} -- {sys.executable} -m http.server --bind {{ip}} {{port}}\n"
        proc = await login.create_subprocess_exec(
            *MB, "submit", stdin=-1, stdout=-1, stderr=-1, env=env
        )
        out, err = await proc.communicate(script.encode())
        assert proc.returncode == 0, err
        job = out.decode().strip()

        def reported():
            for line in topo.service("hub").tail:
                m = re.search(r"setuptunnel alice/_default service=(\S+)", line)
                if m:
                    return m.group(1)
            return None

        async def check():
            return reported() is not None

        await exponential_backoff(check, "the job reports to the hub", timeout=60)
        host, port = reported().rsplit(":", 1)
        assert host == topo.host("node1").ip
        # the hub got the address but cannot reach it; the Outpost host can (the tunnel's way)
        assert not await hub.can_connect(host, int(port))
        assert await login.can_connect(host, int(port))
        assert any("egress_proxy: POST" in line for line in topo.service("egress").tail)

        proc = await login.create_subprocess_exec(*MB, "cancel", job, stdout=-1, env=env)
        out, _ = await proc.communicate()
        assert "state=CANCELLED" in out.decode()
        assert not await login.can_connect(host, int(port))
