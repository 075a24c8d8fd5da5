"""Two kind clusters, the project's images, and Helm releases on them, for the kind e2e.

Everything goes through argv lists (docker, kind and kubectl as pytest-kind runs them)
and Helm's Go engine from the helm-python-sdk wheel (no helm binary).

LoadBalancer Services: when ``cloud-provider-kind`` is on PATH it is started for the
session and gives every LoadBalancer an address on the kind Docker network (reachable
from the other cluster and from this host on Linux). Without it, the Services fall back
to NodePort and the node container's address is used.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import helm_python
import yaml
from pytest_kind import KindCluster

ROOT = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent
OUTPOST_IMAGE = "ghcr.io/jupyterhub-outpost/outpost:kind"
HUB_IMAGE = "ghcr.io/jupyterhub-outpost/hub:kind"
Z2JH_REPO = "https://hub.jupyter.org/helm-chart/"
Z2JH_VERSION = os.environ.get("Z2JH_VERSION", "4.0.0")
HUB_NS = "jhub"
OUTPOST_NS = "outpost"


def run(argv: list[str], *, timeout: float = 1800, env: dict | None = None) -> str:
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT
    )
    if result.returncode != 0:
        raise RuntimeError(f"{argv[:3]} failed ({result.returncode}): {result.stderr[-2000:]}")
    return result.stdout


def build_images() -> None:
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    run(["docker", "build", "-f", "images/outpost/Dockerfile", "-t", OUTPOST_IMAGE, "."], env=env)
    run(["docker", "build", "-f", "images/hub/Dockerfile", "-t", HUB_IMAGE, "."], env=env)


def merge(base: dict, *overrides: dict) -> dict:
    """Helm's -f semantics: maps merge deeply, anything else (lists too) is replaced."""
    out = copy.deepcopy(base)
    for override in overrides:
        for key, value in override.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merge(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
    return out


def scenario_values(scenario: str, name: str) -> dict:
    return yaml.safe_load((ROOT / "scenarios" / scenario / "kind" / name).read_text()) or {}


@dataclass
class Keys:
    """Generated per run: what operators exchange between the two sides."""

    hub_private: str
    hub_public: str
    host_private: str
    host_public: str
    password: str

    @classmethod
    def generate(cls) -> Keys:
        hub = asyncssh.generate_private_key("ssh-ed25519")
        host = asyncssh.generate_private_key("ssh-ed25519")
        return cls(
            hub_private=hub.export_private_key().decode(),
            hub_public=hub.export_public_key().decode().strip(),
            host_private=host.export_private_key().decode(),
            host_public=host.export_public_key().decode().strip(),
            password=os.urandom(24).hex(),
        )


class Cluster:
    """One kind cluster with kubectl and Helm on it."""

    def __init__(
        self,
        name: str,
        config: Path,
        kind_path: Path | None = None,
        kubectl_path: Path | None = None,
    ):
        self.kind = KindCluster(name, kind_path=kind_path, kubectl_path=kubectl_path)
        self.config = config

    def create(self, images: list[str]) -> None:
        self.kind.create(config_file=self.config)
        for image in images:
            self.kind.load_docker_image(image)

    def delete(self) -> None:
        self.kind.delete()

    def kubectl(self, *args: str) -> str:
        return self.kind.kubectl(*args)

    def helm(self, namespace: str) -> helm_python.Config:
        return helm_python.Config(
            kubeconfig_path=Path(self.kind.kubeconfig_path).resolve(), namespace=namespace
        )

    def install(self, release: str, chart, values: dict, namespace: str, **kwargs) -> None:
        """helm upgrade --install --wait."""
        with self.helm(namespace) as helm:
            try:
                helm.status(release)
            except helm_python.HelmNotFoundError:
                helm.install(
                    chart,
                    release,
                    values,
                    namespace=namespace,
                    create_namespace=True,
                    wait="watcher",
                    timeout=900,
                    **kwargs,
                )
            else:
                helm.upgrade(
                    chart,
                    release,
                    values,
                    namespace=namespace,
                    wait="watcher",
                    timeout=900,
                    **kwargs,
                )

    def uninstall(self, release: str, namespace: str) -> None:
        with self.helm(namespace) as helm:
            helm.uninstall(release, wait="watcher", timeout=600, ignore_not_found=True)

    def delete_namespace(self, namespace: str) -> None:
        self.kubectl(
            "delete", "namespace", namespace, "--ignore-not-found", "--wait=true", "--timeout=600s"
        )

    def node_address(self) -> str:
        out = run(
            [
                "docker",
                "inspect",
                "-f",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
                f"{self.kind.name}-control-plane",
            ]
        )
        return out.split()[0]

    def service_address(self, namespace: str, name: str, timeout: float = 300) -> tuple[str, int]:
        """(host, port) from outside the cluster: the LoadBalancer address, else node:nodePort."""
        deadline = time.monotonic() + timeout
        while True:
            service = json.loads(
                self.kubectl("get", "service", "-n", namespace, name, "-o", "json")
            )
            port = service["spec"]["ports"][0]
            if service["spec"]["type"] == "NodePort":
                return self.node_address(), port["nodePort"]
            ingress = service.get("status", {}).get("loadBalancer", {}).get("ingress") or []
            if ingress:
                return ingress[0].get("ip") or ingress[0]["hostname"], port["port"]
            if time.monotonic() > deadline:
                raise TimeoutError(f"Service {namespace}/{name} got no LoadBalancer address")
            time.sleep(3)

    def rollout_restart(self, namespace: str, deployment: str) -> None:
        self.kubectl("rollout", "restart", "-n", namespace, f"deployment/{deployment}")
        self.kubectl(
            "rollout", "status", "-n", namespace, f"deployment/{deployment}", "--timeout=600s"
        )

    def pods(self, namespace: str, selector: str) -> list[dict]:
        return json.loads(
            self.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json")
        )["items"]

    def services(self, namespace: str, selector: str) -> list[dict]:
        return json.loads(
            self.kubectl("get", "services", "-n", namespace, "-l", selector, "-o", "json")
        )["items"]


class LoadBalancers:
    """cloud-provider-kind for the session, or None: then Services use NodePort."""

    def __init__(self) -> None:
        self.binary = shutil.which("cloud-provider-kind")
        self.process: subprocess.Popen | None = None

    @property
    def available(self) -> bool:
        return self.binary is not None

    def start(self) -> None:
        if self.binary:
            self.process = subprocess.Popen(
                [self.binary], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def service_type(self) -> str:
        return "LoadBalancer" if self.available else "NodePort"


# --- the values each release gets: scenario file + what this run generated -------------


def outpost_values(scenario: str, keys: Keys, service_type: str) -> dict:
    """The remote Outpost's values: the scenario's file, the hub's password and public
    key, the host key generated for this run, and LoadBalancer or NodePort Services."""
    name = "outpost-remote.yaml" if scenario == "remote-local" else "outpost.yaml"
    return merge(
        scenario_values(scenario, name),
        {
            "hubs": {"hub": {"password": keys.password, "sshPublicKeys": [keys.hub_public]}},
            "ssh": {"hostKey": keys.host_private},
            "service": {"type": service_type},
            "sshService": {"type": service_type},
        },
    )


def local_outpost_values(scenario: str, password: str) -> dict:
    return merge(
        scenario_values(scenario, "outpost-local.yaml"), {"hubs": {"hub": {"password": password}}}
    )


def addons_values(
    scenario: str,
    keys: Keys,
    *,
    api: tuple[str, int],
    ssh: tuple[str, int],
    hub_api_url: str,
    local_password: str | None = None,
) -> dict:
    """hub-addons' values: the scenario's file plus the remote Outpost's addresses, the
    pinned host key and the credentials of this run."""
    outposts = {
        "remote": {
            "url": f"http://{api[0]}:{api[1]}",
            "password": keys.password,
            "hubApiUrl": hub_api_url,
            "ssh": {"host": ssh[0], "port": ssh[1], "hostKey": keys.host_public},
        }
    }
    if local_password:
        outposts["local"] = {"password": local_password}
    return merge(
        scenario_values(scenario, "hub-addons.yaml"),
        {"sshKey": keys.hub_private, "outposts": outposts},
    )


def z2jh_values(scenario: str, addons_z2jh_values: dict, service_type: str, e2e_token: str) -> dict:
    """zero-to-jupyterhub's values: the scenario's jupyterhub.yaml, then what hub-addons
    rendered (as a second -f file), then an admin service token for the test."""
    return merge(
        scenario_values(scenario, "jupyterhub.yaml"),
        addons_z2jh_values,
        {
            "proxy": {"service": {"type": service_type}},
            "hub": {
                "services": {"e2e": {"apiToken": e2e_token}},
                "loadRoles": {
                    "e2e": {
                        "services": ["e2e"],
                        "scopes": ["admin:users", "admin:servers", "access:servers", "list:users"],
                    }
                },
            },
        },
    )
