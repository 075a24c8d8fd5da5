"""Debian trees from Debian's own archive: ``debootstrap --variant=minbase``, cached.

No image registry is involved: debootstrap downloads the packages from the Debian mirror
(the one apt uses on this machine unless OUTPOST_DEBIAN_MIRROR says otherwise), keeps
them in ``<cache>/debs`` for the next cold build, and the tree is kept under a key of
suite, mirror and package list. Package lists and apt's downloads are removed from the
tree; nothing in it can install more without ``apt-get update``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from . import cache
from .commands import BuildError, run_logged
from .recipe import DEBIAN_SUITE, Rootfs

DEFAULT_MIRROR = "http://deb.debian.org/debian"


def mirror() -> str:
    return os.environ.get("OUTPOST_DEBIAN_MIRROR") or DEFAULT_MIRROR


def debootstrap(rootfs: Rootfs, log: Path) -> Path:
    """The directory of ``rootfs`` (built on the first call, reused after)."""
    program = shutil.which("debootstrap") or shutil.which("debootstrap", path="/usr/sbin")
    if program is None:
        raise BuildError(
            "debootstrap is not installed: run `make kind-images` as root "
            "(it installs the Debian packages the build needs) or apt-get install debootstrap"
        )
    if os.geteuid() != 0:
        raise BuildError("debootstrap needs root (it creates device nodes and chroots)")
    slot = cache.Slot(
        "rootfs", rootfs.name, cache.key(DEBIAN_SUITE, mirror(), sorted(rootfs.packages))
    )
    if slot.exists():
        return slot.path
    tree = slot.begin()
    debs = cache.cache_dir() / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    argv = [program, "--variant=minbase", f"--cache-dir={debs}"]
    if rootfs.packages:
        argv.append("--include=" + ",".join(rootfs.packages))
    run_logged([*argv, DEBIAN_SUITE, str(tree), mirror()], log, timeout=3600)
    for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for path in (tree / leftover).glob("*"):
            if path.is_file():
                path.unlink()
    return slot.commit()
