"""The rendered Outpost pod, as the real Outpost reads it.

The Deployment's args, the ConfigMap's config file and the Secret's files are put on
disk (paths under /etc/outpost moved into a temporary directory) and handed to the real
``JupyterHubOutpost`` application and the modules that read each file. This proves the
chart and the Outpost agree on flag names, option names and file formats. One test
starts the real server from them on loopback, to prove the rendered metrics token
opens GET /metrics; the rest do not start it (the Outpost's own tests do).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.charts.chart_helpers import (
    OUTPOST,
    free_port,
    http_status,
    one,
    pod_specs,
    render,
    secret_text,
    wait_for_ping,
)

app_module = pytest.importorskip("jupyterhub_outpost.outpost.app")
credentials = pytest.importorskip("jupyterhub_outpost.outpost.credentials")
crypto = pytest.importorskip("jupyterhub_outpost.outpost.crypto")
ssh_endpoint = pytest.importorskip("jupyterhub_outpost.outpost.ssh_endpoint")
forward_targets = pytest.importorskip("jupyterhub_outpost.outpost.forward_targets")

HUB_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMGPA3EeWdotOAsvTaGQ/2gp0AmjLHklbZlOtB7pRee3"


def materialize(objects, tmp_path):
    """Write the pod's mounted files under tmp_path; return (argv, env, relocate)."""
    [(_, _, spec)] = pod_specs(objects)
    [container] = spec["containers"]
    root = tmp_path / "root"

    def relocate(path: str) -> str:
        return str(root / path.lstrip("/"))

    configmap = one(objects, "ConfigMap")
    secret = one(objects, "Secret")
    volumes = {v["name"]: v for v in spec["volumes"]}
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        target = root / mount["mountPath"].lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        if "configMap" in volume:
            for key, text in configmap["data"].items():
                (target / key).write_text(
                    text.replace("/etc/outpost/", relocate("/etc/outpost/") + "/")
                )
        elif volume.get("secret", {}).get("secretName") == secret["metadata"]["name"]:
            for item in volume["secret"]["items"]:
                (target / item["path"]).write_text(secret_text(secret, item["key"]))
    argv = [relocate(a) if a.startswith("/") else a for a in container["args"]]
    env = {
        e["name"]: secret_text(secret, e["valueFrom"]["secretKeyRef"]["key"])
        for e in container["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    return argv, env, relocate


def test_the_outpost_accepts_the_rendered_args_config_and_secrets(tmp_path):
    values = {
        "hubs": {"hub": {"sshPublicKeys": [HUB_KEY]}, "other": {"password": "pw"}},
        "ssh": {"allowedForwardTargets": ["10.20.0.0/16:8000-9000"]},
        "logLevel": "DEBUG",
    }
    objects, _ = render(OUTPOST, values)
    argv, env, relocate = materialize(objects, tmp_path)
    assert argv[0] == "serve"  # the cli's subcommand; the rest is the app's

    app = app_module.JupyterHubOutpost()
    app.initialize(argv[1:])
    assert app.config_file == relocate("/etc/outpost/config/outpost_config.py")
    assert (app.ip, app.port, app.data_dir) == ("0.0.0.0", 8080, relocate("/srv/outpost/data"))
    assert app.ssh_enabled and app.ssh_ip == "0.0.0.0" and app.ssh_port == 8022
    assert app.spawner_class.__name__ == "KubeSpawner"

    hubs = credentials.HubCredentials(app.hub_credentials).hubs()
    assert set(hubs) == {"hub", "other"} and hubs["other"] == "pw"
    keys = credentials.FileBackedMapping(app.ssh_authorized_keys, "ssh_authorized_keys").get()
    assert keys == {"hub": [HUB_KEY], "other": []}
    host_key = ssh_endpoint.load_or_create_host_key(app.ssh_host_key_file)
    assert ssh_endpoint.public_key_line(host_key).startswith("ssh-ed25519 ")
    assert len(crypto.parse_keys(env["OUTPOST_CRYPT_KEYS"])) == 1
    forward_targets.parse_targets(app.allowed_forward_targets)


def test_the_outpost_calls_each_hub_only_at_the_api_url_of_its_values(tmp_path):
    """hubs.<hub>.apiUrl, outpostName, flavorsUpdateToken and apiLayout become the Outpost's
    hub_api (in the Secret); a hub without apiUrl gets no calls."""
    values = {
        "hubs": {
            "hub": {
                "apiUrl": "https://hub.example.org/hub/api",
                "outpostName": "hpc",
                "flavorsUpdateToken": "tok-of-hub",
            },
            "stock": {"apiUrl": "http://stock:8081/hub/api", "apiLayout": "outpostspawner"},
            "silent": {},
        }
    }
    objects, _ = render(OUTPOST, values)
    argv, _, _ = materialize(objects, tmp_path)
    app = app_module.JupyterHubOutpost()
    app.initialize(argv[1:])
    app._check_hub_api({"hub": "x", "stock": "y", "silent": "z"})  # what start-up checks
    hub = app.hub_endpoints("hub")
    assert hub.flavors_url() == "https://hub.example.org/hub/api/outpost/flavors/hpc"
    assert hub.flavors_update_token == "tok-of-hub"
    stock = app.hub_endpoints("stock")
    assert stock.server_url("events", "alice", "") == (
        "http://stock:8081/hub/api/users/progress/events/alice"
    )
    assert app.hub_endpoints("silent") is None
    # the token is in the Secret, not in the ConfigMap
    assert "tok-of-hub" not in str(one(objects, "ConfigMap"))


def test_the_outpost_accepts_https_settings(tmp_path):
    objects, _ = render(
        OUTPOST, {"hubs": {"hub": {}}, "https": {"enabled": True, "secretName": "tls"}}
    )
    argv, _, relocate = materialize(objects, tmp_path)
    app = app_module.JupyterHubOutpost()
    app.initialize(argv[1:])
    assert app.certfile == relocate("/etc/outpost/tls/tls.crt")
    assert app.keyfile == relocate("/etc/outpost/tls/tls.key")


def pod_environment(objects, secrets: dict[str, dict[str, str]]) -> dict[str, str]:
    """The container's environment as Kubernetes builds it: envFrom Secrets, then env."""
    [(_, _, spec)] = pod_specs(objects)
    [container] = spec["containers"]
    environ: dict[str, str] = {}
    for source in container.get("envFrom", []):
        environ.update(secrets[source["secretRef"]["name"]])
    chart_secret = one(objects, "Secret")
    for env in container["env"]:
        ref = env.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            environ[env["name"]] = secret_text(chart_secret, ref["key"])
        elif "value" in env:
            environ[env["name"]] = env["value"]
    return environ


def test_the_seed_postgresql_secret_reaches_the_outposts_database_settings(tmp_path):
    database = pytest.importorskip("jupyterhub_outpost.outpost.database")
    seed_secret = {  # seed 002: the operator's Secret
        "SQL_TYPE": "postgresql",
        "SQL_USER": "jupyterhuboutpost",
        "SQL_PASSWORD": "secret",
        "SQL_HOST": "postgres.database.svc",
        "SQL_PORT": "5432",
        "SQL_DATABASE": "jupyterhuboutpost",
    }
    values = {
        "hubs": {"hub": {}},
        "database": {"type": "postgresql"},
        "extraEnvVarsSecrets": ["my-db-secret"],
    }
    objects, _ = render(OUTPOST, values)
    argv, _, _ = materialize(objects, tmp_path)
    app = app_module.JupyterHubOutpost()
    app.initialize(argv[1:])
    url = database.resolve_db_url(
        app.db_url, app.data_dir, pod_environment(objects, {"my-db-secret": seed_secret})
    )
    assert url.drivername.startswith("postgresql")
    assert (url.host, url.port, url.database, url.username) == (
        "postgres.database.svc",
        5432,
        "jupyterhuboutpost",
        "jupyterhuboutpost",
    )


def test_without_postgresql_the_database_is_sqlite_on_the_data_volume(tmp_path):
    database = pytest.importorskip("jupyterhub_outpost.outpost.database")
    objects, _ = render(OUTPOST, {"hubs": {"hub": {}}})
    argv, _, relocate = materialize(objects, tmp_path)
    app = app_module.JupyterHubOutpost()
    app.initialize(argv[1:])
    url = database.resolve_db_url(app.db_url, app.data_dir, pod_environment(objects, {}))
    assert url.drivername.startswith("sqlite")
    assert url.database.startswith(relocate("/srv/outpost/data") + "/")
    [(_, _, spec)] = pod_specs(objects)
    data = next(v for v in spec["volumes"] if v["name"] == "data")
    assert (
        data["persistentVolumeClaim"]["claimName"]
        == one(objects, "PersistentVolumeClaim")["metadata"]["name"]
    )


@pytest.mark.parametrize("enabled", [True, False], ids=["metrics-on", "metrics-off"])
def test_the_rendered_outpost_serves_metrics_to_the_secrets_token(tmp_path, enabled):
    """The real Outpost, started as the pod would start it (the rendered args, config
    file, Secret files and the env taken from the Secret), on loopback: with
    metrics.enabled, GET /metrics answers 200 to the Secret's `metrics_token` (Bearer, as
    the ServiceMonitor sends it, and `token`) and 401 to anything else; without, 404."""
    objects, _ = render(OUTPOST, {"hubs": {"hub": {}}, "metrics": {"enabled": enabled}})
    argv, env, _ = materialize(objects, tmp_path)
    token = secret_text(one(objects, "Secret"), "metrics_token")
    assert (env.get("OUTPOST_METRICS_TOKEN") == token) is enabled
    port = free_port()
    argv[argv.index("--port") + 1] = str(port)
    argv[argv.index("--ip") + 1] = "127.0.0.1"
    argv += ["--JupyterHubOutpost.ssh_port=0", "--JupyterHubOutpost.ssh_ip=127.0.0.1"]
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OUTPOST_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyterhub_outpost", *argv],
        env={**environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_ping(process, url)
        if enabled:
            assert http_status(url + "/metrics", token) == 200
            assert http_status(url + "/metrics", token, scheme="token") == 200
            assert http_status(url + "/metrics", token + "x") == 401
            assert http_status(url + "/metrics") == 401
        else:
            assert http_status(url + "/metrics", token) == 404
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert token not in output  # and the token is never logged
