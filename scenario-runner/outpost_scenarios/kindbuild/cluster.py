"""Kind clusters from the node image built here, with MetalLB: the API kind mode uses.

    tools = ensure_node_image()            # engine up, everything built or found
    kubeconfig = create_cluster("demo-hub", config, tools=tools)
    ...
    delete_cluster("demo-hub", tools=tools)

``kind``, ``kubectl`` and ``docker`` run with ``tools.env()`` (DOCKER_HOST of the project's
engine). A cluster is created with the kind config given (a path or a dict) plus two
kubeadm patches: CoreDNS's image tag (kubeadm 1.34 would ask for v1.12.1, the image holds
v1.14.3) and ``failCgroupV1: false`` for the kubelet; then MetalLB gets the cluster's
address pool and CoreDNS is waited for.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import cache, gobuild, metallb, nodeimage
from .commands import BuildError, run
from .engine import Engine
from .recipe import COREDNS, HELM, ROOT

KIND_NETWORK = "kind"
DNS_PATCH = {"kind": "ClusterConfiguration", "dns": {"imageTag": COREDNS}}
# Our machines mount cgroup v1. Kubelet 1.34 runs there by default (failCgroupV1 defaults
# to false up to 1.34, true from 1.35); said explicitly so that it stays so.
CGROUP_V1_PATCH = {"kind": "KubeletConfiguration", "failCgroupV1": False}


@dataclass(frozen=True)
class NodeTools:
    """The node image and the programs to drive clusters of it."""

    image: str
    kind: Path
    kubectl: Path
    docker_host: str

    def env(self, kubeconfig: Path | None = None) -> dict[str, str]:
        env = {**os.environ, "DOCKER_HOST": self.docker_host}
        if kubeconfig is not None:
            env["KUBECONFIG"] = str(kubeconfig)
        return env


def build_log() -> Path:
    return cache.cache_dir() / "build.log"


def ensure_node_image(
    say: Callable[[str], None] = print, engine: Engine | None = None
) -> NodeTools:
    """Start the project's Docker engine if needed, build whatever of the node image and
    its programs is missing (Go module proxy, Debian, nothing else), and return them.

    The first run takes long (Kubernetes is compiled); later runs find everything.
    ``kind`` and ``kubectl`` are also linked as ``<cache>/bin/kind`` and ``kubectl``."""
    engine = engine or Engine()
    if engine.start():
        say(f"started the Docker engine ({engine.host}, log {engine.log})")
    problem = engine.problem()
    if problem:
        raise BuildError(problem)
    built = nodeimage.ensure(engine, build_log(), say)
    link_program("kind", built.kind)
    link_program("kubectl", built.kubectl)
    return NodeTools(built.image, built.kind, built.kubectl, engine.host)


def link_program(name: str, target: Path) -> Path:
    """``<cache>/bin/<name>`` -> ``target`` (a stable path for PATH)."""
    bin_dir = cache.cache_dir() / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    link = bin_dir / name
    link.unlink(missing_ok=True)
    link.symlink_to(target)
    return link


def ensure_helm(say: Callable[[str], None] = print) -> Path:
    """The helm binary that kubernetes.core.helm runs (ansible/), built from the Go
    module proxy unless cached (recipe.HELM); linked as ``<cache>/bin/helm``."""
    say(f"helm {HELM} (built here on the first run)")
    return link_program("helm", gobuild.build("helm", build_log())["helm"])


def cluster_config(config: Path | dict | None) -> dict:
    """The kind config to create a cluster with: ``config`` plus kubeadm patches for the
    CoreDNS tag and cgroup v1.

    Single-node only: the node image's CNI (bridge) makes no routes between nodes."""
    if isinstance(config, (str, Path)):
        loaded = yaml.safe_load(Path(config).read_text()) or {}
    else:
        loaded = dict(config or {})
    loaded.setdefault("kind", "Cluster")
    loaded.setdefault("apiVersion", "kind.x-k8s.io/v1alpha4")
    nodes = loaded.get("nodes") or [{"role": "control-plane"}]
    if len(nodes) != 1:
        raise BuildError(
            f"the kind config has {len(nodes)} nodes: clusters of the node image built here "
            "have one node (its CNI is the bridge plugin, which routes no pods between nodes)"
        )
    if (loaded.get("networking") or {}).get("disableDefaultCNI"):
        raise BuildError("disableDefaultCNI: the node image's CNI is its default CNI")
    patches = [p for p in loaded.get("kubeadmConfigPatches") or [] if p]
    ours = [yaml.safe_dump(DNS_PATCH), yaml.safe_dump(CGROUP_V1_PATCH)]
    loaded["kubeadmConfigPatches"] = [*patches, *ours]
    return loaded


def default_kubeconfig(name: str) -> Path:
    return ROOT / "run" / "kind" / name / "kubeconfig"


def clusters(tools: NodeTools) -> list[str]:
    return run([str(tools.kind), "get", "clusters"], env=tools.env(), timeout=60).split()


def running_image(name: str, tools: NodeTools) -> str | None:
    """The node image the cluster ``name`` runs, None when there is no such cluster."""
    return node_image(name, tools) if name in clusters(tools) else None


def reusable(name: str, tools: NodeTools) -> bool:
    """Whether ``create_cluster(name)`` reuses a cluster: one of this name runs
    ``tools.image``."""
    return running_image(name, tools) == tools.image


def create_cluster(
    name: str,
    config: Path | dict | None = None,
    *,
    tools: NodeTools | None = None,
    kubeconfig: Path | None = None,
    wait: float = 600,
    say: Callable[[str], None] = print,
) -> Path:
    """Create the kind cluster ``name`` (or reuse it) with MetalLB; return its kubeconfig.

    A cluster of this name is reused only when its node runs ``tools.image``: one of an
    older node image (another Kubernetes, other node files) is deleted and created anew.
    LoadBalancer Services of the cluster get an address on the kind network that this
    host and other kind clusters' pods reach (see metallb.py)."""
    tools = tools or ensure_node_image()
    kubeconfig = kubeconfig or default_kubeconfig(name)
    kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    env = tools.env()
    running = running_image(name, tools)
    if running is not None and running != tools.image:
        say(f"cluster {name} runs the node image {running}, not {tools.image}: recreating it")
        delete_cluster(name, tools=tools)
    if running == tools.image:
        say(f"cluster {name} exists with this node image: reusing it")
        run(
            [str(tools.kind), "export", "kubeconfig", "--name", name, f"--kubeconfig={kubeconfig}"],
            env=env,
        )
    else:
        config_file = kubeconfig.with_name("kind-config.yaml")
        config_file.write_text(yaml.safe_dump(cluster_config(config)))
        run(
            [
                str(tools.kind),
                "create",
                "cluster",
                "--name",
                name,
                "--image",
                tools.image,
                "--config",
                str(config_file),
                f"--kubeconfig={kubeconfig}",
                f"--wait={wait:.0f}s",
            ],
            env=env,
            timeout=wait + 300,
        )

    def kubectl(*args: str, stdin: bytes | None = None) -> str:
        return run(
            [str(tools.kubectl), *args], env=tools.env(kubeconfig), timeout=wait, stdin=stdin
        )

    metallb.install(kubectl, metallb.carve_pool(*node_network(name, tools)), timeout=wait)
    kubectl(
        "rollout", "status", "-n", "kube-system", "deployment/coredns", f"--timeout={wait:.0f}s"
    )
    return kubeconfig


def node_network(name: str, tools: NodeTools) -> tuple[str, str]:
    """(IPv4 CIDR of the kind network, the control-plane node's address on it)."""
    env = tools.env()
    network = json.loads(run(["docker", "network", "inspect", KIND_NETWORK], env=env))[0]
    subnets = [c["Subnet"] for c in network["IPAM"]["Config"] if ":" not in c.get("Subnet", ":")]
    node = json.loads(run(["docker", "inspect", f"{name}-control-plane"], env=env))[0]
    address = node["NetworkSettings"]["Networks"][KIND_NETWORK]["IPAddress"]
    if not subnets or not address:
        raise BuildError(f"the kind network has no IPv4 subnet or {name} has no address on it")
    return subnets[0], address


def node_image(name: str, tools: NodeTools) -> str:
    """The image the control-plane node of cluster ``name`` was created from."""
    return run(
        ["docker", "inspect", "--format", "{{.Config.Image}}", f"{name}-control-plane"],
        env=tools.env(),
        timeout=60,
    ).strip()


def delete_cluster(name: str, *, tools: NodeTools | None = None) -> None:
    """Delete the kind cluster ``name`` (kind says nothing when it does not exist)."""
    kind = str(tools.kind) if tools else shutil.which("kind") or "kind"
    env = tools.env() if tools else Engine().env()
    run([kind, "delete", "cluster", "--name", name], env=env, timeout=600)
