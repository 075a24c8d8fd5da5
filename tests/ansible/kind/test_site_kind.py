"""site.yml for real against a kind cluster: both Kubernetes roles install their charts with
kubernetes.core.helm (an Outpost and the hub-addons with an external tunnel daemon), the
Outpost answers /ping through its Service, and a second run changes nothing."""

from __future__ import annotations

import json
import secrets

import pytest
import yaml

from ..lab import run_playbook, write_yaml

pytestmark = [pytest.mark.slow]

CLUSTER = "jot-ansible"


@pytest.fixture(scope="module")
def cluster():
    from tests.e2e.kind import kind_env  # the kind e2e's cluster and image helpers

    kind_env.build_images()
    c = kind_env.Cluster(CLUSTER, kind_env.REMOTE_CONFIG)
    c.create([kind_env.OUTPOST_IMAGE, kind_env.HUB_IMAGE])
    try:
        yield c
    finally:
        c.delete()


def inventory(tmp, c) -> str:
    from tests.e2e.kind import kind_env

    kubeconfig = str(c.kind.kubeconfig_path)
    outpost_values = kind_env.scenario_values("one-remote", "outpost.yaml")
    outpost_values.pop("hubs", None)
    outpost_values["service"] = {"type": "ClusterIP"}
    outpost_values["sshService"] = {"type": "ClusterIP"}
    hub_values = {
        "tunnel": {
            "mode": "deployment",
            "image": {
                "repository": "ghcr.io/jupyterhub-outpost/hub",
                "tag": "kind",
                "pullPolicy": "Never",
            },
        }
    }
    path = tmp / "inventory" / "hosts.yml"
    path.parent.mkdir()
    write_yaml(
        path,
        {
            "all": {
                "vars": {
                    "ansible_connection": "local",
                    "ansible_python_interpreter": "{{ ansible_playbook_python }}",
                    "outpost_trust_dir": str(tmp / "trust"),
                },
                "children": {
                    "hubs": {
                        "hosts": {
                            "hub": {
                                "hub_addons_mode": "kubernetes",
                                "hub_addons_kubeconfig": kubeconfig,
                                "hub_addons_namespace": "jhub",
                                "hub_addons_values": hub_values,
                                "hub_addons_values_dir": str(tmp / "rendered"),
                            }
                        }
                    },
                    "outposts_host": {"hosts": {}},
                    "outposts_kubernetes": {
                        "hosts": {
                            "kindoutpost": {
                                "outpost_kubernetes_kubeconfig": kubeconfig,
                                "outpost_kubernetes_namespace": "outpost",
                                "outpost_kubernetes_url": "http://outpost-jupyterhub-outpost.outpost.svc:8080",
                                "outpost_kubernetes_ssh_host": "outpost-jupyterhub-outpost-ssh.outpost.svc",
                                "outpost_kubernetes_values": outpost_values,
                                "outpost_kubernetes_values_dir": str(tmp / "rendered"),
                            }
                        }
                    },
                },
            }
        },
    )
    return str(path)


def test_site_yml_installs_both_charts_on_kind_and_second_run_changes_nothing(cluster, tmp_path):
    inv = inventory(tmp_path, cluster)
    first = run_playbook(
        inv,
        "site.yml",
        timeout=1800,
        tmp=tmp_path,
    )
    assert first.returncode == 0, first.output[-6000:]
    releases = json.loads(cluster.kubectl("get", "secrets", "-A", "-l", "owner=helm", "-o", "json"))
    names = {item["metadata"]["labels"]["name"] for item in releases["items"]}
    assert {"outpost", "hub-addons"} <= names
    pods = cluster.pods("outpost", "app.kubernetes.io/instance=outpost")
    assert pods and all(p["status"]["phase"] == "Running" for p in pods)
    second = run_playbook(inv, "site.yml", timeout=1800, tmp=tmp_path)
    assert second.returncode == 0, second.output[-6000:]
    changed = {h: r["changed"] for h, r in second.recap().items() if r["changed"]}
    assert changed == {}, second.changed_tasks()
    values = yaml.safe_load((tmp_path / "rendered" / "hub-hub-addons.values.yaml").read_text())
    assert "kindoutpost" in values["outposts"]
    assert secrets.compare_digest(
        values["outposts"]["kindoutpost"]["password"],
        yaml.safe_load(
            (tmp_path / "rendered" / "kindoutpost-jupyterhub-outpost.values.yaml").read_text()
        )["hubs"]["hub"]["password"],
    )
