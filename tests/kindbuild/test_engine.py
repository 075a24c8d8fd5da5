"""The project's Docker engine lifecycle, on a private dockerd of its own.

Each test starts a second dockerd (own socket, data root and exec root, and a default bridge
of its own that the test creates) so that the shared engine others use is never stopped; it
runs in the host's network namespace with ``--iptables=false`` like the shared one, so it
changes no firewall rule. Not ``--bridge=none``: with it dockerd deletes the interface
``docker0``, which belongs to the shared engine.
Needs root, Debian's docker.io (dockerd, runc), a docker CLI and gcc (for a static test
program); skips with the reason otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from outpost_scenarios.kindbuild import runc_wrapper
from outpost_scenarios.kindbuild.archive import Image, layer_from_files, write_image
from outpost_scenarios.kindbuild.engine import Engine, EngineError


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (dockerd)"
    for program in ("dockerd", "docker", "gcc"):
        if shutil.which(program, path=os.environ.get("PATH", "") + ":/usr/sbin") is None:
            return f"{program} is not installed (make docker-engine)"
    if not Path(runc_wrapper.RUNC).exists():
        return f"{runc_wrapper.RUNC} is not installed (make docker-engine)"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=str(_missing()))


@pytest.fixture
def own_bridge():
    """A bridge for the private dockerd's default network (never docker0)."""
    name = f"obt{os.getpid() % 100000}"
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)
    yield name
    subprocess.run(["ip", "link", "delete", name], check=False)


@pytest.fixture
def private_engine(tmp_path, own_bridge):
    # unix socket paths are limited to 107 bytes: keep the exec root short
    short = Path(f"/run/outpost-engine-test-{os.getpid()}")
    engine = Engine(
        socket=short / "docker.sock",
        data_root=tmp_path / "data",
        exec_root=short / "exec",
        log=tmp_path / "dockerd.log",
        bridge=own_bridge,
    )
    yield engine
    engine.stop()
    shutil.rmtree(short, ignore_errors=True)


@pytest.fixture
def true_image(tmp_path) -> Path:
    """An image archive holding one static program that exits 0."""
    source = tmp_path / "true.c"
    source.write_text("int main(void) { return 0; }\n")
    program = tmp_path / "true"
    subprocess.run(["gcc", "-static", "-Os", "-o", str(program), str(source)], check=True)
    layer = layer_from_files({"true": program}, tmp_path / "layer.tar")
    image = Image(["localhost/outpost-test/true:1"], [layer], entrypoint=["/true"])
    return write_image(image, tmp_path / "true.tar")


def docker(engine: Engine, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, env=engine.env(), timeout=300
    )


def test_engine_starts_runs_privileged_containers_through_the_wrapper_and_stops(
    private_engine, true_image
):
    docker0 = Path("/sys/class/net/docker0").exists()
    assert not private_engine.answers()

    assert private_engine.start() is True
    assert private_engine.answers()
    assert private_engine.problem() is None
    assert private_engine.start() is False  # already running: nothing started twice

    assert docker(private_engine, "load", "--input", str(true_image)).returncode == 0
    privileged = ["run", "--rm", "--privileged", "--network", "none"]
    result = docker(private_engine, *privileged, "localhost/outpost-test/true:1")
    assert result.returncode == 0, result.stderr
    if runc_wrapper.unavailable(
        runc_wrapper.bounding_set(Path("/proc/self/status").read_text())
    ):  # this host lacks capabilities: without the wrapper, runc refuses
        plain = docker(
            private_engine, *privileged, "--runtime", "runc", "localhost/outpost-test/true:1"
        )
        assert plain.returncode != 0
        assert "caps" in plain.stderr

    assert private_engine.stop() is True
    assert not private_engine.answers()
    assert private_engine.stop() is False
    assert Path("/sys/class/net/docker0").exists() == docker0  # the shared engine's bridge


def test_a_dockerd_that_cannot_start_is_reported_with_its_log(tmp_path, own_bridge):
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    short = Path(f"/run/outpost-engine-test-{os.getpid()}-bad")
    engine = Engine(
        socket=short / "docker.sock",
        data_root=not_a_directory,
        exec_root=short / "exec",
        log=tmp_path / "dockerd.log",
        bridge=own_bridge,
    )
    try:
        with pytest.raises(EngineError, match="dockerd exited with code") as failure:
            engine.start()
        assert str(not_a_directory) in str(failure.value)  # dockerd's own words, from its log
    finally:
        shutil.rmtree(short, ignore_errors=True)


def test_a_missing_dockerd_says_how_to_install_it(tmp_path):
    engine = Engine(socket=tmp_path / "docker.sock", dockerd=str(tmp_path / "dockerd"))
    with pytest.raises(EngineError, match="make docker-engine"):
        engine.start()
