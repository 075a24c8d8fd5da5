"""Making a started server reachable: the tunnel daemon's forward and the proxy's target.

For a ``direct`` Outpost the server's address is the proxy's target. Otherwise the tunnel
daemon gets a forward ``<outpost>.<service name>`` through the Outpost's SSH endpoint (or
the ``ssh_custom_forward`` hook makes one), and a Service backend (or ``ssh_custom_svc``)
turns the forward into the proxy's target. ``setup_tunnel`` is the setuptunnel endpoint's
action: it completes a delayed start or re-points the forward of a running server;
``ensure_forward`` puts a forward back that the daemon lost (same local port, so the proxy's
route stays).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from urllib.parse import urlparse

from jupyterhub.utils import exponential_backoff
from traitlets import Any as AnyTrait
from traitlets import Callable, Dict, Float, HasTraits, Unicode, Union, default, validate

from .addresses import ServiceAddress
from .hooks import resolve_hook
from .outposts import Outpost
from .services import SERVICE_BACKENDS, KubernetesServiceBackend, NoServiceBackend, hub_namespace
from .spawn_error import OutpostSpawnError


class TunnelSetupMixin(HasTraits):
    """OutpostSpawner's tunnel step: forwards, Services, setuptunnel."""

    tunnel_api_url = Unicode(
        "http://127.0.0.1:8765",
        help="""URL of the tunnel daemon's API (``jupyterhub-outpost tunnels``).""",
    ).tag(config=True)

    tunnel_api_token = Unicode(
        help="""Token for the tunnel daemon's API. Default: $OUTPOST_TUNNEL_API_TOKEN.""",
    ).tag(config=True)

    @default("tunnel_api_token")
    def _default_tunnel_api_token(self):
        return os.environ.get("OUTPOST_TUNNEL_API_TOKEN", "")

    tunnel_forward_host = Unicode(
        "",
        help="""Host at which the proxy reaches the tunnel daemon's forwards (service backend
        ``none``). Empty: the forward's own listen address, or the host of ``tunnel_api_url``
        when the daemon listens on 0.0.0.0.""",
    ).tag(config=True)

    tunnel_up_timeout = Float(
        30,
        help="""Seconds to wait for a new forward to report ``up`` before the start fails.""",
    ).tag(config=True)

    service_backend = Unicode(
        "none",
        help="""Where the proxy points for tunnelled servers: ``none`` (the tunnel daemon's local
        port) or ``kubernetes`` (one Service per server in the hub's namespace).""",
    ).tag(config=True)

    @validate("service_backend")
    def _validate_backend(self, proposal):
        if proposal.value not in SERVICE_BACKENDS:
            raise ValueError(f"service_backend must be one of {SERVICE_BACKENDS}")
        return proposal.value

    kubernetes_namespace = Unicode(
        "",
        help="""Namespace for the per-server Services (empty: the hub's own namespace).""",
    ).tag(config=True)

    kubernetes_service_selector = Dict(
        {"app": "jupyterhub", "component": "hub"},
        help="""Pod selector of the per-server Services: the pod running the tunnel daemon. The
        default selects the zero-to-jupyterhub hub pod; with external tunneling select the
        tunnel pod instead, e.g. ``{"app.kubernetes.io/component": "outpost-tunnels"}``.""",
    ).tag(config=True)

    kubernetes_service_prefix = Unicode(
        "outpost",
        help="""Prefix of the per-server Service names.""",
    ).tag(config=True)

    kubernetes_service_labels = Dict(
        help="""Extra labels on every per-server Service.""",
    ).tag(config=True)

    # hooks are compatible with jupyterhub-outpostspawner: same names, same arguments; a
    # value, a function or a coroutine
    ssh_node = Union(
        [Unicode(), Callable()],
        default_value="",
        allow_none=True,
        help="""SSH host for the forward, overriding ``outposts[name]["ssh"]["host"]``.
        ``ssh_node(spawner, port_forward_info)``; may be a coroutine.""",
    ).tag(config=True)

    ssh_custom_forward = AnyTrait(
        None,
        allow_none=True,
        help="""Replace the tunnel daemon: ``ssh_custom_forward(spawner, port_forward_info)``
        creates the forward and returns ``{"local_host": ..., "local_port": ...}``. May be a coroutine.""",
    ).tag(config=True)

    ssh_custom_forward_remove = AnyTrait(
        None,
        allow_none=True,
        help="""Remove a forward made by ``ssh_custom_forward``:
        ``ssh_custom_forward_remove(spawner, port_forward_info)``. May be a coroutine.""",
    ).tag(config=True)

    ssh_custom_svc = AnyTrait(
        None,
        allow_none=True,
        help="""Replace the Service backend: ``ssh_custom_svc(spawner, port_forward_info)`` returns
        ``(host, port)`` or a URL for the proxy. May be a coroutine.""",
    ).tag(config=True)

    ssh_custom_svc_remove = AnyTrait(
        None,
        allow_none=True,
        help="""Remove what ``ssh_custom_svc`` made: ``ssh_custom_svc_remove(spawner,
        port_forward_info)``. May be a coroutine.""",
    ).tag(config=True)

    _tunnel_clients: dict = {}
    _forward_tables: dict = {}  # client -> (fetched at, future of the daemon's forward list)
    _backends: dict = {}

    def get_tunnel_client(self):
        from .tunnel_client import TunnelClient

        key = (self.tunnel_api_url, self.tunnel_api_token)
        client = TunnelSetupMixin._tunnel_clients.get(key)
        if client is None:
            client = TunnelClient(self.tunnel_api_url, self.tunnel_api_token)
            TunnelSetupMixin._tunnel_clients[key] = client
        return client

    def get_service_backend(self):
        key = (
            self.service_backend,
            self.kubernetes_namespace,
            tuple(sorted(self.kubernetes_service_selector.items())),
            self.kubernetes_service_prefix,
        )
        backend = TunnelSetupMixin._backends.get(key)
        if backend is None:
            if self.service_backend == "kubernetes":
                backend = KubernetesServiceBackend(
                    namespace=self.kubernetes_namespace or hub_namespace(),
                    selector=self.kubernetes_service_selector,
                    name_prefix=self.kubernetes_service_prefix,
                    extra_labels=self.kubernetes_service_labels,
                )
            else:
                backend = NoServiceBackend()
            TunnelSetupMixin._backends[key] = backend
        return backend

    @property
    def forward_key(self) -> str:
        return f"{self.outpost_name}.{self.service_name}"

    def port_forward_info(self) -> dict:
        """What the ssh_* hooks receive: the forward this server needs."""
        outpost = self.get_outposts().get(self.outpost_name)
        info = {
            "outpost": self.outpost_name,
            "service_name": self.service_name,
            "key": self.forward_key,
            "start_id": self.start_id,
            "ssh": outpost.ssh.as_dict() if outpost and outpost.ssh else None,
        }
        if self.service_address:
            info["target_host"] = self.service_address.host
            info["target_port"] = self.service_address.port
        if self.forward:
            info["local_host"] = self.forward.get("local_host")
            info["local_port"] = self.forward.get("local_port")
        return info

    async def connect(self, outpost: Outpost) -> str:
        """Make the server reachable; returns the proxy's target URL."""
        address = self.service_address
        if outpost.direct:
            return address.url()
        scheme = "https" if self.internal_ssl else address.scheme
        await self.ensure_forward(outpost, create=True)
        forward_host = self.forward["local_host"]
        port = self.forward["local_port"]
        if self.ssh_custom_svc is not None:
            res = await resolve_hook(self.ssh_custom_svc, self, self.port_forward_info())
            self.k8s_service = {"custom": True}
            if isinstance(res, str):
                self.k8s_service["url"] = res
                return res
            host, port = res
        else:
            host, port = await self.get_service_backend().create(
                service_name=self.service_name,
                forward_host=forward_host,
                forward_port=port,
                labels={
                    "hub.jupyter.org/username": _label(self.user.name),
                    "hub.jupyter.org/servername": _label(self.name or "_default"),
                    "outpost.jupyter.org/outpost": _label(self.outpost_name),
                },
            )
            self.k8s_service = {"backend": self.service_backend, "host": host, "port": port}
        return ServiceAddress(host, int(port), scheme).url()

    def _forward_host(self, local_host: str) -> str:
        if self.tunnel_forward_host:
            return self.tunnel_forward_host
        if local_host in ("0.0.0.0", "::", ""):  # noqa: S104 - comparing, not binding
            return urlparse(self.tunnel_api_url).hostname or "127.0.0.1"
        return local_host

    async def ensure_forward(self, outpost: Outpost, *, create: bool = False) -> None:
        """Create the forward, or put it back when the daemon does not have it."""
        info = self.port_forward_info()
        if self.ssh_custom_forward is not None:
            if create or not self.forward:
                res = await resolve_hook(self.ssh_custom_forward, self, info) or {}
                self.forward = {
                    "key": self.forward_key,
                    "local_host": res.get("local_host", "127.0.0.1"),
                    "local_port": int(res["local_port"]),
                    "custom": True,
                }
            return
        client = self.get_tunnel_client()
        ssh = outpost.ssh.as_dict()
        node = await resolve_hook(self.ssh_node, self, info) if self.ssh_node else ""
        if node:
            ssh["host"] = node
        if not create and self.forward:
            existing = (await self._forward_table(client)).get(self.forward_key)
            if (
                existing
                and existing.get("target_host") == self.service_address.host
                and int(existing.get("target_port", 0)) == self.service_address.port
            ):
                return
            self.log.warning(
                "Forward %s missing in the tunnel daemon; putting it back", self.forward_key
            )
        local_port = self.forward["local_port"] if self.forward else None
        forward = await client.put_forward(
            self.forward_key,
            ssh=ssh,
            target_host=self.service_address.host,
            target_port=self.service_address.port,
            local_port=local_port,
        )
        self.forward = {
            "key": self.forward_key,
            "local_host": self._forward_host(forward.get("local_host", "")),
            "local_port": int(forward["local_port"]),
        }
        if create:
            await self._wait_forward_up(client, forward)

    async def _forward_table(self, client, max_age: float = 2.0) -> dict:
        """The daemon's forwards by key, shared by every poll within ``max_age`` seconds (at
        hub start-up JupyterHub polls every server at once: one request serves them all)."""
        entry = TunnelSetupMixin._forward_tables.get(client)
        now = time.monotonic()
        if entry is None or now - entry[0] > max_age:
            entry = (now, asyncio.ensure_future(client.list_forwards()))
            TunnelSetupMixin._forward_tables[client] = entry
        try:
            forwards = await asyncio.shield(entry[1])
        except Exception:
            if TunnelSetupMixin._forward_tables.get(client) is entry:
                TunnelSetupMixin._forward_tables.pop(client, None)
            raise
        return {f.get("key"): f for f in forwards}

    async def _wait_forward_up(self, client, forward: dict) -> None:
        """Until the forward is up. An error that waiting cannot fix (a wrong host key, a
        refused login) fails the start at once; a passing one (the SSH endpoint restarting,
        its LoadBalancer not routed yet) is waited out for ``tunnel_up_timeout``."""
        state = {"forward": forward, "error": None}

        def failed(reason: str) -> OutpostSpawnError:
            return OutpostSpawnError(
                f"The tunnel to {self.get_outpost().label} failed: {reason}", reason="tunnel"
            )

        async def is_up():
            f = state["forward"]
            if f.get("state") == "up":
                return True
            if f.get("state") == "error":
                state["error"] = f.get("error") or "unknown error"
                if f.get("permanent", True):
                    raise failed(state["error"])
            state["forward"] = {x.get("key"): x for x in await client.list_forwards()}.get(
                self.forward_key, {}
            )
            return state["forward"].get("state") == "up"

        try:
            await exponential_backoff(
                is_up,
                f"tunnel {self.forward_key} not up",
                start_wait=0.05,
                max_wait=1,
                timeout=self.tunnel_up_timeout,
            )
        except TimeoutError:
            if state["error"]:
                raise failed(
                    f"{state['error']} (still after {self.tunnel_up_timeout:.0f} s)"
                ) from None
            raise OutpostSpawnError(
                f"The tunnel to {self.get_outpost().label} did not come up in time.",
                reason="tunnel",
            ) from None

    async def setup_tunnel(self, address: ServiceAddress) -> str:
        """The setuptunnel endpoint's action: complete a delayed start, or re-point the
        forward of a running server (e.g. after the Outpost restarted). Returns what it did."""
        if self._setuptunnel is not None and not self._setuptunnel.done():
            self._setuptunnel.set_result(address)
            return "started"
        if not self.start_id or self.service_address is None:
            raise ValueError("no server is starting or running here")
        outpost = self.get_outpost()
        if outpost.direct:
            raise ValueError(f"{outpost.label} is direct; its servers need no tunnel")
        if address != self.service_address:
            if self.address_source != "setuptunnel":
                # the Outpost told us where this server is; only the server's own report
                # (delayed tunneling) may move it
                raise ValueError("this server's address was set by its Outpost and cannot be moved")
            self.log.info("%s moved to %s; re-pointing its forward", self._log_name, address)
        self.service_address = address
        await self.ensure_forward(outpost, create=False)
        return "updated"


def _label(value: str) -> str:
    """A Kubernetes label value (<= 63 chars of [A-Za-z0-9._-])."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", value)[:63].strip("._-")
    return safe or "x"
