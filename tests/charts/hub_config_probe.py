"""Load jupyterhub_config.py files with JupyterHub's own loader and report what they set.

    python hub_config_probe.py jobs.json

``jobs.json`` is a list of ``{"config", "env", "cwd", "report", "log"}``. Each job runs in
a process of its own, forked after JupyterHub and KubeSpawner are imported (the config
file inserts its directory into ``sys.path`` and caches the values it reads, so no two
loads may share an interpreter), with exactly ``env`` as its environment, in ``cwd``.
Its output goes to ``log``; ``report`` gets one JSON object: the JupyterHub application's
effective settings after ``load_config_file`` (``raise_config_file_errors`` is
JupyterHub's: an exception in the file fails the job), those of ConfigurableHTTPProxy and
CryptKeeper built from that config, the configuration of every section, and the pod
KubeSpawner would make for a user. The exit code is the number of failed jobs.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import sys

from jupyterhub.app import JupyterHub
from jupyterhub.crypto import CryptKeeper
from jupyterhub.proxy import ConfigurableHTTPProxy
from kubernetes_asyncio.client import ApiClient
from kubespawner import KubeSpawner
from traitlets.config import LazyConfigValue

HUB_TRAITS = (
    "hub_bind_url",
    "hub_connect_url",
    "db_url",
    "cleanup_servers",
    "last_activity_interval",
    "base_url",
    "concurrent_spawn_limit",
    "active_server_limit",
    "allow_named_servers",
    "named_server_limit_per_user",
    "tornado_settings",
    "services",
    "load_roles",
    "custom_scopes",
    "log_level",
    "extra_handlers",
)


def plain(value):
    """Config values as JSON (lazy list/dict operations resolved against empty defaults)."""
    if isinstance(value, LazyConfigValue):
        return plain(value.get_value({} if value._update is not None else []))
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [plain(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    return value


async def user_pod(config) -> dict:
    """The pod manifest KubeSpawner builds from this config. KubeSpawner's ``_mock``
    supplies a stand-in user and hub so that the manifest can be made without a hub
    database; its client loads the kubeconfig the caller names in $KUBECONFIG (one for an
    address that is never contacted: building a manifest sends nothing)."""
    spawner = KubeSpawner(_mock=True, config=config)
    manifest = await spawner.get_pod_manifest()
    return ApiClient().sanitize_for_serialization(manifest)


def load(path: str) -> dict:
    app = JupyterHub()
    app.load_config_file(path)
    config = app.config
    spawner = app.spawner_class
    report = {
        "JupyterHub": {name: plain(getattr(app, name)) for name in HUB_TRAITS},
        "cookie_secret": app.cookie_secret.hex(),
        "spawner_class": f"{spawner.__module__}.{spawner.__name__}",
        "authenticator_class": app.authenticator_class.__name__,
        "ConfigurableHTTPProxy": {
            name: getattr(ConfigurableHTTPProxy(config=config), name)
            for name in ("api_url", "auth_token", "should_start")
        },
        "CryptKeeper": [key.hex() for key in CryptKeeper(config=config).keys],
        "config": {section: plain(config[section]) for section in config},
    }
    if issubclass(spawner, KubeSpawner):
        report["user_pod"] = asyncio.run(user_pod(config))
    return report


def run_job(job: dict) -> None:
    """In the forked child: the job's output, environment and directory, then the load."""
    with open(job["log"], "w") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    os.environ.clear()
    os.environ.update(job["env"])
    os.chdir(job["cwd"])
    report = load(job["config"])
    with open(job["report"], "w") as f:
        json.dump(report, f)
    sys.stdout.flush()


def main(jobs_file: str) -> int:
    with open(jobs_file) as f:
        jobs = json.load(f)
    fork = multiprocessing.get_context("fork")
    failed = 0
    for job in jobs:
        child = fork.Process(target=run_job, args=(job,))
        child.start()
        child.join()
        failed += child.exitcode != 0
    return failed


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
