"""The pause program (every pod's sandbox) from Kubernetes' own source, compiled with gcc.

``build/pause/linux/pause.c`` comes with the k8s.io/kubernetes module that the
Kubernetes recipe pins; it is compiled as Kubernetes' build/pause/Makefile does (static,
``-Os -Wall -Werror``), with Debian's gcc and libc.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from . import cache
from .commands import BuildError, run, run_logged
from .gobuild import module_dir
from .recipe import PAUSE


def build(log: Path) -> Path:
    """The static pause binary (built on the first call, reused after)."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise BuildError(
            "gcc is not installed (the pause program is C): apt-get install gcc libc6-dev"
        )
    source = module_dir("kubernetes", "k8s.io/kubernetes") / "build" / "pause" / "linux" / "pause.c"
    version = run([gcc, "-dumpfullversion"], timeout=60).strip()
    slot = cache.Slot("c", "pause", cache.key(PAUSE, version, source))
    if not slot.exists():
        out = slot.begin()
        run_logged(
            [
                gcc,
                "-Os",
                "-Wall",
                "-Werror",
                "-static",
                f"-DVERSION=v{PAUSE}",
                "-o",
                str(out),
                str(source),
            ],
            log,
        )
        slot.commit()
    return slot.path
