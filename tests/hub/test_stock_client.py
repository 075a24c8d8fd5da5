"""A site running the original Outpost switches to ours and changes nothing on its hubs.

Real JupyterHubs with configurable-http-proxy use the stock hub-side client from PyPI,
``jupyterhub-outpostspawner`` 2.2.x with ``jupyterhub-forwardbasespawner`` (pinned in the
test extra), configured as its documentation says with only the Outpost's URL, the hub's
credentials and the SSH settings. They start servers on one of our Outposts, in its own
network namespace:

    public network (reachable from the test):  stockssh hub  stockdirect hub  ours hub  outpost
    site network:                              outpost (the servers of "stockssh" bind here)

- ``stockssh``: the stock client's own SSH port forwarding (``ssh_during_startup``: OpenSSH
  with a ControlMaster, user ``jhuboutpost``) through the Outpost's SSH endpoint to a
  server on the site network, which the hub cannot reach otherwise. Its Outpost re-creates
  the tunnels at start-up (``ssh_recreate_at_start`` for this hub, as such sites set it).
- ``stockdirect``: no tunnels; the servers bind on the public network.
- ``ours``: our own OutpostSpawner against the same Outpost.

The stock client always sends Kubernetes overrides (misc); the Outpost drops them and says
so in the progress events. Its SSH client runs ``ssh`` as uid 1000 (it calls setuid(1000)
as root): the key, known_hosts and control socket live in a directory that uid owns.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import re
import shutil
import tempfile
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from outpost_scenarios import netns

from tests.helpers import kernel
from tests.helpers.hub_process import HubProcess, wait_until
from tests.helpers.outpost_process import NetnsOutpost, basic_auth, keygen

AVAILABLE, REASON = netns.isolation_available()
if not AVAILABLE:
    pytest.skip(f"needs root and ip netns ({REASON})", allow_module_level=True)

pytestmark = [pytest.mark.slow, pytest.mark.netns]

SSH_UID = 1000  # forwardbasespawner's subprocess_cmd runs ssh as this uid
SECRETS = {"stockssh": uuid.uuid4().hex, "stockdirect": uuid.uuid4().hex, "ours": uuid.uuid4().hex}


def outpost_config(site: Site) -> str:
    """SimpleLocalProcessSpawner running jupyterhub-singleuser (with JupyterLab); each hub's
    servers bind where that hub is meant to reach them."""
    addresses = {
        "stockssh": site.outpost_host.address("site"),
        "stockdirect": site.outpost_host.ip,
        "ours": site.outpost_host.ip,
    }
    hub_api = {
        name: {"url": hub.hub_api_url, "layout": "outpostspawner"}
        for name, hub in site.hubs.items()
    }
    hub_api["ours"] = {"url": site.hubs["ours"].hub_api_url, "outpost_name": "site"}
    return f"""
import sys
from jupyterhub.spawner import SimpleLocalProcessSpawner

ADDRESSES = {addresses!r}

class StockSiteSpawner(SimpleLocalProcessSpawner):
    async def progress(self):
        yield {{"progress": 40, "message": "Launching on the stock site"}}

    async def start(self):
        self.ip = ADDRESSES[self.user.hub_name]
        return await super().start()

c.JupyterHubOutpost.spawner_class = StockSiteSpawner
c.StockSiteSpawner.cmd = [sys.executable, "-m", "jupyterhub.singleuser"]
c.StockSiteSpawner.args = ["--allow-root", "--ServerApp.open_browser=False"] + [
    f"--ServerApp.jpserver_extensions={{name}}=False"
    for name in ("jupyter_lsp", "jupyter_server_terminals")
]
c.StockSiteSpawner.home_dir_template = {str(site.tmp / "home" / "{username}")!r}
c.StockSiteSpawner.interrupt_timeout = 3
c.StockSiteSpawner.term_timeout = 3
c.StockSiteSpawner.kill_timeout = 3
c.JupyterHubOutpost.ssh_ip = {site.outpost_host.ip!r}
c.JupyterHubOutpost.ssh_port = {site.ssh_port}
c.JupyterHubOutpost.ssh_authorized_keys = {{"stockssh": [{site.stock_pub!r}]}}
# the stock client forwards ports itself: its tunnels must be re-created after a restart
c.JupyterHubOutpost.ssh_recreate_at_start = lambda outpost, hub: hub == "stockssh"
# where the Outpost may call each hub: the stock hubs' API paths, and ours
c.JupyterHubOutpost.hub_api = {hub_api!r}
"""


def stock_hub_config(site: Site, hub: str) -> str:
    """The stock client as its documentation configures it: URL, credentials, SSH."""
    auth = basic_auth(hub, SECRETS[hub])["Authorization"]
    config = f"""
c.JupyterHub.spawner_class = "outpostspawner.OutpostSpawner"
c.OutpostSpawner.request_url = {site.outpost.url + "/services"!r}
c.OutpostSpawner.request_headers = {{"Authorization": {auth!r}}}
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 90  # jupyterhub-singleuser with JupyterLab starts slowly on 2 cores
"""
    if hub == "stockssh":
        ssh = site.ssh_dir
        config += f"""
c.OutpostSpawner.ssh_during_startup = True
c.OutpostSpawner.ssh_node = {site.outpost_host.ip!r}
c.OutpostSpawner.ssh_port = {site.ssh_port}
c.OutpostSpawner.ssh_key = {str(ssh / "id_ed25519")!r}
c.OutpostSpawner.ssh_forward_options = {{
    "StrictHostKeyChecking": "yes",  # the Outpost's host key is pinned in known_hosts
    "UserKnownHostsFile": {str(ssh / "known_hosts")!r},
    "ControlPath": {str(ssh / "control")!r},
}}
# a hub outside Kubernetes: the forward listens on the hub's host, no Service is created
c.OutpostSpawner.ssh_custom_svc = lambda spawner, port_forward_info: ("127.0.0.1", spawner.port)
c.OutpostSpawner.ssh_custom_svc_remove = lambda spawner, port_forward_info: None
"""
    return config


def our_hub_config(site: Site) -> str:
    outposts = {
        "site": {
            "url": site.outpost.url,
            "hub_name": "ours",
            "secret": SECRETS["ours"],
            "direct": True,
            "display_name": "The stock site",
        }
    }
    return f"""
from jupyterhub_outpost.hub import outpost_handlers
c.JupyterHub.spawner_class = "outpost"
c.JupyterHub.extra_handlers = outpost_handlers()
c.OutpostSpawner.outposts = {outposts!r}
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 90
"""


@dataclass
class Site:
    lab: netns.Lab
    tmp: Path
    outpost_host: object
    hub_host: object
    ssh_dir: Path
    stock_pub: str = ""
    ssh_port: int = 0
    outpost: NetnsOutpost | None = None
    hubs: dict = field(default_factory=dict)

    def make_hubs(self) -> None:
        """Every hub, not started: their ports are chosen (the Outpost's hub_api names them)."""
        for name in SECRETS:
            config = our_hub_config(self) if name == "ours" else stock_hub_config(self, name)
            self.hubs[name] = HubProcess(
                self.tmp / name, config, ip=self.hub_host.ip, host=self.hub_host, start=False
            )

    def hub(self, name: str) -> HubProcess:
        """The hub ``name``, started on first use (each test starts only its own)."""
        hub = self.hubs[name]
        if hub.proc is None:
            hub.start()
            hub.create_user("alice")
        return hub

    def services(self, hub: str) -> list[dict]:
        request = urllib.request.Request(
            self.outpost.url + "/services", headers=basic_auth(hub, SECRETS[hub])
        )
        with urllib.request.urlopen(request, timeout=15) as response:
            return json.loads(response.read())

    def restart_outpost(self) -> None:
        """SIGKILL the Outpost (its servers keep running) and start it again."""
        self.outpost.kill()
        self.outpost.start(timeout=60)


def prepare_ssh_dir(site_tmp: Path) -> Path:
    """A directory owned by uid 1000 with the hub's key and the pinned host key."""
    ssh_dir = Path(tempfile.mkdtemp(prefix="stock-ssh-"))
    os.chmod(ssh_dir, 0o700)
    shutil.copy(site_tmp / "stock_ed25519", ssh_dir / "id_ed25519")
    for path in (ssh_dir, ssh_dir / "id_ed25519"):
        os.chown(path, SSH_UID, SSH_UID)
    os.chmod(ssh_dir / "id_ed25519", 0o600)
    return ssh_dir


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    try:
        pwd.getpwuid(SSH_UID)
    except KeyError:
        pytest.skip(f"the stock client runs ssh as uid {SSH_UID}, which has no passwd entry")
    tmp = tmp_path_factory.mktemp("stocksite")
    lab = netns.Lab()
    made: list = []
    ssh_dir = None
    try:
        lab.add_network("public", host_access=True)
        lab.add_network("site")
        outpost_host = lab.add_host("outpost", ["public", "site"])
        hub_host = lab.add_host("hubs", ["public"])
        stock_pub = keygen(tmp / "stock_ed25519")
        ssh_dir = prepare_ssh_dir(tmp)
        site = Site(lab, tmp, outpost_host, hub_host, ssh_dir, stock_pub=stock_pub)
        site.ssh_port = outpost_host.free_port(outpost_host.ip)
        data = tmp / "outpost"
        data.mkdir()
        host_key = keygen(data / "ssh_host_ed25519_key")
        known_hosts = ssh_dir / "known_hosts"
        known_hosts.write_text(f"[{outpost_host.ip}]:{site.ssh_port} {host_key}\n")
        os.chown(known_hosts, SSH_UID, SSH_UID)
        site.outpost = NetnsOutpost(
            outpost_host,
            outpost_host.ip,
            tmp / "outpost_config.py",
            data,
            ssh=True,
            hub_credentials=dict(SECRETS),
            cwd=str(Path(__file__).resolve().parents[2]),
        )
        made.append(site.outpost)
        site.make_hubs()
        (tmp / "outpost_config.py").write_text(outpost_config(site))
        site.outpost.start(timeout=60)
        yield site
    finally:
        for thing in [*site.hubs.values(), *reversed(made)] if "site" in locals() else made:
            try:
                thing.close()
            except Exception as e:  # keep cleaning up
                print(f"cleanup of {thing!r} failed: {e}")
        lab.close()
        if ssh_dir is not None:
            shutil.rmtree(ssh_dir, ignore_errors=True)


# ---------------------------------------------------------------------------- helpers
def lab_page_ok(hub: HubProcess, user: str, server: str) -> bool:
    """JupyterLab's page answers through the hub's proxy."""
    try:
        status, body = hub.proxy_request("GET", f"/user/{user}/{server}/lab", timeout=10)
    except OSError:
        return False
    return status == 200 and "JupyterLab" in str(body)


def polls_after(site: Site, hub: str, server: str, since: int) -> list[str]:
    """The hub's polls of ``server`` that the Outpost answered 200, logged after ``since``."""
    pattern = re.compile(rf"hub={hub} server={server}\] 200 GET /services/{server}/")
    return [line for line in site.outpost.log_text()[since:].splitlines() if pattern.search(line)]


def start_and_check(site: Site, hub_name: str) -> tuple[HubProcess, dict]:
    hub = site.hub(hub_name)
    events = hub.start_server("alice", "lab", {}, timeout=180)
    messages = " | ".join(str(e.get("message") or e.get("html_message") or "") for e in events)
    # the remote spawner's own progress arrives through the Outpost's event relay
    assert "Launching on the stock site" in messages, messages
    # the stock client's Kubernetes overrides are dropped, and the hub is told which
    assert "did not apply these spawner overrides" in messages and "pod_name_template" in messages
    assert hub.server_model("alice", "lab")["ready"], events
    assert lab_page_ok(hub, "alice", "lab")
    assert kernel.run_code_through_proxy(hub, "alice", "lab", "print(6 * 7)").strip() == "42"
    (service,) = site.services(hub_name)
    assert service["status"] == "running" and service["name"] == "lab"
    return hub, service


def restart_poll_and_stop(site: Site, hub: HubProcess, hub_name: str, service: dict) -> None:
    since = len(site.outpost.log_text())
    site.restart_outpost()
    # the server survived the restart and is reachable again through the proxy
    wait_until(lambda: lab_page_ok(hub, "alice", "lab"), 90, "JupyterLab after the restart")
    assert kernel.run_code_through_proxy(hub, "alice", "lab", "print(7 * 6)").strip() == "42"
    # the hub's own periodic poll (the stock client's 30 s) reaches the restarted Outpost
    wait_until(lambda: polls_after(site, hub_name, "lab", since), 90, "a poll by the hub")
    assert hub.server_model("alice", "lab")["ready"]

    host, _, port = service["service"].rpartition(":")
    hub.stop_server("alice", "lab", timeout=90)
    wait_until(lambda: site.services(hub_name) == [], 30, "the server forgotten at the Outpost")
    wait_until(
        lambda: not can_connect(site.outpost_host, host, int(port)), 30, "the server process gone"
    )


def can_connect(from_host, host: str, port: int) -> bool:
    return asyncio.run(from_host.can_connect(host, port, timeout=2))


# ---------------------------------------------------------------------------- tests
def test_stock_client_with_its_own_ssh_port_forwarding(site):
    hub, service = start_and_check(site, "stockssh")
    host, _, port = service["service"].rpartition(":")
    assert host == site.outpost_host.address("site")  # only reachable through the tunnel
    assert not can_connect(site.hub_host, host, int(port))
    log = site.outpost.log_text()
    assert "SSH login of hub stockssh (as jhuboutpost)" in log
    restart_poll_and_stop(site, hub, "stockssh", service)
    # the tunnel was re-created after the Outpost's restart: the hub logged in again
    assert site.outpost.log_text().count("SSH login of hub stockssh (as jhuboutpost)") >= 2


def test_stock_client_without_tunnels(site):
    hub, service = start_and_check(site, "stockdirect")
    assert service["service"].startswith(f"{site.outpost_host.ip}:")
    restart_poll_and_stop(site, hub, "stockdirect", service)
    # no tunnels: the Outpost did not ask this hub to re-create any after its restart
    assert "setuptunnel" not in "\n".join(
        line for line in site.outpost.log_text().splitlines() if "stockdirect" in line
    )


def test_our_outpostspawner_works_against_the_same_outpost(site):
    hub = site.hub("ours")
    events = hub.start_server("alice", "lab", {"outpost": "site"}, timeout=180)
    assert any("Launching on the stock site" in str(e.get("message")) for e in events), events
    assert lab_page_ok(hub, "alice", "lab")
    assert kernel.run_code_through_proxy(hub, "alice", "lab", "print(6 * 7)").strip() == "42"
    hub.stop_server("alice", "lab", timeout=90)
    wait_until(lambda: site.services("ours") == [], 30, "the server forgotten at the Outpost")
