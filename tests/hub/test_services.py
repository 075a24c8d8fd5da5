"""Service backends: the pure manifest builder and the kubernetes backend's API exchange.

There is no Kubernetes API on these machines. The kubernetes backend is therefore tested
(1) through the manifests it builds and (2) against a *recorded* Kubernetes API exchange
(create, conflict + replace, delete, delete of a missing Service) that a small local
HTTP server replays; it is a stand-in for a real API server, not one. The e2e kind tests
exercise the real thing where Docker exists.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket

import pytest
from jupyterhub_outpost.hub.services import (
    KubernetesServiceBackend,
    NoServiceBackend,
    kubernetes_service_name,
    make_service,
)
from tornado import web
from tornado.httpserver import HTTPServer


def test_make_service_manifest_selects_tunnel_pod_and_maps_port():
    manifest = make_service(
        name="outpost-jh1-lab",
        namespace="jhub",
        port=40001,
        target_port=40001,
        selector={"app": "jupyterhub", "component": "hub"},
        labels={"hub.jupyter.org/username": "alice"},
    )
    assert manifest["apiVersion"] == "v1" and manifest["kind"] == "Service"
    assert manifest["metadata"]["namespace"] == "jhub"
    assert manifest["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "jupyterhub-outpost"
    assert manifest["metadata"]["labels"]["hub.jupyter.org/username"] == "alice"
    assert manifest["spec"]["selector"] == {"app": "jupyterhub", "component": "hub"}
    assert manifest["spec"]["ports"] == [
        {"name": "http", "protocol": "TCP", "port": 40001, "targetPort": 40001}
    ]
    assert manifest["spec"]["type"] == "ClusterIP"
    # reachable while the hub pod (whose sidecar holds the forward) is not Ready yet
    assert manifest["spec"]["publishNotReadyAddresses"] is True


def test_make_service_validates_with_kubernetes_schema():
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    manifest = make_service(
        name="outpost-jh1", namespace="jhub", port=1, target_port=1, selector={"a": "b"}
    )
    kubernetes_validate.validate(manifest, "1.30", strict=True)


def test_make_service_refuses_bad_name_or_empty_selector():
    with pytest.raises(ValueError):
        make_service(name="Bad_Name", namespace="n", port=1, target_port=1, selector={"a": "b"})
    with pytest.raises(ValueError):
        make_service(name="ok", namespace="n", port=1, target_port=1, selector={})


@pytest.mark.parametrize(
    "service_name", ["jh1", "jh1-lab", "jh1-Lab_x.y", "jh123-" + "x" * 80, "jh1-ü"]
)
def test_kubernetes_service_names_are_dns1035_and_distinct(service_name):
    name = kubernetes_service_name("outpost", service_name)
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 63
    assert kubernetes_service_name("outpost", "jh1-lab") != kubernetes_service_name(
        "outpost", "jh1-Lab"
    )


async def test_none_backend_targets_the_forward_itself():
    assert await NoServiceBackend().create(
        service_name="jh1", forward_host="127.0.0.1", forward_port=4000, labels={}
    ) == ("127.0.0.1", 4000)


class RecordedKubernetesAPI:
    """Replays the answers a Kubernetes API server gave to these calls (v1 Services)."""

    def __init__(self):
        self.calls: list[tuple[str, str, dict | None]] = []
        self.services: dict[str, dict] = {}
        self.cluster_ip: str | None = None  # the address a created Service gets, if any

    def app(self):
        api = self

        class Services(web.RequestHandler):
            def post(self, namespace):
                body = json.loads(self.request.body)
                api.calls.append(("POST", self.request.path, body))
                name = body["metadata"]["name"]
                if name in api.services:
                    self.set_status(409)
                    self.finish(
                        {
                            "kind": "Status",
                            "apiVersion": "v1",
                            "status": "Failure",
                            "message": f'services "{name}" already exists',
                            "reason": "AlreadyExists",
                            "code": 409,
                        }
                    )
                    return
                body["metadata"].update({"resourceVersion": "101", "uid": "u-1"})
                if api.cluster_ip:
                    body["spec"]["clusterIP"] = api.cluster_ip
                api.services[name] = body
                self.set_status(201)
                self.finish(body)

        class Service(web.RequestHandler):
            def get(self, namespace, name):
                api.calls.append(("GET", self.request.path, None))
                if name not in api.services:
                    self.set_status(404)
                    self.finish(
                        {"kind": "Status", "code": 404, "reason": "NotFound", "status": "Failure"}
                    )
                    return
                self.finish(api.services[name])

            def put(self, namespace, name):
                body = json.loads(self.request.body)
                api.calls.append(("PUT", self.request.path, body))
                assert (
                    body["metadata"]["resourceVersion"]
                    == api.services[name]["metadata"]["resourceVersion"]
                )
                body["metadata"]["resourceVersion"] = "102"
                api.services[name] = body
                self.finish(body)

            def delete(self, namespace, name):
                api.calls.append(("DELETE", self.request.path, None))
                if api.services.pop(name, None) is None:
                    self.set_status(404)
                    self.finish(
                        {
                            "kind": "Status",
                            "code": 404,
                            "reason": "NotFound",
                            "status": "Failure",
                            "message": f'services "{name}" not found',
                        }
                    )
                    return
                self.finish({"kind": "Status", "apiVersion": "v1", "status": "Success"})

        return web.Application(
            [
                (r"/api/v1/namespaces/([^/]+)/services", Services),
                (r"/api/v1/namespaces/([^/]+)/services/([^/]+)", Service),
            ]
        )


@pytest.fixture
async def recorded_api():
    api = RecordedKubernetesAPI()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    server = HTTPServer(api.app())
    server.add_sockets([sock])
    api.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    yield api
    server.stop()


async def test_kubernetes_backend_creates_replaces_and_deletes_service(recorded_api):
    """Stand-in for the Kubernetes API (none here): a recorded exchange served locally."""
    from kubernetes_asyncio import client

    configuration = client.Configuration(host=recorded_api.url)
    api_client = client.ApiClient(configuration)
    try:
        backend = KubernetesServiceBackend(
            namespace="jhub", selector={"component": "hub"}, api_client=api_client
        )
        host, port = await backend.create(
            service_name="jh1-lab",
            forward_host="127.0.0.1",
            forward_port=40001,
            labels={"hub.jupyter.org/username": "alice"},
        )
        assert (host, port) == ("outpost-jh1-lab.jhub.svc", 40001)
        method, path, body = recorded_api.calls[0]
        assert (method, path) == ("POST", "/api/v1/namespaces/jhub/services")
        assert body["spec"]["ports"][0]["targetPort"] == 40001
        assert body["spec"]["selector"] == {"component": "hub"}

        # a Service left from an earlier start: replaced with the new port
        await backend.create(
            service_name="jh1-lab", forward_host="127.0.0.1", forward_port=40002, labels={}
        )
        assert [c[0] for c in recorded_api.calls[1:]] == ["POST", "GET", "PUT"]
        assert recorded_api.services["outpost-jh1-lab"]["spec"]["ports"][0]["port"] == 40002

        await backend.delete(service_name="jh1-lab")
        assert recorded_api.services == {}
        await backend.delete(service_name="jh1-lab")  # already gone: not an error
        assert [c[0] for c in recorded_api.calls[-2:]] == ["DELETE", "DELETE"]
    finally:
        await api_client.close()


async def test_spawner_with_kubernetes_backend_creates_service_on_start_and_deletes_on_stop(
    recorded_api, make_spawner, fake_outpost, fake_tunnels, monkeypatch
):
    """Stand-in for the Kubernetes API (none here): the recorded exchange above."""
    from jupyterhub_outpost.hub.spawner import OutpostSpawner
    from kubernetes_asyncio import client

    api_client = client.ApiClient(client.Configuration(host=recorded_api.url))
    backend = KubernetesServiceBackend(
        namespace="jhub", selector={"component": "hub"}, api_client=api_client
    )
    monkeypatch.setattr(OutpostSpawner, "get_service_backend", lambda self: backend)
    try:
        spawner = make_spawner("lab", service_backend="kubernetes")
        url = await spawner.start()
        (name,) = recorded_api.services
        port = spawner.forward["local_port"]
        assert url == f"http://{name}.jhub.svc:{port}"
        labels = recorded_api.services[name]["metadata"]["labels"]
        assert labels["hub.jupyter.org/username"] == "alice"
        assert labels["hub.jupyter.org/servername"] == "lab"
        assert spawner.get_state()["outpost_spawner"]["k8s_service"]["host"] == f"{name}.jhub.svc"
        await spawner.stop()
        assert recorded_api.services == {}
        assert fake_tunnels.forwards == {}
    finally:
        await api_client.close()


async def test_kubernetes_backend_returns_once_the_new_service_address_accepts_connections(
    recorded_api,
):
    """kube-proxy routes a new ClusterIP a moment after the Service exists: a hub check
    sent before then hung for JupyterHub's whole http_timeout on kind. create() returns only
    once the address accepts a connection (here 127.0.0.1 as the ClusterIP: nothing
    listens on the port until the test opens it)."""
    from kubernetes_asyncio import client

    recorded_api.cluster_ip = "127.0.0.1"
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    api_client = client.ApiClient(client.Configuration(host=recorded_api.url))
    accepted = asyncio.Event()
    try:
        backend = KubernetesServiceBackend(
            namespace="jhub", selector={"component": "hub"}, api_client=api_client
        )
        create = asyncio.ensure_future(
            backend.create(
                service_name="jh1-lab", forward_host="127.0.0.1", forward_port=port, labels={}
            )
        )
        while not recorded_api.calls:  # the Service is made; its address refuses
            await asyncio.wait({create}, timeout=0.05)
        assert not create.done()
        probe.close()
        server = await asyncio.start_server(
            lambda r, w: (accepted.set(), w.close()), "127.0.0.1", port
        )
        async with server:
            assert await asyncio.wait_for(create, 10) == ("outpost-jh1-lab.jhub.svc", port)
        assert accepted.is_set()
    finally:
        await api_client.close()
