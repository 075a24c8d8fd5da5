"""The images the charts run, built on this machine from Debian, PyPI and npm only.

No image comes from a public registry: the base is ``debootstrap --variant=minbase
bookworm`` imported with ``docker import``; every Dockerfile in ``images/`` starts ``FROM``
that base (or the Python base built on it). Python packages and configurable-http-proxy
are fetched on the build host (which trusts the registries' proxy CA) into a staged build
context, so nothing inside a build needs registry access or a CA bundle:

==========================  ============================================================
image                       what it holds
==========================  ============================================================
debian-base:bookworm        debootstrap minbase, docs/man/locales left out, security updates
python-base:bookworm        + Debian's Python 3.11, venv, tini
outpost                     + ``jupyterhub-outpost[kubernetes,batch]`` (charts/jupyterhub-outpost)
hub                         + JupyterHub, KubeSpawner, this package (hub and tunnel daemon)
singleuser                  + jupyter-server, JupyterLab, jupyterhub-singleuser
configurable-http-proxy     Debian's Node.js + configurable-http-proxy from npm
==========================  ============================================================

A second run reuses what exists: the bases are kept until ``rebuild=True``; dependency
wheels are cached per set of requirements; this package's wheel is built reproducibly
(``SOURCE_DATE_EPOCH``), so Docker's layer cache skips the install when the code did
not change.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REGISTRY = "ghcr.io/jupyterhub-outpost"
BASE_IMAGE = "jupyterhub-outpost/debian-base:bookworm"
# on the stages that only build a wheelhouse into a venv; its value is the image's name
STAGE_LABEL = "org.jupyterhub-outpost.build-stage"
PYTHON_BASE = "jupyterhub-outpost/python-base:bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
CHP_VERSION = "5.1.0"  # the newest configurable-http-proxy that runs on Debian 12's Node.js 18
# Debian 12's Python and glibc: the wheels fetched on the build host must fit them.
IMAGE_PYTHON = "3.11.2"
IMAGE_PLATFORMS = [
    arg
    for tag in [f"manylinux_2_{minor}_x86_64" for minor in range(36, 4, -1)]
    + ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64", "linux_x86_64"]
    for arg in ("--platform", tag)
]
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "jupyterhub-outpost"

SLIM_DPKG_CONFIG = """\
# as Debian's -slim images: no documentation, manual pages or translations
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
"""
SOURCES = """\
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
"""


class ImageBuildError(RuntimeError):
    """A step of an image build failed; the message says which and shows its output."""


@dataclass(frozen=True)
class PythonImage:
    """An image whose Dockerfile installs ``requirements`` from a staged wheelhouse."""

    name: str
    requirements: tuple[str, ...]
    with_this_package: bool = True


PYTHON_IMAGES = (
    PythonImage("outpost", ("jupyterhub-outpost[kubernetes,batch]",)),
    PythonImage(
        "hub", ("jupyterhub-outpost[kubernetes]", "jupyterhub-idle-culler", "psycopg2-binary")
    ),
    PythonImage(
        "singleuser",
        ("jupyterhub", "jupyter-server", "jupyterlab", "ipykernel"),
        with_this_package=False,
    ),
)


@dataclass
class BuildReport:
    """What one build did: image references and seconds per step (for docs/kind.md)."""

    images: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    reused: list[str] = field(default_factory=list)


def run(argv: list[str], *, cwd: Path | None = None, env: dict | None = None, what: str) -> str:
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        output = (result.stdout + result.stderr)[-3000:]
        raise ImageBuildError(f"{what} failed (exit {result.returncode}): {argv[:4]}\n{output}")
    return result.stdout


class ImageBuilder:
    """Builds the images of ``images/`` for a source checkout at ``root``."""

    def __init__(
        self,
        root: Path,
        *,
        tag: str,
        docker_env: dict[str, str] | None = None,
        rebuild: bool = False,
        log: Callable[[str], None] = print,
    ):
        self.root = Path(root)
        self.tag = tag
        self.docker = "docker"
        # the environment of every docker command: DOCKER_HOST names the engine
        self.docker_env = dict(os.environ if docker_env is None else docker_env)
        self.rebuild = rebuild
        self.log = log
        self.report = BuildReport()

    # -- helpers ------------------------------------------------------------------------

    def _exists(self, ref: str) -> bool:
        return self._image_id(ref) is not None

    def _timed(self, step: str, fn: Callable[[], object]) -> None:
        start = time.monotonic()
        fn()
        self.report.seconds[step] = round(time.monotonic() - start, 1)

    def _image_id(self, ref: str) -> str | None:
        result = subprocess.run(
            [self.docker, "image", "inspect", "--format", "{{.Id}}", ref],
            capture_output=True,
            text=True,
            check=False,
            env=self.docker_env,
        )
        return result.stdout.strip() if result.returncode == 0 else None

    def _remove_image(self, image_id: str) -> None:
        """Remove an image nobody needs any more; one that a container still uses (or
        that carries another tag) stays, and the next build tries again."""
        result = subprocess.run(
            [self.docker, "image", "rm", image_id],
            capture_output=True,
            text=True,
            check=False,
            env=self.docker_env,
        )
        if result.returncode != 0:
            self.log(f"kept {image_id[:19]}: {result.stderr.strip()}")

    def _docker_build(self, dockerfile: Path, ref: str, context: Path) -> None:
        """Build ``ref``; the image it replaces is removed (an untagged 0.5 GB image per
        rebuild otherwise, until the disk is full)."""
        previous = self._image_id(ref)
        # The legacy builder: the machine's Docker CLI has no buildx plugin, and no step
        # needs BuildKit (no secrets or network inside the build).
        env = {**self.docker_env, "DOCKER_BUILDKIT": "0"}
        run(
            [
                self.docker,
                "build",
                "--quiet",
                "--network",
                "host",
                "-f",
                str(dockerfile),
                "-t",
                ref,
                str(context),
            ],
            env=env,
            what=f"docker build of {ref}",
        )
        if previous is not None and previous != self._image_id(ref):
            self._remove_image(previous)

    # -- the bases ----------------------------------------------------------------------

    def debian_base(self) -> str:
        if not self.rebuild and self._exists(BASE_IMAGE):
            self.report.reused.append(BASE_IMAGE)
            return BASE_IMAGE
        if shutil.which("debootstrap") is None:
            raise ImageBuildError(
                "debootstrap is not installed (apt-get install debootstrap): it makes the "
                "Debian base image, since no public registry is used"
            )
        with tempfile.TemporaryDirectory(prefix="outpost-base-") as tmp:
            rootfs = Path(tmp) / "rootfs"
            (rootfs / "etc/dpkg/dpkg.cfg.d").mkdir(parents=True)
            (rootfs / "etc/dpkg/dpkg.cfg.d/slim").write_text(SLIM_DPKG_CONFIG)
            run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    "--include=ca-certificates",
                    "bookworm",
                    str(rootfs),
                    DEBIAN_MIRROR,
                ],
                what="debootstrap of the Debian base",
            )
            (rootfs / "etc/apt/sources.list").write_text(SOURCES)
            for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
                for p in (rootfs / leftover).glob("*"):
                    if p.is_file():
                        p.unlink()
            tar = subprocess.Popen(
                ["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE
            )
            imported = subprocess.run(
                [self.docker, "import", "-c", 'CMD ["/bin/bash"]', "-", BASE_IMAGE],
                stdin=tar.stdout,
                capture_output=True,
                text=True,
                env=self.docker_env,
            )
            tar.stdout.close()
            if tar.wait() != 0 or imported.returncode != 0:
                raise ImageBuildError(f"docker import of the Debian base failed: {imported.stderr}")
        return BASE_IMAGE

    def python_base(self) -> str:
        if not self.rebuild and self._exists(PYTHON_BASE):
            self.report.reused.append(PYTHON_BASE)
            return PYTHON_BASE
        return self._build_from_packages("python-base", PYTHON_BASE)

    def postgresql_image(self) -> str:
        """PostgreSQL from Debian for the kind tests of the chart on PostgreSQL."""
        return self._build_from_packages("postgresql", f"{REGISTRY}/postgresql:{self.tag}")

    def _build_from_packages(self, name: str, ref: str) -> str:
        """images/<name>/Dockerfile, which copies nothing in (Debian packages only), as
        ``ref``."""
        with tempfile.TemporaryDirectory(prefix="outpost-ctx-") as ctx:
            self._docker_build(self.root / f"images/{name}/Dockerfile", ref, Path(ctx))
        return ref

    # -- staged contexts ----------------------------------------------------------------

    def _wheelhouse(self, image: PythonImage, ctx: Path) -> None:
        """This package's wheel and every dependency's into ctx/wheels, for the image's
        Python (Debian 12's 3.11.2 on glibc 2.36), whatever Python runs this build.
        Dependencies are cached per requirement set (and pyproject.toml)."""
        wheels = ctx / "wheels"
        wheels.mkdir()
        requirements = list(image.requirements)
        if image.with_this_package:
            self._own_wheel(wheels)
            [own] = wheels.glob("jupyterhub_outpost-*.whl")
            # a direct reference: PyPI has an unrelated package of the same name
            requirements = [
                f"{r} @ {own.as_uri()}" if r.startswith("jupyterhub-outpost") else r
                for r in requirements
            ]
        pyproject = (self.root / "pyproject.toml").read_bytes() if image.with_this_package else b""
        key = hashlib.sha256(json.dumps(image.requirements).encode() + pyproject).hexdigest()[:16]
        cached = CACHE / "wheels" / f"{image.name}-{key}"
        if not cached.is_dir():
            (CACHE / "wheels").mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{image.name}-", dir=CACHE / "wheels"))
            run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--quiet",
                    "--dest",
                    str(tmp),
                    "--only-binary=:all:",
                    "--python-version",
                    IMAGE_PYTHON,
                    "--implementation",
                    "cp",
                    *IMAGE_PLATFORMS,
                    *requirements,
                ],
                what=f"fetching the wheels of the {image.name} image",
            )
            for own in tmp.glob("jupyterhub_outpost-*.whl"):
                own.unlink()  # built from the checkout at every build
            tmp.rename(cached)
        for wheel in cached.iterdir():
            shutil.copy2(wheel, wheels)

    def _own_wheel(self, wheels: Path) -> None:
        """This package's wheel, built from a clean copy of the checkout (setuptools would
        reuse a stale build/ in the checkout) with the last commit's time in its zip
        entries, so that the same code gives the same wheel and Docker's cache holds."""
        env = {**os.environ, "SOURCE_DATE_EPOCH": self._source_date_epoch()}
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
        with tempfile.TemporaryDirectory(prefix="outpost-src-") as src:
            for name in ("pyproject.toml", "README.md"):
                shutil.copy2(self.root / name, src)
            shutil.copytree(self.root / "core", Path(src) / "core", ignore=ignore)
            run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "wheel",
                    "--quiet",
                    "--no-deps",
                    "--wheel-dir",
                    str(wheels),
                    src,
                ],
                env=env,
                what="building this package's wheel",
            )

    def _source_date_epoch(self) -> str:
        try:
            return run(
                ["git", "-C", str(self.root), "log", "-1", "--format=%ct"], what="git log"
            ).strip()
        except (ImageBuildError, OSError):
            return "315532800"

    def python_image(self, image: PythonImage) -> str:
        ref = f"{REGISTRY}/{image.name}:{self.tag}"
        with tempfile.TemporaryDirectory(prefix=f"outpost-ctx-{image.name}-") as ctx:
            self._wheelhouse(image, Path(ctx))
            self._docker_build(self.root / f"images/{image.name}/Dockerfile", ref, Path(ctx))
        return ref

    def chp_image(self) -> str:
        ref = f"{REGISTRY}/configurable-http-proxy:{self.tag}"
        modules = CACHE / "npm" / f"configurable-http-proxy-{CHP_VERSION}"
        if not (modules / "node_modules").is_dir():
            modules.mkdir(parents=True, exist_ok=True)
            run(
                [
                    "npm",
                    "install",
                    "--silent",
                    "--no-audit",
                    "--no-fund",
                    "--omit=dev",
                    "--prefix",
                    str(modules),
                    f"configurable-http-proxy@{CHP_VERSION}",
                ],
                what="npm install configurable-http-proxy",
            )
        with tempfile.TemporaryDirectory(prefix="outpost-ctx-chp-") as ctx:
            shutil.copytree(modules / "node_modules", Path(ctx) / "node_modules", symlinks=True)
            self._docker_build(
                self.root / "images/configurable-http-proxy/Dockerfile", ref, Path(ctx)
            )
        return ref

    # -- everything ---------------------------------------------------------------------

    def build_all(self) -> BuildReport:
        """Every image, bases first; returns what was built and how long each step took."""
        self._timed("debian-base", self.debian_base)
        self._timed("python-base", self.python_base)
        for image in PYTHON_IMAGES:
            self._timed(
                image.name, lambda image=image: self._record(image.name, self.python_image(image))
            )
        self._timed(
            "configurable-http-proxy",
            lambda: self._record("configurable-http-proxy", self.chp_image()),
        )
        self._timed("postgresql", lambda: self._record("postgresql", self.postgresql_image()))
        self.prune_build_stages()
        return self.report

    def prune_build_stages(self) -> None:
        """Keep the newest build stage of each image, the layer cache the next build of
        that image reuses; older ones only hold superseded wheelhouses (0.5 GB each).
        The stages carry the label org.jupyterhub-outpost.build-stage=<image name>."""
        ids = run(
            [self.docker, "image", "ls", "--quiet", "--filter", f"label={STAGE_LABEL}"],
            env=self.docker_env,
            what="listing the build stages",
        ).split()
        if not ids:
            return
        listing = run(
            [
                self.docker,
                "image",
                "inspect",
                "--format",
                f'{{{{.Id}}}} {{{{.Created}}}} {{{{index .Config.Labels "{STAGE_LABEL}"}}}}',
                *sorted(set(ids)),
            ],
            env=self.docker_env,
            what="reading the build stages' labels",
        )
        for stale in stale_stages(listing):
            self._remove_image(stale)

    def _record(self, name: str, ref: str) -> None:
        self.report.images[name] = ref


def stale_stages(listing: str) -> list[str]:
    """The IDs in ``docker image inspect`` lines "ID CREATED NAME" (CREATED in RFC 3339,
    UTC) that are not the newest of their NAME."""
    rows = sorted(
        (line.split() for line in listing.splitlines() if line.strip()),
        key=lambda fields: fields[1],
        reverse=True,
    )
    newest: set[str] = set()
    stale = []
    for image_id, _created, name in rows:
        if name in newest:
            stale.append(image_id)
        else:
            newest.add(name)
    return stale


def chart_app_version(root: Path) -> str:
    """The tag the charts default to (their appVersion)."""
    for line in (root / "charts/jupyterhub-outpost/Chart.yaml").read_text().splitlines():
        if line.startswith("appVersion:"):
            return line.split(":", 1)[1].strip().strip("\"'")
    raise ImageBuildError("charts/jupyterhub-outpost/Chart.yaml has no appVersion")


def engine_env(say: Callable[[str], None]) -> dict[str, str]:
    """The environment for docker commands against the project's Docker engine, started
    if it is not running (docs/kind.md)."""
    from .kindbuild.commands import BuildError
    from .kindbuild.engine import Engine

    engine = Engine()
    try:
        if engine.start():
            say(f"started the project's Docker engine ({engine.host})")
    except BuildError as e:  # the engine cannot run here: say why, as a build failure
        raise ImageBuildError(str(e)) from e
    return engine.env()


def main(argv: list[str] | None = None) -> int:
    """``make images``: build every image of images/ and print what was done."""
    import argparse

    from .source import source_root

    parser = argparse.ArgumentParser(prog="make images", description=main.__doc__)
    parser.add_argument(
        "--rebuild", action="store_true", help="rebuild the Debian and Python bases too"
    )
    parser.add_argument("--tag", help="image tag (default: the charts' appVersion)")
    args = parser.parse_args(argv)
    root = source_root()
    start = time.monotonic()
    try:
        builder = ImageBuilder(
            root,
            tag=args.tag or chart_app_version(root),
            docker_env=engine_env(print),
            rebuild=args.rebuild,
        )
        report = builder.build_all()
    except ImageBuildError as e:
        print(f"make images: {e}", file=sys.stderr)
        return 1
    for name, ref in report.images.items():
        print(f"{name:26} {ref}  ({report.seconds[name]} s)")
    if report.reused:
        print(f"reused: {', '.join(report.reused)}")
    print(f"all images in {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
