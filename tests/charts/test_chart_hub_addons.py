"""What matters in the hub-addons chart's rendered objects."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys

import asyncssh
import helm_python
import pytest
import yaml
from traitlets.config import Config

from tests.charts.chart_helpers import (
    ADDONS,
    JUPYTERHUB,
    check_service_monitor,
    find,
    free_port,
    http_status,
    one,
    pod_specs,
    render,
    secret_text,
    validate,
    wait_for_ping,
)

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMGPA3EeWdotOAsvTaGQ/2gp0AmjLHklbZlOtB7pRee3"
OUTPOSTS = {
    "remote": {
        "url": "http://203.0.113.7:8080",
        "hubApiUrl": "https://hub.example.org/hub/api",
        "ssh": {"host": "203.0.113.8", "port": 22, "hostKey": HOST_KEY},
    },
    "local": {"url": "http://outpost.outpost.svc:8080", "direct": True},
}


def hub_config(objects, tmp_path, c=None):
    """Run the hub snippet as z2jh would, with the Secret's files in tmp_path."""
    secret = one(objects, "Secret")
    for key in secret["data"]:
        (tmp_path / key).write_text(secret_text(secret, key))
    text = one(objects, "ConfigMap")["data"]["outpost_hub_config.py"]
    assert '_secrets_dir = "/etc/outpost-hub/secrets"' in text
    text = text.replace('"/etc/outpost-hub/secrets"', repr(str(tmp_path)))
    c = c if c is not None else Config()
    exec(compile(text, "outpost_hub_config.py", "exec"), {"c": c})
    return c, secret


@pytest.mark.parametrize("mode", ["sidecar", "deployment"])
def test_hub_snippet_configures_the_outpost_spawner(tmp_path, mode):
    objects, _ = render(
        ADDONS,
        {"hubName": "central", "outposts": OUTPOSTS, "tunnel": {"mode": mode}},
        namespace="jhub",
    )
    c, secret = hub_config(objects, tmp_path)
    assert c.JupyterHub.spawner_class == "outpost"
    outposts = c.OutpostSpawner.outposts
    assert outposts["remote"]["ssh"] == {
        "host": "203.0.113.8",
        "port": 22,
        "user": "central",
        "host_key": HOST_KEY,
    }
    assert outposts["remote"]["hub_name"] == "central"
    assert outposts["remote"]["hub_api_url"] == "https://hub.example.org/hub/api"
    assert outposts["local"]["direct"] is True and "ssh" not in outposts["local"]
    assert c.OutpostSpawner.tunnel_api_token == secret_text(secret, "tunnel-api-token")
    assert c.OutpostSpawner.service_backend == "kubernetes"
    if mode == "sidecar":
        assert c.OutpostSpawner.tunnel_api_url == "http://127.0.0.1:8765"
        assert c.OutpostSpawner.kubernetes_service_selector == {
            "app": "jupyterhub",
            "component": "hub",
        }
    else:
        service = one(objects, "Service")
        assert (
            c.OutpostSpawner.tunnel_api_url == f"http://{service['metadata']['name']}.jhub.svc:8765"
        )
        [(_, labels, _)] = pod_specs(objects)
        selector = c.OutpostSpawner.kubernetes_service_selector
        assert selector and selector.items() <= labels.items()
        assert service["spec"]["selector"].items() <= labels.items()
    # flavors: each Outpost's own token, from the Secret; no service, role or scope
    assert c.JupyterHub.services.get_value([]) == []
    assert c.JupyterHub.load_roles.get_value([]) == []
    # The hub's own parser accepts what the snippet produces (secrets read from files).
    outposts_module = pytest.importorskip("jupyterhub_outpost.hub.outposts")
    parsed = outposts_module.parse_outposts(outposts)
    assert set(parsed) == {"remote", "local"}
    for name, outpost in parsed.items():
        token = secret_text(secret, f"outpost-{name}-flavors-token")
        assert outpost.flavors_update_token == token and len(token) == 48
    assert parsed["remote"].flavors_update_token != parsed["local"].flavors_update_token


def test_hub_snippet_keeps_services_and_roles_from_z2jh_values(tmp_path):
    """z2jh sets c.JupyterHub.services / load_roles from hub.services / hub.loadRoles first."""
    objects, _ = render(ADDONS, {"outposts": OUTPOSTS})
    c = Config()
    c.JupyterHub.services = [{"name": "mine", "api_token": "x"}]
    c.JupyterHub.load_roles = [{"name": "mine", "scopes": ["read:users"], "services": ["mine"]}]
    c.JupyterHub.custom_scopes = {"custom:mine": {"description": "mine"}}
    c, _ = hub_config(objects, tmp_path, c)
    assert [s["name"] for s in c.JupyterHub.services] == ["mine"]
    assert [r["name"] for r in c.JupyterHub.load_roles] == ["mine"]
    assert set(c.JupyterHub.custom_scopes) == {"custom:mine"}


def test_unpinned_outpost_gets_no_tunnel(tmp_path, capsys):
    objects, notes = render(
        ADDONS, {"outposts": {"remote": {"url": "http://x:8080", "ssh": {"host": "x"}}}}
    )
    c, _ = hub_config(objects, tmp_path)
    assert "ssh" not in c.OutpostSpawner.outposts["remote"]
    assert "no pinned SSH host key" in capsys.readouterr().out
    assert "set outposts.remote.ssh.hostKey" in notes


def test_no_secret_in_the_configmap():
    objects, _ = render(ADDONS, {"outposts": OUTPOSTS, "tunnel": {"apiToken": "t0ken-given"}})
    secret = one(objects, "Secret")
    text = yaml.safe_dump(one(objects, "ConfigMap")["data"])
    for key in secret["data"]:
        if key.endswith("-host-key"):
            continue  # public keys
        assert secret_text(secret, key) not in text, key


def test_generated_hub_key_is_an_ed25519_key_and_notes_print_its_public_half(tmp_path):
    objects, notes = render(ADDONS, {"outposts": OUTPOSTS})
    secret = one(objects, "Secret")
    key = asyncssh.import_private_key(secret_text(secret, "ssh-key"))
    assert key.algorithm == b"ssh-ed25519"
    [code] = re.findall(r"python3 -c '([^']+)'", notes)
    (tmp_path / "hub-ssh-key").write_text(secret_text(secret, "ssh-key"))
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.strip() == key.export_public_key().decode().strip()
    assert re.fullmatch(r"[A-Za-z0-9]{40}", secret_text(secret, "outpost-remote-password"))
    assert secret_text(secret, "outpost-remote-host-key") == HOST_KEY


def z2jh_values(objects):
    return yaml.safe_load(one(objects, "ConfigMap")["data"]["z2jh-values.yaml"])


def as_hub_pod(values: dict) -> dict:
    """The hub pod a z2jh chart makes with these values: the spec of the Deployment ``hub``
    that the kind scenarios' zero-to-jupyterhub stand-in (scenario-runner/charts/jupyterhub,
    z2jh's semantics for hub.extraVolumes/extraVolumeMounts/extraContainers) renders,
    after checking every object of that render against the Kubernetes schemas."""
    objects, _ = render(JUPYTERHUB, values, name="jupyterhub", namespace="jhub")
    validate(objects)
    return one(objects, "Deployment", "hub")["spec"]["template"]


def hub_container(pod: dict) -> dict:
    [found] = [c for c in pod["spec"]["containers"] if c["name"] == "hub"]
    return found


@pytest.mark.parametrize("mode", ["sidecar", "deployment"])
def test_z2jh_values_make_a_valid_hub_pod_that_mounts_the_snippet_and_secret(mode):
    objects, _ = render(ADDONS, {"outposts": OUTPOSTS, "tunnel": {"mode": mode}})
    values = z2jh_values(objects)
    pod = as_hub_pod(values)
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    for container in pod["spec"]["containers"]:
        for mount in container.get("volumeMounts", []):
            assert mount["name"] in volumes
    configmap = one(objects, "ConfigMap")
    assert volumes["outpost-hub-config"]["configMap"]["name"] == configmap["metadata"]["name"]
    assert (
        volumes["outpost-hub-secrets"]["secret"]["secretName"]
        == one(objects, "Secret")["metadata"]["name"]
    )
    # hub.extraConfig executes the mounted snippet
    [line] = values["hub"]["extraConfig"].values()
    mount = next(m for m in hub_container(pod)["volumeMounts"] if m["name"] == "outpost-hub-config")
    assert f'open("{mount["mountPath"]}/outpost_hub_config.py")' in line
    sidecars = values["hub"].get("extraContainers", [])
    if mode == "sidecar":
        [sidecar] = sidecars
        args = sidecar["command"]
        assert args[:2] == ["jupyterhub-outpost", "tunnels"]
        assert args[args.index("--forward-ip") + 1] == "0.0.0.0"
        assert args[args.index("--api-ip") + 1] == "127.0.0.1"
        ssh_key = args[args.index("--ssh-key") + 1]
        secrets_mount = next(
            m for m in sidecar["volumeMounts"] if m["name"] == "outpost-tunnel-key"
        )
        assert ssh_key == secrets_mount["mountPath"] + "/ssh-key"
        assert (
            values["hub"]["networkPolicy"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"][
                "component"
            ]
            == "proxy"
        )
    else:
        assert sidecars == []
        [(_, labels, _)] = pod_specs(objects)
        [rule] = values["proxy"]["chp"]["networkPolicy"]["egress"]
        assert rule["to"][0]["podSelector"]["matchLabels"].items() <= labels.items()


def test_tunnel_deployment_api_and_networkpolicy_let_the_hub_reach_api_and_forwards():
    objects, _ = render(ADDONS, {"outposts": OUTPOSTS, "tunnel": {"mode": "deployment"}})
    [(_, labels, spec)] = pod_specs(objects)
    [container] = spec["containers"]
    args = container["command"]
    assert args[args.index("--api-ip") + 1] == "0.0.0.0"
    service = one(objects, "Service")
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["port"] == 8765
    assert spec["automountServiceAccountToken"] is False
    policy = one(objects, "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    hub_rule, forward_rule = policy["spec"]["ingress"]
    assert hub_rule["from"][0]["podSelector"]["matchLabels"] == {
        "app": "jupyterhub",
        "component": "hub",
    }
    # the hub calls the API and checks its servers through the forwards (any port): with an
    # enforcing CNI, an API-only rule made every start fail ("server never showed up")
    assert "ports" not in hub_rule and "ports" not in forward_rule
    [hub_egress] = z2jh_values(objects)["hub"]["networkPolicy"]["egress"]
    assert hub_egress["to"][0]["podSelector"]["matchLabels"].items() <= labels.items()
    assert "ports" not in hub_egress
    assert forward_rule["from"][0]["podSelector"]["matchLabels"] == {
        "app": "jupyterhub",
        "component": "proxy",
    }


def test_role_lets_the_hub_manage_services_in_its_namespace():
    objects, _ = render(ADDONS, {}, namespace="jhub")
    role = one(objects, "Role")
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["services"],
            "verbs": ["get", "list", "watch", "create", "delete", "patch"],
        }
    ]
    binding = one(objects, "RoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "hub", "namespace": "jhub"}]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]


def test_existing_secret_is_used_everywhere():
    objects, _ = render(
        ADDONS, {"existingSecret": "mine", "outposts": OUTPOSTS, "tunnel": {"mode": "deployment"}}
    )
    assert find(objects, "Secret") == []
    values = z2jh_values(objects)
    secret_volumes = [v for v in values["hub"]["extraVolumes"] if "secret" in v]
    assert secret_volumes and all(v["secret"]["secretName"] == "mine" for v in secret_volumes)
    [(_, _, spec)] = pod_specs(objects)
    assert spec["volumes"][0]["secret"]["secretName"] == "mine"
    env = spec["containers"][0]["env"]
    assert [e["valueFrom"]["secretKeyRef"] for e in env] == [
        {"name": "mine", "key": "tunnel-api-token"},
        {"name": "mine", "key": "tunnel-metrics-token"},
    ]


def test_secret_values_are_base64_of_what_was_given():
    objects, _ = render(
        ADDONS,
        {
            "sshKey": "KEY",
            "tunnel": {"apiToken": "TOKEN"},
            "outposts": {"a": {"url": "u", "password": "PW"}},
        },
    )
    data = one(objects, "Secret")["data"]
    assert base64.b64decode(data["ssh-key"]) == b"KEY"
    assert base64.b64decode(data["tunnel-api-token"]) == b"TOKEN"
    assert base64.b64decode(data["outpost-a-password"]) == b"PW"


@pytest.mark.parametrize("mode", ["sidecar", "deployment"])
def test_the_tunnel_daemon_accepts_the_rendered_command_and_key(tmp_path, mode):
    daemon = pytest.importorskip("jupyterhub_outpost.tunnels.daemon")
    objects, _ = render(ADDONS, {"outposts": OUTPOSTS, "tunnel": {"mode": mode}})
    if mode == "sidecar":
        [container] = z2jh_values(objects)["hub"]["extraContainers"]
    else:
        [(_, _, spec)] = pod_specs(objects)
        [container] = spec["containers"]
    command = container["command"]
    assert command[:2] == ["jupyterhub-outpost", "tunnels"]
    assert [e["name"] for e in container["env"]] == [daemon.TOKEN_ENV, daemon.METRICS_TOKEN_ENV]
    secret = one(objects, "Secret")
    key_file = tmp_path / "ssh-key"
    key_file.write_text(secret_text(secret, "ssh-key"))
    argv = [str(key_file) if a.endswith("/ssh-key") else a for a in command[2:]]
    app = daemon.TunnelDaemon()
    app.initialize(argv)
    assert app.ssh_key == str(key_file)
    assert app.forward_ip == "0.0.0.0" and app.api_port == 8765
    assert app.state_file == "/srv/outpost-tunnels/forwards.json"
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/srv/outpost-tunnels" in mounts  # the state file is on a writable volume
    assert asyncssh.read_private_key(app.ssh_key).algorithm == b"ssh-ed25519"


@pytest.mark.parametrize("mode", ["sidecar", "deployment"])
def test_only_the_tunnel_daemon_gets_the_hub_ssh_key(tmp_path, mode):
    """The hub container mounts the passwords, tokens and host keys it reads, not the key."""
    objects, _ = render(ADDONS, {"outposts": OUTPOSTS, "tunnel": {"mode": mode}})
    pod = as_hub_pod(z2jh_values(objects))
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    hub_keys = set()
    for mount in hub_container(pod)["volumeMounts"]:
        secret = volumes[mount["name"]].get("secret")
        if secret and mount["name"] != "secret":  # the z2jh chart's own Secret "hub"
            hub_keys |= {item["key"] for item in secret["items"]}
    assert "ssh-key" not in hub_keys
    assert "tunnel-metrics-token" not in hub_keys  # the hub does not scrape
    data = one(objects, "Secret")["data"]
    # every other key, and all of them exist
    assert hub_keys == set(data) - {"ssh-key", "tunnel-metrics-token"}
    # the snippet finds everything it needs among those files
    secret = one(objects, "Secret")
    for key in hub_keys:
        (tmp_path / key).write_text(secret_text(secret, key))
    text = one(objects, "ConfigMap")["data"]["outpost_hub_config.py"]
    c = Config()
    exec(
        compile(text.replace('"/etc/outpost-hub/secrets"', repr(str(tmp_path))), "cfg", "exec"),
        {"c": c},
    )
    assert c.OutpostSpawner.outposts["remote"]["ssh"]["host_key"] == HOST_KEY
    outposts_module = pytest.importorskip("jupyterhub_outpost.hub.outposts")
    outposts_module.parse_outposts(c.OutpostSpawner.outposts)


def test_unpinned_host_key_is_an_empty_secret_entry_so_the_mount_never_fails():
    objects, _ = render(
        ADDONS, {"outposts": {"remote": {"url": "http://x:8080", "ssh": {"host": "x"}}}}
    )
    assert secret_text(one(objects, "Secret"), "outpost-remote-host-key") == ""


def test_without_flavor_updates_the_hub_does_not_need_flavor_tokens():
    objects, _ = render(
        ADDONS,
        {"existingSecret": "mine", "outposts": OUTPOSTS, "hubConfig": {"flavorUpdates": False}},
    )
    volume = next(
        v for v in z2jh_values(objects)["hub"]["extraVolumes"] if v["name"] == "outpost-hub-secrets"
    )
    keys = {item["key"] for item in volume["secret"]["items"]}
    assert keys == {
        "tunnel-api-token",
        "outpost-remote-password",
        "outpost-remote-host-key",
        "outpost-local-password",
        "outpost-local-host-key",
    }
    assert "flavors_update_token" not in one(objects, "ConfigMap")["data"]["outpost_hub_config.py"]


def test_a_given_flavors_token_is_used(tmp_path):
    outposts = {**OUTPOSTS, "remote": {**OUTPOSTS["remote"], "flavorsToken": "given-token"}}
    objects, _ = render(ADDONS, {"outposts": outposts})
    c, _ = hub_config(objects, tmp_path)
    with open(c.OutpostSpawner.outposts["remote"]["flavors_update_token_file"]) as f:
        assert f.read() == "given-token"


def tunnel_container(objects, mode):
    if mode == "sidecar":
        [container] = z2jh_values(objects)["hub"]["extraContainers"]
    else:
        [(_, _, spec)] = pod_specs(objects)
        [container] = spec["containers"]
    return container


@pytest.mark.parametrize("mode", ["sidecar", "deployment"])
def test_tunnel_metrics_token_env_comes_from_the_secret_and_is_absent_when_disabled(mode):
    objects, _ = render(ADDONS, {"outposts": OUTPOSTS, "tunnel": {"mode": mode}})
    secret = one(objects, "Secret")
    token = secret_text(secret, "tunnel-metrics-token")
    assert re.fullmatch(r"[A-Za-z0-9]{48}", token)
    assert token != secret_text(secret, "tunnel-api-token")
    env = {e["name"]: e for e in tunnel_container(objects, mode)["env"]}
    assert env["OUTPOST_TUNNEL_METRICS_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": secret["metadata"]["name"],
        "key": "tunnel-metrics-token",
    }
    assert token not in yaml.safe_dump(one(objects, "ConfigMap")["data"])

    objects, _ = render(
        ADDONS,
        {"outposts": OUTPOSTS, "tunnel": {"mode": mode, "metrics": {"enabled": False}}},
    )
    names = [e["name"] for e in tunnel_container(objects, mode)["env"]]
    assert names == ["OUTPOST_TUNNEL_API_TOKEN"]


def test_no_tunnel_service_monitor_unless_asked():
    objects, _ = render(ADDONS, {"outposts": OUTPOSTS, "tunnel": {"mode": "deployment"}})
    assert find(objects, "ServiceMonitor") == []


def test_tunnel_service_monitor_scrapes_the_daemons_api_service_with_the_metrics_token():
    """A ServiceMonitor is a custom resource: kubernetes-validate (built-in API only)
    cannot validate it, so chart_helpers.validate leaves it out and its structure is
    checked here by hand (check_service_monitor)."""
    values = {
        "outposts": OUTPOSTS,
        "tunnel": {
            "mode": "deployment",
            "apiPort": 9765,
            "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
        },
    }
    objects, _ = render(ADDONS, values)
    monitor = one(objects, "ServiceMonitor")
    secret = one(objects, "Secret")
    endpoint, service = check_service_monitor(
        monitor, find(objects, "Service"), secret["metadata"]["name"]
    )
    assert service["metadata"]["name"] == "test-hub-addons-tunnels"
    assert endpoint == {
        "port": "api",
        "path": "/metrics",
        "scheme": "http",
        "interval": "30s",
        "authorization": {
            "type": "Bearer",
            "credentials": {"name": secret["metadata"]["name"], "key": "tunnel-metrics-token"},
        },
    }
    assert monitor["metadata"]["labels"]["release"] == "prom"
    # the Service's api port is the daemon's --api-port, where it reads that token
    [(_, _, spec)] = pod_specs(objects)
    [container] = spec["containers"]
    [port] = service["spec"]["ports"]
    assert port["port"] == 9765 and port["targetPort"] == "api"
    assert {"name": "api", "containerPort": 9765, "protocol": "TCP"} in container["ports"]
    env = {e["name"]: e for e in container["env"]}
    assert (
        env["OUTPOST_TUNNEL_METRICS_TOKEN"]["valueFrom"]["secretKeyRef"]
        == endpoint["authorization"]["credentials"]
    )


@pytest.mark.parametrize(
    "tunnel,message",
    [
        (
            {"mode": "deployment", "metrics": {"enabled": False}},
            "tunnel.metrics.serviceMonitor.enabled needs tunnel.metrics.enabled",
        ),
        (
            {"mode": "sidecar"},
            "tunnel.metrics.serviceMonitor.enabled needs tunnel.mode: deployment",
        ),
    ],
    ids=["metrics-off", "sidecar"],
)
def test_tunnel_service_monitor_fails_with_a_clear_message(tunnel, message):
    tunnel = {
        **tunnel,
        "metrics": {**tunnel.get("metrics", {}), "serviceMonitor": {"enabled": True}},
    }
    with pytest.raises(helm_python.HelmError, match=message):
        render(ADDONS, {"outposts": OUTPOSTS, "tunnel": tunnel})


def test_tunnel_networkpolicy_lets_metrics_from_reach_only_the_api_port():
    prometheus = [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]
    base = {"outposts": OUTPOSTS, "tunnel": {"mode": "deployment"}}
    objects, _ = render(ADDONS, base)
    assert len(one(objects, "NetworkPolicy")["spec"]["ingress"]) == 2  # hub and proxy only
    objects, _ = render(
        ADDONS,
        {**base, "tunnel": {"mode": "deployment", "networkPolicy": {"metricsFrom": prometheus}}},
    )
    rules = one(objects, "NetworkPolicy")["spec"]["ingress"]
    assert rules[-1] == {"from": prometheus, "ports": [{"port": "api", "protocol": "TCP"}]}


def test_the_rendered_tunnel_daemon_opens_only_metrics_to_the_metrics_token(tmp_path):
    """The real daemon, started with the rendered command and the env taken from the
    Secret (API on loopback, files in tmp_path): the metrics token opens GET /metrics
    (Bearer, as the ServiceMonitor sends it) and nothing else; the API token opens both."""
    objects, _ = render(ADDONS, {"outposts": OUTPOSTS, "tunnel": {"mode": "deployment"}})
    secret = one(objects, "Secret")
    container = tunnel_container(objects, "deployment")
    env = {
        e["name"]: secret_text(secret, e["valueFrom"]["secretKeyRef"]["key"])
        for e in container["env"]
    }
    metrics_token, api_token = env["OUTPOST_TUNNEL_METRICS_TOKEN"], env["OUTPOST_TUNNEL_API_TOKEN"]
    (tmp_path / "ssh-key").write_text(secret_text(secret, "ssh-key"))
    command = container["command"][1:]
    port = free_port()
    replace = {
        "--api-ip": "127.0.0.1",
        "--api-port": str(port),
        "--forward-ip": "127.0.0.1",
        "--ssh-key": str(tmp_path / "ssh-key"),
        "--state-file": str(tmp_path / "forwards.json"),
    }
    for flag, value in replace.items():
        command[command.index(flag) + 1] = value
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OUTPOST_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyterhub_outpost", *command],
        env={**environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_ping(process, url)
        assert http_status(url + "/metrics", metrics_token) == 200
        assert http_status(url + "/metrics", metrics_token, scheme="token") == 200
        assert http_status(url + "/metrics") == 401
        assert http_status(url + "/forwards", metrics_token, scheme="token") == 401
        assert http_status(url + "/forwards", api_token, scheme="token") == 200
        assert http_status(url + "/metrics", api_token, scheme="token") == 200
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert metrics_token not in output and api_token not in output


def test_a_new_ssh_key_or_outpost_secret_in_values_restarts_the_pods_that_read_it():
    """The tunnel daemon reads its SSH key and tokens at start, the hub its passwords and
    pinned host keys: a new value in hub-addons' values must change their pod templates
    (found on kind: after a re-install with a new key pair the running tunnel pod kept the
    old key, and every forward failed with 'host key mismatch', then 'Permission denied')."""
    base = {"outposts": OUTPOSTS, "tunnel": {"mode": "deployment"}}

    def annotations(values):
        objects, _ = render(ADDONS, values)
        tunnels = one(objects, "Deployment")["spec"]["template"]["metadata"]["annotations"]
        hub = z2jh_values(objects)["hub"]["annotations"]
        return tunnels["checksum/start-secrets"], hub["checksum/outpost-start-secrets"]

    tunnel0, hub0 = annotations(base)
    assert annotations(base) == (tunnel0, hub0), "the same values restart nothing"
    tunnel1, hub1 = annotations({**base, "sshKey": "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n"})
    assert tunnel1 != tunnel0 and hub1 != hub0
    rotated = {**OUTPOSTS, "remote": {**OUTPOSTS["remote"], "password": "new-password"}}
    tunnel2, hub2 = annotations({**base, "outposts": rotated})
    assert tunnel2 == tunnel0 and hub2 != hub0, "a hub password does not restart the tunnels"
    new_key = HOST_KEY[:-4] + "AAAA"
    rekeyed = {
        **OUTPOSTS,
        "remote": {**OUTPOSTS["remote"], "ssh": {**OUTPOSTS["remote"]["ssh"], "hostKey": new_key}},
    }
    assert annotations({**base, "outposts": rekeyed})[1] != hub0
