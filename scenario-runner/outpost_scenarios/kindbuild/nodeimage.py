"""The kind node image: kind's base image recipe, done with debootstrap and ``docker import``.

Steps (kind v0.30.0's ``images/base/Dockerfile`` and ``kind build node-image``):

1. the Debian node tree (``rootfs.py``) with kind's node files from the sigs.k8s.io/kind
   module (``images/base/files``: entrypoint, containerd and kubelet units, sysctls...),
   its systemd clean-up, containerd, runc, crictl, the CNI plugins, kubeadm, kubelet and
   kubectl, ``/kind/version`` and the CNI and storage manifests of ``images/kind/node``;
2. that tree imported as an image (``docker import``: no ``FROM`` of any registry);
3. a container of it runs containerd alone, every image of ``images.py`` is imported into
   the ``k8s.io`` namespace (as kind preloads them), and the container is committed as the
   node image with kind's entrypoint.

Unlike kind's image it has no STOPSIGNAL (SIGRTMIN+3, systemd's "halt"): dockerd 20.10's
``commit`` cannot set one. ``docker stop`` of a node therefore waits its timeout before it
kills; kind itself removes nodes with ``docker rm --force``, which is not affected.

The result is ``localhost/outpost-kind/node:<kubernetes version>-<key>``, labelled with its
full key; the key covers every input (programs, trees, node files, kind's files, this
code), so a second build with the same inputs finds the image and does nothing.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import archive, cache, gobuild, images, pause, rootfs
from .commands import BuildError, run
from .engine import Engine
from .recipe import (
    KUBERNETES,
    LOCAL_REGISTRY,
    NODE_ROOTFS,
    PROGRAMS,
    RECIPES,
    TOOLS_ROOTFS,
)
from .waiting import wait_until

NODE_REPOSITORY = f"{LOCAL_REGISTRY}/node"
KEY_LABEL = "org.jupyterhub-outpost.kind.key"
NODE_FILES = RECIPES / "node"
SOURCES = [Path(__file__).with_name(n) for n in ("nodeimage.py", "images.py", "archive.py")]
ENTRYPOINT = '["/usr/local/bin/entrypoint", "/sbin/init"]'

# where the node keeps each program (kind's base image and node image layout)
PLACES = {
    "containerd": "usr/local/bin",
    "ctr": "usr/local/bin",
    "containerd-shim-runc-v2": "usr/local/bin",
    "crictl": "usr/local/bin",
    "runc": "usr/local/sbin",
    "bridge": "opt/cni/bin",
    "host-local": "opt/cni/bin",
    "loopback": "opt/cni/bin",
    "portmap": "opt/cni/bin",
    "kubeadm": "usr/bin",
    "kubelet": "usr/bin",
    "kubectl": "usr/bin",
}
OLD_SANDBOX = 'sandbox_image = "registry.k8s.io/pause:3.10"'
# Kubelet gives critical pods (the control plane) oom_score_adj -998; lowering a score
# needs CAP_SYS_RESOURCE, which our VMs' bounding set lacks, so runc fails ("failed to
# update /proc/self/oom_score_adj: Permission denied"). With restrict_oom_score_adj
# containerd never asks for a score below its own (as it does for rootless containers).
OOM_SCORE = ("restrict_oom_score_adj = false", "restrict_oom_score_adj = true")


@dataclass(frozen=True)
class Built:
    """The node image and the programs that go with it on this host."""

    image: str
    kind: Path
    kubectl: Path


def docker(engine: Engine, *args: str, timeout: float = 600, stdin: bytes | None = None) -> str:
    return run(["docker", *args], env=engine.env(), timeout=timeout, stdin=stdin)


def image_exists(engine: Engine, name: str) -> bool:
    try:
        docker(engine, "image", "inspect", "--format", "{{.Id}}", name, timeout=60)
    except BuildError:
        return False
    return True


@contextmanager
def step(say: Callable[[str], None], what: str) -> Iterator[None]:
    """Say ``what`` is done and how long it took."""
    start = time.monotonic()
    yield
    say(f"{what} ({time.monotonic() - start:.0f} s)")


def ensure(engine: Engine, log: Path, say: Callable[[str], None] = print) -> Built:
    """Build what is missing of the node image and its programs; reuse what exists.

    One build at a time per cache: a concurrent call waits for the first, then finds
    everything built."""
    with cache.exclusive("this build", say):
        return _ensure(engine, log, say)


def _ensure(engine: Engine, log: Path, say: Callable[[str], None]) -> Built:
    say(f"building what is missing (log {log})")
    binaries: dict[str, Path] = {}
    for recipe in dict.fromkeys(p.recipe for p in PROGRAMS):
        with step(say, f"Go programs: {recipe}"):
            binaries.update(gobuild.build(recipe, log))
    with step(say, "pause (C, from k8s.io/kubernetes)"):
        pause_binary = pause.build(log)
    with step(say, "Debian trees (debootstrap --variant=minbase)"):
        node_tree = rootfs.debootstrap(NODE_ROOTFS, log)
        tools_tree = rootfs.debootstrap(TOOLS_ROOTFS, log)
    kind_files = gobuild.module_dir("kind", "sigs.k8s.io/kind") / "images" / "base" / "files"

    # products by their slot names, which carry their own keys (not by their paths: the
    # same inputs in another cache give the same image)
    digest = cache.key(
        sorted(f"{p.parent.name}/{p.name}" for p in binaries.values()),
        pause_binary.name,
        node_tree.name,
        tools_tree.name,
        *cache.files_under(NODE_FILES),
        *cache.files_under(kind_files),
        *SOURCES,
    )
    name = f"{NODE_REPOSITORY}:{KUBERNETES}-{digest[:12]}"
    built = Built(name, binaries["kind"], binaries["kubectl"])
    if image_exists(engine, name):
        say(f"node image {name} exists")
        return built

    slot = cache.Slot("work", "node", digest)
    base = f"{NODE_REPOSITORY}-base:{digest[:12]}"
    workdir = slot.begin()
    workdir.mkdir()
    try:
        with step(say, "node tree: kind's files, programs, manifests"):
            stage = workdir / "rootfs"
            run(["cp", "--archive", str(node_tree), str(stage)], timeout=1800)
            prepare_tree(stage, kind_files, binaries)
        with step(say, "image archives (Kubernetes, etcd, pause, CoreDNS, local-path, MetalLB)"):
            archives = images.build_archives(
                images.Inputs(binaries, pause_binary, tools_tree), workdir / "images"
            )
        with step(say, "docker import of the node tree"):
            layer = archive.layer_from_directory(stage, workdir / "node.tar")
            docker(engine, "import", str(layer), base, timeout=1800)
        with step(say, "images preloaded into the node's containerd, committed"):
            preload(engine, base, archives, name, digest)
    finally:
        slot.discard()
        with contextlib.suppress(BuildError):
            docker(engine, "rmi", base)
    say(f"node image {name} built")
    return built


def prepare_tree(stage: Path, kind_files: Path, binaries: dict[str, Path]) -> None:
    """Everything kind's base Dockerfile and node-image build put into the tree."""
    for source in cache.files_under(kind_files):
        relative = source.relative_to(kind_files)
        target = stage / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        executable = relative.parts[:3] == ("usr", "local", "bin") or relative.parts[:2] == (
            "kind",
            "bin",
        )
        target.chmod(0o755 if executable else 0o644)
    # kind's clean-up of systemd for a container (its base Dockerfile)
    systemd = stage / "lib/systemd/system"
    for wants in (
        systemd / "multi-user.target.wants",
        stage / "etc/systemd/system",
        systemd / "local-fs.target.wants",
        systemd / "basic.target.wants",
    ):
        for link in wants.glob("*" if wants.name.endswith(".wants") else "*.wants/*"):
            if link.is_symlink() or link.is_file():
                link.unlink()
    for pattern in ("*udev*", "*initctl*"):
        for link in (systemd / "sockets.target.wants").glob(pattern):
            link.unlink()
    (systemd / "sysinit.target.wants/systemd-tmpfiles-setup.service").unlink(missing_ok=True)
    with open(stage / "etc/systemd/journald.conf", "a") as f:
        f.write("ReadKMsg=no\n")
    init = stage / "sbin/init"
    if not init.exists() and not init.is_symlink():
        init.symlink_to("/lib/systemd/systemd")
    chroot = ["chroot", str(stage), "systemctl"]
    run([*chroot, "enable", "kubelet.service", "containerd.service", "undo-mount-hacks.service"])
    run([*chroot, "mask", "systemd-binfmt.service"])
    (stage / "etc/kubernetes/manifests").mkdir(parents=True, exist_ok=True)

    for program, place in PLACES.items():
        target = stage / place / program
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(binaries[program], target)
        target.chmod(0o755)

    # containerd's base runtime spec: kind's hook and no rlimits (its base Dockerfile)
    spec = json.loads(run([str(binaries["ctr"]), "oci", "spec"]))
    spec.setdefault("hooks", {}).setdefault("createContainer", []).append(
        {"path": "/kind/bin/mount-product-files.sh"}
    )
    spec["process"].pop("rlimits", None)
    (stage / "etc/containerd/cri-base.json").write_text(json.dumps(spec, indent=2))
    config = stage / "etc/containerd/config.toml"
    text = config.read_text()
    for old, new in ((OLD_SANDBOX, f'sandbox_image = "{images.PAUSE_IMAGE}"'), OOM_SCORE):
        if old not in text:
            raise BuildError(f"kind's containerd config no longer has {old!r}: update nodeimage.py")
        text = text.replace(old, new)
    config.write_text(text)

    (stage / "kind/version").write_text(KUBERNETES)
    manifests = stage / "kind/manifests"
    manifests.mkdir(parents=True, exist_ok=True)
    names = {
        "@TOOLS_IMAGE@": images.TOOLS_IMAGE,
        "@PAUSE_IMAGE@": images.PAUSE_IMAGE,
        "@PROVISIONER_IMAGE@": images.PROVISIONER_IMAGE,
        "@HELPER_IMAGE@": images.TOOLS_IMAGE,
    }
    for manifest in ("default-cni.yaml", "default-storage.yaml"):
        text = (NODE_FILES / manifest).read_text()
        for placeholder, value in names.items():
            text = text.replace(placeholder, value)
        (manifests / manifest).write_text(text)


def preload(engine: Engine, base: str, archives: list[Path], name: str, digest: str) -> None:
    """Run containerd in a container of ``base``, import ``archives``, commit as ``name``."""
    container = docker(
        engine,
        "run",
        "--detach",
        "--privileged",
        "--network",
        "none",
        "--entrypoint",
        "/usr/local/bin/containerd",
        base,
    ).strip()
    try:
        wait_until(lambda: _answers(engine, container), "containerd in the build container", 120)
        for path in archives:
            with open(path, "rb") as f:
                result = subprocess.run(
                    [
                        "docker",
                        "exec",
                        "--interactive",
                        container,
                        "ctr",
                        "--namespace=k8s.io",
                        "images",
                        "import",
                        "--label=io.cri-containerd.pinned=pinned",
                        "--all-platforms",
                        "--no-unpack",
                        "-",
                    ],
                    stdin=f,
                    capture_output=True,
                    env=engine.env(),
                    timeout=1800,
                )
            if result.returncode != 0:
                raise BuildError(
                    f"ctr images import {path.name} failed: {result.stderr.decode()[-2000:]}"
                )
        docker(engine, "stop", "--time", "60", container, timeout=120)
        docker(
            engine,
            "commit",
            "--change",
            f"ENTRYPOINT {ENTRYPOINT}",
            "--change",
            "CMD []",
            "--change",
            "ENV container=docker",
            "--change",
            f"ENV {archive.PATH_ENV}",
            "--change",
            f"LABEL {KEY_LABEL}={digest}",
            container,
            name,
            timeout=1800,
        )
    finally:
        docker(engine, "rm", "--force", "--volumes", container, timeout=300)


def _answers(engine: Engine, container: str) -> bool:
    try:
        docker(engine, "exec", container, "ctr", "version", timeout=30)
    except BuildError:
        return False
    return True
