"""A cheap but real Spawner for figure 4 (Outpost capacity): no process, start and poll
cost almost nothing, and its state round-trips like any spawner's.

Configure it in an Outpost's config file::

    import sys; sys.path.insert(0, "<repository root>")
    from bench.cheap_spawner import CheapSpawner
    c.JupyterHubOutpost.spawner_class = CheapSpawner
"""

from __future__ import annotations

import itertools

from jupyterhub.spawner import Spawner
from traitlets import Bool, Integer

_ports = itertools.count(20000)


class CheapSpawner(Spawner):
    """Records that it was started; ``poll()`` answers None (running) until ``stop()``."""

    running = Bool(False)
    fake_port = Integer(0)

    async def start(self):
        self.running = True
        self.fake_port = 20000 + next(_ports) % 40000
        return ("127.0.0.1", self.fake_port)

    async def poll(self):
        return None if self.running else 0

    async def stop(self, now=False):
        self.running = False

    def get_state(self):
        state = super().get_state()
        state.update(cheap_running=self.running, cheap_port=self.fake_port)
        return state

    def load_state(self, state):
        super().load_state(state)
        self.running = bool(state.get("cheap_running", False))
        self.fake_port = int(state.get("cheap_port", 0))

    def clear_state(self):
        super().clear_state()
        self.running = False
        self.fake_port = 0
