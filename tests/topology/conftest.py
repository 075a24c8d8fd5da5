"""Fixtures for the topology tests: a per-test Lab and leftover checks."""

import subprocess

import pytest
from outpost_scenarios import netns

AVAILABLE, REASON = netns.isolation_available()


def pytest_collection_modifyitems(config, items):
    if AVAILABLE:
        return
    skip = pytest.mark.skip(reason=f"needs root and ip netns ({REASON})")
    for item in items:
        if "netns" in item.keywords:
            item.add_marker(skip)


def leftovers(prefix: str) -> dict:
    """Namespaces, links and registry entries that still carry ``prefix``."""
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return {
        "netns": [line.split()[0] for line in ns.splitlines() if line.startswith(prefix)],
        "links": [
            name
            for name in (line.split(":")[1].strip().split("@")[0] for line in links.splitlines())
            if name.startswith(prefix)
        ],
    }


@pytest.fixture
def lab():
    with netns.Lab(isolation=True) as lab:
        yield lab
    assert leftovers(lab.prefix) == {"netns": [], "links": []}
