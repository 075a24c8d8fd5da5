"""Helpers of the local-mode scenario tests (see conftest.py for what they prove)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import threading
import time
import urllib.request
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from outpost_scenarios import host_firewall
from outpost_scenarios.runner import Topology

from tests.helpers import kernel
from tests.helpers.hub_process import HubProcess, process_alive, wait_until

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = REPO / "scenarios"
REGISTRY = "/run/jupyterhub-outpost-topology"


# ---------------------------------------------------------------------------- description
@dataclass(frozen=True)
class OutpostInfo:
    """What a test needs to know about one Outpost of a scenario."""

    name: str  # the hub's name for it (what users pick)
    service: str  # the topology service running it
    host: str  # the topology host it runs on
    secret: str  # the secret holding the hub's password there
    flavor: str
    message: str  # a progress message the user sees during a start on it
    tunnelled: bool = True  # False: the proxy reaches its servers directly


#: the remote Outpost of one-remote, remote-local and external-tunnel (one shared config file)
REMOTE_SITE = OutpostInfo(
    name="remote",
    service="outpost",
    host="outpost",
    secret="outpost_password",
    flavor="small",
    message="Remote site: starting JupyterLab",
)


@dataclass(frozen=True)
class ScenarioInfo:
    name: str
    outposts: tuple[OutpostInfo, ...]
    tunnel_host: str  # where the tunnel daemon runs
    tunnel_port: tuple[str, str]  # (service, port name) of its API

    @property
    def primary(self) -> OutpostInfo:
        return self.outposts[0]


@dataclass(frozen=True)
class Located:
    """A running server as the Outpost and the tunnel daemon know it."""

    op: OutpostInfo
    name: str  # the Outpost's service name (jh<user id>-<server>)
    forward_key: str  # the tunnel daemon's key for its forward
    address: tuple[str, int]


# ---------------------------------------------------------------------------- the hub
class ScenarioHub(HubProcess):
    """The scenario's running hub, driven through the proxy with the scenario-admin token.

    Reuses HubProcess's REST helpers (``api``, ``start_server``, ``progress_events``,
    ``stop_server``, ...) without starting a hub: the topology runs it.
    """

    def __init__(self, url: str, admin_token: str, log_file: str):  # noqa: D107
        parts = urlsplit(url)
        self.ip, self.port = parts.hostname, parts.port
        self.admin_token = admin_token
        self.log_file = Path(log_file)
        self.proc = None
        self._known_children: set[int] = set()

    def close(self) -> None:  # the topology owns the processes
        pass


# ---------------------------------------------------------------------------- the scenario
class RunningScenario:
    """A scenario brought up with the Topology API in a background event loop."""

    def __init__(self, info: ScenarioInfo, run_dir: Path):
        self.info = info
        self.lines: deque[str] = deque(maxlen=5000)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self._cm = Topology.up(str(SCENARIOS / info.name), run_dir=str(run_dir), sink=self._sink)
        started = time.monotonic()
        try:
            self.topo: Topology = self.call(self._cm.__aenter__(), timeout=400)
        except BaseException:
            self._stop_loop()
            raise
        self.up_seconds = time.monotonic() - started
        self.prefix = self.topo.lab.prefix
        self.namespaces = [h.netns for h in self.topo.lab.hosts.values() if h.netns]
        self.hub = ScenarioHub(
            self.topo.open_url, self.topo.secret("admin_token"), self.topo.path("logs/hub.log")
        )
        self.closed = False

    def _sink(self, name: str, line: str) -> None:
        self.lines.append(f"{name} | {line}")

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(list(self.lines)[-n:])

    def call(self, coro, timeout: float = 120):
        """Run a coroutine in the topology's event loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()

    def down(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.call(self._cm.__aexit__(None, None, None), timeout=180)
        finally:
            self._stop_loop()

    # ------------------------------------------------------------------ addresses
    def outpost_url(self, op: OutpostInfo) -> str:
        return f"http://{self.topo.host(op.host).ip}:{self.topo.port(op.service, 'api')}"

    @property
    def tunnel_url(self) -> str:
        service, port = self.info.tunnel_port
        return f"http://{self.topo.host(self.info.tunnel_host).ip}:{self.topo.port(service, port)}"

    # ------------------------------------------------------------------ the other sides
    def outpost_services(self, op: OutpostInfo) -> list[dict]:
        """This hub's servers at the Outpost (GET /services with the hub's credentials)."""
        auth = base64.b64encode(f"hub:{self.topo.secret(op.secret)}".encode()).decode()
        req = urllib.request.Request(
            self.outpost_url(op) + "/services", headers={"Authorization": f"Basic {auth}"}
        )
        with urllib.request.urlopen(req, timeout=15) as resp:
            data = json.loads(resp.read())
        return data if isinstance(data, list) else data.get("services", data)

    def forwards(self) -> dict[str, dict]:
        req = urllib.request.Request(
            self.tunnel_url + "/forwards",
            headers={"Authorization": f"token {self.topo.secret('tunnel_token')}"},
        )
        with urllib.request.urlopen(req, timeout=15) as resp:
            return {f["key"]: f for f in json.loads(resp.read())["forwards"]}

    def can_connect(self, host: str, ip: str, port: int) -> bool:
        return self.call(self.topo.host(host).can_connect(ip, port, timeout=2), timeout=10)

    def locate(self, op: OutpostInfo, server: str) -> Located:
        """The Outpost's name for ``server`` and where it listens: the Outpost's answer,
        else (delayed tunneling) the forward's target."""
        (item,) = [s for s in self.outpost_services(op) if s.get("name", "").endswith(f"-{server}")]
        address = item.get("service") or ""
        key = f"{op.name}.{item['name']}"
        if not address:
            fwd = self.forwards()[key]
            address = f"{fwd['target_host']}:{fwd['target_port']}"
        host, _, port = address.rpartition(":")
        return Located(op, item["name"], key, (host, int(port)))

    def service_pids(self) -> list[int]:
        """Every process inside the scenario's namespaces right now."""
        pids = []
        for ns in self.namespaces:
            out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
            pids += [int(p) for p in out.stdout.split()]
        return pids


def scenario_fixture(info: ScenarioInfo):
    """A module-scoped fixture that brings ``info``'s scenario up once for its module."""

    @pytest.fixture(scope="module")
    def scenario(tmp_path_factory):
        run_dir = tmp_path_factory.mktemp(info.name)
        sc = RunningScenario(info, run_dir)
        print(f"\n{info.name} up in {sc.up_seconds:.1f}s ({sc.prefix})")
        try:
            yield sc
        finally:
            sc.down()

    return scenario


# ---------------------------------------------------------------------------- servers
def prefix(user: str, server: str) -> str:
    return f"/user/{user}/{server}/" if server else f"/user/{user}/"


def status_ok(hub: ScenarioHub, user: str, server: str) -> bool:
    try:
        status, body = hub.proxy_request("GET", f"{prefix(user, server)}api/status", timeout=10)
    except OSError:
        return False
    return status == 200 and isinstance(body, dict) and "started" in body


def start(sc: RunningScenario, user: str, server: str, op: OutpostInfo, **options) -> list[dict]:
    """Start ``user``'s server ``server`` on ``op`` and return its progress events."""
    sc.hub.create_user(user)
    events = sc.hub.start_server(
        user, server, {"outpost": op.name, "flavor": op.flavor, **options}, timeout=180
    )
    assert events and events[-1].get("ready"), events
    messages = [e.get("message", "") for e in events]
    assert any(op.message in m for m in messages), messages
    return events


def new_kernel(hub: ScenarioHub, user: str, server: str) -> str:
    status, kernel = hub.proxy_request("POST", f"{prefix(user, server)}api/kernels", {})
    assert status == 201, (status, kernel)
    return kernel["id"]


def execute(hub: ScenarioHub, user: str, server: str, kernel_id: str, code: str) -> str:
    """Run ``code`` in a kernel over its websocket through the proxy; returns its stdout."""
    url = f"ws://{hub.ip}:{hub.port}{prefix(user, server)}api/kernels/{kernel_id}/channels"
    return kernel.run_code(url, hub.admin_token, code)


def stop_and_assert_clean(sc: RunningScenario, user: str, server: str, where: Located) -> None:
    """Stop the server through the hub, then check hub, Outpost, tunnel and the process."""
    sc.hub.stop_server(user, server, timeout=90)
    assert sc.hub.server_model(user, server) is None
    assert_clean(sc, where)


def assert_clean(sc: RunningScenario, where: Located) -> None:
    op = where.op
    wait_until(
        lambda: where.name not in [s.get("name") for s in sc.outpost_services(op)],
        60,
        f"{where.name} gone at Outpost {op.name}",
    )
    wait_until(lambda: where.forward_key not in sc.forwards(), 30, f"{where.forward_key} removed")
    wait_until(
        lambda: not sc.can_connect(op.host, *where.address),
        60,
        f"the server process at {where.address[0]}:{where.address[1]} gone",
    )


def assert_outposts_empty(sc: RunningScenario) -> None:
    """No server of this hub is left at any Outpost, and no forward at the daemon."""
    for op in sc.info.outposts:
        wait_until(lambda op=op: sc.outpost_services(op) == [], 60, f"Outpost {op.name} empty")
    wait_until(lambda: sc.forwards() == {}, 30, "no forwards left")


def assert_flavor_usage_reported(sc: RunningScenario, op: OutpostInfo) -> None:
    """The Outpost pushed its flavor usage to the hub, and the hub accepted it (that
    Outpost's own token, at the URL of the Outpost's hub_api entry)."""
    accepted = f"204 POST /hub/api/outpost/flavors/{op.name} "
    wait_until(
        lambda: accepted in sc.hub.log_file.read_text(errors="replace"),
        60,
        f"Outpost {op.name}'s flavor usage accepted by the hub",
    )


def start_check_stop(sc: RunningScenario, user: str, server: str, op: OutpostInfo) -> None:
    """The main path on one Outpost: start, progress, flavor usage, data path, stop, both
    sides clean."""
    start(sc, user, server, op)
    assert_flavor_usage_reported(sc, op)
    where = sc.locate(op, server)
    if op.tunnelled:
        # only the tunnel reaches it: the hub host has no route to the server
        assert not sc.can_connect("hub", *where.address), where
        assert where.forward_key in sc.forwards()
    else:
        assert where.forward_key not in sc.forwards()
    assert status_ok(sc.hub, user, server), sc.log_tail()
    kernel = new_kernel(sc.hub, user, server)
    assert execute(sc.hub, user, server, kernel, f"print('{user}', 6 * 7)").strip() == (
        f"{user} 42"
    )
    stop_and_assert_clean(sc, user, server, where)


def two_users_at_once(sc: RunningScenario) -> None:
    """alice and bob start a named server each at the same time (on the first and the
    last Outpost of the scenario); each goes the whole main path (start_check_stop)."""
    ops = sc.info.outposts
    plan = [("alice", "lab", ops[0]), ("bob", "lab2", ops[-1])]
    with ThreadPoolExecutor(len(plan)) as pool:
        for f in [pool.submit(start_check_stop, sc, u, s, op) for u, s, op in plan]:
            f.result()


class KernelServer:
    """One server with one kernel that holds state, kept across several faults.

    It starts in the background as soon as it is made (alongside the first test's
    servers); the first use waits for it. :meth:`survives` injects a fault and proves that
    the server answers through the proxy again within ``within`` seconds and that the
    kernel is the same one (its counter goes on).
    """

    def __init__(self, sc: RunningScenario, user: str, server: str):
        self.sc, self.user, self.server, self.op = sc, user, server, sc.info.primary
        self.count = 0
        self.stopped = False
        self._pool = ThreadPoolExecutor(1)
        self._started = self._pool.submit(self._start)

    def _start(self) -> None:
        start(self.sc, self.user, self.server, self.op)
        self.where = self.sc.locate(self.op, self.server)
        self.kernel = new_kernel(self.sc.hub, self.user, self.server)
        assert self.run("n = 0; print(n)") == "0"

    def ready(self) -> KernelServer:
        self._started.result(300)
        return self

    def run(self, code: str) -> str:
        return execute(self.sc.hub, self.user, self.server, self.kernel, code).strip()

    def survives(self, fault, within: float = 30) -> float:
        self.ready()
        fault()
        return self.answers(within)

    def answers(self, within: float = 30) -> float:
        """Wait until the server answers through the proxy; prove it is the same kernel."""
        self.ready()
        t0 = time.monotonic()
        wait_until(
            lambda: status_ok(self.sc.hub, self.user, self.server),
            within,
            f"{self.user}/{self.server} reachable again",
        )
        took = time.monotonic() - t0
        self.count += 1
        assert self.run("n += 1; print(n)") == str(self.count), "not the same kernel"
        print(f"{self.user}/{self.server} answered {took:.1f}s after the fault")
        return took

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.ready()
            self._pool.shutdown()
            stop_and_assert_clean(self.sc, self.user, self.server, self.where)


def kernel_server_fixture(user: str = "alice", server: str = "faults"):
    """A module-scoped :class:`KernelServer` (stop it in a test to check the cleanup)."""

    @pytest.fixture(scope="module")
    def kernel_server(scenario):
        ks = KernelServer(scenario, user, server)
        yield ks
        if not scenario.closed:
            ks.stop()

    return kernel_server


def restart_hub(sc: RunningScenario) -> None:
    """Stop the hub and start it again (servers, proxy and tunnels keep running)."""
    sc.call(sc.topo.stop_service("hub"))
    sc.call(sc.topo.start_service("hub"), timeout=180)


def down_leaves_nothing(sc: RunningScenario) -> None:
    """Bring the scenario down: no process, namespace, link, iptables chain or file is left."""
    assert_outposts_empty(sc)  # every test cleaned up after itself
    pids = sc.service_pids() + [s.pid for s in sc.topo.services.values() if s.pid]
    assert pids, "the scenario should have processes before the teardown"
    sc.down()
    assert not [p for p in pids if process_alive(p)]
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not [line for line in ns.splitlines() if line.startswith(sc.prefix)]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    assert sc.prefix not in links
    assert sc.prefix not in host_firewall.prefixes()
    assert not os.path.exists(os.path.join(REGISTRY, f"{sc.prefix}.json"))
    assert not os.path.exists(sc.topo.path("topology.json"))
