"""A starting spawner's state is stored the moment it changes, not at the next look.

An Outpost killed during a start finds at its restart only what was stored: the pid of a
local server, the job id of a batch job. The state check interval is set to an hour here,
so only the spawner's trait change can have stored it.
"""

import asyncio

from jupyterhub.spawner import SimpleLocalProcessSpawner
from jupyterhub_outpost.outpost.manager import ServiceManager

from .support import local_spawner_config, start_body, wait_for


class PidThenWaitSpawner(SimpleLocalProcessSpawner):
    """Sets a pid (as a launch does), then waits until the test lets the start go on."""

    go_on: asyncio.Event

    async def start(self):
        self.pid = 424242  # nothing runs under it: the start ends before any poll
        await self.go_on.wait()
        self.pid = 0
        raise RuntimeError("the test ends this start")


async def test_a_pid_set_during_a_start_is_stored_at_once(make_outpost, tmp_path, monkeypatch):
    monkeypatch.setattr(ServiceManager, "state_check_interval", 3600)
    PidThenWaitSpawner.go_on = asyncio.Event()
    c = local_spawner_config(tmp_path)
    c.JupyterHubOutpost.spawner_class = PidThenWaitSpawner
    outpost = await make_outpost(c)
    start = asyncio.ensure_future(outpost.api.call("POST", "/services", body=start_body("mid")))
    store, crypt = outpost.app.store, outpost.app.store.crypt

    async def stored_pid():
        row = await store.get("hub1", "mid")
        return row is not None and (crypt.decrypt(row.state_enc) or {}).get("pid")

    try:
        assert await wait_for(stored_pid, "the pid stored", timeout=10) == 424242
    finally:
        PidThenWaitSpawner.go_on.set()
        code, data = await start
    assert code == 500 and "the test ends this start" in data["error"], data
