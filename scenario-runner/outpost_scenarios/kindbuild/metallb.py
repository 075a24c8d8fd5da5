"""MetalLB in L2 mode: LoadBalancer Services get addresses on the kind Docker network.

The manifest is MetalLB's own ``config/manifests/metallb-native.yaml`` from the
go.universe.tf/metallb module the recipe pins (CRDs, RBAC, the controller Deployment and
the speaker DaemonSet), with the controller and speaker images built here; the node image
preloads both. Each cluster then gets an IPAddressPool and an L2Advertisement: its speaker
answers ARP for the pool's addresses on the node's interface, so the host (which has an
address on the kind bridge) and the nodes of every other kind cluster reach them.

Pools: all kind clusters share one Docker network, so each cluster's pool must be its
own. ``carve_pool`` gives a cluster the block of ``BLOCK`` addresses numbered by its node's
offset in the network, taken from the upper half of the network. Docker hands out
container addresses from the bottom, so the blocks never meet a container address, and
two running clusters never have the same node address, hence never the same block.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable

from .commands import BuildError
from .gobuild import module_dir
from .images import METALLB_CONTROLLER_IMAGE, METALLB_SPEAKER_IMAGE
from .recipe import METALLB
from .waiting import wait_until

NAMESPACE = "metallb-system"
BLOCK = 8
UPSTREAM_IMAGES = {
    f"quay.io/metallb/controller:{METALLB}": METALLB_CONTROLLER_IMAGE,
    f"quay.io/metallb/speaker:{METALLB}": METALLB_SPEAKER_IMAGE,
}


def manifest() -> str:
    """metallb-native.yaml of the pinned release, with the images built here."""
    path = module_dir("metallb", "go.universe.tf/metallb") / "config/manifests/metallb-native.yaml"
    text = path.read_text()
    for upstream, ours in UPSTREAM_IMAGES.items():
        if text.count(f"image: {upstream}") != 1:
            raise BuildError(f"{path} does not name {upstream} once: update metallb.py")
        text = text.replace(f"image: {upstream}", f"image: {ours}")
    return text


def carve_pool(network: str, node_address: str, block: int = BLOCK) -> tuple[str, str]:
    """(first, last) address of the pool of the cluster whose node has ``node_address``
    on the IPv4 Docker network ``network`` (CIDR)."""
    net = ipaddress.ip_network(network)
    node = ipaddress.ip_address(node_address)
    if net.version != 4 or node not in net:
        raise BuildError(f"node address {node_address} is not an IPv4 address of {network}")
    half = net.num_addresses // 2
    offset = int(node) - int(net.network_address)
    if offset >= half // block - 1:  # the last block would reach the broadcast address
        raise BuildError(
            f"the kind network {network} is too small for a LoadBalancer pool for the node "
            f"{node_address} (blocks of {block} in its upper half); use a larger network"
        )
    first = net.network_address + half + offset * block
    return str(first), str(first + block - 1)


def pool_objects(first: str, last: str) -> list[dict]:
    """The IPAddressPool and the L2Advertisement of one cluster."""
    return [
        {
            "apiVersion": "metallb.io/v1beta1",
            "kind": "IPAddressPool",
            "metadata": {"name": "kind", "namespace": NAMESPACE},
            "spec": {"addresses": [f"{first}-{last}"]},
        },
        {
            "apiVersion": "metallb.io/v1beta1",
            "kind": "L2Advertisement",
            "metadata": {"name": "kind", "namespace": NAMESPACE},
            "spec": {"ipAddressPools": ["kind"]},
        },
    ]


def install(kubectl: Callable[..., str], pool: tuple[str, str], timeout: float = 600) -> None:
    """Install MetalLB with ``kubectl(*args, stdin=...)`` and give it ``pool``."""
    kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=manifest().encode())
    for workload in ("deployment/controller", "daemonset/speaker"):
        kubectl("rollout", "status", "-n", NAMESPACE, workload, f"--timeout={timeout:.0f}s")
    objects = json.dumps({"apiVersion": "v1", "kind": "List", "items": pool_objects(*pool)})

    def applied() -> bool:
        # the controller's validating webhook answers a little after the rollout
        try:
            kubectl("apply", "-f", "-", stdin=objects.encode())
        except BuildError as e:
            if "webhook" in str(e):
                return False
            raise
        return True

    wait_until(applied, "MetalLB's webhook to accept the address pool", timeout, cap=3)
