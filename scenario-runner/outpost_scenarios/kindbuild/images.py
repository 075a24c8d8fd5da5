"""The container images a kind node holds, made from the built programs.

The images kubeadm asks for keep the names kubeadm 1.34 uses (``registry.k8s.io/...``,
as kind's own ``kind build node-image`` names the components it builds from source),
each with the version it really holds; CoreDNS is v1.14.3, and clusters tell kubeadm so
(``cluster.py``). Images kubeadm does not name are ``localhost/outpost-kind/...``.

Static Go programs sit on a small layer with what distroless/static gives them (users,
nsswitch.conf, /tmp); kube-proxy and the helper images sit on the Debian tools tree
(iptables, nftables, conntrack, coreutils).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .archive import Image, layer_from_directory, layer_from_files, static_layer, write_image
from .recipe import (
    COREDNS,
    DEBIAN_SUITE,
    ETCD_IMAGE_TAG,
    K8S_REGISTRY,
    KUBERNETES,
    LOCAL_PATH_PROVISIONER,
    LOCAL_REGISTRY,
    METALLB,
    PAUSE,
)

PAUSE_IMAGE = f"{K8S_REGISTRY}/pause:{PAUSE}"
COREDNS_IMAGE = f"{K8S_REGISTRY}/coredns/coredns:{COREDNS}"
ETCD_IMAGE = f"{K8S_REGISTRY}/etcd:{ETCD_IMAGE_TAG}"
TOOLS_IMAGE = f"{LOCAL_REGISTRY}/tools:{DEBIAN_SUITE}"
PROVISIONER_IMAGE = f"{LOCAL_REGISTRY}/local-path-provisioner:{LOCAL_PATH_PROVISIONER}"
METALLB_CONTROLLER_IMAGE = f"{LOCAL_REGISTRY}/metallb-controller:{METALLB}"
METALLB_SPEAKER_IMAGE = f"{LOCAL_REGISTRY}/metallb-speaker:{METALLB}"


def kubernetes_image(component: str) -> str:
    return f"{K8S_REGISTRY}/{component}:{KUBERNETES}"


@dataclass(frozen=True)
class Inputs:
    """What the images are made from: programs by name, pause, the Debian tools tree."""

    binaries: dict[str, Path]
    pause: Path
    tools_tree: Path


def build_archives(inputs: Inputs, workdir: Path) -> list[Path]:
    """Write every image of the node as a ``docker save`` archive under ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    static = static_layer(workdir / "static.tar")
    tools = layer_from_directory(inputs.tools_tree, workdir / "tools.tar")

    def program_layer(name: str, image_path: str, source: Path | None = None) -> Path:
        return layer_from_files(
            {image_path: source or inputs.binaries[name]}, workdir / f"{name}.layer.tar"
        )

    images = [
        *(
            Image(
                [kubernetes_image(c)],
                [static, program_layer(c, f"usr/local/bin/{c}")],
                entrypoint=[f"/usr/local/bin/{c}"],
            )
            for c in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
        ),
        Image(
            [kubernetes_image("kube-proxy")],
            [tools, program_layer("kube-proxy", "usr/local/bin/kube-proxy")],
            entrypoint=["/usr/local/bin/kube-proxy"],
        ),
        Image([ETCD_IMAGE], [static, program_layer("etcd", "usr/local/bin/etcd")]),
        Image(
            [PAUSE_IMAGE],
            [program_layer("pause", "pause", inputs.pause)],
            entrypoint=["/pause"],
            user="65535:65535",
        ),
        Image(
            [COREDNS_IMAGE], [static, program_layer("coredns", "coredns")], entrypoint=["/coredns"]
        ),
        Image([TOOLS_IMAGE], [tools]),
        Image(
            [PROVISIONER_IMAGE],
            [
                static,
                program_layer("local-path-provisioner", "usr/local/bin/local-path-provisioner"),
            ],
            entrypoint=["/usr/local/bin/local-path-provisioner"],
        ),
        Image(
            [METALLB_CONTROLLER_IMAGE],
            [static, program_layer("controller", "controller")],
            entrypoint=["/controller"],
        ),
        Image(
            [METALLB_SPEAKER_IMAGE],
            [static, program_layer("speaker", "speaker")],
            entrypoint=["/speaker"],
        ),
    ]
    return [
        write_image(image, workdir / (image.names[0].rsplit("/", 1)[1].replace(":", "_") + ".tar"))
        for image in images
    ]
