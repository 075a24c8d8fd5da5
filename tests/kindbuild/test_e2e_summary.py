"""The kind e2e's summary (docs/kind-e2e.md) counts each test once, with its worst phase,
for the scenarios and the Ansible rollout alike."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from e2e.kind import summary


@pytest.fixture
def outcomes(monkeypatch):
    monkeypatch.setattr(summary, "OUTCOMES", {})
    return summary


def report(nodeid, when, outcome):
    return SimpleNamespace(nodeid=nodeid, when=when, outcome=outcome)


def test_a_test_counts_once_with_a_failed_teardown_over_its_passed_call(outcomes):
    for when, outcome in [("setup", "passed"), ("call", "passed"), ("teardown", "failed")]:
        outcomes.note_outcome(report("tests/ansible/kind/test_site_kind.py::t", when, outcome))
    outcomes.note_outcome(report("tests/e2e/kind/test_kind_cluster.py::c", "setup", "skipped"))
    assert outcomes.OUTCOMES == {
        "tests/ansible/kind/test_site_kind.py::t": "failed",
        "tests/e2e/kind/test_kind_cluster.py::c": "skipped",
    }


def test_the_page_gives_the_counts_and_names_the_failed_tests():
    entry = {
        "date": "2026-12-04 18:43 UTC", "machine": "2 cores", "kubernetes": "v1.34.4",
        "kind": "v0.30.0", "node_image": "n", "steps": {}, "scenarios": {},
        "counts": {"passed": 21, "failed": 1}, "failed": ["a::b"], "seconds": 60.0,
    }  # fmt: skip
    page = summary.render({"warm": entry, "last": "warm"})
    assert "- tests: 1 failed, 21 passed; whole run 1.0 min" in page
    assert "- failed: a::b" in page
    assert "## Last cold run\n\nNone recorded yet." in page
