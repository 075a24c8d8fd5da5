"""What matters in the jupyterhub-outpost chart's rendered objects."""

from __future__ import annotations

import re
import subprocess
import sys

import asyncssh
import helm_python
import pytest
import yaml
from cryptography.fernet import Fernet
from traitlets.config import Config

from tests.charts.chart_helpers import (
    OUTPOST,
    check_service_monitor,
    find,
    one,
    pod_specs,
    render,
    secret_text,
    values_file,
)

HUB_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMGPA3EeWdotOAsvTaGQ/2gp0AmjLHklbZlOtB7pRee3 hub"
HUBS = {"hubs": {"hub": {"sshPublicKeys": [HUB_KEY]}}}


def container(objects):
    [(_, _, spec)] = pod_specs(objects)
    [c] = spec["containers"]
    return spec, c


def test_services_select_the_outpost_pod():
    objects, _ = render(OUTPOST, HUBS)
    [(_, labels, _)] = pod_specs(objects)
    services = find(objects, "Service")
    assert {s["metadata"]["name"] for s in services} == {
        "test-jupyterhub-outpost",
        "test-jupyterhub-outpost-ssh",
    }
    for service in services:
        selector = service["spec"]["selector"]
        assert selector and selector.items() <= labels.items(), service["metadata"]["name"]
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_api_service_is_clusterip_and_ssh_service_a_loadbalancer_from_22_to_8022():
    objects, _ = render(OUTPOST, HUBS)
    _, c = container(objects)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": 8080, "ssh": 8022}

    api = one(objects, "Service", "test-jupyterhub-outpost")
    assert api["spec"]["type"] == "ClusterIP"
    assert api["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}
    ]

    ssh = one(objects, "Service", "test-jupyterhub-outpost-ssh")
    assert ssh["spec"]["type"] == "LoadBalancer"
    assert ssh["spec"]["ports"] == [
        {"name": "ssh", "port": 22, "targetPort": "ssh", "protocol": "TCP"}
    ]


def test_ssh_service_options_and_nodeport_fallback():
    objects, _ = render(
        OUTPOST,
        {
            "sshService": {
                "annotations": {"a": "b"},
                "loadBalancerIP": "203.0.113.9",
                "loadBalancerSourceRanges": ["198.51.100.0/24"],
                "nodePort": 30022,
            }
        },
    )
    ssh = one(objects, "Service", "test-jupyterhub-outpost-ssh")
    assert ssh["metadata"]["annotations"] == {"a": "b"}
    assert ssh["spec"]["loadBalancerIP"] == "203.0.113.9"
    assert ssh["spec"]["loadBalancerSourceRanges"] == ["198.51.100.0/24"]
    assert ssh["spec"]["ports"][0]["nodePort"] == 30022

    objects, _ = render(
        OUTPOST, {"sshService": {"type": "NodePort", "loadBalancerIP": "203.0.113.9"}}
    )
    ssh = one(objects, "Service", "test-jupyterhub-outpost-ssh")
    assert ssh["spec"]["type"] == "NodePort"
    assert "loadBalancerIP" not in ssh["spec"]


def test_config_file_reaches_the_pod_and_sets_the_chart_managed_options():
    outpost_config = (
        "c.JupyterHubOutpost.flavors_undefined_max = 3\nc.JupyterHubOutpost.ssh_port = 8022\n"
    )
    objects, _ = render(
        OUTPOST,
        {
            **HUBS,
            "outpostConfig": outpost_config,
            "ssh": {"allowedForwardTargets": ["10.20.0.0/16:8000-9000"]},
        },
    )
    spec, c = container(objects)
    configmap = one(objects, "ConfigMap")
    text = configmap["data"]["outpost_config.py"]

    # The container reads the file where the ConfigMap is mounted.
    config_arg = c["args"][c["args"].index("--config") + 1]
    mount = next(m for m in c["volumeMounts"] if config_arg.startswith(m["mountPath"] + "/"))
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    assert config_arg.rsplit("/", 1)[1] in configmap["data"]
    assert c["args"][:1] == ["serve"]
    assert c["args"][c["args"].index("--data-dir") + 1] == "/srv/outpost/data"

    # It is Python that configures the Outpost: run it as traitlets would.
    c_ = Config()
    exec(compile(text, "outpost_config.py", "exec"), {"c": c_})
    o = c_.JupyterHubOutpost
    assert o.flavors_undefined_max == 3
    assert o.ssh_port == 8022 and o.ssh_ip == "0.0.0.0" and o.ssh_enabled is True
    assert o.allowed_forward_targets == ["10.20.0.0/16:8000-9000"]
    # ... and the files it names are where the Secret is mounted.
    secret_mount = next(m for m in c["volumeMounts"] if m["name"] == "secrets")
    secret_volume = next(v for v in spec["volumes"] if v["name"] == "secrets")
    mounted = {
        f"{secret_mount['mountPath']}/{item['path']}" for item in secret_volume["secret"]["items"]
    }
    assert {o.hub_credentials, o.ssh_authorized_keys, o.ssh_host_key_file} <= mounted
    assert secret_mount["readOnly"] is True
    # No secret in the ConfigMap.
    secret = one(objects, "Secret")
    for key in secret["data"]:
        assert secret_text(secret, key) not in text


def test_generated_secrets_are_usable():
    objects, _ = render(
        OUTPOST, {"hubs": {"hub-a": {"sshPublicKeys": [HUB_KEY]}, "hub-b": {"password": "given"}}}
    )
    secret = one(objects, "Secret")
    creds = yaml.safe_load(secret_text(secret, "hub_credentials.yaml"))
    assert creds["hub-b"] == "given"
    assert re.fullmatch(r"[A-Za-z0-9]{40}", creds["hub-a"])
    assert yaml.safe_load(secret_text(secret, "ssh_authorized_keys.yaml")) == {
        "hub-a": [HUB_KEY],
        "hub-b": [],
    }
    host_key = asyncssh.import_private_key(secret_text(secret, "ssh_host_ed25519_key"))
    assert host_key.algorithm == b"ssh-ed25519"
    [key] = secret_text(secret, "crypt_keys").split(",")
    Fernet(key.encode())  # a valid Fernet key
    _, c = container(objects)
    env = {e["name"]: e for e in c["env"]}
    assert env["OUTPOST_CRYPT_KEYS"]["valueFrom"]["secretKeyRef"] == {
        "name": secret["metadata"]["name"],
        "key": "crypt_keys",
    }


def test_notes_print_the_ssh_endpoint_and_a_working_host_key_command(tmp_path):
    objects, notes = render(OUTPOST, HUBS)
    assert "test-jupyterhub-outpost-ssh" in notes and "port: 22" in notes
    secret = one(objects, "Secret")
    key_path = tmp_path / "ssh_host_ed25519_key"
    key_path.write_text(secret_text(secret, "ssh_host_ed25519_key"))
    # The exact Python NOTES tells the operator to run in the pod, run on the rendered key.
    [code] = re.findall(r"python -c '([^']+)'", notes)
    assert "/etc/outpost/secrets/ssh_host_ed25519_key" in code
    code = code.replace("/etc/outpost/secrets/ssh_host_ed25519_key", str(key_path))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    line, fingerprint = out.stdout.split("\n")[:2]
    key = asyncssh.import_private_key(key_path.read_text())
    assert line == key.export_public_key().decode().strip() and line.startswith("ssh-ed25519 ")
    assert fingerprint == key.get_fingerprint() and fingerprint.startswith("SHA256:")
    # and the keygen command NOTES names agrees
    [keygen] = re.findall(r"-- (jupyterhub-outpost keygen fingerprint \S+)\)", notes)
    argv = keygen.replace("/etc/outpost/secrets/ssh_host_ed25519_key", str(key_path)).split()
    out = subprocess.run(
        [sys.executable, "-m", "jupyterhub_outpost", *argv[1:]],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == fingerprint


def test_networkpolicy_lets_in_only_api_and_ssh_and_lets_out_to_user_pods():
    objects, _ = render(OUTPOST, HUBS)
    _, c = container(objects)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    policy = one(objects, "NetworkPolicy", "test-jupyterhub-outpost")
    [(_, labels, _)] = pod_specs(objects)
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    ingress_ports = [p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]]
    assert sorted(ports[p] for p in ingress_ports) == [8022, 8080]
    user_pods = {"matchLabels": {"component": "singleuser-server"}}
    assert {"to": [{"podSelector": user_pods}]} in policy["spec"]["egress"]
    # no egress rule opens private ranges by default
    for rule in policy["spec"]["egress"]:
        for peer in rule.get("to", []):
            if "ipBlock" in peer:
                assert peer["ipBlock"]["cidr"] == "0.0.0.0/0"
                assert "10.0.0.0/8" in peer["ipBlock"]["except"]
    # the user servers let in only the Outpost pod
    users = one(objects, "NetworkPolicy", "test-jupyterhub-outpost-user-servers")
    assert users["spec"]["podSelector"] == user_pods
    assert users["spec"]["ingress"] == [
        {"from": [{"podSelector": {"matchLabels": policy["spec"]["podSelector"]["matchLabels"]}}]}
    ]


def test_networkpolicy_follows_a_custom_ssh_port_and_ingress_sources():
    sources = [{"ipBlock": {"cidr": "198.51.100.0/24"}}]
    objects, _ = render(
        OUTPOST, {"ssh": {"port": 2222}, "networkPolicy": {"ingress": {"sshFrom": sources}}}
    )
    _, c = container(objects)
    assert {"name": "ssh", "containerPort": 2222, "protocol": "TCP"} in c["ports"]
    policy = one(objects, "NetworkPolicy", "test-jupyterhub-outpost")
    ssh_rule = next(r for r in policy["spec"]["ingress"] if r["ports"][0]["port"] == "ssh")
    assert ssh_rule["from"] == sources
    assert (
        "c.JupyterHubOutpost.ssh_port = 2222"
        in one(objects, "ConfigMap")["data"]["outpost_config.py"]
    )


def test_sqlite_gets_a_pvc_and_postgresql_none():
    objects, notes = render(OUTPOST, HUBS)
    pvc = one(objects, "PersistentVolumeClaim")
    spec, _ = container(objects)
    data = next(v for v in spec["volumes"] if v["name"] == "data")
    assert data["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]

    objects, notes = render(
        OUTPOST,
        {**HUBS, "database": {"type": "postgresql"}, "extraEnvVarsSecrets": ["my-db-secret"]},
    )
    assert find(objects, "PersistentVolumeClaim") == []
    spec, c = container(objects)
    assert next(v for v in spec["volumes"] if v["name"] == "data") == {
        "name": "data",
        "emptyDir": {},
    }
    assert c["envFrom"] == [{"secretRef": {"name": "my-db-secret"}}]
    assert "PostgreSQL" in notes and "my-db-secret" in notes


def test_workers_become_serve_workers_on_postgresql_and_are_refused_on_sqlite():
    objects, _ = render(OUTPOST, HUBS)
    assert "--workers" not in container(objects)[1]["args"]
    postgresql = {"type": "postgresql", "workers": 2}
    objects, _ = render(OUTPOST, {**HUBS, "database": postgresql})
    args = container(objects)[1]["args"]
    assert args[args.index("--workers") + 1] == "2"
    assert one(objects, "Deployment")["spec"]["replicas"] == 1
    with pytest.raises(helm_python.HelmError, match="database.workers > 1 needs"):
        render(OUTPOST, {**HUBS, "database": {"type": "sqlite", "workers": 2}})


def test_replicas_run_serve_replicated_on_postgresql_with_shared_keys_and_per_pod_data():
    objects, _ = render(OUTPOST, HUBS)
    assert one(objects, "Deployment")["spec"]["replicas"] == 1
    assert "--replicated" not in container(objects)[1]["args"]
    values = {**HUBS, "database": {"type": "postgresql"}, "replicas": 3}
    objects, _ = render(OUTPOST, values)
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    spec, c = container(objects)
    assert "--replicated" in c["args"]
    # every pod reads the same keys from the one Secret; the data dir is the pod's own
    [keys] = [e for e in c["env"] if e["name"] == "OUTPOST_CRYPT_KEYS"]
    assert keys["valueFrom"]["secretKeyRef"]["key"] == "crypt_keys"
    secrets = next(v for v in spec["volumes"] if v["name"] == "secrets")["secret"]
    assert "ssh_host_ed25519_key" in [item["key"] for item in secrets["items"]]
    assert next(v for v in spec["volumes"] if v["name"] == "data") == {
        "name": "data",
        "emptyDir": {},
    }
    assert find(objects, "PersistentVolumeClaim") == []
    anti = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    own = {"nodeSelectorTerms": []}
    objects, _ = render(OUTPOST, {**values, "affinity": {"nodeAffinity": own}})
    assert container(objects)[0]["affinity"] == {"nodeAffinity": own}  # the operator's wins
    with pytest.raises(helm_python.HelmError, match="replicas > 1 needs database.type: postgresql"):
        render(OUTPOST, {**HUBS, "replicas": 2})


def test_existing_secret_replaces_the_chart_secret():
    objects, notes = render(OUTPOST, {"existingSecret": "my-outpost-secret"})
    assert find(objects, "Secret") == []
    spec, c = container(objects)
    secret_volume = next(v for v in spec["volumes"] if v["name"] == "secrets")
    assert secret_volume["secret"]["secretName"] == "my-outpost-secret"
    env = {e["name"]: e for e in c["env"]}
    assert env["OUTPOST_CRYPT_KEYS"]["valueFrom"]["secretKeyRef"]["name"] == "my-outpost-secret"
    assert env["OUTPOST_METRICS_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "my-outpost-secret",
        "key": "metrics_token",
    }
    assert "my-outpost-secret" in notes


def test_rbac_lets_kubespawner_work_in_the_release_namespace():
    objects, _ = render(OUTPOST, HUBS, namespace="outpost")
    role = one(objects, "Role")
    granted = {(r, v) for rule in role["rules"] for r in rule["resources"] for v in rule["verbs"]}
    for resource in ("pods", "services", "persistentvolumeclaims", "secrets"):
        for verb in ("get", "list", "watch", "create", "delete"):
            assert (resource, verb) in granted
    assert ("events", "list") in granted
    binding = one(objects, "RoleBinding")
    account = one(objects, "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": "outpost"}
    ]
    spec, c = container(objects)
    assert spec["serviceAccountName"] == account["metadata"]["name"]
    assert {
        "name": "POD_NAMESPACE",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}},
    } in c["env"]


def test_probes_use_ping():
    objects, _ = render(OUTPOST, values_file(OUTPOST / "lint-values.yaml"))
    _, c = container(objects)
    for probe in (c["livenessProbe"], c["readinessProbe"]):
        assert probe["httpGet"]["path"] == "/ping" and probe["httpGet"]["port"] == "http"
        assert probe["httpGet"]["scheme"] == "HTTPS"  # https.enabled in lint values


def test_extra_env_volumes_and_mounts_are_passed_through():
    values = values_file(OUTPOST / "lint-values.yaml")
    objects, _ = render(OUTPOST, values)
    spec, c = container(objects)
    for env in values["extraEnvVars"]:
        assert env in c["env"]
    assert {"secretRef": {"name": "outpost-extra-env"}} in c["envFrom"]
    for volume in values["extraVolumes"]:
        assert volume in spec["volumes"]
    for mount in values["extraVolumeMounts"]:
        assert mount in c["volumeMounts"]


def test_metrics_token_env_comes_from_the_secret_and_is_absent_when_disabled():
    objects, notes = render(OUTPOST, HUBS)
    secret = one(objects, "Secret")
    assert re.fullmatch(r"[A-Za-z0-9]{40}", secret_text(secret, "metrics_token"))
    _, c = container(objects)
    env = {e["name"]: e for e in c["env"]}
    assert env["OUTPOST_METRICS_TOKEN"] == {
        "name": "OUTPOST_METRICS_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": secret["metadata"]["name"], "key": "metrics_token"}},
    }
    assert "jsonpath='{.data.metrics_token}'" in notes
    # the token is in no ConfigMap
    assert secret_text(secret, "metrics_token") not in yaml.safe_dump(one(objects, "ConfigMap"))

    objects, notes = render(OUTPOST, {**HUBS, "metrics": {"enabled": False}})
    _, c = container(objects)
    assert "OUTPOST_METRICS_TOKEN" not in {e["name"] for e in c["env"]}
    assert "metrics_token" not in notes


def test_a_given_metrics_token_is_used():
    objects, _ = render(OUTPOST, {**HUBS, "metrics": {"token": "given-metrics-token"}})
    assert secret_text(one(objects, "Secret"), "metrics_token") == "given-metrics-token"


def test_no_service_monitor_unless_asked():
    objects, _ = render(OUTPOST, HUBS)
    assert find(objects, "ServiceMonitor") == []


@pytest.mark.parametrize("https", [False, True])
def test_service_monitor_scrapes_the_api_service_with_the_secrets_token(https):
    """A ServiceMonitor is a custom resource: kubernetes-validate (built-in API only)
    cannot validate it, so chart_helpers.validate leaves it out and its structure is
    checked here by hand (check_service_monitor)."""
    values = {
        **HUBS,
        "https": {"enabled": https, "secretName": "tls"},
        "metrics": {
            "serviceMonitor": {
                "enabled": True,
                "interval": "1m",
                "labels": {"release": "kube-prometheus-stack"},
            }
        },
    }
    objects, _ = render(OUTPOST, values)
    monitor = one(objects, "ServiceMonitor")
    secret = one(objects, "Secret")
    endpoint, service = check_service_monitor(
        monitor, find(objects, "Service"), secret["metadata"]["name"]
    )
    assert service["metadata"]["name"] == "test-jupyterhub-outpost"  # the API, not SSH
    assert endpoint == {
        "port": "http",
        "path": "/metrics",
        "scheme": "https" if https else "http",
        "interval": "1m",
        "authorization": {
            "type": "Bearer",
            "credentials": {"name": secret["metadata"]["name"], "key": "metrics_token"},
        },
    }
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["metadata"]["labels"]["app.kubernetes.io/part-of"] == "jupyterhub-outpost"
    # the credentials are the very token the Outpost reads
    _, c = container(objects)
    env = {e["name"]: e for e in c["env"]}
    assert (
        env["OUTPOST_METRICS_TOKEN"]["valueFrom"]["secretKeyRef"]
        == endpoint["authorization"]["credentials"]
    )
    # the Service's port leads to the container port the Outpost serves on
    [port] = service["spec"]["ports"]
    assert port["targetPort"] in {p["name"] for p in c["ports"]}


def test_service_monitor_trusts_a_private_ca_when_given_a_tls_config():
    tls = {"ca": {"secret": {"name": "outpost-ca", "key": "ca.crt"}}, "serverName": "outpost"}
    values = {
        **HUBS,
        "https": {"enabled": True, "secretName": "tls"},
        "metrics": {"serviceMonitor": {"enabled": True, "tlsConfig": tls}},
    }
    objects, _ = render(OUTPOST, values)
    [endpoint] = one(objects, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["scheme"] == "https" and endpoint["tlsConfig"] == tls


def test_service_monitor_uses_an_existing_secret():
    objects, _ = render(
        OUTPOST,
        {"existingSecret": "mine", "metrics": {"serviceMonitor": {"enabled": True}}},
    )
    endpoint, _ = check_service_monitor(
        one(objects, "ServiceMonitor"), find(objects, "Service"), "mine"
    )
    assert endpoint["authorization"]["credentials"] == {"name": "mine", "key": "metrics_token"}
    assert endpoint["interval"] == "30s"


def test_service_monitor_without_metrics_fails_with_a_clear_message():
    with pytest.raises(
        helm_python.HelmError, match="metrics.serviceMonitor.enabled needs metrics.enabled"
    ):
        render(
            OUTPOST, {**HUBS, "metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}}
        )


def _pod_annotations(values: dict) -> dict:
    objects, _ = render(OUTPOST, values)
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    return deployment["spec"]["template"]["metadata"]["annotations"]


def test_a_new_host_crypt_or_metrics_secret_restarts_the_pod_a_new_hub_credential_does_not():
    """The SSH host key, crypt keys and metrics token are read at start: an upgrade that
    gives a new one must replace the pod (found on kind: a rotated host key was served
    only after a restart, and every hub's pinned key mismatched). The hubs' credentials
    are re-read live, so a new password alone keeps the pod."""
    host_key = asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()
    base = {"hubs": {"hub": {"password": "one"}}}
    before = _pod_annotations(base)
    assert _pod_annotations(base) == before, "same values, same pod"
    assert _pod_annotations({"hubs": {"hub": {"password": "two"}}}) == before
    for change in (
        {"ssh": {"hostKey": host_key}},
        {"cryptKeys": [Fernet.generate_key().decode()]},
        {"metrics": {"token": "a-new-token"}},
    ):
        assert _pod_annotations({**base, **change}) != before, change
