"""site.yml on a kind cluster: runs only when asked for (make e2e-kind) and when Docker,
kind and the helm binary (kubernetes.core.helm needs it) are here."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def _asked_for(config) -> bool:
    for arg in config.args:
        path = Path(arg.split("::")[0]).resolve()
        if path == HERE or HERE in path.parents:
            return True
    return False


def missing() -> str | None:
    try:  # the kind e2e's own Docker check (imported lazily: never break collection)
        from tests.e2e.kind.conftest import docker_engine
    except ImportError as e:
        return f"tests/e2e/kind helpers not importable: {e}"
    reason = docker_engine()
    if reason:
        return reason
    for tool in ("kind", "helm"):
        if shutil.which(tool) is None:
            return f"the {tool} binary is not on PATH (kubernetes.core.helm runs helm)"
    return None


def pytest_collection_modifyitems(config, items):
    mine = [i for i in items if HERE in Path(str(i.fspath)).resolve().parents]
    if not mine:
        return
    reason = "Ansible kind e2e runs only when asked for: make e2e-kind"
    if _asked_for(config):
        reason = missing()
        if reason is None:
            return
        print(f"\nAnsible kind e2e skipped: {reason}")
    for item in mine:
        item.add_marker(pytest.mark.skip(reason=reason))
