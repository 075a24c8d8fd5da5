"""The kind e2e's helpers are the scenario runner's: outpost_scenarios.kind.

Kept as thin re-exports for tests that import them from here (tests/ansible/kind).
"""

from __future__ import annotations

from outpost_scenarios import kind as _kind
from outpost_scenarios.kind import (  # noqa: F401 (re-exported)
    HUB_CONFIG,
    HUB_IMAGE,
    HUB_NS,
    OUTPOST_IMAGE,
    OUTPOST_NS,
    REMOTE_CONFIG,
    ROOT,
    Hub,
    Keys,
    LoadBalancers,
    addons_values,
    build_images,
    deploy,
    local_outpost_values,
    merge,
    outpost_values,
    run,
    scenario_values,
    teardown,
    z2jh_values,
)


class Cluster(_kind.Cluster):
    """The product's Cluster; ``.kind`` (was pytest-kind's KindCluster, whose
    ``kubeconfig_path`` tests/ansible/kind reads) is the cluster itself."""

    @property
    def kind(self) -> Cluster:
        return self
