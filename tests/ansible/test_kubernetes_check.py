"""The Kubernetes roles without a cluster: site.yml over the remote-local example inventory
(hub and two Outposts on Kubernetes) renders the chart values, runs again in check mode with
nothing to change, and the values render and validate with the charts' own engine.

The helm step (tags outpost_kubernetes_run, hub_addons_run) needs a cluster and the helm
binary; it runs for real in `make e2e-kind` (tests/ansible/kind).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from .lab import REPO, run_playbook

INVENTORY = REPO / "scenarios" / "remote-local" / "inventory"
SKIP_HELM = "outpost_kubernetes_run,hub_addons_run"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("k8s-check")
    extra = json.dumps(
        {
            "outpost_trust_dir": str(tmp / "trust"),
            "outpost_kubernetes_values_dir": str(tmp / "rendered"),
            "hub_addons_values_dir": str(tmp / "rendered"),
        }
    )
    first = run_playbook(INVENTORY, "site.yml", "--skip-tags", SKIP_HELM, "-e", extra, tmp=tmp)
    check = run_playbook(
        INVENTORY, "site.yml", "--check", "--skip-tags", SKIP_HELM, "-e", extra, tmp=tmp
    )
    return tmp, first, check


def values(tmp: Path, name: str) -> dict:
    return yaml.safe_load((tmp / "rendered" / name).read_text())


def test_kubernetes_roles_render_values_for_both_charts(rendered):
    tmp, first, _ = rendered
    assert first.returncode == 0, first.output[-6000:]
    outpost = values(tmp, "remote-jupyterhub-outpost.values.yaml")
    assert set(outpost["hubs"]) == {"hub"}
    assert outpost["hubs"]["hub"]["sshPublicKeys"][0].startswith("ssh-ed25519 ")
    assert "PRIVATE KEY" in outpost["ssh"]["hostKey"]
    assert outpost["service"] == {"type": "LoadBalancer"}  # outpost_kubernetes_values merged
    hub = values(tmp, "hub-hub-addons.values.yaml")
    assert hub["hubName"] == "hub"
    assert set(hub["outposts"]) == {"local", "remote"}
    remote = hub["outposts"]["remote"]
    pinned = (tmp / "trust" / "outpost-remote.ssh_host_ed25519_key.pub").read_text()
    assert remote["ssh"]["hostKey"] == " ".join(pinned.split()[:2])
    assert remote["password"] == outpost["hubs"]["hub"]["password"]
    assert hub["outposts"]["local"]["direct"] is True
    assert "ssh" not in hub["outposts"]["local"]
    assert hub["outposts"]["remote"]["hubApiUrl"] == "https://hub.example.org/hub/api"


def test_check_mode_run_succeeds_and_changes_nothing(rendered):
    _, first, check = rendered
    assert first.returncode == 0, first.output[-6000:]
    assert check.returncode == 0, check.output[-6000:]
    changed = {h: r["changed"] for h, r in check.recap().items() if r["changed"]}
    assert changed == {}, check.changed_tasks()


def test_rendered_values_pass_the_charts_schemas_and_kubernetes_validation(rendered):
    tmp, first, _ = rendered
    assert first.returncode == 0, first.output[-6000:]
    try:
        from tests.charts import chart_helpers as ch
    except ImportError as e:
        pytest.skip(f"the charts' render helper is not importable ({e}): helm-python-sdk missing?")
    for chart, name in [
        (ch.OUTPOST, "remote-jupyterhub-outpost.values.yaml"),
        (ch.OUTPOST, "local-jupyterhub-outpost.values.yaml"),
        (ch.ADDONS, "hub-hub-addons.values.yaml"),
    ]:
        objects, _ = ch.render(chart, values(tmp, name))
        assert objects, f"{chart.name} rendered nothing from {name}"
        ch.validate(objects)
