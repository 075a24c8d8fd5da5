"""site.yml on kind clusters built here: runs only when asked for (``make e2e-kind``) and
when the project's Docker engine answers (``make kind-images`` starts it).

Everything else it needs is built on the first run and cached: the kind node image,
kind and kubectl (outpost_scenarios.kindbuild), the helm binary that kubernetes.core.helm
runs (built from helm.sh/helm/v3 on the Go module proxy, same cache), and the images of
images/ (outpost_scenarios.images).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from e2e.kind.summary import note_outcome  # the module the kind conftest records with

HERE = Path(__file__).resolve().parent


def _asked_for(config) -> bool:
    for arg in config.args:
        path = Path(arg.split("::")[0]).resolve()
        if path == HERE or HERE in path.parents:
            return True
    return False


def engine_problem() -> str | None:
    """None when the project's Docker engine answers, else why not."""
    from outpost_scenarios.kindbuild import Engine

    try:
        return Engine().problem()
    except (OSError, ValueError) as e:
        return f"the project's Docker engine does not answer properly: {e}"


def pytest_collection_modifyitems(config, items):
    mine = [i for i in items if HERE in Path(str(i.fspath)).resolve().parents]
    if not mine:
        return
    reason = "Ansible kind e2e runs only when asked for: make e2e-kind"
    if _asked_for(config):
        reason = engine_problem()
        if reason is None:
            return
        print(f"\nAnsible kind e2e skipped: {reason}")
    for item in mine:
        item.add_marker(pytest.mark.skip(reason=reason))


def pytest_runtest_logreport(report):
    """The rollout's outcomes go into the kind e2e's summary (docs/kind-e2e.md)."""
    note_outcome(report)
