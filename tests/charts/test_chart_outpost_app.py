"""The rendered Outpost pod, as the real Outpost reads it.

The Deployment's args, the ConfigMap's config file and the Secret's files are put on
disk (paths under /etc/outpost moved into a temporary directory) and handed to the real
``JupyterHubOutpost`` application and the modules that read each file. This proves the
chart and the Outpost agree on flag names, option names and file formats; it does not
start the server (the Outpost's own tests do).
"""

from __future__ import annotations

import pytest

from tests.charts.chart_helpers import OUTPOST, one, pod_specs, render, secret_text

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
