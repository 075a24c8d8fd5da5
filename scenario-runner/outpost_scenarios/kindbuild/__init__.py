"""Kind clusters built on this machine: the Docker engine, the node image, MetalLB.

Everything is built from the Go module proxy and Debian's archive (no image registry):
see docs/kind.md. The API kind mode uses:

- ``ensure_node_image(say=print) -> NodeTools``: start the project's Docker engine if
  needed, build what is missing (cached), return the node image name, the ``kind`` and
  ``kubectl`` binaries and the engine's DOCKER_HOST (``NodeTools.env()``);
- ``create_cluster(name, config=None, *, tools=None, kubeconfig=None) -> Path``: a
  single-node kind cluster of that image with MetalLB (LoadBalancer addresses on the kind
  network), its kubeconfig path;
- ``delete_cluster(name, *, tools=None)``.
"""

from .cluster import NodeTools, create_cluster, delete_cluster, ensure_node_image
from .commands import BuildError
from .engine import Engine, EngineError

__all__ = [
    "BuildError",
    "Engine",
    "EngineError",
    "NodeTools",
    "create_cluster",
    "delete_cluster",
    "ensure_node_image",
]
