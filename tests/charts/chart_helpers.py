"""Render the charts with Helm's own engine and look at the result.

The engine is Helm v4's Go library, loaded from the ``helm-python-sdk`` wheel
(``helm_python``): the same template functions, schema validation, ``lookup`` and lint
as the ``helm`` binary, with no binary and no cluster. ``lookup`` gets a cluster only
from :class:`FakeKubeAPI`, a few-endpoint stand-in for the Kubernetes API server on
loopback that holds Secrets.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import helm_python
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHARTS = ROOT / "charts"
OUTPOST = CHARTS / "jupyterhub-outpost"
ADDONS = CHARTS / "hub-addons"
# the scenario runner's zero-to-jupyterhub stand-in (test tooling, not a product chart)
JUPYTERHUB = ROOT / "scenario-runner" / "charts" / "jupyterhub"
SCENARIOS = ROOT / "scenarios"
KUBE_VERSION = "1.30.0"


@cache
def load_chart(path: Path) -> helm_python.Chart:
    return helm_python.Chart.load(path)


def values_file(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


def parse(rendered: dict[str, str]) -> list[dict]:
    """Every Kubernetes object of a render (NOTES.txt left out)."""
    objects = []
    for template, text in sorted(rendered.items()):
        if template.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                objects.append(doc)
    return objects


def render(
    chart: Path,
    values: dict | None = None,
    *,
    name: str = "test",
    namespace: str = "test",
    config: helm_python.Config | None = None,
    is_upgrade: bool = False,
) -> tuple[list[dict], str]:
    """Render a chart; returns (objects, NOTES text). ``config`` makes ``lookup`` live."""
    options = dict(name=name, namespace=namespace, is_install=not is_upgrade, is_upgrade=is_upgrade)
    if config is None:
        rendered = load_chart(chart).render(values or {}, **options)
    else:
        rendered = config.render(load_chart(chart), values or {}, **options)
    notes = next((v for k, v in rendered.items() if k.endswith("NOTES.txt")), "")
    return parse(rendered), notes


# Custom resources kubernetes-validate has no schema for (it knows only the built-in
# API): the charts' ServiceMonitors (Prometheus Operator). Their structure is checked by
# hand in test_chart_outpost.py and test_chart_hub_addons.py (``check_service_monitor``).
NOT_VALIDATED = {("monitoring.coreos.com/v1", "ServiceMonitor")}


def validate(objects: list[dict], version: str = KUBE_VERSION) -> None:
    """Strict validation against the Kubernetes OpenAPI schemas (unknown fields fail).

    Objects in :data:`NOT_VALIDATED` (custom resources) are left out."""
    for obj in objects:
        if (obj.get("apiVersion"), obj.get("kind")) in NOT_VALIDATED:
            continue
        kubernetes_validate.validate(obj, version, strict=True)


def find(objects: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


def one(objects: list[dict], kind: str, name: str | None = None) -> dict:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def secret_text(secret: dict, key: str) -> str:
    return base64.b64decode(secret["data"][key]).decode()


def pod_specs(objects: list[dict]) -> list[tuple[str, dict, dict]]:
    """(workload name, pod labels, pod spec) of every Deployment."""
    return [
        (
            o["metadata"]["name"],
            o["spec"]["template"]["metadata"]["labels"],
            o["spec"]["template"]["spec"],
        )
        for o in find(objects, "Deployment")
    ]


class FakeKubeAPI:
    """Just enough of a Kubernetes API server for Helm's ``lookup`` of Secrets.

    Serves discovery of ``/api/v1`` and GET of Secrets it holds, over plain HTTP on
    127.0.0.1. It stands in for the cluster so that an install and an upgrade can be
    rendered by the real engine with ``lookup`` live.
    """

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict] = {}
        self.requests: list[str] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                path = self.path.split("?")[0]
                api.requests.append(path)
                if path == "/version":
                    return self._send(200, {"major": "1", "minor": "30", "gitVersion": "v1.30.0"})
                if path == "/api":
                    return self._send(200, {"kind": "APIVersions", "versions": ["v1"]})
                if path == "/apis":
                    return self._send(
                        200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []}
                    )
                if path == "/api/v1":
                    resource = {
                        "name": "secrets",
                        "singularName": "secret",
                        "namespaced": True,
                        "kind": "Secret",
                        "verbs": ["get", "list"],
                    }
                    return self._send(
                        200,
                        {"kind": "APIResourceList", "groupVersion": "v1", "resources": [resource]},
                    )
                parts = path.strip("/").split("/")
                if (
                    len(parts) == 6
                    and parts[:3] == ["api", "v1", "namespaces"]
                    and parts[4] == "secrets"
                ):
                    secret = api.secrets.get((parts[3], parts[5]))
                    if secret is not None:
                        return self._send(200, secret)
                return self._send(
                    404,
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "status": "Failure",
                        "reason": "NotFound",
                        "code": 404,
                    },
                )

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def apply(self, objects: list[dict], namespace: str) -> None:
        """Store the Secrets of a render, as an install would create them."""
        for obj in find(objects, "Secret"):
            stored = json.loads(json.dumps(obj))
            stored["metadata"]["namespace"] = namespace
            self.secrets[(namespace, obj["metadata"]["name"])] = stored

    def kubeconfig(self) -> str:
        return yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "fake", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}
                ],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
                "current-context": "fake",
                "users": [{"name": "fake", "user": {"token": "fake"}}],
            }
        )

    @contextmanager
    def running(self) -> Iterator[helm_python.Config]:
        self._thread.start()
        try:
            with helm_python.Config(kubeconfig_content=self.kubeconfig()) as config:
                yield config
        finally:
            self._server.shutdown()
            self._server.server_close()


def check_service_monitor(
    monitor: dict, services: list[dict], secret_name: str
) -> tuple[dict, dict]:
    """The structure of a chart's ServiceMonitor, checked by hand (kubernetes-validate has
    no schema for the Prometheus Operator's CRD); returns (its one endpoint, the Service
    it selects).

    It must select exactly one of ``services`` (by labels, as the operator does), name a
    port of that Service, and take a Bearer token from ``secret_name``.
    """
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["kind"] == "ServiceMonitor"
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(monitor["spec"]) == {"selector", "endpoints"}
    selector = monitor["spec"]["selector"]
    assert set(selector) == {"matchLabels"} and selector["matchLabels"]
    selected = [
        s for s in services if selector["matchLabels"].items() <= s["metadata"]["labels"].items()
    ]
    assert len(selected) == 1, [s["metadata"]["name"] for s in selected]
    [endpoint] = monitor["spec"]["endpoints"]
    assert set(endpoint) <= {"port", "path", "scheme", "interval", "authorization"}
    assert endpoint["port"] in {p["name"] for p in selected[0]["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert endpoint["scheme"] in ("http", "https")
    assert re.fullmatch(r"([0-9]+(ms|s|m|h))+", endpoint["interval"])
    assert endpoint["authorization"]["type"] == "Bearer"
    assert endpoint["authorization"]["credentials"]["name"] == secret_name
    assert set(endpoint["authorization"]["credentials"]) == {"name", "key"}
    return endpoint, selected[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(url: str, token: str | None = None, scheme: str = "Bearer") -> int:
    """The status of a GET, with ``Authorization: <scheme> <token>`` when a token is given."""
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"{scheme} {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def wait_for_ping(process: subprocess.Popen, url: str, timeout: float = 60) -> None:
    """Wait until ``GET <url>/ping`` answers 200; fail with the output if the process ends."""
    deadline = time.monotonic() + timeout
    while True:
        assert process.poll() is None, process.communicate()[0]
        try:
            if http_status(url + "/ping") == 200:
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"{url} did not come up"
        time.sleep(0.2)
