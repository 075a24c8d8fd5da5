"""The image builder's housekeeping: a rebuild leaves no superseded image behind, and only
the newest build stage of each image stays as layer cache.

The rebuild test uses the project's Docker engine (``jupyterhub-outpost kind engine
start``) and skips with the reason when it does not answer.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest
from outpost_scenarios.images import ImageBuilder, stale_stages
from outpost_scenarios.kindbuild.engine import Engine

ROOT = Path(__file__).resolve().parents[2]


def test_every_build_stage_but_the_newest_of_its_image_is_stale():
    listing = "\n".join(
        [
            "sha256:aaa 2026-12-04T08:00:00.1Z outpost",
            "sha256:bbb 2026-12-04T09:00:00.2Z outpost",
            "sha256:ccc 2026-12-03T09:00:00.3Z hub",
            "sha256:ddd 2026-12-04T07:00:00.4Z outpost",
            "",
        ]
    )
    assert sorted(stale_stages(listing)) == ["sha256:aaa", "sha256:ddd"]


def test_every_build_stage_is_labelled_with_its_image_name():
    for dockerfile in sorted((ROOT / "images").glob("*/Dockerfile")):
        for line in dockerfile.read_text().splitlines():
            if "org.jupyterhub-outpost.build-stage" in line:
                assert line.strip().endswith(f"build-stage={dockerfile.parent.name}"), line


@pytest.fixture
def builder(tmp_path):
    engine = Engine()
    problem = engine.problem()
    if problem is not None:
        pytest.skip(problem)
    return ImageBuilder(ROOT, tag="test", docker_env={**os.environ, **engine.env()}, log=print)


def test_a_rebuild_removes_the_image_it_replaces(builder, tmp_path):
    ref = f"localhost/outpost-test/rebuild:{uuid.uuid4().hex[:8]}"
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM scratch\nCOPY content /content\n")
    ids = []
    try:
        for content in ("first", "second"):
            (tmp_path / "content").write_text(content)
            builder._docker_build(dockerfile, ref, tmp_path)
            ids.append(builder._image_id(ref))
        assert ids[0] != ids[1]
        assert builder._image_id(ids[0]) is None, "the replaced image is still there"
        assert builder._image_id(ref) == ids[1]
        builder.prune_build_stages()  # runs against the engine's real listing
    finally:
        subprocess.run(
            ["docker", "image", "rm", ref], env=builder.docker_env, capture_output=True, check=False
        )
