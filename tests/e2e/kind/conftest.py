"""kind end-to-end tests: skipped here, run by `make e2e-kind` where Docker exists.

test_kind_offline.py runs everywhere (stand-in kind/kubectl binaries, no Docker). The others
need the project's Docker engine (``jupyterhub-outpost kind engine start``; see docs/kind.md). They run only when asked for by path
(``pytest tests/e2e/kind``), never as part of a plain ``make test``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from outpost_scenarios.kindbuild import Engine

HERE = Path(__file__).resolve().parent
OFFLINE = {"test_kind_offline.py"}  # kind mode's argv flow with stand-in binaries: runs anywhere


def docker_engine() -> str | None:
    """None when the project's Docker engine answers (``make kind-images`` starts it),
    else why not."""
    try:
        return Engine().problem()
    except (OSError, ValueError) as e:
        return f"the project's Docker engine does not answer properly: {e}"


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
