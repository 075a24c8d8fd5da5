"""The values the kind e2e hands to each chart, rendered and validated here (no Docker).

outpost_scenarios.kind (kind mode and the kind e2e) builds every release's
values from scenarios/<name>/kind/*.yaml plus what one run generates (keys, passwords,
addresses). The same builders run here with example addresses, so a values mistake shows
up in `make test`, not only on a machine with Docker.
"""

from __future__ import annotations

import pytest
import yaml
from outpost_scenarios import kind_deploy as kind_mode
from outpost_scenarios.source import source_root

from tests.charts.chart_helpers import ADDONS, OUTPOST, one, render, secret_text, validate

SCENARIOS = ["one-remote", "remote-local", "external-tunnel", "delayed-tunnel"]


@pytest.fixture(scope="module")
def keys():
    return kind_mode.Keys.generate()


def test_merge_follows_helm_values_files():
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert kind_mode.merge(base, {"a": {"c": [3]}, "e": 2}) == {
        "a": {"b": 1, "c": [3]},
        "d": 1,
        "e": 2,
    }
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 1}  # not modified


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_each_scenarios_releases_render_valid(scenario, keys):
    values = kind_mode.outpost_values(scenario, keys)
    objects, _ = render(OUTPOST, values, name="outpost", namespace=kind_mode.OUTPOST_NS)
    validate(objects)
    # MetalLB gives these an address on the kind network, reachable from the hub cluster
    ssh = one(objects, "Service", "outpost-jupyterhub-outpost-ssh")
    assert ssh["spec"]["type"] == "LoadBalancer"
    secret = one(objects, "Secret")
    assert secret_text(secret, "ssh_host_ed25519_key") == keys.host_private
    assert yaml.safe_load(secret_text(secret, "ssh_authorized_keys.yaml")) == {
        "hub": [keys.hub_public]
    }

    local = "local-pw" if scenario == "remote-local" else None
    if local:
        objects, _ = render(
            OUTPOST,
            kind_mode.local_outpost_values(scenario, local),
            name="outpost-local",
            namespace="outpost-local",
        )
        validate(objects)
        # the hub-addons scenario file points at this release's Service
        service = one(objects, "Service")["metadata"]["name"]
        addons_file = yaml.safe_load(
            (source_root() / "scenarios" / scenario / "kind" / "hub-addons.yaml").read_text()
        )
        assert addons_file["outposts"]["local"]["url"] == f"http://{service}.outpost-local.svc:8080"

    addons = kind_mode.addons_values(
        scenario,
        keys,
        api=("172.18.0.10", 8080),
        ssh=("172.18.0.11", 22),
        hub_api_url="http://172.18.0.12/hub/api",
        local_password=local,
    )
    objects, _ = render(ADDONS, addons, name="hub-addons", namespace=kind_mode.HUB_NS)
    validate(objects)
    configmap = one(objects, "ConfigMap")
    assert configmap["metadata"]["name"] == "hub-addons-hub-config"  # what the e2e reads
    secret = one(objects, "Secret")
    assert secret_text(secret, "outpost-remote-host-key") == keys.host_public
    assert secret_text(secret, "outpost-remote-password") == keys.password
    z2jh = kind_mode.z2jh_values(
        scenario, yaml.safe_load(configmap["data"]["z2jh-values.yaml"]), "t"
    )
    assert z2jh["hub"]["image"] == {
        "name": "ghcr.io/jupyterhub-outpost/hub",
        "tag": "kind",
        "pullPolicy": "Never",
    }
    assert "outpost-hub-addons" in z2jh["hub"]["extraConfig"]
