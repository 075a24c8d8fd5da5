"""scenarios/one-remote on kind with the Outpost chart at ``replicas: 2`` on PostgreSQL:
two Outpost pods (``serve --replicated``) behind one API Service and one SSH Service, on a
PostgreSQL server in the Outpost's namespace (images/postgresql, built here from Debian).

What an operator relies on when scaling out this way: both pods answer the hub about
servers either one started (every request on a new connection, spread by kube-proxy),
exactly one pod leads, the user's server and kernel work through whichever pod the
tunnel reaches, and when the leading pod dies (deleted at once, as on a failed node) the
other pod takes the lead, the server and kernel live on, and the stop leaves nothing.
"""

from __future__ import annotations

import base64
import json
import secrets
import urllib.error
import urllib.request

import pytest
import yaml
from outpost_scenarios import kind_deploy
from outpost_scenarios.kindbuild.commands import BuildError

from tests.helpers.hub_process import wait_until

from .kind_user import OUTPOST_POD, REMOTE, KernelSession
from .scenario_fixtures import scenario_fixture

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

DB = "outpost-db"  # the PostgreSQL Deployment, Service and Secret in the Outpost namespace
DB_IMAGE = "ghcr.io/jupyterhub-outpost/postgresql:kind"
PGDATA = "/var/lib/postgresql/data/pgdata"
LEADS = "leads: recovery"


def postgresql_objects(password: str) -> list[dict]:
    """A PostgreSQL server for the Outpost: initdb in an init container (the superuser
    "outpost" with ``password``), the server in its container, data on an emptyDir."""
    ns = kind_deploy.OUTPOST_NS
    labels = {"app": DB}
    meta = {"name": DB, "namespace": ns, "labels": labels}
    db_env = {
        "SQL_TYPE": "postgresql",
        "SQL_USER": "outpost",
        "SQL_PASSWORD": password,
        "SQL_HOST": f"{DB}.{ns}.svc",
        "SQL_PORT": "5432",
        "SQL_DATABASE": "postgres",
    }
    hba = "local all all trust\nhost all all 0.0.0.0/0 scram-sha-256\n"
    volumes = [
        {"name": "data", "emptyDir": {}},
        {"name": "run", "emptyDir": {}},
        {"name": "hba", "configMap": {"name": DB}},
        {
            "name": "password",
            "secret": {"secretName": DB, "items": [{"key": "SQL_PASSWORD", "path": "pw"}]},
        },
    ]
    mounts = [
        {"name": "data", "mountPath": "/var/lib/postgresql/data"},
        {"name": "run", "mountPath": "/var/run/postgresql"},
    ]
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "stringData": db_env},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"pg_hba.conf": hba}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "securityContext": {"runAsUser": 999, "runAsGroup": 999, "fsGroup": 999},
                        "volumes": volumes,
                        "initContainers": [
                            {
                                "name": "initdb",
                                "image": DB_IMAGE,
                                "imagePullPolicy": "Never",
                                "command": [
                                    "initdb",
                                    "-D",
                                    PGDATA,
                                    "-U",
                                    "outpost",
                                    "--pwfile=/etc/outpost-db/pw",
                                    "--auth-host=scram-sha-256",
                                    "--auth-local=trust",
                                ],
                                "volumeMounts": [
                                    *mounts,
                                    {"name": "password", "mountPath": "/etc/outpost-db"},
                                ],
                            }
                        ],
                        "containers": [
                            {
                                "name": "postgres",
                                "image": DB_IMAGE,
                                "imagePullPolicy": "Never",
                                "args": [
                                    "-D",
                                    PGDATA,
                                    "-c",
                                    "listen_addresses=*",
                                    "-c",
                                    "hba_file=/etc/outpost-db-hba/pg_hba.conf",
                                ],
                                "ports": [{"containerPort": 5432, "name": "postgresql"}],
                                "readinessProbe": {
                                    "exec": {
                                        "command": [
                                            "pg_isready",
                                            "-h",
                                            "127.0.0.1",
                                            "-U",
                                            "outpost",
                                        ]
                                    },
                                    "periodSeconds": 2,
                                },
                                "volumeMounts": [
                                    *mounts,
                                    {"name": "hba", "mountPath": "/etc/outpost-db-hba"},
                                ],
                            }
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {"selector": labels, "ports": [{"port": 5432, "targetPort": "postgresql"}]},
        },
    ]


def install_postgresql(remote) -> None:
    """Install the database, or keep the one a kept cluster has (its password with it:
    the data directory was made with it)."""
    found = remote.kubectl(
        "get", "secret", "-n", kind_deploy.OUTPOST_NS, DB, "--ignore-not-found", "-o", "json"
    )
    if found.strip():
        password = base64.b64decode(json.loads(found)["data"]["SQL_PASSWORD"]).decode()
    else:
        password = secrets.token_hex(16)
    objects = postgresql_objects(password)
    remote.kubectl_input(
        json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}).encode(),
        "apply",
        "-f",
        "-",
    )
    remote.rollout_status(kind_deploy.OUTPOST_NS, DB)


REPLICATED = {
    "database": {"type": "postgresql"},
    "replicas": 2,
    "extraEnvVarsSecrets": [DB],
    "networkPolicy": {
        "egress": {
            "extra": [
                {
                    "to": [{"podSelector": {"matchLabels": {"app": DB}}}],
                    "ports": [{"port": 5432, "protocol": "TCP"}],
                }
            ]
        }
    },
}

scenario = scenario_fixture(
    "one-remote",
    REMOTE,
    variant="2 Outpost replicas on PostgreSQL",
    prepare=install_postgresql,
    outpost_overrides=REPLICATED,
)


def outpost_pods(scenario) -> list[dict]:
    return [
        p
        for p in scenario.cluster(REMOTE).pods(REMOTE.namespace, OUTPOST_POD)
        if not p["metadata"].get("deletionTimestamp")
    ]


def pod_log(scenario, pod: str) -> str:
    return scenario.cluster(REMOTE).kubectl("logs", "-n", REMOTE.namespace, pod, "-c", "outpost")


class OutpostAPI:
    """The hub's view of the Outpost API through its LoadBalancer Service: every request
    on a new connection, so kube-proxy picks a pod for each."""

    def __init__(self, scenario):
        remote = scenario.cluster(REMOTE)
        host, port = remote.service_address(REMOTE.namespace, "outpost-jupyterhub-outpost")
        self.url = f"http://{host}:{port}"
        secret = remote.json("get", "secret", "-n", REMOTE.namespace, "outpost-jupyterhub-outpost")
        credentials = yaml.safe_load(base64.b64decode(secret["data"]["hub_credentials.yaml"]))
        token = base64.b64encode(f"hub:{credentials['hub']}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}"}

    def get(self, path: str):
        request = urllib.request.Request(self.url + path, headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")


def test_both_outpost_pods_run_as_replicas_and_exactly_one_leads(scenario):
    pods = outpost_pods(scenario)
    assert len(pods) == 2, [p["metadata"]["name"] for p in pods]
    for pod in pods:
        [container] = [c for c in pod["spec"]["containers"] if c["name"] == "outpost"]
        assert "--replicated" in container["args"]
    logs = [pod_log(scenario, p["metadata"]["name"]) for p in pods]
    assert sum(LEADS in log for log in logs) == 1, "exactly one pod leads"
    assert all("Database: postgresql" in log for log in logs)


@pytest.fixture(scope="module")
def kept(scenario):
    """A user's server and kernel, kept across the leader's death below."""
    scenario.hub.create_user("dora")
    scenario.hub.start_server("dora", "lab", {"outpost": "remote", "flavor": "small"}, timeout=600)
    session = KernelSession(scenario.hub, "dora", "lab")
    yield session
    scenario.stop_and_assert_clean("dora", "lab", REMOTE)


def test_either_pod_answers_the_hub_about_the_users_server(scenario, kept):
    api = OutpostAPI(scenario)
    status, listed = api.get("/services")
    assert status == 200 and len(listed) == 1, (status, listed)
    name = listed[0]["name"]
    for _ in range(24):
        assert api.get(f"/services/{name}") == (200, {"status": None})
    answered = [
        p["metadata"]["name"]
        for p in outpost_pods(scenario)
        if f"GET /services/{name}" in pod_log(scenario, p["metadata"]["name"])
    ]
    assert len(answered) == 2, f"polls answered by {answered} only"
    assert kept.run("print(6 * 7)") == "42"


def leaders(scenario, *, besides: str = "") -> list[str]:
    """The Outpost pods (other than ``besides``) whose log says they lead."""
    return [
        p["metadata"]["name"]
        for p in outpost_pods(scenario)
        if p["metadata"]["name"] != besides
        and p["status"].get("phase") == "Running"
        and LEADS in pod_log(scenario, p["metadata"]["name"])
    ]


def test_the_leader_pod_dies_another_leads_and_the_server_and_kernel_live_on(scenario, kept):
    """The leading pod is deleted at once (no grace: as when its node fails). Its lock dies
    with its database connection; the other replica (trying every 5 s) or the pod that
    replaces it takes the lead, whichever comes first, and only one does."""
    remote = scenario.cluster(REMOTE)
    [leader] = leaders(scenario)
    remote.kubectl(
        "delete",
        "pod",
        "-n",
        REMOTE.namespace,
        leader,
        "--grace-period=0",
        "--force",
        "--wait=false",
    )
    wait_until(
        lambda: leaders(scenario, besides=leader), 120, "another pod to lead", errors=(BuildError,)
    )
    took = kept.still_the_same_kernel(within=300)
    print(f"the server answered again {took:.1f}s after the leader pod was killed")
    remote.rollout_status(REMOTE.namespace, "outpost-jupyterhub-outpost")
    wait_until(lambda: len(outpost_pods(scenario)) == 2, 300, "two Outpost pods again")
    assert len(leaders(scenario)) == 1, "one pod leads"
    assert scenario.hub.server_model("dora", "lab")["ready"]
