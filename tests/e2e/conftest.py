"""End-to-end tests of the scenarios in local mode (``scenarios/<name>``).

Each test module brings one scenario up once (module-scoped fixture, through the
``Topology`` Python API, in a thread with its own event loop so that the services keep
being supervised while the tests run synchronously), and runs against it:

- two users at once (alice on the first Outpost, bob on the last) each start a named
  server through the hub's REST API; the test follows the progress stream, proves the
  data path through the proxy (``api/status`` and a kernel round trip over a websocket),
  stops it and checks that both sides are clean (hub, Outpost, tunnel daemon, process);
- faults (Outpost killed, hub restarted, hub stopped, a job that never reports), with
  one server and one kernel kept across them;
- at the end, ``down`` leaves no process, namespace, veth, bridge or state file.

Select them with ``pytest -m e2e``; they are skipped without root and ``ip netns``.

Every wait is a backoff wait on an observable state (``wait_until``), never a sleep.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from outpost_scenarios import netns

AVAILABLE, REASON = netns.isolation_available()


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).resolve().parent
    for item in items:
        path = Path(str(item.fspath)).resolve()
        if path.parent != here:
            continue  # tests/e2e/kind has its own rules
        item.add_marker(pytest.mark.e2e)
        item.add_marker(pytest.mark.netns)
        if not AVAILABLE:
            item.add_marker(pytest.mark.skip(reason=f"needs root and ip netns ({REASON})"))
