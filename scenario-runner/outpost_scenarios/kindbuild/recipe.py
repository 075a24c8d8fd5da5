"""What the kind node image is made of: versions, Go programs, Debian packages, images.

The Go programs are built from ``images/kind/go/<recipe>/``: a go.mod and go.sum that pin
one upstream module at its release (``tool`` directives name the commands), so the build
reads only the Go module proxy and its checksum database. The versions below are the ones
those files pin; tests/kindbuild/test_recipe.py checks that they agree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(os.environ.get("OUTPOST_SOURCE_DIR") or Path(__file__).resolve().parents[3])
RECIPES = ROOT / "images" / "kind"

KUBERNETES = "v1.34.4"
ETCD = "3.6.5"  # kubeadm 1.34's DefaultEtcdVersion is 3.6.5-0 (image revision 0)
ETCD_IMAGE_TAG = "3.6.5-0"
PAUSE = "3.10.1"
# kubeadm 1.34 wants CoreDNS v1.12.1; the Go module proxy has v1.14.3 and later only. The
# image carries its true version and clusters set kubeadm's dns.imageTag to it.
COREDNS = "v1.14.3"
CONTAINERD = "v2.1.4"  # as kind v0.30.0's base image
RUNC = "v1.3.0"  # as kind v0.30.0's base image
CRICTL = "v1.34.0"  # kind v0.30.0 has v1.33.0, which the proxy does not serve
CNI_PLUGINS = "v1.7.1"  # as kind v0.30.0's base image
KIND = "v0.30.0"
LOCAL_PATH_PROVISIONER = "v0.0.30"
METALLB = "v0.15.2"
# The control node's helm, for kubernetes.core.helm (ansible/): that collection, as the
# pinned ansible 12.3.0 bundles it (6.2.0), drives Helm 3's command line (Helm 4 renamed
# flags and changed outputs it parses). 3.19 is the Helm 3 line built with Kubernetes
# 1.34's client libraries, the version of the clusters.
HELM = "v3.19.5"
DEBIAN_SUITE = "bookworm"

K8S_REGISTRY = "registry.k8s.io"  # the names kubeadm asks containerd for
LOCAL_REGISTRY = "localhost/outpost-kind"  # our images that kubeadm does not name


@dataclass(frozen=True)
class GoProgram:
    """One binary built with ``go build`` in ``images/kind/go/<recipe>``."""

    recipe: str
    package: str
    name: str
    cgo: bool = False
    tags: tuple[str, ...] = ()
    ldflags: tuple[str, ...] = ()

    @property
    def directory(self) -> Path:
        return RECIPES / "go" / self.recipe


def _x(package: str, **values: str) -> tuple[str, ...]:
    return tuple(f"-X {package}.{name}={value}" for name, value in values.items())


def _kubernetes_ldflags() -> tuple[str, ...]:
    major, minor = KUBERNETES[1:].split(".")[:2]
    values = {
        "gitVersion": KUBERNETES,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        # built from the module zip, not a git checkout: no commit to stamp
        "gitCommit": "0000000000000000000000000000000000000000",
        "buildDate": "1970-01-01T00:00:00Z",
    }
    return _x("k8s.io/component-base/version", **values) + _x(
        "k8s.io/client-go/pkg/version", **values
    )


KUBERNETES_COMMANDS = (
    "kubeadm",
    "kubelet",
    "kubectl",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-proxy",
)

PROGRAMS: tuple[GoProgram, ...] = (
    *(
        GoProgram("kubernetes", f"k8s.io/kubernetes/cmd/{c}", c, ldflags=_kubernetes_ldflags())
        for c in KUBERNETES_COMMANDS
    ),
    GoProgram("etcd", "kindbuild/etcd", "etcd"),
    GoProgram(
        "coredns",
        "github.com/coredns/coredns",
        "coredns",
        ldflags=_x("github.com/coredns/coredns/coremain", GitCommit=COREDNS),
    ),
    *(
        GoProgram(
            "containerd",
            f"github.com/containerd/containerd/v2/cmd/{c}",
            c,
            tags=("no_aufs", "no_zfs", "no_btrfs", "no_devmapper"),
            ldflags=_x(
                "github.com/containerd/containerd/v2/version",
                Version=CONTAINERD,
                Package="github.com/containerd/containerd/v2",
            ),
        )
        for c in ("containerd", "containerd-shim-runc-v2", "ctr")
    ),
    # runc needs cgo (its nsenter is C) and libseccomp for seccomp profiles
    # (RuntimeDefault); linked against the Debian libraries the node image has too
    GoProgram(
        "runc",
        "github.com/opencontainers/runc",
        "runc",
        cgo=True,
        tags=("seccomp", "urfave_cli_no_docs"),
        ldflags=_x("main", version=RUNC[1:]),
    ),
    GoProgram(
        "crictl",
        "sigs.k8s.io/cri-tools/cmd/crictl",
        "crictl",
        ldflags=_x("sigs.k8s.io/cri-tools/pkg/version", Version=CRICTL),
    ),
    *(
        GoProgram(
            "cni-plugins",
            f"github.com/containernetworking/plugins/plugins/{p}",
            p.split("/")[1],
            ldflags=_x(
                "github.com/containernetworking/plugins/pkg/utils/buildversion",
                BuildVersion=CNI_PLUGINS,
            ),
        )
        for p in ("main/bridge", "main/loopback", "ipam/host-local", "meta/portmap")
    ),
    GoProgram("kind", "sigs.k8s.io/kind", "kind"),
    GoProgram(
        "local-path-provisioner",
        "github.com/rancher/local-path-provisioner",
        "local-path-provisioner",
    ),
    *(
        GoProgram(
            "metallb",
            f"go.universe.tf/metallb/{c}",
            c,
            ldflags=_x("go.universe.tf/metallb/internal/version", gitBranch=METALLB),
        )
        for c in ("controller", "speaker")
    ),
)


# Programs for the machine that drives the clusters, not for the node image.
CONTROL_NODE_PROGRAMS: tuple[GoProgram, ...] = (
    GoProgram(
        "helm",
        "helm.sh/helm/v3/cmd/helm",
        "helm",
        # what Helm's Makefile stamps: its version, and the Kubernetes version it assumes
        # without a cluster (helm template, lint), from its client libraries' version
        ldflags=_x("helm.sh/helm/v3/internal/version", version=HELM, gitTreeState="clean")
        + _x("helm.sh/helm/v3/pkg/chartutil", k8sVersionMajor="1", k8sVersionMinor="34")
        + _x("helm.sh/helm/v3/pkg/lint/rules", k8sVersionMajor="1", k8sVersionMinor="34"),
    ),
)


def programs(recipe: str) -> tuple[GoProgram, ...]:
    return tuple(p for p in (*PROGRAMS, *CONTROL_NODE_PROGRAMS) if p.recipe == recipe)


@dataclass(frozen=True)
class Rootfs:
    """A Debian tree made with ``debootstrap --variant=minbase``."""

    name: str
    packages: tuple[str, ...] = field(default_factory=tuple)


# The node: systemd as PID 1 and what kubelet, kube-proxy's host side, the CNI plugins
# and kind's entrypoint call (kind v0.30.0's base image list, without the packages for
# rootless (fuse-overlayfs) and network storage (nfs-common, open-iscsi)).
NODE_ROOTFS = Rootfs(
    "node",
    (
        "systemd",
        "dbus",
        "conntrack",
        "iptables",
        "nftables",
        "iproute2",
        "ethtool",
        "util-linux",
        "mount",
        "kmod",
        "libseccomp2",
        "pigz",
        "bash",
        "ca-certificates",
        "curl",
        "jq",
        "procps",
    ),
)
# kube-proxy's image (it programs the node's iptables from its own), also the helper image
# of local-path-provisioner and of the CNI installer (mkdir, rm, cp, mv), and the image the
# tests run in pods (busybox: httpd, wget, nslookup)
TOOLS_ROOTFS = Rootfs("tools", ("iptables", "nftables", "conntrack", "busybox"))
