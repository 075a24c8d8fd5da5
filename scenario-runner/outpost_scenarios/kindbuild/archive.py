"""Container images written as archives without a registry and without a Dockerfile.

An image here is a list of layers (tar files) and a config; ``write_image`` stores them
in the format ``docker save`` writes (``manifest.json``, the config, one ``layer.tar``
per layer), which ``ctr images import`` (the node image's containerd), ``docker load``
and ``kind load image-archive`` read. Layers are made from directories with GNU tar
(numeric owners, sorted names, fixed times: the same tree gives the same layer and digest)
or from a few files given by their contents.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from .commands import run

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# The few files a static Go program expects besides itself (what distroless/static has):
# user and group names for numeric ids, name resolution order, a writable /tmp.
STATIC_FILES = {
    "etc/passwd": (
        "root:x:0:0:root:/root:/sbin/nologin\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
        "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
    ),
    "etc/group": "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n",
    "etc/nsswitch.conf": "hosts: files dns\n",
}
STATIC_DIRECTORIES = {"tmp": 0o1777, "home/nonroot": 0o700, "root": 0o700}


@dataclass
class Image:
    """What ``write_image`` needs: names, layers (bottom first) and the run config."""

    names: list[str]
    layers: list[Path]
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    env: list[str] = field(default_factory=lambda: [PATH_ENV])
    user: str = ""
    labels: dict[str, str] = field(default_factory=dict)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def layer_from_directory(directory: Path, out: Path) -> Path:
    """A reproducible layer of everything under ``directory``."""
    run(
        [
            "tar",
            "--create",
            "--file",
            str(out),
            "--directory",
            str(directory),
            "--numeric-owner",
            "--sort=name",
            "--mtime=@0",
            "--xattrs",
            ".",
        ],
        timeout=1800,
    )
    return out


def layer_from_files(
    files: dict[str, bytes | Path], out: Path, *, directories: dict[str, int] | None = None
) -> Path:
    """A layer of ``files`` (image path -> content or host file; mode 0755 for host
    files, which are the programs, else 0644) and empty ``directories`` (path -> mode),
    owned by root, with parent directories."""
    entries: dict[str, tuple[tarfile.TarInfo, bytes | None]] = {}

    def add_directory(name: str, mode: int = 0o755) -> None:
        parts = name.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent not in entries:
                add_directory(parent)
        info = tarfile.TarInfo(name)
        info.type = tarfile.DIRTYPE
        info.mode = mode
        entries[name] = (info, None)

    for name, mode in (directories or {}).items():
        add_directory(name.strip("/"), mode)
    for name, content in files.items():
        name = name.strip("/")
        if "/" in name:
            parent = name.rsplit("/", 1)[0]
            if parent not in entries:
                add_directory(parent)
        data = content.read_bytes() if isinstance(content, Path) else content
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o755 if isinstance(content, Path) else 0o644
        entries[name] = (info, data)
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(entries):
            info, data = entries[name]
            info.uid = info.gid = 0
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return out


def static_layer(out: Path) -> Path:
    """The base layer of images that hold static programs only."""
    files = {name: text.encode() for name, text in STATIC_FILES.items()}
    return layer_from_files(files, out, directories=STATIC_DIRECTORIES)


def write_image(image: Image, out: Path) -> Path:
    """Write ``image`` as a ``docker save`` archive at ``out``."""
    diff_ids = [f"sha256:{sha256_file(layer)}" for layer in image.layers]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {
            "Env": image.env,
            "Entrypoint": image.entrypoint,
            "Cmd": image.cmd,
            "User": image.user,
            "WorkingDir": "/",
            "Labels": image.labels,
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "outpost kindbuild"}]
        * len(diff_ids),
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    layer_names = [f"{d.split(':')[1]}/layer.tar" for d in diff_ids]
    manifest = [{"Config": config_name, "RepoTags": image.names, "Layers": layer_names}]
    with tarfile.open(out, "w") as tar:
        for name, layer in zip(layer_names, image.layers, strict=True):
            tar.add(layer, arcname=name)
        for name, data in (
            (config_name, config_bytes),
            ("manifest.json", json.dumps(manifest).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out
