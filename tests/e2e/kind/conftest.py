"""kind end-to-end tests: skipped here, run by `make e2e-kind` where Docker exists.

test_kind_offline.py runs everywhere (stand-in kind/kubectl binaries, no Docker). The others
need a Docker engine (``docker info`` must work) and network access to pull images
and the zero-to-jupyterhub chart. They run only when asked for by path
(``pytest tests/e2e/kind``), never as part of a plain ``make test``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
OFFLINE = {"test_kind_offline.py"}  # kind mode's argv flow with stand-in binaries: runs anywhere


def docker_engine() -> str | None:
    """None when Docker works, else why not."""
    docker = shutil.which("docker")
    if docker is None:
        return "no docker engine (the docker command is not installed)"
    try:
        result = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"no docker engine (docker info: {e})"
    if result.returncode != 0:
        return (
            "no docker engine (docker info failed: "
            + (result.stderr.strip().splitlines() or ["?"])[-1]
            + ")"
        )
    return None


def _asked_for(config) -> bool:
    for arg in config.args:
        path = Path(arg.split("::")[0]).resolve()
        if path == HERE or HERE in path.parents:
            return True
    return False


def pytest_report_header(config):
    if _asked_for(config):
        return f"kind e2e: {docker_engine() or 'Docker engine found'}"


def pytest_collection_modifyitems(config, items):
    reason = docker_engine()
    if reason is None and not _asked_for(config):
        reason = "kind e2e runs only when asked for: make e2e-kind"
    if reason is None:
        return
    if _asked_for(config):
        print(f"\nkind e2e skipped: {reason}")
    for item in items:
        path = Path(str(item.fspath)).resolve()
        if HERE in path.parents and path.name not in OFFLINE:
            item.add_marker(pytest.mark.skip(reason=reason))
