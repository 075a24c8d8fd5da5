"""The Outpost SIGKILLed in the middle of a start, seen from a real hub: the user gets a
clear failure, and once the Outpost is back nothing is left: no server process, no row.

The Outpost runs a spawner that launches the server process first and then waits (as a
batch spawner submits a job and waits for it to run), so the kill lands while a process
already exists and the start has not returned.
"""

import json
import sys
import threading

import pytest

from tests.helpers.hub_process import CHP, HubProcess, wait_until
from tests.helpers.outpost_process import OutpostProcess, process_alive
from tests.outpost.support import MINI_SINGLEUSER

pytestmark = pytest.mark.slow

OUTPOST_CONFIG = """
import asyncio, os
from jupyterhub.spawner import SimpleLocalProcessSpawner


class LaunchThenWaitSpawner(SimpleLocalProcessSpawner):
    async def start(self):
        address = await super().start()          # the process exists from here on
        marker = os.path.join({marker_dir!r}, f"started-{{self.pid}}")
        open(marker, "w").close()
        for _ in range(600):                      # ... and the start waits (up to 60 s)
            await asyncio.sleep(0.1)
        return address


c.JupyterHubOutpost.spawner_class = LaunchThenWaitSpawner
c.LaunchThenWaitSpawner.cmd = [{python!r}, {mini!r}]
c.LaunchThenWaitSpawner.home_dir_template = {home!r}
c.LaunchThenWaitSpawner.start_timeout = 120
"""

HUB_CONFIG = """
from jupyterhub_outpost.hub import outpost_handlers, flavors_scope
c.JupyterHub.spawner_class = "outpost"
c.JupyterHub.extra_handlers = outpost_handlers()
c.JupyterHub.custom_scopes = flavors_scope()
c.OutpostSpawner.outposts = {outposts!r}
c.OutpostSpawner.stop_retry_timeout = 120
c.Spawner.start_timeout = 120
"""


@pytest.fixture
def rig(tmp_path):
    if not CHP.exists():
        print(f"SKIP: configurable-http-proxy is not installed ({CHP})")
        pytest.skip(f"configurable-http-proxy is not installed ({CHP})")
    markers = tmp_path / "markers"
    markers.mkdir()
    config = tmp_path / "outpost_config.py"
    config.write_text(
        OUTPOST_CONFIG.format(
            marker_dir=str(markers),
            python=sys.executable,
            mini=MINI_SINGLEUSER,
            home=str(tmp_path / "home" / "{username}"),
        )
    )
    outpost = OutpostProcess(config, tmp_path / "data", hub_credentials={"hub": "hub-secret"})
    hub = None
    try:
        outpost.start()
        outposts = {
            "site": {
                "url": outpost.url,
                "hub_name": "hub",
                "secret": "hub-secret",
                "direct": True,
                "display_name": "Site",
            }
        }
        hub = HubProcess(tmp_path / "hub", HUB_CONFIG.format(outposts=outposts))
        hub.create_user("alice")
        yield hub, outpost, markers
    finally:
        if hub is not None:
            hub.close()
        outpost.close()


def services(outpost) -> list:
    import urllib.request

    request = urllib.request.Request(outpost.url + "/services", headers=outpost.auth("hub"))
    with urllib.request.urlopen(request, timeout=15) as response:
        return json.loads(response.read())


def test_outpost_killed_during_a_start_fails_it_clearly_and_leaves_nothing(rig):
    hub, outpost, markers = rig
    answer = {}

    def start():
        answer["start"] = hub.api(
            "POST", "/users/alice/servers/k", {"outpost": "site"}, timeout=150
        )

    thread = threading.Thread(target=start, daemon=True)
    thread.start()
    marker = wait_until(lambda: next(markers.iterdir(), None), 60, "the server process launched")
    pid = int(marker.name.split("-")[1])
    assert process_alive(pid)
    outpost.kill()  # SIGKILL in the middle of start()

    # the hub shows a clear failure: the spawn ends, the server is not running
    wait_until(
        lambda: (m := hub.server_model("alice", "k")) is None or not m.get("pending"),
        60,
        "the hub to give up the start",
    )
    model = hub.server_model("alice", "k")
    assert model is None or not model.get("ready"), model
    thread.join(60)
    log = hub.log_text()
    assert "Outpost 'site'" in log and ("not reachable" in log or "did not answer" in log), (
        hub.log_tail()
    )

    # the Outpost comes back: the half-started server is ended, its process is gone, and
    # the hub's retried stop removes the row
    outpost.start()
    wait_until(lambda: not process_alive(pid), 60, "the orphaned server process ended")
    wait_until(lambda: services(outpost) == [], 90, "no row left at the Outpost")
