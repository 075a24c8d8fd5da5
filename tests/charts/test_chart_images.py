"""The images the charts point at: their Dockerfiles agree with the charts' defaults."""

from __future__ import annotations

import json
import re

import pytest

from tests.charts.chart_helpers import ADDONS, OUTPOST, ROOT, load_chart, pod_specs, render

IMAGES = ROOT / "images"


def instructions(dockerfile) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
        for line in (raw.strip() for raw in text.splitlines())
        if line and not line.startswith("#")
    ]


@pytest.mark.parametrize(
    "name,chart,repository",
    [
        ("outpost", OUTPOST, lambda v: v["image"]["repository"]),
        ("hub", ADDONS, lambda v: v["tunnel"]["image"]["repository"]),
        ("hub", ADDONS, lambda v: v["jupyterhub"]["hubImage"]["name"]),
    ],
)
def test_chart_default_image_is_the_one_the_dockerfile_documents(name, chart, repository):
    dockerfile = IMAGES / name / "Dockerfile"
    app_version = load_chart(chart).metadata["appVersion"]
    default = f"{repository(load_chart(chart).values)}:{app_version}"
    assert (
        f"docker build -f images/{name}/Dockerfile -t {default} <context>" in dockerfile.read_text()
    )


@pytest.mark.parametrize("name", ["outpost", "hub"])
def test_images_run_as_non_root_and_install_this_package_from_the_staged_wheels(name):
    steps = instructions(IMAGES / name / "Dockerfile")
    users = [arg for op, arg in steps if op == "USER"]
    assert users and users[-1].split(":")[0] == "1000"
    [install] = [arg for op, arg in steps if op == "RUN" and "pip" in arg and "install" in arg]
    assert "--no-index" in install and "jupyterhub-outpost[kubernetes" in install
    assert any(op == "COPY" and arg.startswith("wheels ") for op, arg in steps)


@pytest.mark.parametrize(
    "dockerfile", sorted(IMAGES.glob("*/Dockerfile")), ids=lambda p: p.parent.name
)
def test_every_image_starts_from_the_bases_built_here_never_a_public_registry(dockerfile):
    """The bases are made by debootstrap + docker import (outpost_scenarios.images):
    nothing is pulled from Docker Hub, quay.io, ghcr.io or registry.k8s.io."""
    steps = instructions(dockerfile)
    args = {
        arg.split("=", 1)[0]: arg.split("=", 1)[1]
        for op, arg in steps
        if op == "ARG" and "=" in arg
    }
    for op, arg in steps:
        if op != "FROM":
            continue
        base = arg.split()[0]
        if base.startswith("${"):
            base = args[base[2:-1]]
        stages = [a.split()[-1] for o, a in steps if o == "FROM" and " AS " in a.upper()]
        assert base.startswith("jupyterhub-outpost/") or base in stages, base


def test_outpost_chart_args_follow_the_image_entrypoint():
    steps = instructions(IMAGES / "outpost" / "Dockerfile")
    [entrypoint] = [json.loads(arg) for op, arg in steps if op == "ENTRYPOINT"]
    assert entrypoint == ["jupyterhub-outpost"]
    objects, _ = render(OUTPOST, {})
    [(_, _, spec)] = pod_specs(objects)
    [container] = spec["containers"]
    assert "command" not in container and container["args"][0] == "serve"
