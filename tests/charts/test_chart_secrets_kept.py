"""Secrets are generated once and kept across `helm upgrade`.

What is proven here: Helm's own engine (Helm v4's Go library in the helm-python-sdk wheel)
renders an install against :class:`FakeKubeAPI`, a stand-in for the Kubernetes API on
loopback that holds no Secret; the rendered Secret is stored in it as an install would
create it; then an upgrade is rendered against it with ``lookup`` live, and every
generated value (passwords, SSH keys, encryption key, tunnel and metrics tokens) comes back unchanged,
while values set explicitly still win and newly added hubs/Outposts get new values.

What is not proven here: that a real API server answers ``lookup`` the same way (the fake
serves only core/v1 discovery and GET of Secrets), that ``helm upgrade`` applies the
Secret without a diff, and RBAC of the person running helm (they need `get secrets`).
The kind e2e (tests/e2e/kind) runs a real install + upgrade.
"""

from __future__ import annotations

import pytest
import yaml

from tests.charts.chart_helpers import ADDONS, OUTPOST, FakeKubeAPI, one, render, secret_text

NAMESPACE = "outpost"


@pytest.fixture
def cluster():
    api = FakeKubeAPI()
    with api.running() as config:
        yield api, config


def install_then_upgrade(api, config, chart, install_values, upgrade_values, name="rel"):
    installed, _ = render(chart, install_values, name=name, namespace=NAMESPACE, config=config)
    api.apply(installed, NAMESPACE)
    upgraded, _ = render(
        chart, upgrade_values, name=name, namespace=NAMESPACE, config=config, is_upgrade=True
    )
    return one(installed, "Secret"), one(upgraded, "Secret")


def test_outpost_secret_is_kept_across_upgrade(cluster):
    api, config = cluster
    hubs = {"hubs": {"hub-a": {"sshPublicKeys": ["ssh-ed25519 AAAA a"]}}}
    before, after = install_then_upgrade(api, config, OUTPOST, hubs, hubs)
    assert before["data"] == after["data"]
    assert ("outpost", "rel-jupyterhub-outpost") in api.secrets
    assert any(p.endswith("/secrets/rel-jupyterhub-outpost") for p in api.requests), (
        "lookup asked the API"
    )


def test_outpost_upgrade_keeps_generated_values_and_applies_changes(cluster):
    api, config = cluster
    before, after = install_then_upgrade(
        api,
        config,
        OUTPOST,
        {"hubs": {"hub-a": {}}},
        {"hubs": {"hub-a": {"sshPublicKeys": ["ssh-ed25519 AAAA new"]}, "hub-b": {}}},
    )
    for key in ("ssh_host_ed25519_key", "crypt_keys", "metrics_token"):
        assert after["data"][key] == before["data"][key], key
    old = yaml.safe_load(secret_text(before, "hub_credentials.yaml"))
    new = yaml.safe_load(secret_text(after, "hub_credentials.yaml"))
    assert new["hub-a"] == old["hub-a"]  # kept
    assert new["hub-b"] and new["hub-b"] != new["hub-a"]  # a new hub gets its own
    assert yaml.safe_load(secret_text(after, "ssh_authorized_keys.yaml"))["hub-a"] == [
        "ssh-ed25519 AAAA new"
    ]


def test_outpost_explicit_values_win_over_kept_ones(cluster):
    api, config = cluster
    before, after = install_then_upgrade(
        api,
        config,
        OUTPOST,
        {"hubs": {"hub-a": {}}},
        {"hubs": {"hub-a": {"password": "rotated"}}, "cryptKeys": ["k2", "k1"]},
    )
    assert yaml.safe_load(secret_text(after, "hub_credentials.yaml")) == {"hub-a": "rotated"}
    assert secret_text(after, "crypt_keys") == "k2,k1"
    assert after["data"]["ssh_host_ed25519_key"] == before["data"]["ssh_host_ed25519_key"]


def test_without_a_cluster_every_render_generates_anew():
    """The reason for existingSecret with `helm template`/GitOps: no lookup, new values."""
    first, _ = render(OUTPOST, {"hubs": {"hub-a": {}}})
    second, _ = render(OUTPOST, {"hubs": {"hub-a": {}}})
    assert (
        one(first, "Secret")["data"]["ssh_host_ed25519_key"]
        != one(second, "Secret")["data"]["ssh_host_ed25519_key"]
    )


def test_hub_addons_secret_is_kept_across_upgrade(cluster):
    api, config = cluster
    values = {"outposts": {"remote": {"url": "http://x:8080", "ssh": {"host": "x", "port": 22}}}}
    pinned = {
        "outposts": {
            "remote": {
                "url": "http://x:8080",
                "ssh": {"host": "x", "port": 22, "hostKey": "ssh-ed25519 AAAA"},
            },
            "two": {"url": "http://y"},
        }
    }
    before, after = install_then_upgrade(api, config, ADDONS, values, pinned, name="hub-addons")
    for key in (
        "ssh-key",
        "tunnel-api-token",
        "tunnel-metrics-token",
        "outpost-remote-password",
        "outpost-remote-flavors-token",
    ):
        assert after["data"][key] == before["data"][key], key
    assert secret_text(after, "outpost-remote-host-key") == "ssh-ed25519 AAAA"
    assert after["data"]["outpost-two-password"] != after["data"]["outpost-remote-password"]
    # and a later upgrade that no longer names the host key keeps the pinned one
    api.apply([after], NAMESPACE)
    again, _ = render(
        ADDONS, values, name="hub-addons", namespace=NAMESPACE, config=config, is_upgrade=True
    )
    assert secret_text(one(again, "Secret"), "outpost-remote-host-key") == "ssh-ed25519 AAAA"


def test_outpost_metrics_token_is_kept_and_a_given_one_wins(cluster):
    api, config = cluster
    hubs = {"hubs": {"hub-a": {}}}
    before, after = install_then_upgrade(api, config, OUTPOST, hubs, hubs)
    generated = secret_text(before, "metrics_token")
    assert len(generated) == 40 and secret_text(after, "metrics_token") == generated
    # switching metrics off and on again keeps it too (the key stays in the Secret)
    api.apply([after], NAMESPACE)
    off, _ = render(
        OUTPOST,
        {**hubs, "metrics": {"enabled": False}},
        name="rel",
        namespace=NAMESPACE,
        config=config,
        is_upgrade=True,
    )
    assert secret_text(one(off, "Secret"), "metrics_token") == generated
    # a token in values wins over the kept one
    given, _ = render(
        OUTPOST,
        {**hubs, "metrics": {"token": "rotated-metrics-token"}},
        name="rel",
        namespace=NAMESPACE,
        config=config,
        is_upgrade=True,
    )
    assert secret_text(one(given, "Secret"), "metrics_token") == "rotated-metrics-token"


def test_hub_addons_tunnel_metrics_token_is_kept_and_a_given_one_wins(cluster):
    api, config = cluster
    values = {"tunnel": {"mode": "deployment"}}
    before, after = install_then_upgrade(api, config, ADDONS, values, values, name="hub-addons")
    generated = secret_text(before, "tunnel-metrics-token")
    assert len(generated) == 48 and secret_text(after, "tunnel-metrics-token") == generated
    assert generated != secret_text(before, "tunnel-api-token")
    api.apply([after], NAMESPACE)
    given, _ = render(
        ADDONS,
        {"tunnel": {"mode": "deployment", "metrics": {"token": "rotated"}}},
        name="hub-addons",
        namespace=NAMESPACE,
        config=config,
        is_upgrade=True,
    )
    secret = one(given, "Secret")
    assert secret_text(secret, "tunnel-metrics-token") == "rotated"
    assert secret_text(secret, "tunnel-api-token") == secret_text(before, "tunnel-api-token")
