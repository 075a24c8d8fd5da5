"""Where the kind build keeps what it made, and the keys that say when to make it again.

Every product of the build (Go binaries, debootstrap trees, image archives, the node
image) is stored under a key: the SHA-256 of everything it was made from (recipe files,
versions, flags, the Go toolchain's version). A second run finds the key and reuses the
product; a changed input gives a new key and a new product. Nothing is ever updated in
place: a product is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .commands import BuildError

DEFAULT_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / (
    "jupyterhub-outpost/kind"
)


def cache_dir() -> Path:
    """OUTPOST_KIND_CACHE, else ~/.cache/jupyterhub-outpost/kind (shared by clones)."""
    return Path(os.environ.get("OUTPOST_KIND_CACHE") or DEFAULT_DIR)


@contextmanager
def exclusive(what: str, say=print) -> Iterator[None]:
    """Hold the cache's lock: one build at a time per cache (a second one waits, then
    finds what the first built)."""
    path = cache_dir() / "build.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"another build holds {path}; {what} waits for it")
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def key(*parts: object) -> str:
    """A hex digest of ``parts``: files (Path) by content, everything else by its JSON."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            digest.update(part.name.encode() + b"\0" + part.read_bytes())
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
        digest.update(b"\1")
    return digest.hexdigest()


def files_under(directory: Path) -> list[Path]:
    """The regular files under ``directory``, sorted (for a key over a whole directory)."""
    return sorted(p for p in directory.rglob("*") if p.is_file())


class Slot:
    """One cached product: ``<cache>/<kind>/<name>-<key[:16]>`` (a file or directory)."""

    def __init__(self, kind: str, name: str, digest: str, *, root: Path | None = None):
        self.path = (root or cache_dir()) / kind / f"{name}-{digest[:16]}"
        self.temporary = self.path.with_name(self.path.name + ".partial")

    def exists(self) -> bool:
        return self.path.exists()

    def begin(self) -> Path:
        """A fresh temporary path to build into (left-overs of a failed run are removed)."""
        self.discard()
        self.temporary.parent.mkdir(parents=True, exist_ok=True)
        return self.temporary

    def commit(self) -> Path:
        os.replace(self.temporary, self.path)
        return self.path

    def discard(self) -> None:
        if self.temporary.is_dir() and not self.temporary.is_symlink():
            unmount_under(self.temporary)
            shutil.rmtree(self.temporary)
        elif self.temporary.exists():
            self.temporary.unlink()


def mounts_under(directory: Path) -> list[Path]:
    """Mount points at or below ``directory``, deepest first (from /proc/self/mountinfo)."""
    root = directory.resolve()
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = Path(line.split()[4].encode().decode("unicode_escape"))
        if point == root or root in point.parents:
            found.append(point)
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def unmount_under(directory: Path) -> None:
    """Unmount what a failed debootstrap or chroot left mounted below ``directory``, so
    that removing the directory can never reach into /proc, /sys or /dev of the host."""
    for point in mounts_under(directory):
        subprocess.run(["umount", str(point)], capture_output=True, timeout=60)
    left = mounts_under(directory)
    if left:
        raise BuildError(
            f"cannot remove {directory}: still mounted there: {', '.join(map(str, left))} "
            "(unmount them, then run the build again)"
        )
