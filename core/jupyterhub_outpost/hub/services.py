"""Where the proxy points for a tunnelled server: the Service backends.

A backend gets the tunnel daemon's forward of a server (``local_host:local_port``) and
returns the ``(host, port)`` that JupyterHub's proxy should target:

- ``none``: the proxy targets the forward directly (hub, proxy and tunnel daemon share
  a network, e.g. one host or one pod).
- ``kubernetes``: one Service per server in the hub's namespace, selecting the pod that
  runs the tunnel daemon (the hub pod by default, or a separate tunnel pod with external
  tunneling); the proxy targets ``<service>.<namespace>.svc:<port>``.

:func:`make_service` is the pure manifest builder (dicts in, manifest out).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Any

log = logging.getLogger("jupyterhub_outpost.hub.services")

SERVICE_BACKENDS = ("none", "kubernetes")
_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
_DNS1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")  # used with fullmatch


def kubernetes_service_name(prefix: str, service_name: str) -> str:
    """A DNS-1035 Service name (<= 63 chars) for a server's service name.

    Lower-cased; characters outside ``[a-z0-9-]`` become ``-``; when that changed
    anything, or the result is too long, a short hash of the original keeps names unique.
    """
    raw = f"{prefix}-{service_name}" if prefix else service_name
    name = re.sub(r"[^a-z0-9-]", "-", raw.lower())
    if name != raw or len(name) > 63 or not _DNS1035.fullmatch(name):
        digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
        name = name[: 63 - 9].strip("-")
        if not name or not name[0].isalpha():
            name = ("s" + name)[: 63 - 9]
        name = f"{name.rstrip('-')}-{digest}"
    return name


def make_service(
    *,
    name: str,
    namespace: str,
    port: int,
    target_port: int,
    selector: dict[str, str],
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The manifest of the ClusterIP Service for one server's forward."""
    if not _DNS1035.fullmatch(name) or len(name) > 63:
        raise ValueError(f"invalid Kubernetes Service name {name!r}")
    if not selector:
        raise ValueError("a Service for a tunnel needs a pod selector (hub pod or tunnel pod)")
    all_labels = {
        "app.kubernetes.io/managed-by": "jupyterhub-outpost",
        "app.kubernetes.io/component": "outpost-forward",
    }
    all_labels.update(labels or {})
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": all_labels,
            "annotations": dict(annotations or {}),
        },
        "spec": {
            "type": "ClusterIP",
            "selector": dict(selector),
            # The forward listens in the tunnel daemon. As the hub pod's sidecar it is ready
            # before the hub is, and a starting hub checks its running servers through these
            # Services before its pod is Ready: without this they have no endpoint until then
            # (found on kind: the hub's start-up check of a server took 15 s, its server showed
            # "pending check" and could not be stopped meanwhile).
            "publishNotReadyAddresses": True,
            "ports": [
                {
                    "name": "http",
                    "protocol": "TCP",
                    "port": int(port),
                    "targetPort": int(target_port),
                }
            ],
        },
    }


class ServiceBackend:
    """Base: turn a forward into the proxy's target, and clean it up on stop."""

    name = "base"

    async def create(
        self, *, service_name: str, forward_host: str, forward_port: int, labels: dict[str, str]
    ) -> tuple[str, int]:
        raise NotImplementedError

    async def delete(self, *, service_name: str) -> None:
        raise NotImplementedError


class NoServiceBackend(ServiceBackend):
    """``none``: the proxy targets the tunnel daemon's local port itself."""

    name = "none"

    async def create(self, *, service_name, forward_host, forward_port, labels):
        return forward_host, forward_port

    async def delete(self, *, service_name):
        return None


def hub_namespace() -> str:
    """The hub's namespace: $POD_NAMESPACE, else the service account's namespace file."""
    ns = os.environ.get("POD_NAMESPACE")
    if ns:
        return ns
    try:
        return Path(_NAMESPACE_FILE).read_text().strip()
    except OSError:
        return "default"


class KubernetesServiceBackend(ServiceBackend):
    """``kubernetes``: one Service per server, created and deleted with kubernetes_asyncio.

    ``api_client`` may be given (tests point it at a recorded exchange); otherwise one is
    built from the in-cluster configuration (or ~/.kube/config) on first use.
    """

    name = "kubernetes"

    def __init__(
        self,
        *,
        namespace: str,
        selector: dict[str, str],
        name_prefix: str = "outpost",
        extra_labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
        api_client: Any = None,
        routed_timeout: float = 30,
    ):
        self.namespace = namespace
        self.routed_timeout = routed_timeout  # seconds create() waits for the new address
        self.selector = dict(selector)
        self.name_prefix = name_prefix
        self.extra_labels = dict(extra_labels or {})
        self.annotations = dict(annotations or {})
        self._api_client = api_client
        self._lock = asyncio.Lock()

    async def _core(self):
        from kubernetes_asyncio import client, config

        async with self._lock:
            if self._api_client is None:
                try:
                    config.load_incluster_config()
                except config.ConfigException:
                    await config.load_kube_config()
                self._api_client = client.ApiClient()
        return client.CoreV1Api(self._api_client)

    def service_name(self, service_name: str) -> str:
        return kubernetes_service_name(self.name_prefix, service_name)

    async def create(self, *, service_name, forward_host, forward_port, labels):
        from kubernetes_asyncio.client.exceptions import ApiException

        name = self.service_name(service_name)
        manifest = make_service(
            name=name,
            namespace=self.namespace,
            port=forward_port,
            target_port=forward_port,
            selector=self.selector,
            labels={**self.extra_labels, **labels},
            annotations=self.annotations,
        )
        core = await self._core()
        try:
            made = await core.create_namespaced_service(namespace=self.namespace, body=manifest)
        except ApiException as e:
            if e.status != 409:
                raise RuntimeError(
                    f"Creating Service {self.namespace}/{name} failed: HTTP {e.status} {e.reason}"
                ) from None
            # left over from an earlier start of the same server: point it at the new port
            made = await core.replace_namespaced_service(
                name=name,
                namespace=self.namespace,
                body=await self._with_version(core, name, manifest),
            )
        cluster_ip = getattr(getattr(made, "spec", None), "cluster_ip", None)
        await self._wait_routed(name, cluster_ip, forward_port)
        return f"{name}.{self.namespace}.svc", forward_port

    async def _wait_routed(self, name: str, cluster_ip: str | None, port: int) -> None:
        """Return once the new Service's address accepts a connection (or after
        ``routed_timeout``: JupyterHub's own check follows and reports).

        kube-proxy programs a new ClusterIP a moment after the API server accepted the
        Service. A connection the hub opened before that (its check of the server follows
        at once) is not refused but lost: its SYN goes to no endpoint, its conntrack entry
        keeps the retries there, and the one attempt hangs for JupyterHub's whole
        http_timeout (found on kind: "Connection timeout", the start failed). Short
        attempts here, each a new connection, end as soon as the rules exist.
        """
        if not cluster_ip or cluster_ip == "None" or self.routed_timeout <= 0:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.routed_timeout
        delay = 0.05
        while True:
            try:
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection(cluster_ip, port), timeout=1
                )
                writer.close()
                return
            except (OSError, asyncio.TimeoutError):
                if loop.time() + delay > deadline:
                    log.warning(
                        "Service %s/%s (%s:%s) accepted no connection within %ss",
                        self.namespace,
                        name,
                        cluster_ip,
                        port,
                        self.routed_timeout,
                    )
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)

    async def _with_version(self, core, name, manifest):
        existing = await core.read_namespaced_service(name=name, namespace=self.namespace)
        manifest = dict(manifest)
        manifest["metadata"] = dict(
            manifest["metadata"], resourceVersion=existing.metadata.resource_version
        )
        return manifest

    async def delete(self, *, service_name):
        from kubernetes_asyncio.client.exceptions import ApiException

        name = self.service_name(service_name)
        core = await self._core()
        try:
            await core.delete_namespaced_service(name=name, namespace=self.namespace)
        except ApiException as e:
            if e.status != 404:
                raise RuntimeError(
                    f"Deleting Service {self.namespace}/{name} failed: HTTP {e.status} {e.reason}"
                ) from None
