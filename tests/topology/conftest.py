"""Fixtures for the topology tests: a per-test Lab, leftover checks, a server on a host."""

import subprocess
import sys

import pytest
from jupyterhub.utils import exponential_backoff
from outpost_scenarios import host_firewall, netns

AVAILABLE, REASON = netns.isolation_available()


def pytest_collection_modifyitems(config, items):
    if AVAILABLE:
        return
    skip = pytest.mark.skip(reason=f"needs root and ip netns ({REASON})")
    for item in items:
        if "netns" in item.keywords:
            item.add_marker(skip)


def leftovers(prefix: str) -> dict:
    """Namespaces, links and iptables chains that still carry ``prefix``."""
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return {
        "netns": [line.split()[0] for line in ns.splitlines() if line.startswith(prefix)],
        "links": [
            name
            for name in (line.split(":")[1].strip().split("@")[0] for line in links.splitlines())
            if name.startswith(prefix)
        ],
        "firewall": sorted(p for p in host_firewall.prefixes() if p == prefix),
    }


NOTHING = {"netns": [], "links": [], "firewall": []}


@pytest.fixture
def lab():
    with netns.Lab(isolation=True) as lab:
        yield lab
    assert leftovers(lab.prefix) == NOTHING


async def start_http_server(host, port=8000):
    """``python -m http.server`` on ``host`` (its main address), once it accepts connections."""
    proc = await host.create_subprocess_exec(
        sys.executable,
        "-m",
        "http.server",
        "--bind",
        host.ip,
        str(port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    await exponential_backoff(
        lambda: host.can_connect(host.ip, port), f"http.server on {host.name}", timeout=15
    )
    return proc


def start_lab_owner() -> tuple[subprocess.Popen, str]:
    """A process that owns a Lab (network ``n``, host ``a`` running ``sleep``) and its prefix.

    SIGKILL it to leave a stale run behind.
    """
    code = (
        "import sys\n"
        "from outpost_scenarios import netns\n"
        "lab = netns.Lab(isolation=True)\n"
        "lab.add_network('n')\n"
        "lab.add_host('a', ['n']).popen(['sleep', '600'])\n"
        "print(lab.prefix, flush=True)\n"
        "sys.stdin.read()\n"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    return owner, owner.stdout.readline().strip()
