"""kind end-to-end tests: run by `make e2e-kind`, never as part of a plain `make test`.

They need the project's Docker engine (``jupyterhub-outpost kind engine start``; see
docs/kind.md) and run only when asked for by path (``pytest tests/e2e/kind``); otherwise
they skip with the reason. A run that executed kind tests records its timings and results
in docs/kind-e2e.md (summary.py).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from outpost_scenarios.kindbuild import Engine

# One session fixture for every module: imported into each test module instead, pytest made
# one session-scoped instance per module, and each module after the first found the
# clusters made by the first and overwrote the recorded creation time with its reuse.
from .scenario_fixtures import kind_clusters  # noqa: F401 (fixture)
from .summary import OUTCOMES, note_outcome, record

HERE = Path(__file__).resolve().parent
STARTED = time.monotonic()


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
        if HERE in path.parents:
            item.add_marker(pytest.mark.skip(reason=reason))


def pytest_runtest_logreport(report):
    note_outcome(report)


def pytest_sessionfinish(session, exitstatus):
    """Record the run (this directory's tests and the Ansible rollout's) unless nothing
    ran on a cluster: then the last real run's page stays."""
    if all(o == "skipped" for o in OUTCOMES.values()):
        return
    from .scenario_fixtures import RUN

    before = RUN["steps"].get("node image, kind, kubectl and helm (make kind-images)", 0)
    record(RUN, OUTCOMES, before + time.monotonic() - STARTED)
