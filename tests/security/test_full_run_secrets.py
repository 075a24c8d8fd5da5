"""A full run (real hub with proxy and managed tunnel daemon, real Outposts with SSH
endpoints and jupyterhub-singleuser, in network namespaces; the site of
tests/hub/test_integration.py), then every log it wrote is searched for every secret the
run used. Also: the Outpost SIGKILLed in the middle of a start."""

import os
import re
from pathlib import Path

import pytest

from tests.hub.test_integration import (  # noqa: F401  (site: a module-scoped fixture)
    assert_clean,
    site,
    start_server,
)

pytestmark = [pytest.mark.slow, pytest.mark.netns]


def server_env(user: str, server: str) -> dict[str, str]:
    """The environment of the running single-user server of ``user``/``server`` (as root,
    from /proc): its API token and OAuth settings are secrets too."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        env = dict(
            item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item
        )
        if env.get("JUPYTERHUB_USER") == user and env.get("JUPYTERHUB_SERVER_NAME") == server:
            return env
    raise AssertionError(f"no process of {user}/{server} found")


def key_material(path: Path) -> list[str]:
    """Base64 lines of an OpenSSH private key file (any of them in a log is a leak)."""
    lines = path.read_text().splitlines()
    return [line for line in lines if line and not line.startswith("-----") and len(line) >= 20]


def test_no_log_of_a_full_run_contains_any_secret(site):  # noqa: F811
    hub = site.hub
    start_server(hub, "alice", "sec", {"outpost": "remote", "flavor": "small"})
    env = server_env("alice", "sec")
    hub.stop_server("alice", "sec")
    assert_clean(site, "remote")

    secrets = {
        "tunnel API token": site.tunnel_token,
        "hub admin token": hub.admin_token,
        "other hub's secret": "other-secret",
        "server API token": env["JUPYTERHUB_API_TOKEN"],
    }
    if env.get("JUPYTERHUB_OAUTH_CLIENT_SECRET"):
        secrets["server OAuth secret"] = env["JUPYTERHUB_OAUTH_CLIENT_SECRET"]
    for name, secret in site.secrets.items():
        secrets[f"hub credentials at {name}"] = secret
    for name, token in site.flavors_tokens.items():
        secrets[f"flavors update token of {name}"] = token
    for name, outpost in site.outposts.items():
        for i, key in enumerate(outpost.env["OUTPOST_CRYPT_KEYS"].split(",")):
            secrets[f"crypt key {i} of {name}"] = key
        host_key = outpost.data_dir / "ssh_host_ed25519_key"
        for i, line in enumerate(key_material(host_key) if host_key.exists() else []):
            secrets[f"host key of {name}, line {i}"] = line
    for i, line in enumerate(key_material(site.tmp / "hub_ed25519")):
        secrets[f"hub SSH key, line {i}"] = line
    assert all(len(s) >= 8 for s in secrets.values())

    logs = {"hub (with proxy and tunnel daemon)": hub.log_text()}
    for name, outpost in site.outposts.items():
        logs[f"outpost {name} (with its servers)"] = outpost.log_text()
    assert "Starting server" in logs["outpost remote (with its servers)"]
    assert re.search(r"\[req=\w+ hub=hub server=\w+", logs["outpost remote (with its servers)"])
    assert "tunnel" in logs["hub (with proxy and tunnel daemon)"].lower()
    leaks = [
        f"{what} in the log of {where}"
        for what, secret in secrets.items()
        for where, text in logs.items()
        if secret in text
    ]
    assert not leaks, leaks
