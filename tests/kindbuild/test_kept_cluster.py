"""A kept kind cluster is reused only while its node runs the node image built here.

Uses the project's Docker engine (``jupyterhub-outpost kind engine start``) and the kind
binary built here (``make kind-images``); skips with the reason when either is missing.
The "cluster" is a created, never started container with kind's cluster label, as kind
itself lists clusters: creating a real one is the kind e2e's work (minutes), and the
decision under test is taken before any node starts.
"""

from __future__ import annotations

import subprocess
import uuid

import pytest
from outpost_scenarios.kindbuild import cache
from outpost_scenarios.kindbuild.cluster import NodeTools, clusters, create_cluster, node_image
from outpost_scenarios.kindbuild.commands import BuildError
from outpost_scenarios.kindbuild.engine import Engine


@pytest.fixture
def tools():
    engine = Engine()
    problem = engine.problem()
    if problem is not None:
        pytest.skip(problem)
    kind = cache.cache_dir() / "bin" / "kind"
    kubectl = cache.cache_dir() / "bin" / "kubectl"
    if not kind.exists():
        pytest.skip(f"no kind binary built here at {kind} (make kind-images)")
    return NodeTools("localhost/outpost-test/node:current", kind, kubectl, engine.host)


@pytest.fixture
def old_node(tools):
    """A container that kind lists as cluster ``name``, of another node image."""
    name = f"outpost-kept-{uuid.uuid4().hex[:6]}"
    image = f"localhost/outpost-test/node:old-{uuid.uuid4().hex[:6]}"
    env = tools.env()
    empty_tar = subprocess.run(["tar", "-c", "-T", "/dev/null"], capture_output=True).stdout
    subprocess.run(["docker", "import", "-", image], input=empty_tar, env=env, check=True)
    subprocess.run(
        [
            "docker", "create", "--name", f"{name}-control-plane",
            "--label", f"io.x-k8s.kind.cluster={name}", "--label", "io.x-k8s.kind.role=control-plane",
            image, "/none",
        ],
        env=env, check=True, capture_output=True,
    )  # fmt: skip
    yield name, image
    subprocess.run(["docker", "rm", "-f", f"{name}-control-plane"], env=env, capture_output=True)
    subprocess.run(["docker", "rmi", image], env=env, capture_output=True)


def test_node_image_names_the_image_the_node_was_created_from(tools, old_node):
    name, image = old_node
    assert name in clusters(tools)
    assert node_image(name, tools) == image


def test_a_kept_cluster_of_another_node_image_is_deleted_before_it_is_created_anew(
    tools, old_node, tmp_path
):
    name, image = old_node
    said = []
    # Two nodes: refused after the decision, before kind creates anything.
    two_nodes = {"nodes": [{"role": "control-plane"}, {"role": "worker"}]}
    with pytest.raises(BuildError, match="2 nodes"):
        create_cluster(
            name, two_nodes, tools=tools, kubeconfig=tmp_path / "kubeconfig", say=said.append
        )
    assert name not in clusters(tools)
    assert said == [f"cluster {name} runs the node image {image}, not {tools.image}: recreating it"]
