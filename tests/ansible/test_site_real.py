"""site.yml for real: namespace hosts with their own sshd, reached by Ansible over SSH.

One Outpost host and one hub host first; then a user starts a server on the Outpost
through the hub and reaches it through the tunnel; a second run changes nothing; a second
Outpost host added to the inventory is wired in without touching the first.
The roles take the fast path (outpost_host_python / hub_addons_python: this virtualenv)
and the supervise.py fallback (no systemd in this container).
"""

from __future__ import annotations

import json
import secrets
import sys
import urllib.request

import pytest

from tests.helpers.hub_process import wait_until

from .lab import CHP, MINI_SINGLEUSER, AnsibleLab, run_playbook, write_yaml

pytestmark = [pytest.mark.netns, pytest.mark.slow]

ADMIN_TOKEN = secrets.token_hex(16)
TIMINGS: dict[str, float] = {}


def outpost_vars(alab: AnsibleLab, name: str) -> dict:
    root = alab.hosts[name].root
    return {
        "ansible_host": alab.hosts[name].ip,
        "outpost_host_user": "root",
        "outpost_host_create_user": False,
        "outpost_host_prefix": str(root / "opt"),
        "outpost_host_config_dir": str(root / "etc"),
        "outpost_host_data_dir": str(root / "data"),
        "outpost_host_run_dir": str(root / "run"),
        "outpost_host_python": sys.executable,
        "outpost_host_service_manager": "supervisor",
        "outpost_host_ip": alab.hosts[name].ip,
        "outpost_host_log_level": "DEBUG",
        "outpost_host_spawner_class": "jupyterhub.spawner.SimpleLocalProcessSpawner",
        "outpost_host_spawner_options": {
            "cmd": [sys.executable, str(MINI_SINGLEUSER)],
            "home_dir_template": str(root / "home" / "{username}"),
            "ip": "127.0.0.1",
        },
    }


def hub_vars(alab: AnsibleLab) -> dict:
    root = alab.hosts["hub"].root
    ip = alab.hosts["hub"].ip
    extra = f"""
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.allow_named_servers = True
c.JupyterHub.services.append({{"name": "test-admin", "api_token": {ADMIN_TOKEN!r}}})
c.JupyterHub.load_roles = [{{
    "name": "test-admin",
    "scopes": ["admin:users", "admin:servers", "access:servers", "read:users"],
    "services": ["test-admin"],
}}]
"""
    return {
        "ansible_host": ip,
        "hub_addons_user": "root",
        "hub_addons_create_user": False,
        "hub_addons_prefix": str(root / "opt"),
        "hub_addons_config_dir": str(root / "etc"),
        "hub_addons_data_dir": str(root / "data"),
        "hub_addons_run_dir": str(root / "run"),
        "hub_addons_python": sys.executable,
        "hub_addons_proxy_command": [str(CHP)],
        "hub_addons_service_manager": "supervisor",
        "hub_addons_ip": ip,
        "hub_addons_hub_ip": ip,
        "hub_addons_log_level": "DEBUG",
        "hub_addons_extra_config": extra,
    }


def write_inventory(alab: AnsibleLab, outposts: list[str]):
    inventory = alab.tmp / "inventory" / "hosts.yml"
    inventory.parent.mkdir(exist_ok=True)
    write_yaml(
        inventory,
        {
            "all": {
                "vars": {
                    "ansible_user": "root",
                    "ansible_ssh_private_key_file": str(alab.client_key),
                    "ansible_ssh_common_args": alab.ssh_args(),
                    "ansible_python_interpreter": sys.executable,
                    "outpost_trust_dir": str(alab.tmp / "trust"),
                },
                "children": {
                    "hubs": {"hosts": {"hub": hub_vars(alab)}},
                    "outposts_host": {"hosts": {o: outpost_vars(alab, o) for o in outposts}},
                    "outposts_kubernetes": {"hosts": {}},
                },
            }
        },
    )
    return inventory


def hub_api(alab: AnsibleLab, method: str, path: str, body=None):
    url = f"http://{alab.hosts['hub'].ip}:8000/hub/api{path}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", f"token {ADMIN_TOKEN}")
    with urllib.request.urlopen(req, timeout=30) as r:
        text = r.read().decode()
        return r.status, (json.loads(text) if text else None)


def start_server_and_fetch(alab: AnsibleLab, user: str, server: str, outpost: str) -> dict:
    """Start a named server on ``outpost`` through the hub; return what it answers via the proxy."""
    try:
        hub_api(alab, "POST", f"/users/{user}")
    except urllib.error.HTTPError as e:
        assert e.code == 409, e  # exists already
    status, _ = hub_api(alab, "POST", f"/users/{user}/servers/{server}", {"outpost": outpost})
    assert status in (201, 202)

    def ready():
        _, model = hub_api(alab, "GET", f"/users/{user}")
        s = model.get("servers", {}).get(server)
        if s and s.get("ready"):
            return s
        if s is None and status == 202:
            raise AssertionError(f"server {user}/{server} vanished while starting")
        return None

    wait_until(ready, 60, f"server {user}/{server} ready")
    url = f"http://{alab.hosts['hub'].ip}:8000/user/{user}/{server}/"
    req = urllib.request.Request(url)
    req.add_header("Authorization", f"token {ADMIN_TOKEN}")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read().decode())


def explain(run) -> str:
    return f"\n--- ansible-playbook output (last 6000 chars) ---\n{run.output[-6000:]}"


@pytest.fixture(scope="module")
def deployed(ansible_lab):
    if not CHP.exists():
        pytest.skip(f"configurable-http-proxy missing at {CHP}: run `make node` (make test does)")
    alab = ansible_lab
    alab.add_host("hub")
    alab.add_host("outpost1")
    inventory = write_inventory(alab, ["outpost1"])
    run = run_playbook(inventory, "site.yml")
    TIMINGS["first run"] = run.seconds
    (alab.tmp / "first-run.log").write_text(run.output)
    return alab, inventory, run


def test_first_run_installs_outpost_and_hub_over_ssh(deployed):
    alab, _, run = deployed
    assert run.returncode == 0, explain(run)
    recap = run.recap()
    assert set(recap) >= {"hub", "outpost1"}, explain(run)
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in recap.values())
    root = alab.hosts["outpost1"].root
    assert (root / "run" / "jupyterhub-outpost.pid").exists()
    assert (root / "data" / "ssh_host_ed25519_key").stat().st_mode & 0o777 == 0o600
    outposts = json.loads((alab.hosts["hub"].root / "etc" / "outposts.json").read_text())
    pinned = outposts["outpost1"]["ssh"]["host_key"]
    on_host = (root / "data" / "ssh_host_ed25519_key.pub").read_text().split()[:2]
    assert pinned == " ".join(on_host)
    assert outposts["outpost1"]["ssh"]["user"] == "hub"


def test_user_starts_server_on_outpost_through_hub_and_reaches_it_through_tunnel(deployed):
    alab, _, run = deployed
    assert run.returncode == 0, explain(run)
    answer = start_server_and_fetch(alab, "alice", "lab", "outpost1")
    assert answer["user"] == "alice"
    assert answer["server_name"] == "lab"
    # the server runs on the Outpost host, on its loopback: the hub reaches it only through the tunnel
    assert answer["prefix"] == "/user/alice/lab/"


def test_second_run_changes_nothing(deployed):
    alab, inventory, first = deployed
    assert first.returncode == 0, explain(first)
    run = run_playbook(inventory, "site.yml")
    TIMINGS["second run"] = run.seconds
    (alab.tmp / "second-run.log").write_text(run.output)
    assert run.returncode == 0, explain(run)
    changed = {h: r["changed"] for h, r in run.recap().items() if r["changed"]}
    assert changed == {}, f"changed on {changed}: {run.changed_tasks()}"


def test_adding_an_outpost_host_wires_it_in_without_touching_the_first(deployed):
    alab, _, first = deployed
    assert first.returncode == 0, explain(first)
    pid_before = (alab.hosts["outpost1"].root / "run" / "jupyterhub-outpost.pid").read_text()
    hub_pid_before = (alab.hosts["hub"].root / "run" / "jupyterhub.pid").read_text()
    alab.add_host("outpost2")
    inventory = write_inventory(alab, ["outpost1", "outpost2"])
    run = run_playbook(inventory, "site.yml")
    TIMINGS["add host"] = run.seconds
    (alab.tmp / "add-host.log").write_text(run.output)
    assert run.returncode == 0, explain(run)
    recap = run.recap()
    assert recap["outpost1"]["changed"] == 0, run.changed_tasks()
    assert recap["outpost2"]["changed"] > 0
    assert recap["hub"]["changed"] > 0
    pid_after = (alab.hosts["outpost1"].root / "run" / "jupyterhub-outpost.pid").read_text()
    assert pid_before == pid_after, "the first Outpost was restarted"
    hub_pid_after = (alab.hosts["hub"].root / "run" / "jupyterhub.pid").read_text()
    assert hub_pid_before != hub_pid_after, "the hub must restart to read its new Outposts"
    outposts = json.loads((alab.hosts["hub"].root / "etc" / "outposts.json").read_text())
    assert set(outposts) == {"outpost1", "outpost2"}
    answer = start_server_and_fetch(alab, "bob", "second", "outpost2")
    assert answer["user"] == "bob"
    print("\nplaybook timings (s):", {k: round(v, 1) for k, v in TIMINGS.items()})
