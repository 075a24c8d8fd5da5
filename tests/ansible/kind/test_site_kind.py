"""site.yml for real on two kind clusters built here, as a multi-site operator runs it.

A hub cluster and an Outpost cluster (node image, kind, kubectl and MetalLB from
outpost_scenarios.kindbuild; the hub, configurable-http-proxy and outpost images of
images/ loaded into them) and one kubeconfig with a context per cluster, as on an
operator's control node. The inventory names each cluster by that kubeconfig and
context, and pins the LoadBalancer addresses (the Outpost's API and SSH Services, the
hub's proxy-public) from each cluster's MetalLB pool, the way a site reserves addresses
before it tells others about them.

ansible-playbook (kubernetes.core.helm driving a helm v3 binary built here from the Go
module proxy) installs charts/jupyterhub-outpost on the Outpost cluster, and on the hub
cluster charts/hub-addons (tunnel daemon as a Deployment) and the hub itself: z2jh's
chart cannot be fetched here, so hub_addons_jupyterhub_chart_ref names the scenario
runner's z2jh-compatible chart. Then, from this host and from the pods: the Outpost
answers /ping at its address and takes the hub's credentials; its SSH endpoint accepts
the hub's key under the pinned host key; the tunnel daemon is Ready and opens its SSH
link to the Outpost across the clusters (and refuses another host key); the hub lists
the Outpost's flavors, fetched from the other cluster with what the rollout gave it; a
second run reports changed=0 for every host.

The clusters are deleted at the end (``OUTPOST_KIND_KEEP=1`` keeps them).
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import os
import secrets
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest
import yaml
from outpost_scenarios import kind
from outpost_scenarios.kindbuild import cluster as kindcluster
from outpost_scenarios.kindbuild import metallb
from outpost_scenarios.kindbuild.commands import run

from ..lab import BIN, REPO, PlaybookRun, run_playbook, write_yaml

pytestmark = [pytest.mark.slow]

HUB_CLUSTER = "outpost-ansible-hub"
OUTPOST_CLUSTER = "outpost-ansible-remote"
HUB_NS = "jhub"
OUTPOST_NS = "outpost"
# zero-to-jupyterhub's chart cannot be fetched here: the scenario runner's compatible one
Z2JH_CHART = REPO / "scenario-runner" / "charts" / "jupyterhub"
PLAYBOOK_TIMEOUT = 1800  # first run: two helm installs with --wait on a loaded 2-core machine


def say(message: str) -> None:
    print(f"ansible kind | {message}", flush=True)


@dataclass
class Site:
    """The two clusters, the inventory, the addresses it pins (the Outpost's API and SSH
    Services, the hub's proxy-public), the hub API token of its z2jh values, and helm."""

    hub: kind.Cluster
    outpost: kind.Cluster
    inventory: Path
    api_ip: str
    ssh_ip: str
    hub_ip: str
    hub_token: str
    helm: Path

    @property
    def trust(self) -> Path:
        return self.inventory.parent / "trust"

    @property
    def rendered(self) -> Path:
        return self.inventory.parent / "rendered"

    def playbook(self, *args: str) -> PlaybookRun:
        path = f"{self.helm.parent}:{BIN}:{os.environ.get('PATH', '')}"
        return run_playbook(
            self.inventory,
            "site.yml",
            *args,
            timeout=PLAYBOOK_TIMEOUT,
            env_extra={"PATH": path},
            tmp=self.inventory.parent,
        )


def operator_kubeconfig(path: Path, tools, *clusters: kind.Cluster) -> None:
    """One kubeconfig with a context per cluster (``kind-<name>``), as on a control node."""
    for c in clusters:
        run(
            [str(tools.kind), "export", "kubeconfig", "--name", c.name, f"--kubeconfig={path}"],
            env=tools.env(),
            timeout=60,
        )


def reserved_addresses(tools, cluster: kind.Cluster, count: int) -> list[str]:
    """The first ``count`` addresses of the cluster's MetalLB pool, for pinned Services."""
    first, _ = metallb.carve_pool(*kindcluster.node_network(cluster.name, tools))
    return [str(ipaddress.ip_address(first) + i) for i in range(count)]


OUTPOST_CONFIG = """\
from kubespawner import KubeSpawner
c.JupyterHubOutpost.spawner_class = KubeSpawner
c.KubeSpawner.image = "ghcr.io/jupyterhub-outpost/singleuser:kind"
c.KubeSpawner.image_pull_policy = "Never"
c.JupyterHubOutpost.flavors = {
    "small": {"max": 2, "weight": 10, "display_name": "Small", "runtime": {"hours": 8}},
}
"""


def write_inventory(directory: Path, kubeconfig: Path, site: dict) -> Path:
    """hosts.yml, group_vars and host_vars as an operator writes them (trust/ and
    rendered/ go next to them, the roles' defaults). ``site``: api_ip, ssh_ip, hub_ip and
    hub_token (a service token the test reads the hub API with)."""
    api_ip, ssh_ip, hub_ip = site["api_ip"], site["ssh_ip"], site["hub_ip"]
    image = {"tag": kind.IMAGE_TAG, "pullPolicy": "Never"}
    hosts = {
        "all": {
            "children": {
                "hubs": {
                    "hosts": {
                        "hub": {
                            "hub_addons_kube_context": f"kind-{HUB_CLUSTER}",
                            "hub_addons_namespace": HUB_NS,
                        }
                    }
                },
                "outposts_host": {"hosts": {}},
                "outposts_kubernetes": {
                    "hosts": {
                        "remote": {
                            "outpost_trust_display_name": "Remote kind cluster",
                            "outpost_kubernetes_kube_context": f"kind-{OUTPOST_CLUSTER}",
                            "outpost_kubernetes_namespace": OUTPOST_NS,
                            "outpost_kubernetes_url": f"http://{api_ip}:8080",
                            "outpost_kubernetes_ssh_host": ssh_ip,
                        }
                    }
                },
            }
        }
    }
    group_vars = {
        "all": {
            "ansible_connection": "local",
            "ansible_python_interpreter": "{{ ansible_playbook_python }}",
        },
        "hubs": {
            "hub_addons_mode": "kubernetes",
            "hub_addons_kubeconfig": str(kubeconfig),
            # where the Outposts' servers reach the hub API (events, flavor usage)
            "outpost_trust_hub_api_url": f"http://{hub_ip}/hub/api",
            "hub_addons_values": {
                "tunnel": {
                    "mode": "deployment",
                    "image": {"repository": "ghcr.io/jupyterhub-outpost/hub", **image},
                },
                "jupyterhub": {"hubImage": {"tag": kind.IMAGE_TAG}},
            },
            "hub_addons_jupyterhub_chart_ref": str(Z2JH_CHART),
            "hub_addons_jupyterhub_values": {
                "hub": {
                    "image": {"pullPolicy": "Never"},
                    "config": {"JupyterHub": {"authenticator_class": "dummy"}},
                    "services": {"site-check": {"apiToken": site["hub_token"]}},
                },
                "proxy": {
                    "service": {"type": "LoadBalancer", "loadBalancerIP": hub_ip},
                    "chp": {"image": image},
                },
            },
        },
        "outposts_kubernetes": {"outpost_kubernetes_kubeconfig": str(kubeconfig)},
    }
    host_vars = {
        "remote": {
            "outpost_kubernetes_values": {
                "image": {"repository": "ghcr.io/jupyterhub-outpost/outpost", **image},
                "outpostConfig": OUTPOST_CONFIG,
                "service": {"type": "LoadBalancer", "loadBalancerIP": api_ip},
                "sshService": {"type": "LoadBalancer", "loadBalancerIP": ssh_ip},
                # the hub's callback URLs are on the kind Docker network (a private range)
                "networkPolicy": {"egress": {"privateIPs": True}},
            }
        }
    }
    for kind_of_vars, content in (("group_vars", group_vars), ("host_vars", host_vars)):
        (directory / kind_of_vars).mkdir(parents=True)
        for name, data in content.items():
            write_yaml(directory / kind_of_vars / f"{name}.yml", data)
    write_yaml(directory / "hosts.yml", hosts)
    return directory / "hosts.yml"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tools = kindcluster.ensure_node_image(say)
    helm = kindcluster.ensure_helm(say)
    images = kind.build_images(say)
    workdir = tmp_path_factory.mktemp("ansible-kind")
    hub = kind.Cluster(HUB_CLUSTER, kind.HUB_CONFIG, tools, workdir)
    outpost = kind.Cluster(OUTPOST_CLUSTER, kind.REMOTE_CONFIG, tools, workdir)
    try:
        say(f"creating {hub.name} and {outpost.name}")
        hub.create([images["hub"], images["configurable-http-proxy"]])
        outpost.create([images["outpost"]])  # no server is started: no singleuser image
        kubeconfig = workdir / "kubeconfig"
        operator_kubeconfig(kubeconfig, tools, hub, outpost)
        api_ip, ssh_ip = reserved_addresses(tools, outpost, 2)
        (hub_ip,) = reserved_addresses(tools, hub, 1)
        addresses = dict(api_ip=api_ip, ssh_ip=ssh_ip, hub_ip=hub_ip)
        token = secrets.token_hex(32)
        inventory = write_inventory(
            workdir / "inventory", kubeconfig, {**addresses, "hub_token": token}
        )
        yield Site(hub, outpost, inventory, **addresses, hub_token=token, helm=helm)
    finally:
        if os.environ.get("OUTPOST_KIND_KEEP"):
            say(f"kept {hub.name} and {outpost.name} (OUTPOST_KIND_KEEP); kubeconfigs in {workdir}")
        else:
            kind.down_clusters(hub, outpost)


@pytest.fixture(scope="module")
def rollout(site):
    """(first run, second run) of site.yml."""
    first = site.playbook()
    say(f"first run: {first.seconds:.0f}s, recap {first.recap()}")
    assert first.returncode == 0, first.output[-8000:]
    second = site.playbook()
    say(f"second run: {second.seconds:.0f}s, recap {second.recap()}")
    return first, second


def rendered_values(site: Site, name: str) -> dict:
    return yaml.safe_load((site.rendered / name).read_text())


def http_get(
    url: str, auth: tuple[str, str] | None = None, token: str | None = None
) -> tuple[int, str]:
    headers = {}
    if auth:
        basic = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {basic}"
    if token:
        headers["Authorization"] = f"token {token}"
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 (http on the kind network)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


# Run in the tunnel daemon's pod (its image has Python): asks the daemon's API, as the
# hub does, for a forward over the Outpost's SSH endpoint, waits (backoff) until its SSH
# link is up or has failed, removes the forward, prints the link's last state. Input on
# stdin: {"token", "key", "body"} (the token never appears in a command line).
FORWARD_PROBE = """
import json, sys, time, urllib.request
given = json.load(sys.stdin)
url = "http://127.0.0.1:8765/forwards/" + given["key"]
def call(method, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": "token " + given["token"], "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        text = response.read().decode()
        return json.loads(text) if text else None
call("PUT", given["body"])
deadline, delay = time.monotonic() + 120, 0.1
while True:
    state = call("GET")
    if state["state"] in ("up", "error") or time.monotonic() > deadline:
        break
    time.sleep(delay)
    delay = min(delay * 2, 3)
call("DELETE")
print(json.dumps(state))
"""


def tunnel_daemon_link_state(site: Site, host_key: str | None = None) -> dict:
    """The tunnel daemon's forward over the Outpost's SSH endpoint (FORWARD_PROBE), with
    the host key pinned by the rollout unless ``host_key`` is given."""
    ssh = rendered_values(site, "hub-hub-addons.values.yaml")["outposts"]["remote"]["ssh"]
    given = {
        "token": (site.trust / "hub-hub.tunnel_api_token").read_text().strip(),
        "key": "ansible-kind-probe",
        "body": {
            "ssh": {
                "host": ssh["host"],
                "port": ssh["port"],
                "user": "hub",
                "host_key": host_key or ssh["hostKey"],
            },
            "target_host": "127.0.0.1",
            "target_port": 8080,
        },
    }
    argv = [
        str(site.hub.tools.kubectl),
        "exec",
        "-i",
        "-n",
        HUB_NS,
        "deployment/hub-addons-tunnels",
        "--",
        "python3",
        "-c",
        FORWARD_PROBE,
    ]
    env = site.hub.tools.env(site.hub.kubeconfig_path)
    out = run(argv, env=env, stdin=json.dumps(given).encode(), timeout=300)
    return json.loads(out.strip().splitlines()[-1])


def releases(cluster: kind.Cluster) -> set[tuple[str, str]]:
    """(namespace, release) of every deployed Helm release in the cluster."""
    stored = cluster.json("get", "secrets", "-A", "-l", "owner=helm,status=deployed")
    return {(s["metadata"]["namespace"], s["metadata"]["labels"]["name"]) for s in stored["items"]}


def test_site_yml_installs_each_chart_on_its_own_cluster(site, rollout):
    assert releases(site.outpost) == {(OUTPOST_NS, "outpost")}
    assert releases(site.hub) == {(HUB_NS, "hub-addons"), (HUB_NS, "jupyterhub")}


def test_outpost_answers_ping_at_its_loadbalancer_address_from_this_host(site, rollout):
    service = site.outpost.json("get", "service", "-n", OUTPOST_NS, "outpost-jupyterhub-outpost")
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["status"]["loadBalancer"]["ingress"][0]["ip"] == site.api_ip
    status, body = http_get(f"http://{site.api_ip}:8080/ping")
    assert status == 200, body
    assert json.loads(body)["status"] == "ok"


def test_outpost_takes_the_credentials_the_rollout_gave_the_hub(site, rollout):
    hub_values = rendered_values(site, "hub-hub-addons.values.yaml")
    remote = hub_values["outposts"]["remote"]
    assert remote["url"] == f"http://{site.api_ip}:8080"
    status, body = http_get(f"{remote['url']}/flavors", auth=("hub", remote["password"]))
    assert status == 200, body
    assert "small" in json.loads(body)
    status, _ = http_get(f"{remote['url']}/flavors", auth=("hub", remote["password"] + "x"))
    assert status in (401, 403)


def test_outpost_ssh_endpoint_accepts_the_hub_key_with_the_pinned_host_key(site, rollout):
    hub_values = rendered_values(site, "hub-hub-addons.values.yaml")
    ssh = hub_values["outposts"]["remote"]["ssh"]
    assert (ssh["host"], ssh["port"]) == (site.ssh_ip, 22)
    pinned = asyncssh.import_public_key(ssh["hostKey"])
    hub_key = asyncssh.import_private_key((site.trust / "hub-hub.ssh_ed25519").read_text())

    async def login() -> str:
        async with asyncssh.connect(
            ssh["host"],
            ssh["port"],
            username="hub",
            client_keys=[hub_key],
            known_hosts=([pinned], [], []),
            agent_path=None,
            config=None,
        ) as conn:
            return conn.get_extra_info("server_version")

    assert asyncio.run(asyncio.wait_for(login(), 60))


def test_tunnel_daemon_deployment_is_ready_on_the_hub_cluster(site, rollout):
    deployment = site.hub.json("get", "deployment", "-n", HUB_NS, "hub-addons-tunnels")
    assert deployment["status"].get("readyReplicas") == 1, deployment["status"]
    pods = site.hub.pods(HUB_NS, "app.kubernetes.io/component=tunnels")
    assert len(pods) == 1
    ready = {c["type"]: c["status"] for c in pods[0]["status"]["conditions"]}
    assert ready["Ready"] == "True"


def test_tunnel_daemon_reaches_the_outposts_ssh_endpoint_across_clusters(site, rollout):
    """The external tunnel daemon (hub cluster) opens its SSH link to the Outpost's SSH
    LoadBalancer (Outpost cluster) with the hub's key and the pinned host key; with any
    other host key it refuses."""
    assert tunnel_daemon_link_state(site)["state"] == "up"
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    refused = tunnel_daemon_link_state(site, host_key=other.strip())
    assert refused["state"] == "error", refused
    assert "host key mismatch" in refused["error"]


def test_hub_lists_the_outposts_flavors_it_fetched_across_clusters(site, rollout):
    service = site.hub.json("get", "service", "-n", HUB_NS, "proxy-public")
    assert service["status"]["loadBalancer"]["ingress"][0]["ip"] == site.hub_ip
    status, body = http_get(f"http://{site.hub_ip}/hub/health")
    assert status == 200, body
    status, body = http_get(f"http://{site.hub_ip}/hub/api/outpost/flavors", token=site.hub_token)
    assert status == 200, body
    remote = json.loads(body)["remote"]
    assert remote["display_name"] == "Remote kind cluster"
    assert remote["flavors"]["small"]["max"] == 2


def test_second_run_changes_nothing_on_any_host(site, rollout):
    first, second = rollout
    assert all(first.recap()[host]["changed"] for host in ("hub", "remote")), first.recap()
    assert second.returncode == 0, second.output[-8000:]
    recap = second.recap()
    assert set(recap) >= {"hub", "remote"}, recap
    changed = {host: r["changed"] for host, r in recap.items() if r["changed"]}
    assert changed == {}, second.changed_tasks()


def hub_pod(site: Site) -> str:
    """The hub pod's name (a replaced one may still be terminating)."""
    pods = site.hub.pods(HUB_NS, "app=jupyterhub,component=hub")
    (pod,) = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    return pod["metadata"]["name"]


def test_a_changed_outpost_reaches_the_running_hub_on_the_next_run(site, rollout):
    """Runs last (it changes the site): the Outpost's display name changes in the
    inventory; the next run replaces the hub pod (the hub reads its Outposts at start),
    and the hub shows the new name."""
    before = hub_pod(site)
    hosts = yaml.safe_load(site.inventory.read_text())
    remote = hosts["all"]["children"]["outposts_kubernetes"]["hosts"]["remote"]
    remote["outpost_trust_display_name"] = "Remote kind cluster, renamed"
    write_yaml(site.inventory, hosts)
    third = site.playbook()
    assert third.returncode == 0, third.output[-8000:]
    assert third.recap()["hub"]["changed"], third.recap()
    assert hub_pod(site) != before
    status, body = http_get(f"http://{site.hub_ip}/hub/api/outpost/flavors", token=site.hub_token)
    assert status == 200, body
    assert json.loads(body)["remote"]["display_name"] == "Remote kind cluster, renamed"
