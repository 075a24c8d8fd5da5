"""The scenario runner's zero-to-jupyterhub stand-in (scenario-runner/charts/jupyterhub).

z2jh's chart and images cannot be fetched on the project's machines, so the kind
scenarios install this chart instead, with the values an operator passes to z2jh:
scenarios/<name>/kind/jupyterhub.yaml plus the z2jh-values.yaml hub-addons renders. What
is proven here, without a cluster:

- both charts together render, for every scenario, objects the Kubernetes schemas accept,
  and what hub-addons adds lands where z2jh puts it (volumes mounted, the tunnel sidecar,
  NetworkPolicy rules merged with z2jh's, the hub's service account and pod labels);
- the chart's jupyterhub_config.py, with the files and environment the hub container gets
  (materialized from the rendered objects), configures JupyterHub as z2jh's does when
  JupyterHub's own config loader runs it (tests/charts/hub_config_probe.py);
- secrets are generated once and kept across ``helm upgrade`` (Helm's engine with
  ``lookup`` against tests/charts/chart_helpers.FakeKubeAPI).

What is not proven here: that the pods become Ready on a real cluster. The kind e2e
(tests/e2e/kind) installs this chart next to hub-addons on kind.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import helm_python
import pytest
import yaml
from outpost_scenarios import images, kind_deploy
from outpost_scenarios import kind as kind_mode

from tests.charts.chart_helpers import (
    ADDONS,
    JUPYTERHUB,
    FakeKubeAPI,
    find,
    one,
    render,
    secret_text,
    validate,
)
from tests.charts.pod_files import Container, container, materialize, pod

NAMESPACE = "jhub"
PROBE = Path(__file__).with_name("hub_config_probe.py")
SCENARIOS = kind_mode.SCENARIOS
UNUSED_KUBECONFIG = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [{"name": "none", "cluster": {"server": "https://127.0.0.1:9"}}],
    "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
    "current-context": "none",
    "users": [{"name": "none", "user": {"token": "none"}}],
}


def render_hub(values: dict, **kwargs) -> list[dict]:
    objects, _ = render(JUPYTERHUB, values, name="jupyterhub", namespace=NAMESPACE, **kwargs)
    return objects


def selects(selector: dict, labels: dict) -> bool:
    return selector["matchLabels"].items() <= labels.items()


def materialize_hub(objects: list[dict], root: Path) -> Container:
    """The hub container with its files under ``root``; its argv names the config file."""
    hub = materialize(objects, "hub", "hub", root, NAMESPACE)
    assert hub.argv[:2] == ["jupyterhub", "--config"]
    assert hub.argv[2] == str(hub.path("/usr/local/etc/jupyterhub/jupyterhub_config.py"))
    return hub


def load_hub_configs(hubs: dict[str, list[dict]], root: Path) -> dict[str, dict]:
    """Run each rendered jupyterhub_config.py (objects by name) through JupyterHub's
    config loader (tests/charts/hub_config_probe.py, one process per load)."""
    # KubeSpawner's client wants a kubeconfig even to build a pod manifest; this one names
    # an address that is never contacted.
    kubeconfig = root / "unused.kubeconfig"
    kubeconfig.write_text(json.dumps(UNUSED_KUBECONFIG))
    base = {"PATH": os.environ["PATH"], "KUBECONFIG": str(kubeconfig)}
    jobs = []
    for name, objects in hubs.items():
        home = root / name
        hub = materialize_hub(objects, home)
        jobs.append(
            {
                "config": hub.argv[2],
                "env": {**base, "HOME": str(home), **hub.env},
                "cwd": str(hub.cwd),
                "report": str(home / "report.json"),
                "log": str(home / "output.log"),
            }
        )
    (root / "jobs.json").write_text(json.dumps(jobs))
    result = subprocess.run(
        [sys.executable, str(PROBE), str(root / "jobs.json")],
        env=base,
        capture_output=True,
        text=True,
        timeout=300,
    )
    reports = {}
    for name, job in zip(hubs, jobs, strict=True):
        output = Path(job["log"]).read_text()
        assert Path(job["report"]).exists(), f"{name}: {output}{result.stderr}"
        reports[name] = {**json.loads(Path(job["report"]).read_text()), "output": output}
    assert result.returncode == 0, result.stderr
    return reports


# --- with hub-addons, for every scenario's kind values ---------------------------------


@pytest.fixture(scope="module")
def keys():
    return kind_deploy.Keys.generate()


def scenario_releases(scenario: str, keys) -> tuple[list[dict], list[dict], dict]:
    """(hub-addons objects, jupyterhub objects, the values of jupyterhub) as kind mode
    installs them: the z2jh values are read from hub-addons' rendered ConfigMap."""
    local = "local-pw" if scenario == "remote-local" else None
    addons_values = kind_deploy.addons_values(
        scenario,
        keys,
        api=("172.18.0.10", 8080),
        ssh=("172.18.0.11", 22),
        hub_api_url="http://172.18.0.12/hub/api",
        local_password=local,
    )
    addons, _ = render(ADDONS, addons_values, name="hub-addons", namespace=NAMESPACE)
    configmap = one(addons, "ConfigMap", "hub-addons-hub-config")
    z2jh = yaml.safe_load(configmap["data"]["z2jh-values.yaml"])
    values = kind_deploy.z2jh_values(scenario, z2jh, "e2e-token")
    return addons, render_hub(values), values


@pytest.fixture(scope="module")
def releases(keys):
    return {scenario: scenario_releases(scenario, keys) for scenario in SCENARIOS}


@pytest.fixture(scope="module")
def scenario_configs(releases, tmp_path_factory):
    hubs = {scenario: addons + objects for scenario, (addons, objects, _) in releases.items()}
    return load_hub_configs(hubs, tmp_path_factory.mktemp("scenarios"))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_renders_valid_with_hub_addons_and_lints_clean(scenario, releases):
    addons, objects, values = releases[scenario]
    validate(objects)
    report = helm_python.lint(JUPYTERHUB, values, strict=True, kube_version="v1.30.0")
    assert report["errors"] == [], report
    assert [m for m in report["messages"] if m["severity"] >= 2] == [], report
    # z2jh's names, which hub-addons and the kind e2e rely on
    assert {(o["kind"], o["metadata"]["name"]) for o in objects} >= {
        ("Deployment", "hub"),
        ("Deployment", "proxy"),
        ("Service", "hub"),
        ("Service", "proxy-api"),
        ("Service", "proxy-public"),
        ("ServiceAccount", "hub"),
        ("NetworkPolicy", "hub"),
        ("NetworkPolicy", "proxy"),
    }
    assert one(objects, "Service", "proxy-public")["spec"]["type"] == "LoadBalancer"
    # hub-addons' Role binds the hub's service account
    [binding] = find(addons, "RoleBinding")
    assert binding["subjects"][0]["name"] == pod(objects, "hub")[1]["serviceAccountName"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_hub_addons_volumes_and_sidecar_land_in_the_hub_pod(scenario, releases):
    addons, objects, values = releases[scenario]
    labels, spec = pod(objects, "hub")
    volumes = {v["name"] for v in spec["volumes"]}
    for c in spec["containers"]:
        for mount in c.get("volumeMounts", []):
            assert mount["name"] in volumes, (c["name"], mount["name"])
    hub_mounts = {m["mountPath"] for m in container(spec, "hub")["volumeMounts"]}
    assert {"/etc/outpost-hub/secrets", "/etc/outpost-hub/config"} <= hub_mounts
    names = [c["name"] for c in spec["containers"]]
    addons_config = kind_deploy.scenario_values(scenario, "hub-addons.yaml")
    if addons_config["tunnel"]["mode"] == "sidecar":
        assert names == ["outpost-tunnels", "hub"]
        tunnels = container(spec, "outpost-tunnels")
        assert {m["name"] for m in tunnels["volumeMounts"]} <= volumes
    else:
        assert names == ["hub"]
        # the tunnel pod's NetworkPolicy admits our hub and proxy pods
        [policy] = find(addons, "NetworkPolicy")
        api_from, forward_from = (rule["from"][0] for rule in policy["spec"]["ingress"])
        assert selects(api_from["podSelector"], labels)
        assert selects(forward_from["podSelector"], pod(objects, "proxy")[0])
    # hub-addons' hub image, with the scenario's pull policy
    hub = container(spec, "hub")
    assert hub["image"] == "ghcr.io/jupyterhub-outpost/hub:kind"
    assert hub["imagePullPolicy"] == "Never"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_hub_cluster_pod_runs_an_image_kind_mode_loads(scenario, releases):
    """Kind clusters pull nothing (no registry is reachable): each container of the hub's
    releases must use one of the images kind mode loads into the hub cluster."""
    addons, objects, _ = releases[scenario]
    built = {
        name: f"{images.REGISTRY}/{name}:{kind_mode.IMAGE_TAG}"
        for name in ("hub", "outpost", "singleuser", "configurable-http-proxy")
    }
    loaded, _ = kind_mode.images_for(built, scenario)
    for deployment in find(addons + objects, "Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        for c in spec.get("initContainers", []) + spec["containers"]:
            where = f"{deployment['metadata']['name']}/{c['name']}"
            assert c["image"] in loaded, f"{where}: {c['image']} is not loaded ({loaded})"
            assert c.get("imagePullPolicy") in (None, "IfNotPresent", "Never"), where


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_network_policy_rules_of_hub_addons_and_the_scenario_are_merged(scenario, releases):
    addons, objects, values = releases[scenario]
    hub_policy = one(objects, "NetworkPolicy", "hub")["spec"]
    proxy_policy = one(objects, "NetworkPolicy", "proxy")["spec"]
    hub_labels, _ = pod(objects, "hub")
    proxy_labels, _ = pod(objects, "proxy")
    assert selects(hub_policy["podSelector"], hub_labels)
    assert selects(proxy_policy["podSelector"], proxy_labels)
    z2jh = values["hub"]["networkPolicy"]
    # hub-addons' own rules are appended after the chart's
    for rule in z2jh.get("ingress", []):
        assert rule in hub_policy["ingress"]
        assert selects(rule["from"][0]["podSelector"], proxy_labels)
    for rule in z2jh.get("egress", []):
        assert rule in hub_policy["egress"]
    [proxy_rule] = values["proxy"]["chp"]["networkPolicy"]["egress"]
    assert proxy_rule in proxy_policy["egress"]
    # egressAllowRules.privateIPs (the scenarios set it): the private ranges are allowed
    private = {
        "to": [{"ipBlock": {"cidr": c}} for c in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]
    }
    assert private in hub_policy["egress"] and private in proxy_policy["egress"]
    # hub <-> proxy as z2jh allows it
    assert any(
        r.get("ports") == [{"port": 8001}] and selects(r["to"][0]["podSelector"], proxy_labels)
        for r in hub_policy["egress"]
    )
    assert any(
        r.get("ports") == [{"port": 8081}] and selects(r["to"][0]["podSelector"], hub_labels)
        for r in proxy_policy["egress"]
    )
    # remote-local: the local Outpost's servers (another namespace) may reach the hub
    cross_namespace = {
        "podSelector": {"matchLabels": {"hub.jupyter.org/network-access-hub": "true"}},
        "namespaceSelector": {"matchLabels": {}},
    }
    hub_from = [peer for rule in hub_policy["ingress"] for peer in rule.get("from", [])]
    assert (cross_namespace in hub_from) == (scenario == "remote-local")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_hub_config_loads_with_the_hub_addons_snippet(scenario, keys, scenario_configs):
    """The whole chain an operator sets up: jupyterhub_config.py runs hub-addons' snippet
    from hub.extraConfig, which reads its mounted ConfigMap and Secret."""
    report = scenario_configs[scenario]
    assert report["spawner_class"] == "jupyterhub_outpost.hub.spawner.OutpostSpawner"
    assert report["authenticator_class"] == "DummyAuthenticator"
    assert report["config"]["DummyAuthenticator"] == {"password": "kind-e2e"}
    outposts = report["config"]["OutpostSpawner"]["outposts"]
    assert outposts["remote"]["ssh"]["host_key"] == keys.host_public
    assert Path(outposts["remote"]["secret_file"]).read_text() == keys.password
    hub = report["JupyterHub"]
    services = {s["name"]: s for s in hub["services"]}
    assert services["e2e"]["api_token"] == "e2e-token"
    # the Outpost reports its flavor usage with its own token (no service, role or scope)
    assert Path(outposts["remote"]["flavors_update_token_file"]).read_text()
    assert not [name for name in services if "flavors" in name]
    assert {r["name"] for r in hub["load_roles"]} >= {"e2e"}
    # the Outposts' endpoints (progress events, setuptunnel, flavors) are registered: the
    # kind e2e found them missing (every event from an Outpost got 404)
    handlers = {path: handler for path, handler in hub["extra_handlers"]}
    assert handlers["/api/outpost/events/([^/]+)/([^/]+)"].endswith("EventsHandler"), handlers
    assert any(path.startswith("/api/outpost/setuptunnel/") for path in handlers)
    assert "Loading hub.extraConfig: outpost-hub-addons" in report["output"]


# --- jupyterhub_config.py: z2jh's semantics ----------------------------------------------

SAMPLE = {
    "hub": {
        "db": {"type": "sqlite-memory"},
        "baseUrl": "/jh/",
        "concurrentSpawnLimit": 5,
        "config": {
            "JupyterHub": {
                "authenticator_class": "dummy",
                "admin_access": True,
                "cookie_secret": "ab" * 32,
            },
            "DummyAuthenticator": {"password": "pw"},
            "Authenticator": {"admin_users": ["ada"]},
        },
        "services": {
            "given": {"apiToken": "given-token-123", "admin": True},
            "generated": {"url": "http://generated:8000"},
        },
        "loadRoles": {"reader": {"scopes": ["read:users"], "services": ["given"]}},
        "extraConfig": {
            "b-second": "c.Spawner.args.append('b-second')",
            "a-first": "c.Spawner.args.append('a-first')\nc.JupyterHub.concurrent_spawn_limit = 7",
            "c-third": (
                "from z2jh import get_config\n"
                "c.Spawner.args.append(get_config('hub.baseUrl'))\n"
                "c.Spawner.args.append('c-third')"
            ),
        },
    },
    "singleuser": {
        "image": {"name": "example.org/user", "tag": "1.2"},
        "extraEnv": {"GREETING": "hello"},
        "storage": {"capacity": "2Gi", "dynamic": {"storageClass": "standard"}},
        "memory": {"limit": "1G", "guarantee": "512M"},
    },
    "cull": {"timeout": 120, "every": 30, "users": True},
}


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    objects = render_hub(SAMPLE)
    validate(objects)
    return objects, load_hub_configs({"sample": objects}, tmp_path_factory.mktemp("hub"))["sample"]


def test_hub_listens_and_is_reached_as_in_z2jh(sample):
    _, report = sample
    hub = report["JupyterHub"]
    assert hub["hub_bind_url"] == "http://:8081"
    assert hub["hub_connect_url"] == "http://hub:8081"
    assert hub["cleanup_servers"] is False
    assert hub["last_activity_interval"] == 60
    assert hub["tornado_settings"] == {"slow_spawn_timeout": 0}
    assert hub["base_url"] == "/jh/"
    assert hub["db_url"] == "sqlite://"


def test_the_proxy_api_and_token_are_the_proxy_pods(sample):
    objects, report = sample
    chp = report["ConfigurableHTTPProxy"]
    assert chp["should_start"] is False
    service = one(objects, "Service", "proxy-api")
    assert chp["api_url"] == f"http://proxy-api:{service['spec']['ports'][0]['port']}"
    # the hub's token (from its environment) is the one the proxy container gets
    token = secret_text(
        one(objects, "Secret", "hub"), "hub.config.ConfigurableHTTPProxy.auth_token"
    )
    assert chp["auth_token"] == token and len(token) == 64
    _, spec = pod(objects, "proxy")
    [env] = [e for e in container(spec, "chp")["env"] if e["name"] == "CONFIGPROXY_AUTH_TOKEN"]
    assert env["valueFrom"]["secretKeyRef"] == {
        "name": "hub",
        "key": "hub.config.ConfigurableHTTPProxy.auth_token",
    }
    # ... and the proxy routes to the hub Service and exposes the API port the Service targets
    args = container(spec, "chp")["command"]
    assert args[0] == "configurable-http-proxy"
    assert "--default-target=http://hub:8081" in args and "--api-port=8001" in args
    assert "--error-target=http://hub:8081/jh/hub/error" in args
    assert service["spec"]["ports"][0]["targetPort"] == "api"


def test_hub_config_is_applied_and_extra_config_runs_last_in_key_order(sample):
    _, report = sample
    config = report["config"]
    assert report["authenticator_class"] == "DummyAuthenticator"
    assert config["JupyterHub"]["admin_access"] is True
    assert config["Authenticator"]["admin_users"] == ["ada"]
    assert config["Spawner"]["args"] == ["a-first", "b-second", "/jh/", "c-third"]
    # hub.concurrentSpawnLimit, overridden by a snippet
    assert report["JupyterHub"]["concurrent_spawn_limit"] == 7
    assert report["output"].index("a-first") < report["output"].index("b-second")


def test_services_get_their_token_from_the_secret_given_or_generated(sample):
    objects, report = sample
    secret = one(objects, "Secret", "hub")
    services = {s["name"]: s for s in report["JupyterHub"]["services"]}
    assert services["given"] == {"name": "given", "admin": True, "api_token": "given-token-123"}
    generated = secret_text(secret, "hub.services.generated.apiToken")
    assert len(generated) == 64
    assert services["generated"] == {
        "name": "generated",
        "url": "http://generated:8000",
        "api_token": generated,
    }
    roles = {r["name"]: r for r in report["JupyterHub"]["load_roles"]}
    assert roles["reader"] == {"name": "reader", "scopes": ["read:users"], "services": ["given"]}


def test_secrets_of_hub_config_come_through_the_secret(sample):
    objects, report = sample
    secret = one(objects, "Secret", "hub")
    assert report["cookie_secret"] == "ab" * 32
    assert secret_text(secret, "hub.config.JupyterHub.cookie_secret") == "ab" * 32
    [key] = report["CryptKeeper"]
    assert key == secret_text(secret, "hub.config.CryptKeeper.keys")
    # the values in the Secret, not the ConfigMap
    configmap = yaml.safe_dump(one(objects, "ConfigMap", "hub")["data"])
    assert "given-token-123" not in configmap and "ab" * 32 not in configmap


def test_idle_culler_runs_as_z2jh_runs_it(sample):
    _, report = sample
    services = {s["name"]: s for s in report["JupyterHub"]["services"]}
    assert services["jupyterhub-idle-culler"]["command"] == [
        "python3",
        "-m",
        "jupyterhub_idle_culler",
        "--url=http://localhost:8081/jh/hub/api",
        "--timeout=120",
        "--cull-every=30",
        "--concurrency=10",
        "--cull-users",
    ]
    roles = {r["name"]: r for r in report["JupyterHub"]["load_roles"]}
    assert "admin:users" in roles["jupyterhub-idle-culler"]["scopes"]


def test_kubespawner_makes_the_user_pod_z2jh_would(sample):
    _, report = sample
    assert report["spawner_class"] == "kubespawner.spawner.KubeSpawner"
    user_pod = report["user_pod"]
    assert (
        user_pod["metadata"]["labels"].items()
        >= {
            "app": "jupyterhub",
            "release": "jupyterhub",
            "component": "singleuser-server",
            "hub.jupyter.org/network-access-hub": "true",
        }.items()
    )
    [notebook] = user_pod["spec"]["containers"]
    assert notebook["image"] == "example.org/user:1.2"
    assert {"name": "GREETING", "value": "hello"} in notebook["env"]
    assert notebook["resources"]["limits"]["memory"] == 1024**3  # "1G", as KubeSpawner reads it
    assert notebook["args"][:1] == ["jupyterhub-singleuser"]
    [home] = [m for m in notebook["volumeMounts"] if m["mountPath"] == "/home/jovyan"]
    [volume] = [v for v in user_pod["spec"]["volumes"] if v["name"] == home["name"]]
    assert volume["persistentVolumeClaim"]["claimName"].startswith("claim-")
    assert user_pod["spec"]["securityContext"]["fsGroup"] == 100
    assert report["config"]["KubeSpawner"]["namespace"] == NAMESPACE
    assert report["config"]["KubeSpawner"]["storage_capacity"] == "2Gi"


# --- objects and schema ----------------------------------------------------------------


def test_defaults_render_z2jh_objects_with_locked_down_pods():
    objects = render_hub({})
    validate(objects)
    hub_labels, hub_spec = pod(objects, "hub")
    assert (
        hub_labels.items()
        >= {"app": "jupyterhub", "component": "hub", "release": "jupyterhub"}.items()
    )
    assert hub_spec["securityContext"]["runAsNonRoot"] is True
    assert hub_spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    hub = container(hub_spec, "hub")
    assert hub["securityContext"]["runAsUser"] == 1000
    assert hub["securityContext"]["allowPrivilegeEscalation"] is False
    assert hub["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert hub["ports"] == [{"name": "http", "containerPort": 8081}]
    assert hub["readinessProbe"]["httpGet"] == {"path": "/hub/health", "port": "http"}
    service = one(objects, "Service", "hub")
    assert service["spec"]["ports"][0]["port"] == 8081
    assert selects({"matchLabels": service["spec"]["selector"]}, hub_labels)
    # the SQLite file on the PVC, upgraded on start
    assert one(objects, "PersistentVolumeClaim", "hub-db-dir")
    assert {"name": "pvc", "mountPath": "/srv/jupyterhub"} in hub["volumeMounts"]
    assert "--upgrade-db" in hub["args"]
    proxy_labels, proxy_spec = pod(objects, "proxy")
    chp = container(proxy_spec, "chp")
    assert chp["securityContext"]["runAsUser"] == 65534
    assert chp["securityContext"]["runAsNonRoot"] is True
    assert proxy_spec["automountServiceAccountToken"] is False
    public = one(objects, "Service", "proxy-public")
    assert selects({"matchLabels": public["spec"]["selector"]}, proxy_labels)
    assert public["spec"]["ports"][0] == {
        "name": "http",
        "port": 80,
        "targetPort": "http",
        "protocol": "TCP",
    }
    role = one(objects, "Role", "hub")
    assert role["rules"][0]["resources"] == [
        "pods",
        "persistentvolumeclaims",
        "secrets",
        "services",
    ]


def test_sqlite_memory_has_no_volume_and_no_upgrade():
    objects = render_hub({"hub": {"db": {"type": "sqlite-memory"}}})
    assert find(objects, "PersistentVolumeClaim") == []
    _, spec = pod(objects, "hub")
    assert "pvc" not in {v["name"] for v in spec["volumes"]}
    assert "--upgrade-db" not in container(spec, "hub")["args"]


def test_extra_env_takes_z2jh_maps_and_lists():
    objects = render_hub(
        {
            "hub": {
                "extraEnv": {
                    "PLAIN": "x",
                    "NUMBER": 3,
                    "FROM_SECRET": {"valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                }
            },
            "proxy": {"chp": {"extraEnv": [{"name": "LISTED", "value": "y"}]}},
        }
    )
    validate(objects)
    env = container(pod(objects, "hub")[1], "hub")["env"]
    assert env[-3:] == [
        {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        {"name": "NUMBER", "value": "3"},
        {"name": "PLAIN", "value": "x"},
    ]
    assert container(pod(objects, "proxy")[1], "chp")["env"][-1] == {"name": "LISTED", "value": "y"}


def test_proxy_service_type_and_load_balancer_settings():
    objects = render_hub(
        {
            "proxy": {
                "service": {
                    "type": "NodePort",
                    "nodePorts": {"http": 30080},
                    "annotations": {"a": "b"},
                }
            }
        }
    )
    public = one(objects, "Service", "proxy-public")
    assert public["spec"]["type"] == "NodePort"
    assert public["spec"]["ports"][0]["nodePort"] == 30080
    assert public["metadata"]["annotations"] == {"a": "b"}
    objects = render_hub({"proxy": {"service": {"loadBalancerSourceRanges": ["198.51.100.0/24"]}}})
    spec = one(objects, "Service", "proxy-public")["spec"]
    assert spec["type"] == "LoadBalancer"
    assert spec["loadBalancerSourceRanges"] == ["198.51.100.0/24"]


def test_egress_allow_rules_off_leave_only_the_chart_and_given_rules():
    none = dict.fromkeys(
        [
            "cloudMetadataServer",
            "dnsPortsCloudMetadataServer",
            "dnsPortsKubeSystemNamespace",
            "dnsPortsPrivateIPs",
            "nonPrivateIPs",
            "privateIPs",
        ],
        False,
    )
    mine = {"to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}], "ports": [{"port": 443}]}
    objects = render_hub({"hub": {"networkPolicy": {"egressAllowRules": none, "egress": [mine]}}})
    validate(objects)
    egress = one(objects, "NetworkPolicy", "hub")["spec"]["egress"]
    assert [r["ports"] for r in egress] == [[{"port": 8001}], [{"port": 8888}], [{"port": 443}]]
    assert egress[-1] == mine
    objects = render_hub({"hub": {"networkPolicy": {"enabled": False}}})
    assert [p["metadata"]["name"] for p in find(objects, "NetworkPolicy")] == ["proxy"]


def test_ignored_z2jh_keys_are_accepted():
    objects = render_hub(
        {
            "prePuller": {"hook": {"enabled": False}, "continuous": {"enabled": False}},
            "scheduling": {
                "userScheduler": {"enabled": False},
                "userPlaceholder": {"enabled": False},
            },
        }
    )
    assert {o["kind"] for o in objects} <= {
        "ConfigMap",
        "Secret",
        "Service",
        "Deployment",
        "PersistentVolumeClaim",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "NetworkPolicy",
    }


@pytest.mark.parametrize(
    "values,message",
    [
        ({"ingress": {"enabled": True}}, "additional properties 'ingress' not allowed"),
        ({"hub": {"db": {"type": "postgres"}}}, "/hub/db/type"),
        ({"singleuser": {"cloudMetadata": {"blockWithIptables": True}}}, "blockWithIptables"),
        ({"proxy": {"https": {"enabled": True}}}, "additional properties 'https' not allowed"),
    ],
)
def test_what_this_chart_does_not_implement_is_refused(values, message):
    with pytest.raises(helm_python.HelmError, match=message):
        render_hub(values)


def test_values_reach_the_hub_through_the_secret_not_the_configmap():
    objects = render_hub(
        {"hub": {"config": {"GenericOAuthenticator": {"client_secret": "s3cret"}}}}
    )
    values = yaml.safe_load(secret_text(one(objects, "Secret", "hub"), "values.yaml"))
    assert values["hub"]["config"]["GenericOAuthenticator"]["client_secret"] == "s3cret"
    assert values["Release"] == {"Name": "jupyterhub", "Namespace": NAMESPACE, "Service": "Helm"}
    assert "s3cret" not in yaml.safe_dump(one(objects, "ConfigMap", "hub")["data"])


# --- generated once, kept across upgrades ----------------------------------------------

GENERATED = (
    "hub.config.ConfigurableHTTPProxy.auth_token",
    "hub.config.JupyterHub.cookie_secret",
    "hub.config.CryptKeeper.keys",
    "hub.services.mine.apiToken",
)


@pytest.fixture
def cluster():
    api = FakeKubeAPI()
    with api.running() as config:
        yield api, config


def test_generated_secrets_and_the_pods_checksums_are_kept_across_upgrade(cluster):
    api, config = cluster
    values = {"hub": {"services": {"mine": {}}}}
    installed = render_hub(values, config=config)
    api.apply(installed, NAMESPACE)
    upgraded = render_hub(values, config=config, is_upgrade=True)
    before, after = one(installed, "Secret", "hub"), one(upgraded, "Secret", "hub")
    for key in GENERATED:
        assert after["data"][key] == before["data"][key], key
    assert (
        before["data"]["hub.config.ConfigurableHTTPProxy.auth_token"]
        != before["data"]["hub.config.JupyterHub.cookie_secret"]
    )
    # so an upgrade without changes restarts neither pod
    for name in ("hub", "proxy"):
        old = one(installed, "Deployment", name)["spec"]["template"]["metadata"]["annotations"]
        new = one(upgraded, "Deployment", name)["spec"]["template"]["metadata"]["annotations"]
        assert old == new, name
    assert any(p.endswith("/secrets/hub") for p in api.requests), "lookup asked the API"


def test_a_given_proxy_token_wins_over_the_kept_one_and_restarts_the_proxy(cluster):
    api, config = cluster
    installed = render_hub({}, config=config)
    api.apply(installed, NAMESPACE)
    upgraded = render_hub(
        {"proxy": {"secretToken": "rotated-token"}}, config=config, is_upgrade=True
    )
    secret = one(upgraded, "Secret", "hub")
    assert secret_text(secret, "hub.config.ConfigurableHTTPProxy.auth_token") == "rotated-token"
    assert (
        secret["data"]["hub.config.JupyterHub.cookie_secret"]
        == one(installed, "Secret", "hub")["data"]["hub.config.JupyterHub.cookie_secret"]
    )
    annotation = "checksum/auth-token"

    def checksum(objects):
        return one(objects, "Deployment", "proxy")["spec"]["template"]["metadata"]["annotations"][
            annotation
        ]

    assert checksum(upgraded) != checksum(installed)


def test_without_a_cluster_every_render_generates_anew():
    first = one(render_hub({}), "Secret", "hub")["data"]
    second = one(render_hub({}), "Secret", "hub")["data"]
    assert (
        first["hub.config.JupyterHub.cookie_secret"]
        != second["hub.config.JupyterHub.cookie_secret"]
    )
    cookie = base64.b64decode(first["hub.config.JupyterHub.cookie_secret"]).decode()
    assert len(bytes.fromhex(cookie)) == 32  # what JupyterHub's cookie_secret wants
