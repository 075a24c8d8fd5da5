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
    assert f"docker build -f images/{name}/Dockerfile -t {default} ." in dockerfile.read_text()
    assert (IMAGES / name / "Dockerfile.dockerignore").exists()


@pytest.mark.parametrize("name", ["outpost", "hub"])
def test_images_run_as_non_root_and_install_this_package(name):
    steps = instructions(IMAGES / name / "Dockerfile")
    users = [arg for op, arg in steps if op == "USER"]
    assert users and users[-1].split(":")[0] == "1000"
    assert any(op == "RUN" and "pip install" in arg for op, arg in steps)
    assert any(op == "COPY" and "core" in arg for op, arg in steps)


def test_hub_image_is_built_on_the_z2jh_hub_image():
    steps = instructions(IMAGES / "hub" / "Dockerfile")
    [base] = [arg for op, arg in steps if op == "FROM"]
    assert base.startswith("quay.io/jupyterhub/k8s-hub:")


def test_outpost_chart_args_follow_the_image_entrypoint():
    steps = instructions(IMAGES / "outpost" / "Dockerfile")
    [entrypoint] = [json.loads(arg) for op, arg in steps if op == "ENTRYPOINT"]
    assert entrypoint == ["jupyterhub-outpost"]
    objects, _ = render(OUTPOST, {})
    [(_, _, spec)] = pod_specs(objects)
    [container] = spec["containers"]
    assert "command" not in container and container["args"][0] == "serve"
