"""End-to-end tests of the scenarios in local mode (``scenarios/<name>``).

Each test module brings one scenario up once (module-scoped fixture, through the
``Topology`` Python API, in a thread with its own event loop so that the services keep
being supervised while the tests run synchronously), and runs against it:

- a user starts a named server on each Outpost through the hub's REST API, the test
  follows the progress stream, proves the data path through the proxy (``api/status``
  and a kernel round trip over a websocket), stops it and checks that both sides are
  clean (hub, Outpost, tunnel daemon, server process);
- faults (Outpost killed, hub restarted, ...), keeping the same kernel;
- two users with a server each at once;
- at the end, ``down`` leaves no process, namespace, veth or bridge of the run.

Every wait is a backoff wait on an observable state (``wait_until``), never a sleep.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from jupyterhub_outpost.topology import netns

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
