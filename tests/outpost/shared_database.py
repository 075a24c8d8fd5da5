"""What the multi-process tests share (test_outpost_workers.py: ``serve --workers 2``;
test_outpost_replicas.py: two ``serve --replicated``): a config whose spawner writes a line
per start and stop, and calls each on a new connection."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

HUBS = {"hub1": "secret-of-hub1-0123", "hub2": "secret-of-hub2-0123"}
STOPS_FILE = "stops.log"
STARTS_FILE = "starts.log"
ROOT = Path(__file__).resolve().parents[2]


def config(tmp_path, extra: str = ""):
    path = tmp_path / "outpost_config.py"
    path.write_text(
        f"""
import asyncio, os, sys
sys.path.insert(0, {str(ROOT)!r})
from bench.cheap_spawner import CheapSpawner

class CountingSpawner(CheapSpawner):
    # a line per start and stop; a start with user_options hold=True never ends

    async def start(self):
        with open({str(tmp_path / STARTS_FILE)!r}, "a") as f:
            f.write(f"{{self.user.name}} {{os.getpid()}}\\n")
        if self.user_options.get("hold"):
            await asyncio.Event().wait()
        return await super().start()

    async def stop(self, now=False):
        with open({str(tmp_path / STOPS_FILE)!r}, "a") as f:
            f.write(f"{{self.user.name}} {{os.getpid()}}\\n")
        await super().stop(now=now)

c.JupyterHubOutpost.spawner_class = CountingSpawner
{extra}
"""
    )
    return path


def call(outpost, method, path, body=None, hub="hub1", headers=None):
    """One request on a new connection: (status, JSON answer)."""
    return outpost.call(method, path, body, hub=hub, headers=headers)


def parallel(calls):
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(lambda c: call(*c), calls))


def users_in(path) -> list[str]:
    """The users of the spawners that wrote a line to ``path`` (STARTS_FILE, STOPS_FILE)."""
    lines = path.read_text().splitlines() if path.exists() else []
    return sorted(line.split()[0] for line in lines if line)


def refused_start_log(outpost) -> str:
    """Start ``outpost`` (an OutpostProcess that must refuse to start); its log."""
    try:
        with pytest.raises(RuntimeError, match="exited during start-up"):
            outpost.start(timeout=60)
        return outpost.log_text()
    finally:
        outpost.close()
