"""The versions recipe.py states are the ones the pinned Go modules build."""

from __future__ import annotations

import re

import pytest
from outpost_scenarios.kindbuild import recipe


def required(recipe_name: str, module: str) -> str:
    text = (recipe.RECIPES / "go" / recipe_name / "go.mod").read_text()
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)} (v\S+)", text, re.M)
    assert match, f"{module} is not required in images/kind/go/{recipe_name}/go.mod"
    return match.group(1)


@pytest.mark.parametrize(
    "recipe_name, module, version",
    [
        ("kubernetes", "k8s.io/kubernetes", recipe.KUBERNETES),
        ("etcd", "go.etcd.io/etcd/server/v3", "v" + recipe.ETCD),
        ("coredns", "github.com/coredns/coredns", recipe.COREDNS),
        ("containerd", "github.com/containerd/containerd/v2", recipe.CONTAINERD),
        ("runc", "github.com/opencontainers/runc", recipe.RUNC),
        ("crictl", "sigs.k8s.io/cri-tools", recipe.CRICTL),
        ("cni-plugins", "github.com/containernetworking/plugins", recipe.CNI_PLUGINS),
        ("kind", "sigs.k8s.io/kind", recipe.KIND),
        (
            "local-path-provisioner",
            "github.com/rancher/local-path-provisioner",
            recipe.LOCAL_PATH_PROVISIONER,
        ),
        ("metallb", "go.universe.tf/metallb", recipe.METALLB),
        ("helm", "helm.sh/helm/v3", recipe.HELM),
    ],
)
def test_stated_version_is_the_pinned_one(recipe_name, module, version):
    assert required(recipe_name, module) == version


def test_kubernetes_staging_modules_are_the_matching_release():
    text = (recipe.RECIPES / "go" / "kubernetes" / "go.mod").read_text()
    staging = re.findall(r"^\s*(k8s\.io/\S+) => k8s\.io/\S+ (v\S+)$", text, re.M)
    assert len(staging) > 25
    assert {version for _, version in staging} == {"v0" + recipe.KUBERNETES[2:]}


def test_every_program_is_a_command_its_recipe_names():
    for program in (*recipe.PROGRAMS, *recipe.CONTROL_NODE_PROGRAMS):
        text = (program.directory / "go.mod").read_text()
        own_module = re.search(r"^module (\S+)", text, re.M).group(1)
        assert program.package == own_module or re.search(
            rf"^\s*(tool\s+)?{re.escape(program.package)}$", text, re.M
        ), f"{program.package} is not a tool of images/kind/go/{program.recipe}"


def test_helm_is_stamped_with_the_kubernetes_version_of_its_client_libraries():
    """Helm's Makefile stamps the Kubernetes version it assumes without a cluster (helm
    template, lint) from its k8s.io/client-go; ours must say the same."""
    (helm,) = recipe.programs("helm")
    minor = required("helm", "k8s.io/client-go").split(".")[1]
    for package in ("pkg/chartutil", "pkg/lint/rules"):
        assert f"-X helm.sh/helm/v3/{package}.k8sVersionMajor=1" in helm.ldflags
        assert f"-X helm.sh/helm/v3/{package}.k8sVersionMinor={minor}" in helm.ldflags


def test_helm_is_not_part_of_the_node_image():
    assert "helm" not in {p.recipe for p in recipe.PROGRAMS}
