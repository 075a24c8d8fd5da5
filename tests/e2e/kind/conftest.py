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

HERE = Path(__file__).resolve().parent
STARTED = time.monotonic()
OUTCOMES: dict[str, str] = {}


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
    if HERE not in Path(str(report.fspath)).resolve().parents:
        return
    if report.when == "call" or report.outcome != "passed":
        OUTCOMES.setdefault(report.nodeid, report.outcome)
        if report.outcome == "failed":
            OUTCOMES[report.nodeid] = "failed"


def pytest_sessionfinish(session, exitstatus):
    ran = [o for o in OUTCOMES.values() if o != "skipped"]
    if not ran:
        return  # nothing ran on a cluster: keep the last real run's page
    from .scenario_fixtures import RUN
    from .summary import record

    before = RUN["steps"].get("node image, kind, kubectl and helm (make kind-images)", 0)
    record(RUN, OUTCOMES, before + time.monotonic() - STARTED)
