"""A kill in the middle of a start, with a real hub and a real Outpost.

- The Outpost SIGKILLed: the user gets a clear failure, and once the Outpost is back nothing
  is left: no server process, no row.
- The hub SIGKILLed (with its proxy): when it comes back it ends the start it had asked for,
  so the Outpost is left with no process and no row, and the user can start again.

The Outpost runs a spawner that launches the server process first and then waits while a
hold file exists (as a batch spawner submits a job and waits for it to run), so the kill
lands while a process already exists and the start has not returned.

The Outpost stores a starting spawner's state as soon as one of its traits changes (here the
pid). The Outpost kill waits until that row holds a state: a SIGKILL in the milliseconds
between the launch and that write cannot be recovered for a spawner that finds its process
only by its state (a pid; KubeSpawner finds its pod by name), and this test does not claim it.
"""

import json
import sqlite3
import sys
import threading

import pytest
from jupyterhub_outpost.outpost.crypto import Crypt, parse_keys

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
            if not os.path.exists({hold!r}):
                break
            await asyncio.sleep(0.1)
        return address


c.JupyterHubOutpost.spawner_class = LaunchThenWaitSpawner
c.LaunchThenWaitSpawner.cmd = [{python!r}, {mini!r}]
c.LaunchThenWaitSpawner.home_dir_template = {home!r}
c.LaunchThenWaitSpawner.start_timeout = 120
"""

HUB_CONFIG = """
from jupyterhub_outpost.hub import outpost_handlers
c.JupyterHub.spawner_class = "outpost"
c.JupyterHub.extra_handlers = outpost_handlers()
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
    hold = tmp_path / "hold"
    hold.touch()
    config = tmp_path / "outpost_config.py"
    config.write_text(
        OUTPOST_CONFIG.format(
            marker_dir=str(markers),
            hold=str(hold),
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
        yield hub, outpost, markers, hold
    finally:
        if hub is not None:
            hub.close()
        outpost.close()


def services(outpost) -> list:
    import urllib.request

    request = urllib.request.Request(outpost.url + "/services", headers=outpost.auth("hub"))
    with urllib.request.urlopen(request, timeout=15) as response:
        return json.loads(response.read())


def start_and_wait_for_the_process(hub, markers) -> tuple[threading.Thread, int]:
    """Ask the hub to start alice:k; return once the Outpost has launched its process."""

    def start():
        try:
            hub.api("POST", "/users/alice/servers/k", {"outpost": "site"}, timeout=150)
        except OSError:
            pass  # the hub was killed under the request

    thread = threading.Thread(target=start, daemon=True)
    thread.start()
    marker = wait_until(lambda: next(markers.iterdir(), None), 60, "the server process launched")
    marker.unlink()
    pid = int(marker.name.split("-")[1])
    assert process_alive(pid)
    return thread, pid


def stored_pid(outpost) -> int | None:
    """The pid in the Outpost's stored (encrypted) state of the starting server, if any."""
    crypt = Crypt(parse_keys(outpost.env["OUTPOST_CRYPT_KEYS"]))
    db = sqlite3.connect(f"file:{outpost.data_dir / 'outpost.sqlite'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT state_enc FROM outpost_services").fetchall()
    finally:
        db.close()
    return next(
        (state["pid"] for (enc,) in rows if "pid" in (state := crypt.decrypt(enc) or {})), None
    )


def test_outpost_killed_during_a_start_fails_it_clearly_and_leaves_nothing(rig):
    hub, outpost, markers, _ = rig
    thread, pid = start_and_wait_for_the_process(hub, markers)
    assert wait_until(lambda: stored_pid(outpost), 10, "the Outpost stored the pid") == pid
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


def test_hub_killed_during_a_start_ends_it_at_the_outpost_when_it_comes_back(rig):
    hub, outpost, markers, hold = rig
    thread, pid = start_and_wait_for_the_process(hub, markers)
    [row] = services(outpost)
    hub.kill()  # SIGKILL hub and proxy in the middle of start()
    thread.join(60)
    assert process_alive(pid) and services(outpost) == [row]  # nothing ended it yet

    hub.start()
    wait_until(lambda: not process_alive(pid), 60, "the interrupted server's process ended")
    wait_until(lambda: services(outpost) == [], 60, "no row left at the Outpost")
    model = hub.server_model("alice", "k")
    assert model is None or not model.get("ready"), model
    assert "interrupted by a hub restart" in hub.log_text(), hub.log_tail()
    start_again_and_get_a_server(hub, outpost, hold, row)


def test_hub_stopped_during_a_start_leaves_nothing_at_the_outpost_once_back(rig):
    """SIGTERM (a routine restart, servers kept): whether the hub ends the start on its way
    out or the restarted hub finds it unfinished, nothing is left running."""
    hub, outpost, markers, hold = rig
    thread, pid = start_and_wait_for_the_process(hub, markers)
    [row] = services(outpost)
    hub.stop(stop_servers=False)
    thread.join(60)
    hub.start()
    wait_until(lambda: not process_alive(pid), 60, "the interrupted server's process ended")
    wait_until(lambda: services(outpost) == [], 60, "no row left at the Outpost")
    model = hub.server_model("alice", "k")
    assert model is None or not model.get("ready"), model
    start_again_and_get_a_server(hub, outpost, hold, row)


def start_again_and_get_a_server(hub, outpost, hold, old_row) -> None:
    """The user starts the same server again, and gets a new one."""
    hold.unlink()
    hub.start_server("alice", "k", {"outpost": "site"})
    [again] = services(outpost)
    assert again["start_id"] != old_row["start_id"]
