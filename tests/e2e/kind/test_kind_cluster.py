"""Kind clusters from the node image built here (docs/kind.md): no mocked cluster.

Two single-node clusters are created from the image ``make kind-images`` built, each with
MetalLB, as kind mode creates them (``outpost_scenarios.kindbuild.create_cluster``). The
tests prove what the charts rely on: the node is Ready with our Kubernetes, pods resolve
cluster names through CoreDNS, a PersistentVolumeClaim binds through local-path, and a
``type: LoadBalancer`` Service gets an address that answers from this host and from a pod
of the other cluster. Pods run the project's Debian tools image (busybox for httpd/wget).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
import urllib.request
from ipaddress import ip_address

import pytest
from outpost_scenarios.kindbuild import cluster as kindcluster
from outpost_scenarios.kindbuild.images import COREDNS_IMAGE, TOOLS_IMAGE
from outpost_scenarios.kindbuild.recipe import KUBERNETES

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]
NAMES = ("outpost-kindtest-a", "outpost-kindtest-b")


class Kube:
    """kubectl on one cluster."""

    def __init__(self, name: str, kubeconfig, tools):
        self.name = name
        self.kubeconfig = kubeconfig
        self.tools = tools

    def __call__(self, *args: str, stdin: str | None = None, timeout: float = 600) -> str:
        result = self.result(*args, stdin=stdin, timeout=timeout)
        assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
        return result.stdout

    def result(self, *args: str, stdin: str | None = None, timeout: float = 600):
        return subprocess.run(
            [str(self.tools.kubectl), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.tools.env(self.kubeconfig),
            timeout=timeout,
        )

    def apply(self, *objects: dict) -> None:
        self(
            "apply",
            "-f",
            "-",
            stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}),
        )

    def run_pod(self, name: str, command: list[str], **spec) -> str:
        """Run ``command`` in a pod of the tools image to completion; its log."""
        container = {"name": "main", "image": TOOLS_IMAGE, "command": command}
        container.update(spec.pop("container", {}))
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"restartPolicy": "Never", "containers": [container], **spec},
            }
        )
        waited = self.result(
            "wait", "--for=jsonpath={.status.phase}=Succeeded", f"pod/{name}", "--timeout=300s"
        )
        log = self.result("logs", f"pod/{name}").stdout
        assert waited.returncode == 0, (
            f"pod {name} did not succeed: {waited.stderr}\nlog: {log}\n"
            + self.result("get", "pod", name, "-o", "jsonpath={.status}").stdout
        )
        return log


@pytest.fixture(scope="module")
def clusters():
    tools = kindcluster.ensure_node_image()
    created = {}
    try:
        for name in NAMES:
            start = time.monotonic()
            kubeconfig = kindcluster.create_cluster(name, tools=tools)
            print(f"cluster {name} up with MetalLB in {time.monotonic() - start:.0f} s")
            created[name] = Kube(name, kubeconfig, tools)
        yield created
    finally:
        for name in NAMES:
            kindcluster.delete_cluster(name, tools=tools)


def test_cluster_from_our_node_image_is_ready_with_our_kubernetes(clusters):
    kube = clusters[NAMES[0]]
    version = json.loads(kube("version", "-o", "json"))
    assert version["serverVersion"]["gitVersion"] == KUBERNETES
    node = json.loads(kube("get", "node", f"{NAMES[0]}-control-plane", "-o", "json"))
    ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
    assert ready == "True"
    inspected = subprocess.run(
        ["docker", "inspect", "--format", "{{.Config.Image}}", f"{NAMES[0]}-control-plane"],
        capture_output=True,
        text=True,
        env=kube.tools.env(),
        check=True,
    )
    assert inspected.stdout.strip() == kube.tools.image


def test_pod_resolves_cluster_names_through_coredns(clusters):
    kube = clusters[NAMES[0]]
    coredns = json.loads(kube("get", "deployment", "-n", "kube-system", "coredns", "-o", "json"))
    assert coredns["spec"]["template"]["spec"]["containers"][0]["image"] == COREDNS_IMAGE
    service_ip = kube("get", "service", "kubernetes", "-o", "jsonpath={.spec.clusterIP}")

    out = kube.run_pod("dns", ["getent", "hosts", "kubernetes.default.svc.cluster.local"])

    assert out.split()[0] == service_ip


def test_claim_binds_through_local_path_and_the_pod_writes_to_it(clusters):
    kube = clusters[NAMES[0]]
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data", "namespace": "default"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        }
    )
    kube.run_pod(
        "writer",
        ["touch", "/data/written-by-pod"],
        container={"volumeMounts": [{"name": "data", "mountPath": "/data"}]},
        volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
    )

    claim = json.loads(kube("get", "pvc", "data", "-o", "json"))
    assert claim["status"]["phase"] == "Bound"
    assert claim["spec"]["storageClassName"] == "standard"
    volume = json.loads(kube("get", "pv", claim["spec"]["volumeName"], "-o", "json"))
    path = (
        volume["spec"]["hostPath"]["path"]
        if "hostPath" in volume["spec"]
        else volume["spec"]["local"]["path"]
    )
    listing = subprocess.run(
        ["docker", "exec", f"{NAMES[0]}-control-plane", "ls", path],
        capture_output=True,
        text=True,
        env=kube.tools.env(),
        check=True,
    )
    assert "written-by-pod" in listing.stdout.split()


def test_loadbalancer_answers_from_this_host_and_from_a_pod_of_another_cluster(clusters):
    server, client = clusters[NAMES[0]], clusters[NAMES[1]]
    token = secrets.token_hex(8)
    labels = {"app": "lb-proof"}
    server.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "lb-proof", "namespace": "default"},
            "data": {"index.html": token},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "lb-proof", "namespace": "default"},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "httpd",
                                "image": TOOLS_IMAGE,
                                "command": ["busybox", "httpd", "-f", "-p", "8080", "-h", "/www"],
                                "volumeMounts": [{"name": "www", "mountPath": "/www"}],
                                "readinessProbe": {"tcpSocket": {"port": 8080}},
                            }
                        ],
                        "volumes": [{"name": "www", "configMap": {"name": "lb-proof"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "lb-proof", "namespace": "default"},
            "spec": {
                "type": "LoadBalancer",
                "selector": labels,
                "ports": [{"port": 80, "targetPort": 8080}],
            },
        },
    )
    server("rollout", "status", "deployment/lb-proof", "--timeout=300s")
    server(
        "wait",
        "--for=jsonpath={.status.loadBalancer.ingress[0].ip}",
        "service/lb-proof",
        "--timeout=120s",
    )
    address = server(
        "get", "service", "lb-proof", "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}"
    )
    network, node = kindcluster.node_network(server.name, server.tools)
    first, last = kindcluster.metallb.carve_pool(network, node)
    assert ip_address(first) <= ip_address(address) <= ip_address(last)

    with urllib.request.urlopen(f"http://{address}/", timeout=30) as response:  # noqa: S310
        assert response.read().decode() == token

    out = client.run_pod("lb-client", ["busybox", "wget", "-q", "-O", "-", f"http://{address}/"])
    assert out == token
