"""Kind mode's flow without Docker: stand-in kind and kubectl binaries record their argv.

What runs here: the argv the product gives kind and kubectl, `topology down --mode kind`,
and `up` from cluster creation to the printed URL and login and the teardown (image
build and chart installs stubbed). What needs Docker is in test_kind_scenarios.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from outpost_scenarios import kind

ROOT = Path(__file__).resolve().parents[3]

FAKE = """\
#!{python}
import json, os, sys
state = os.environ["FAKE_KIND_STATE"]
with open(os.environ["FAKE_KIND_LOG"], "a") as f:
    f.write(json.dumps([os.path.basename(sys.argv[0]), *sys.argv[1:]]) + "\\n")
names = open(state).read().split() if os.path.exists(state) else []
args = sys.argv[1:]
if os.path.basename(sys.argv[0]) == "kubectl":
    print(os.environ.get("KUBECONFIG", ""))
elif args[:2] == ["get", "clusters"]:
    print("\\n".join(names))
elif args[:2] == ["create", "cluster"]:
    names.append(args[args.index("--name") + 1])
    for arg in args:
        if arg.startswith("--kubeconfig="):
            open(arg.split("=", 1)[1], "w").close()
elif args[:2] == ["delete", "cluster"]:
    names.remove(args[args.index("--name") + 1])
open(state, "w").write(" ".join(names))
"""


@pytest.fixture
def fake(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("kind", "kubectl"):
        path = bin_dir / tool
        path.write_text(FAKE.format(python=sys.executable))
        path.chmod(0o755)
    log, state = tmp_path / "argv.jsonl", tmp_path / "clusters"
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("FAKE_KIND_LOG", str(log))
    monkeypatch.setenv("FAKE_KIND_STATE", str(state))

    class Fake:
        def calls(self) -> list[list[str]]:
            if not log.exists():
                return []
            return [json.loads(line) for line in log.read_text().splitlines()]

        def clusters(self) -> list[str]:
            return state.read_text().split() if state.exists() else []

        def add(self, *names: str) -> None:
            state.write_text(" ".join([*self.clusters(), *names]))

    return Fake()


def test_cluster_create_load_kubectl_delete_are_argv_calls(fake, tmp_path):
    c = kind.Cluster("demo-hub", kind.HUB_CONFIG, workdir=tmp_path / "work")
    c.create(["img:a", "img:b"])
    kubeconfig = f"--kubeconfig={tmp_path / 'work' / 'demo-hub' / 'kubeconfig'}"
    assert fake.calls() == [
        ["kind", "get", "clusters"],
        [
            "kind",
            "create",
            "cluster",
            "--name",
            "demo-hub",
            "--config",
            str(kind.HUB_CONFIG),
            kubeconfig,
            "--wait",
            "300s",
        ],
        ["kind", "load", "docker-image", "img:a", "--name", "demo-hub"],
        ["kind", "load", "docker-image", "img:b", "--name", "demo-hub"],
    ]
    assert fake.clusters() == ["demo-hub"]
    c.create([])  # a cluster of that name is reused
    assert fake.calls()[-1] == ["kind", "export", "kubeconfig", "--name", "demo-hub", kubeconfig]
    assert c.kubectl("get", "pods").strip() == str(c.kubeconfig_path)
    c.delete()
    assert fake.calls()[-1] == ["kind", "delete", "cluster", "--name", "demo-hub", kubeconfig]
    assert fake.clusters() == []


def test_cluster_configs_are_package_data_with_distinct_subnets():
    hub = yaml.safe_load(kind.HUB_CONFIG.read_text())["networking"]
    remote = yaml.safe_load(kind.REMOTE_CONFIG.read_text())["networking"]
    assert hub["podSubnet"] != remote["podSubnet"]
    assert hub["serviceSubnet"] != remote["serviceSubnet"]
    assert kind.REMOTE_CONFIG.parent == Path(kind.__file__).parent


@pytest.mark.parametrize("scenario", kind.SCENARIOS)
def test_every_scenario_has_kind_values_and_a_demo_login(scenario):
    assert kind.scenario_name(str(ROOT / "scenarios" / scenario)) == scenario
    assert kind.scenario_name(str(ROOT / "scenarios" / scenario / "topology.yaml")) == scenario
    assert kind.demo_login(scenario).startswith("any user name, password ")


def test_unknown_scenario_and_missing_tools_stop_with_exit_2(fake, tmp_path, monkeypatch, capsys):
    assert kind.up(str(tmp_path)) == 2
    assert "no kind values for scenario" in capsys.readouterr().err
    monkeypatch.setenv("PATH", str(tmp_path))  # no kind here
    assert kind.up(str(ROOT / "scenarios" / "one-remote")) == 2
    assert "the kind binary is not on PATH" in capsys.readouterr().err


def test_missing_helm_sdk_says_how_to_install_it(fake, monkeypatch):
    monkeypatch.setitem(sys.modules, "helm_python", None)
    with pytest.raises(kind.KindError, match=r"pip install 'helm-python-sdk"):
        kind.helm_python()
    assert "helm-python-sdk" in (kind.missing_tools() or "")


def test_up_creates_the_clusters_prints_url_and_login_and_deletes_them(
    fake, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(kind, "build_images", lambda: None)
    monkeypatch.setattr(kind, "ROOT", ROOT)
    workdir = tmp_path / "work"
    clusters_for = kind.clusters_for
    monkeypatch.setattr(
        kind,
        "clusters_for",
        lambda s: tuple(kind.Cluster(c.name, c.config, workdir=workdir) for c in clusters_for(s)),
    )
    deployed = []

    def deploy(scenario, hub, remote, lbs):
        deployed.append((scenario, hub.name, remote.name, lbs.service_type()))
        fake.add("unrelated")
        # as if 'topology down --mode kind' ran elsewhere: the hub cluster goes
        subprocess.run(["kind", "delete", "cluster", "--name", hub.name], check=True)
        return kind.Hub("http://172.18.0.5:80", "token")

    monkeypatch.setattr(kind, "deploy", deploy)
    assert kind.up(str(ROOT / "scenarios" / "one-remote")) == 0
    out = capsys.readouterr().out
    assert deployed == [("one-remote", "one-remote-hub", "one-remote-remote", "NodePort")]
    assert "open http://172.18.0.5:80/hub/" in out
    assert "login: any user name, password kind-e2e" in out
    assert fake.clusters() == ["unrelated"]  # both of the scenario's clusters are gone


def test_topology_down_mode_kind_deletes_the_scenarios_clusters(fake, tmp_path):
    fake.add("one-remote-hub", "one-remote-remote", "other")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "jupyterhub_outpost",
            "topology",
            "down",
            "--mode",
            "kind",
            str(ROOT / "scenarios" / "one-remote"),
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "deleted kind clusters: one-remote-hub, one-remote-remote" in result.stdout
    assert fake.clusters() == ["other"]


def test_kind_env_reexports_the_product_for_the_ansible_kind_test():
    from tests.e2e.kind import kind_env

    c = kind_env.Cluster("x", kind_env.REMOTE_CONFIG, kind_path="kind", kubectl_path="kubectl")
    assert c.kind.kubeconfig_path == c.kubeconfig_path
    assert kind_env.scenario_values is kind.scenario_values


def test_down_says_so_when_kind_fails(tmp_path, monkeypatch, capsys):
    broken = tmp_path / "kind"
    broken.write_text(f"#!{sys.executable}\nimport sys\nsys.exit('Cannot connect to Docker')\n")
    broken.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert kind.down(str(ROOT / "scenarios" / "one-remote")) == 1
    err = capsys.readouterr().err
    assert "could not delete one-remote-hub, one-remote-remote" in err
