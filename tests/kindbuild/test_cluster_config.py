"""The kind config a cluster is created with."""

from __future__ import annotations

import pytest
import yaml
from outpost_scenarios.kindbuild.cluster import cluster_config
from outpost_scenarios.kindbuild.commands import BuildError
from outpost_scenarios.kindbuild.recipe import COREDNS


def test_coredns_tag_patch_is_added_after_the_callers_patches(tmp_path):
    path = tmp_path / "kind.yaml"
    path.write_text(
        "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n"
        "networking: {podSubnet: 10.245.0.0/16}\n"
        "kubeadmConfigPatches: ['kind: InitConfiguration']\n"
    )
    config = cluster_config(path)
    assert config["networking"] == {"podSubnet": "10.245.0.0/16"}
    first, *ours = config["kubeadmConfigPatches"]
    assert first == "kind: InitConfiguration"
    assert [yaml.safe_load(p) for p in ours] == [
        {"kind": "ClusterConfiguration", "dns": {"imageTag": COREDNS}},
        {"kind": "KubeletConfiguration", "failCgroupV1": False},
    ]


def test_no_config_gives_a_single_node_cluster():
    config = cluster_config(None)
    assert config["kind"] == "Cluster"
    assert len(config["kubeadmConfigPatches"]) == 2


@pytest.mark.parametrize(
    "config, message",
    [
        ({"nodes": [{"role": "control-plane"}, {"role": "worker"}]}, "2 nodes"),
        ({"networking": {"disableDefaultCNI": True}}, "disableDefaultCNI"),
    ],
)
def test_configs_the_node_image_cannot_serve_are_refused(config, message):
    with pytest.raises(BuildError, match=message):
        cluster_config(config)
