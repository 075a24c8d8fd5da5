"""KubeSpawner and BatchSpawner subclasses are configured through the Outpost's config file.

No cluster or batch system is needed: the spawners are built (as for a start) but not
started, and the options from the file must arrive on them.
"""

import getpass
import textwrap

import pytest
from jupyterhub_outpost.outpost.app import JupyterHubOutpost
from jupyterhub_outpost.outpost.runner import Runner

from .support import start_body


def load_app(tmp_path, config_text: str) -> JupyterHubOutpost:
    path = tmp_path / "outpost_config.py"
    path.write_text(textwrap.dedent(config_text))
    app = JupyterHubOutpost()
    app.initialize(["--config", str(path), "--data-dir", str(tmp_path / "data")])
    return app


def build(app, tmp_path, name="lab", misc=None, user_options=None, user="alice"):
    runner = Runner(app.spawner_class, app.config, str(tmp_path / "certs"), app.log)
    body = start_body(name, user=user)
    env = dict(body["env"], JUPYTERHUB_USER_ID="42")
    return runner.build(
        hub="hub1", row_id=7, env=env, user_options=user_options or {}, misc=misc or {}
    )


KUBECONFIG = """
apiVersion: v1
kind: Config
clusters:
- name: none
  cluster: {server: "https://127.0.0.1:1"}
users:
- name: none
  user: {token: not-a-real-token}
contexts:
- name: none
  context: {cluster: none, user: none}
current-context: none
"""


async def test_kubespawner_subclass_built_from_config_file_gets_its_options(tmp_path, monkeypatch):
    pytest.importorskip("kubespawner", reason="jupyterhub-kubespawner is not installed")
    # KubeSpawner loads a client config when built; point it at a cluster that is never used
    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    from kubernetes_asyncio.config import kube_config

    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(tmp_path / "kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    app = load_app(
        tmp_path,
        """
        from kubespawner import KubeSpawner

        class SiteKubeSpawner(KubeSpawner):
            pass

        c.JupyterHubOutpost.spawner_class = SiteKubeSpawner
        c.KubeSpawner.image = "jupyter/minimal-notebook:notebook-7.0.3"
        c.KubeSpawner.namespace = "outpost-users"
        c.KubeSpawner.mem_limit = "2G"
        c.KubeSpawner.pod_name_template = "jupyter-{username}-{userid}--{servername}"
        c.SiteKubeSpawner.cpu_limit = 1.5
        """,
    )
    assert app.spawner_class.__name__ == "SiteKubeSpawner"
    spawner = build(app, tmp_path, misc={"image": "override:1"})
    assert isinstance(spawner, app.spawner_class)
    assert spawner.namespace == "outpost-users"
    assert spawner.mem_limit == 2 * 1024**3
    assert spawner.cpu_limit == 1.5
    assert spawner.image == "override:1"  # misc applied after config
    assert spawner.pod_name == "jupyter-alice-42--lab"  # stand-in user name and id arrive
    env = spawner.get_env()
    assert env["JUPYTERHUB_API_TOKEN"] == "token-lab"
    assert env["JUPYTERHUB_SERVICE_PREFIX"] == "/user/alice/lab/"


def test_batchspawner_subclass_built_from_config_file_gets_its_options(tmp_path):
    pytest.importorskip("batchspawner", reason="batchspawner is not installed")
    app = load_app(
        tmp_path,
        """
        c.JupyterHubOutpost.spawner_class = "batchspawner.SlurmSpawner"
        c.SlurmSpawner.req_partition = "booster"
        c.SlurmSpawner.req_runtime = "02:00:00"
        c.SlurmSpawner.req_nprocs = "4"
        c.BatchSpawnerBase.exec_prefix = ""
        """,
    )
    from batchspawner import SlurmSpawner

    user = getpass.getuser()  # BatchSpawner's get_env looks the user up in passwd
    spawner = build(app, tmp_path, user=user)
    assert isinstance(spawner, SlurmSpawner)
    assert spawner.req_partition == "booster"
    assert spawner.req_runtime == "02:00:00"
    assert spawner.req_nprocs == "4"
    assert spawner.user.name == user
    assert spawner.req_username == user
    assert "JUPYTERHUB_API_TOKEN" in spawner.req_keepvars.split(",")  # get_env works


def test_spawner_class_by_entry_point_name(tmp_path):
    app = load_app(tmp_path, 'c.JupyterHubOutpost.spawner_class = "simple"\n')
    from jupyterhub.spawner import SimpleLocalProcessSpawner

    assert app.spawner_class is SimpleLocalProcessSpawner


def test_hub_env_wins_but_local_bind_url_and_environment_stay(tmp_path):
    app = load_app(
        tmp_path,
        """
        c.JupyterHubOutpost.spawner_class = "jupyterhub.spawner.SimpleLocalProcessSpawner"
        c.Spawner.environment = {"SITE": "outpost-value"}
        c.Spawner.port = 9999
        """,
    )
    runner = Runner(app.spawner_class, app.config, str(tmp_path / "certs"), app.log)
    env = dict(
        start_body("x")["env"],
        SITE="hub-value",
        JUPYTERHUB_SERVICE_URL="http://0.0.0.0:1/x/",
        PATH="/hub/bin",
    )
    spawner = runner.build(hub="hub1", row_id=1, env=env, user_options={}, misc={})
    merged = spawner.get_env()
    assert merged["SITE"] == "outpost-value"
    assert merged["JUPYTERHUB_SERVICE_URL"] == "http://127.0.0.1:9999/user/alice/x/"
    assert merged["JUPYTERHUB_API_TOKEN"] == "token-x"
    assert merged["PATH"] != "/hub/bin"  # env_keep: this system's PATH
