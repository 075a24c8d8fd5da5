"""OutpostSpawner: start, poll and stop single-user servers through Outposts.

Registered as the ``outpost`` entry point of ``jupyterhub.spawners``, so
``c.JupyterHub.spawner_class = "outpost"`` selects it. One start:

1. ``user_options`` name the Outpost (``outpost``) and a ``flavor``; ``check_allowed``
   and the cached flavors may refuse the start (shown to the user).
2. POST /services to the Outpost with name, env, user_options (with ``start_id``),
   misc and, with internal_ssl, certs and trust bundles. While it runs, the Outpost
   relays its spawner's progress to the events endpoint; ``progress()`` yields them.
3. The answer is ``host:port`` (or ``""`` for delayed tunneling: wait for the
   setuptunnel POST). For a ``direct`` Outpost that address is the server's URL;
   otherwise the tunnel daemon gets a forward ``<outpost>.<service name>`` through the
   Outpost's SSH endpoint and a Service backend turns it into the proxy's target.
4. Anything failing after the POST undoes everything: forward, Service, remote server.

Hub restart: ``load_state`` brings back every field; ``poll`` asks the Outpost and puts
back the forward when the daemon lost it (same local port, so the proxy's route stays).
The start is written to the hub's database *before* the POST (``_record_start``), so a hub
killed during a start knows, when it comes back, which remote server it had asked for:
``poll`` then ends that interrupted start at the Outpost instead of leaving it orphaned.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
import uuid
from html import escape
from pathlib import Path
from urllib.parse import quote, urlparse

from jupyterhub.spawner import Spawner, SpawnException
from jupyterhub.utils import exponential_backoff
from sqlalchemy import inspect as sa_inspect
from traitlets import Any as AnyTrait
from traitlets import Bool, Callable, Dict, Float, Unicode, Union, default, validate

from .addresses import AddressError, ServiceAddress, parse_service_address
from .flavors import flavor_cache, flavor_is_full, sorted_flavors
from .hooks import resolve_hook
from .options_form import options_from_form, render_options_form
from .outposts import Outpost, OutpostAPI, OutpostConfigError, OutpostError, parse_outposts
from .services import SERVICE_BACKENDS, KubernetesServiceBackend, NoServiceBackend, hub_namespace

STATE_KEY = "outpost_spawner"
STATE_VERSION = 1
_SERVICE_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,63}$")
_EVENT_KEYS = {"progress", "message", "html_message", "failed"}
_MAX_EVENTS = 500


class OutpostSpawnError(SpawnException):
    """A failed start whose message is meant for the user.

    JupyterHub 6's progress stream shows ``exc.jupyterhub_message`` and falls back to
    ``str(exc)``, which for a plain SpawnException is "400 SpawnException(reason=...): <log
    message>"; this shows the message itself (and its HTML form) and logs the log message."""

    @property
    def jupyterhub_message(self) -> str:
        return self.message

    @property
    def jupyterhub_html_message(self) -> str | None:
        return self.message_html or None


def make_service_name(user_id: int, server_name: str) -> str:
    """The name of a server at the Outpost, ``[A-Za-z0-9._-]{1,63}``.

    ``jh<user id>`` for the default server, ``jh<user id>-<server name>`` for a named
    one. When the server name has other characters, or the result is too long, the
    name is cut and a hash of the original is appended, so two servers never share one.
    """
    base = f"jh{int(user_id)}"
    if not server_name:
        return base
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", server_name)
    name = f"{base}-{safe}"
    if safe != server_name or len(name) > 63:
        digest = hashlib.sha256(server_name.encode()).hexdigest()[:10]
        name = f"{base}-{safe[: 63 - len(base) - 12]}-{digest}"
    assert _SERVICE_NAME_RE.match(name), name
    return name


class OutpostSpawner(Spawner):
    """Spawn single-user servers on remote systems through JupyterHub Outposts."""

    # ------------------------------------------------------------------ configuration
    outposts = Dict(
        help="""The Outposts this hub may start servers on: name -> settings.

        Name: ``[A-Za-z0-9_-]{1,63}``. Settings::

            {"url": "https://outpost.example.org",   # the Outpost REST API
             "hub_name": "myhub",                    # this hub's user name at that Outpost
             "secret": "...",  # or "secret_file": "/path"   (HTTP Basic password)
             "ca_certs": None,                       # CA bundle to verify https (default: system)
             "ssh": {"host": "outpost.example.org", "port": 8022, "user": "myhub",
                     "host_key": "ssh-ed25519 AAAA..."},  # pinned host key of its SSH endpoint
             "direct": False,       # True: servers are reachable without a tunnel
             "display_name": "Remote cluster", "description": "",
             "hub_api_url": None,   # hub API URL as seen from that site (default: JUPYTERHUB_API_URL)
             "setuptunnel_targets": None}  # addresses setuptunnel may name, e.g. ["10.20.0.0/16:8000-9000"]

        See docs/hub.md.
        """,
    ).tag(config=True)

    default_outpost = Unicode(
        "",
        help="""Outpost used when a start request names none (empty: the first in ``outposts``).""",
    ).tag(config=True)

    tunnel_api_url = Unicode(
        "http://127.0.0.1:8765",
        help="""URL of the tunnel daemon's API (``jupyterhub-outpost tunnels``).""",
    ).tag(config=True)

    tunnel_api_token = Unicode(
        help="""Token for the tunnel daemon's API. Default: $OUTPOST_TUNNEL_API_TOKEN.""",
    ).tag(config=True)

    @default("tunnel_api_token")
    def _default_tunnel_api_token(self):
        import os

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

    start_request_timeout = Float(
        0,
        help="""Seconds to wait for the Outpost's answer to a start request (0: start_timeout).
        JupyterHub's own ``http_timeout`` (how long the started server may take to answer
        through the tunnel) is unchanged.""",
    ).tag(config=True)

    request_timeout = Float(
        30,
        help="""Seconds to wait for the Outpost's answer to status, stop and flavors requests.""",
    ).tag(config=True)

    request_failed_poll_keep_running = Bool(
        True,
        help="""When the Outpost does not answer a poll, report the server as running
        (it is most likely still there; the next poll asks again).""",
    ).tag(config=True)

    request_404_poll_keep_running = Bool(
        False,
        help="""When the Outpost answers a poll with 404 (it does not know the server),
        report the server as running instead of stopped.""",
    ).tag(config=True)

    stop_retry_timeout = Float(
        3600,
        help="""When the Outpost cannot be reached to stop a server, keep retrying in the
        background (exponential backoff) for this many seconds. 0: do not retry.""",
    ).tag(config=True)

    flavors_cache_ttl = Float(
        300,
        help="""Seconds a fetched flavor list stays valid; Outposts also push updates.""",
    ).tag(config=True)

    allow_html_events = Bool(
        False,
        help="""Show the ``html_message`` of progress events from Outposts as HTML. Off by default:
        a remote site could otherwise put markup into the hub's pages; the text is escaped.""",
    ).tag(config=True)

    # ------------------------------------------------------------------ hooks (compatible
    # with jupyterhub-outpostspawner: same names, same arguments; value, function or coroutine)
    start_async = Union(
        [Bool(), Callable()],
        default_value=False,
        help="""Ask the Outpost to start in the background (header ``execution-type: async``): the
        start request returns at once (202) and the spawner follows the start in GET /services.
        Use it when a start takes longer than a proxy between hub and Outpost keeps a request
        open. ``start_async(spawner)``; may be a coroutine.""",
    ).tag(config=True)

    request_url = Union(
        [Unicode(), Callable()],
        default_value="",
        help="""The Outpost's ``/services`` URL, overriding ``outposts[name]["url"] + "/services"``.
        ``request_url(spawner, user_options)``; may be a coroutine.""",
    ).tag(config=True)

    request_headers = Union(
        [Dict(), Callable()],
        default_value={},
        help="""Extra HTTP headers for every request to the Outpost (they may replace the
        Authorization header). ``request_headers(spawner, user_options)``; may be a coroutine.""",
    ).tag(config=True)

    custom_env = Union(
        [Dict(), Callable()],
        default_value={},
        help="""Extra environment variables sent with the start request.
        ``custom_env(spawner, user_options, jupyterhub_api_url)``; may be a coroutine.""",
    ).tag(config=True)

    custom_user_options = Union(
        [Dict(), Callable()],
        default_value={},
        help="""Extra user_options sent with the start request (merged over the user's).
        ``custom_user_options(spawner, user_options)``; may be a coroutine.""",
    ).tag(config=True)

    custom_misc = Union(
        [Dict(), Callable()],
        default_value={},
        help="""``misc`` of the start request: Spawner settings the Outpost applies to its spawner
        (if its ``allow_override`` permits). ``custom_misc(spawner, user_options)``; may be a coroutine.""",
    ).tag(config=True)

    check_allowed = AnyTrait(
        None,
        allow_none=True,
        help="""Called before a start; raise to refuse it (the message is shown to the user).
        ``check_allowed(spawner, user_options)``; may be a coroutine.""",
    ).tag(config=True)

    post_spawn_request_hook = AnyTrait(
        None,
        allow_none=True,
        help="""Called after the Outpost accepted a start. ``post_spawn_request_hook(spawner,
        resp_json)``; may be a coroutine.""",
    ).tag(config=True)

    failed_spawn_request_hook = AnyTrait(
        None,
        allow_none=True,
        help="""Called when a start request to the Outpost failed. ``failed_spawn_request_hook(
        spawner, exception)``; may be a coroutine.""",
    ).tag(config=True)

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

    # ------------------------------------------------------------------ runtime fields
    outpost_name = ""
    start_id = ""
    service_name = ""
    service_address: ServiceAddress | None = None
    address_source = "outpost"  # "outpost": from the start answer; "setuptunnel": delayed
    forward: dict | None = None  # {"key", "local_host", "local_port", "custom"}
    k8s_service: dict | None = None  # {"host", "port", "custom"}
    target_url = ""

    _tunnel_clients: dict = {}
    _forward_tables: dict = {}  # client -> (fetched at, future of the daemon's forward list)
    _retries: set = set()
    _backends: dict = {}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._events: list[dict] = []
        self._events_changed = asyncio.Event()
        self._setuptunnel: asyncio.Future | None = None
        self._outposts_cache: dict[str, Outpost] | None = None
        self._starting = False  # start() runs in this process (target_url not known yet)

    # ------------------------------------------------------------------ helpers
    def get_outposts(self) -> dict[str, Outpost]:
        if self._outposts_cache is None:
            self._outposts_cache = parse_outposts(self.outposts, on_error=self._config_error)
        return self._outposts_cache

    _reported_config_errors: set = set()

    def _config_error(self, message: str) -> None:
        # once per hub process, not once per spawner
        if message not in OutpostSpawner._reported_config_errors:
            OutpostSpawner._reported_config_errors.add(message)
            self.log.error(message)

    def _chosen_outpost_name(self, user_options: dict) -> str:
        name = user_options.get("outpost") or user_options.get("system") or self.default_outpost
        if isinstance(name, list) and name:
            name = name[0]
        if not name:
            name = next(iter(self.get_outposts()), "")
        return str(name)

    def get_outpost(self, name: str | None = None) -> Outpost:
        name = name or self.outpost_name
        outposts = self.get_outposts()
        if name not in outposts:
            raise OutpostSpawnError(
                f"Unknown system {name!r}. Choose one of: {', '.join(outposts) or '(none configured)'}",
                reason="outpost",
            )
        return outposts[name]

    async def get_api(self, outpost: Outpost, user_options: dict | None = None) -> OutpostAPI:
        user_options = self.user_options if user_options is None else user_options
        url = await resolve_hook(self.request_url, self, user_options) if self.request_url else ""
        headers = await resolve_hook(self.request_headers, self, user_options) or {}
        return OutpostAPI(
            outpost, timeout=self.request_timeout, extra_headers=headers, services_url=url or None
        )

    def get_tunnel_client(self):
        from .tunnel_client import TunnelClient

        key = (self.tunnel_api_url, self.tunnel_api_token)
        client = OutpostSpawner._tunnel_clients.get(key)
        if client is None:
            client = TunnelClient(self.tunnel_api_url, self.tunnel_api_token)
            OutpostSpawner._tunnel_clients[key] = client
        return client

    def get_service_backend(self):
        key = (
            self.service_backend,
            self.kubernetes_namespace,
            tuple(sorted(self.kubernetes_service_selector.items())),
            self.kubernetes_service_prefix,
        )
        backend = OutpostSpawner._backends.get(key)
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
            OutpostSpawner._backends[key] = backend
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

    # ------------------------------------------------------------------ events
    def add_event(self, event: dict) -> dict:
        """Store a progress event reported by the Outpost (via the events endpoint).

        The remote spawner's first event is JupyterHub's own "Server requested" (the Outpost
        drives it like a hub); this hub already showed that line, so it is dropped."""
        if event.get("message") == "Server requested" and event.get("progress") == 0:
            return {}
        clean = {k: event[k] for k in _EVENT_KEYS if k in event}
        if "progress" in clean:
            try:
                clean["progress"] = max(0, min(100, int(clean["progress"])))
            except (TypeError, ValueError):
                clean.pop("progress")
        for key in ("message", "html_message"):
            if key in clean:
                clean[key] = str(clean[key])[:4000]
        if "html_message" in clean and not self.allow_html_events:
            clean["html_message"] = escape(clean["html_message"])
        if "failed" in clean:
            clean["failed"] = bool(clean["failed"])
        if len(self._events) < _MAX_EVENTS:
            self._events.append(clean)
        changed, self._events_changed = self._events_changed, asyncio.Event()
        changed.set()
        return clean

    async def progress(self):
        """Yield the remote spawner's progress events as the Outpost relays them."""
        sent = 0
        while True:
            waiter = self._events_changed
            while sent < len(self._events):
                yield self._events[sent]
                sent += 1
            future = self._spawn_future
            if future is not None and future.done():
                return
            if future is None:
                await waiter.wait()
            else:
                wait_task = asyncio.ensure_future(waiter.wait())
                try:
                    await asyncio.wait([wait_task, future], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    wait_task.cancel()

    # ------------------------------------------------------------------ options form
    @default("options_form")
    def _default_options_form(self):
        return self._render_options_form

    async def _render_options_form(self, spawner=None) -> str:
        outposts = self.get_outposts()
        if not outposts:
            return ""
        apis = [await self.get_api(outpost, {}) for outpost in outposts.values()]
        results = await asyncio.gather(
            *(flavor_cache.get(api, ttl=self.flavors_cache_ttl) for api in apis)
        )
        return render_options_form(outposts, dict(zip(outposts, results, strict=True)))

    @default("apply_user_options")
    def _default_apply_user_options(self):
        # user_options are the Outpost's business (sent with the start request), not
        # settings of this spawner
        return lambda spawner, user_options: None

    @default("options_from_form")
    def _default_options_from_form(self):
        return lambda formdata, spawner=None: options_from_form(formdata)

    # ------------------------------------------------------------------ env and request body
    def hub_api_url_for(self, outpost: Outpost) -> str:
        if outpost.hub_api_url:
            return outpost.hub_api_url
        return super().get_env()["JUPYTERHUB_API_URL"].rstrip("/")

    def get_env(self) -> dict:
        env = super().get_env()
        # the remote spawner binds where it wants; our bind URL would be wrong there
        env.pop("JUPYTERHUB_SERVICE_URL", None)
        env["JUPYTERHUB_USER_ID"] = str(self.user.id)
        outpost = self.get_outposts().get(self.outpost_name)
        if outpost is None:
            return env
        api = self.hub_api_url_for(outpost)
        env["JUPYTERHUB_API_URL"] = api
        env["JUPYTERHUB_ACTIVITY_URL"] = f"{api}/users/{quote(self.user.name, safe='')}/activity"
        user_server = f"{quote(self.user.name, safe='')}/{quote(self.name or '_default', safe='')}"
        env["JUPYTERHUB_EVENTS_URL"] = f"{api}/outpost/events/{user_server}"
        env["JUPYTERHUB_SETUPTUNNEL_URL"] = f"{api}/outpost/setuptunnel/{user_server}"
        env["JUPYTERHUB_FLAVORS_UPDATE_URL"] = f"{api}/outpost/flavors/{outpost.name}"
        return env

    async def move_certs(self, paths):
        """Keep the hub-side paths; their contents travel in the start request."""
        return paths

    async def _read_certs(self) -> tuple[dict, dict]:
        def read():
            certs = {}
            for key in ("keyfile", "certfile", "cafile"):
                path = (self.cert_paths or {}).get(key)
                if path:
                    certs[key] = Path(path).read_text()
            bundles = {
                name: Path(path).read_text()
                for name, path in (self.internal_trust_bundles or {}).items()
            }
            return certs, bundles

        return await asyncio.to_thread(read)

    async def build_start_body(self, outpost: Outpost, user_options: dict) -> dict:
        env = self.get_env()
        extra_env = await resolve_hook(
            self.custom_env, self, user_options, self.hub_api_url_for(outpost)
        )
        env.update({str(k): str(v) for k, v in (extra_env or {}).items()})
        options = dict(user_options)
        options.update(await resolve_hook(self.custom_user_options, self, user_options) or {})
        options["outpost"] = outpost.name
        options["start_id"] = self.start_id
        misc = await resolve_hook(self.custom_misc, self, user_options) or {}
        body = {
            "name": self.service_name,
            "env": env,
            "user_options": options,
            "misc": dict(misc),
            "certs": {},
            "internal_trust_bundles": {},
        }
        if self.internal_ssl:
            body["certs"], body["internal_trust_bundles"] = await self._read_certs()
        return body

    # ------------------------------------------------------------------ start
    async def _choose_flavor(self, outpost: Outpost, user_options: dict) -> str | None:
        flavors = await flavor_cache.get(
            await self.get_api(outpost, user_options), ttl=self.flavors_cache_ttl
        )
        flavor = user_options.get("flavor")
        if isinstance(flavor, list):
            flavor = flavor[0] if flavor else None
        if flavor:
            known = flavors.get(flavor)
            if known is not None and flavor_is_full(known):
                raise OutpostSpawnError(
                    f"The flavor {known.get('display_name') or flavor!r} on {outpost.label} is full. "
                    "Choose another flavor or try again later.",
                    reason="flavor_full",
                    status_code=409,
                )
            return str(flavor)
        for name, spec in sorted_flavors(flavors):
            if not flavor_is_full(spec):
                return name
        if flavors:
            raise OutpostSpawnError(
                f"Every flavor on {outpost.label} is full. Try again later.",
                reason="flavor_full",
                status_code=409,
            )
        return None

    async def start(self):
        """POST the start to the Outpost; return the URL the proxy should target."""
        self._events = []
        user_options = dict(self.user_options or {})
        outpost = self.get_outpost(self._chosen_outpost_name(user_options))
        if self.check_allowed is not None:
            try:
                await resolve_hook(self.check_allowed, self, user_options)
            except SpawnException as e:
                raise OutpostSpawnError(
                    e.message or "This start is not allowed.",
                    reason=e.reason or "not_allowed",
                    log_message=e.log_message,
                    message_html=e.message_html,
                    status_code=e.status_code,
                ) from None
            except Exception as e:
                raise OutpostSpawnError(
                    str(e) or "This start is not allowed.", reason="not_allowed"
                ) from None
        flavor = await self._choose_flavor(outpost, user_options)
        if flavor:
            user_options["flavor"] = flavor
        self.outpost_name = outpost.name
        self.start_id = uuid.uuid4().hex[:16]
        self.service_name = make_service_name(self.user.id, self.name)
        self.service_address = None
        self.address_source = "outpost"
        self.forward = None
        self.k8s_service = None
        self.target_url = ""
        try:
            api = await self.get_api(outpost, user_options)
            body = await self.build_start_body(outpost, user_options)
        except Exception as e:
            self.log.exception("Preparing the start request of %s failed", self._log_name)
            self._forget()
            raise OutpostSpawnError(
                f"Preparing the start on {outpost.label} failed: {e}", reason="hook"
            ) from None
        try:
            self._record_start()
        except Exception as e:
            self.log.exception(
                "Recording the start of %s in the hub database failed", self._log_name
            )
            self._forget()
            raise OutpostSpawnError(
                f"The hub could not record the start on {outpost.label}: {e}", reason="hub"
            ) from None
        self._starting = True
        self._setuptunnel = asyncio.get_running_loop().create_future()
        try:
            try:
                asynchronous = bool(await resolve_hook(self.start_async, self))
                answer = await api.start(
                    body,
                    timeout=self.start_request_timeout or self.start_timeout,
                    asynchronous=asynchronous,
                )
                if answer.get("accepted"):
                    answer = await self._wait_async_start(api)
            except OutpostError as e:
                await self._run_failed_hook(e)
                raise OutpostSpawnError(
                    f"{outpost.label}: {e.message}",
                    reason="outpost",
                    log_message=f"Start of {self._log_name} on Outpost {outpost.name} failed: {e.message}",
                ) from None
            await resolve_hook(self.post_spawn_request_hook, self, answer)
            address = answer.get("service") or ""
            if address:
                try:
                    self.service_address = parse_service_address(address)
                except AddressError as e:
                    raise OutpostSpawnError(
                        f"{outpost.label} reported an invalid server address: {e}", reason="outpost"
                    ) from None
            else:
                self.log.info(
                    "%s: waiting for the server's address (delayed tunneling)", self._log_name
                )
                self.service_address = await self._setuptunnel
                self.address_source = "setuptunnel"
            self.target_url = await self.connect(outpost)
            return self.target_url
        except BaseException as e:
            # undo everything; shielded so that a cancelled start (start_timeout) still cleans up
            self.log.warning(
                "Start of %s failed (%s); cleaning up", self._log_name, type(e).__name__
            )
            await asyncio.shield(self._cleanup(api, outpost))
            self._forget()
            if isinstance(e, (SpawnException, asyncio.CancelledError)):
                raise
            raise OutpostSpawnError(
                f"Starting on {outpost.label} failed: {e}", reason="outpost"
            ) from e
        finally:
            self._starting = False
            if self._setuptunnel is not None and not self._setuptunnel.done():
                self._setuptunnel.cancel()

    def _record_start(self) -> None:
        """Commit this spawner's state (Outpost, service name, start_id; no target yet) to the
        hub's database before the start request leaves. JupyterHub itself saves the state only
        after ``start()`` returns; without this, a hub killed during a start would come back not
        knowing the server it had asked the Outpost for."""
        orm_spawner = self.orm_spawner
        if orm_spawner is None:  # a spawner built outside a hub (unit tests)
            return
        session = sa_inspect(orm_spawner).session
        if session is None:
            return
        orm_spawner.state = self.get_state()
        try:
            session.commit()
        except Exception:
            session.rollback()
            raise

    async def _end_interrupted_start(self, outpost: Outpost | None) -> int:
        """The state says a start was sent but never finished in this process: the hub was
        stopped or killed during it. Stop that server at the Outpost (retried in the background
        while the Outpost is unreachable) and report it not running."""
        self.log.warning(
            "The start of %s on Outpost %s was interrupted by a hub restart; stopping it there",
            self._log_name,
            self.outpost_name,
        )
        api = await self.get_api(outpost) if outpost is not None else None
        await self._cleanup(api, outpost)
        self._forget()
        return 1

    async def _wait_async_start(self, api: OutpostAPI) -> dict:
        """An asynchronous start was accepted (202): follow it in GET /services until it runs
        (its ``service`` is the answer) or fails (its ``error`` is the message)."""
        result: dict = {}

        async def finished():
            item = await api.find(self.service_name, self.start_id)
            if item is None:
                raise OutpostError("The Outpost no longer knows the server it was starting")
            status = item.get("status")
            if status == "running":
                result["service"] = item.get("service") or ""
                return True
            if status in ("failed", "stopped"):
                raise OutpostError(item.get("error") or f"The start ended ({status})")
            return False

        await exponential_backoff(
            finished,
            f"{self._log_name} to start on Outpost {api.outpost.name}",
            start_wait=0.2,
            max_wait=5,
            timeout=self.start_timeout,
        )
        return result

    async def _run_failed_hook(self, exc):
        try:
            await resolve_hook(self.failed_spawn_request_hook, self, exc)
        except Exception:
            self.log.exception("failed_spawn_request_hook raised for %s", self._log_name)

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
        entry = OutpostSpawner._forward_tables.get(client)
        now = time.monotonic()
        if entry is None or now - entry[0] > max_age:
            entry = (now, asyncio.ensure_future(client.list_forwards()))
            OutpostSpawner._forward_tables[client] = entry
        try:
            forwards = await asyncio.shield(entry[1])
        except Exception:
            if OutpostSpawner._forward_tables.get(client) is entry:
                OutpostSpawner._forward_tables.pop(client, None)
            raise
        return {f.get("key"): f for f in forwards}

    async def _wait_forward_up(self, client, forward: dict) -> None:
        state = {"forward": forward}

        async def is_up():
            f = state["forward"]
            if f.get("state") == "up":
                return True
            if f.get("state") == "error":
                raise OutpostSpawnError(
                    f"The tunnel to {self.get_outpost().label} failed: {f.get('error') or 'unknown error'}",
                    reason="tunnel",
                )
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

    # ------------------------------------------------------------------ poll / stop
    async def poll(self):
        if not self.start_id:
            return 0
        if self._spawn_pending or self._starting:
            return None
        outpost = self.get_outposts().get(self.outpost_name)
        if not self.target_url:
            return await self._end_interrupted_start(outpost)
        if outpost is None:
            self.log.error(
                "%s runs on Outpost %r, which is no longer configured",
                self._log_name,
                self.outpost_name,
            )
            return 0
        try:
            api = await self.get_api(outpost)
            status = await api.status(self.service_name, self.start_id)
        except OutpostError as e:
            if e.status == 404:
                if self.request_404_poll_keep_running:
                    return None
                self.log.info("Outpost %s does not know %s any more", outpost.name, self._log_name)
                await self._cleanup_local()
                return 0
            self.log.warning(
                "Polling %s on Outpost %s failed: %s", self._log_name, outpost.name, e.message
            )
            return None if self.request_failed_poll_keep_running else 0
        if status is not None:
            await self._cleanup_local()
            return int(status) if isinstance(status, int) else 0
        if not outpost.direct and self.service_address is not None:
            try:
                await self.ensure_forward(outpost)
            except Exception as e:
                self.log.warning("Could not check the forward of %s: %s", self._log_name, e)
        return None

    async def get_url(self):
        return self.target_url or await super().get_url()

    async def stop(self, now=False):
        if self._setuptunnel is not None and not self._setuptunnel.done():
            self._setuptunnel.cancel()
        if not self.start_id:
            return
        outpost = self.get_outposts().get(self.outpost_name)
        api = await self.get_api(outpost) if outpost else None
        await self._cleanup(api, outpost)

    async def _cleanup(self, api: OutpostAPI | None, outpost: Outpost | None) -> None:
        """Remove the remote server, the forward and the Service; log what fails."""
        if api is not None and self.service_name and self.start_id:
            try:
                await api.stop(self.service_name, self.start_id)
            except OutpostError as e:
                self.log.error(
                    "Stopping %s on Outpost %s failed: %s; retrying in the background for %ss",
                    self._log_name,
                    api.outpost.name,
                    e.message,
                    self.stop_retry_timeout,
                )
                self._retry_stop_later(api, self.service_name, self.start_id)
        await self._cleanup_local()

    def _retry_stop_later(self, api: OutpostAPI, name: str, start_id: str) -> None:
        """Keep asking the Outpost to stop a server it could not be told to stop, so that no
        server is orphaned by a short Outpost outage (lost with a hub restart; the flavor's
        runtime limit at the Outpost is the backstop)."""
        if self.stop_retry_timeout <= 0:
            return
        log = self.log

        async def attempt():
            try:
                await api.stop(name, start_id)
            except OutpostError as e:
                log.debug(
                    "Stop of %s on Outpost %s still failing: %s", name, api.outpost.name, e.message
                )
                return False
            log.info("Stopped %s on Outpost %s after retrying", name, api.outpost.name)
            return True

        async def retry():
            try:
                await exponential_backoff(
                    attempt,
                    f"stop of {name} on Outpost {api.outpost.name}",
                    start_wait=2,
                    max_wait=120,
                    timeout=self.stop_retry_timeout,
                )
            except TimeoutError:
                log.error(
                    "Gave up stopping %s on Outpost %s; its runtime limit will end it",
                    name,
                    api.outpost.name,
                )
            finally:
                OutpostSpawner._retries.discard(task)

        task = asyncio.ensure_future(retry())
        OutpostSpawner._retries.add(task)

    async def _cleanup_local(self) -> None:
        info = self.port_forward_info()
        if self.k8s_service:
            try:
                if self.k8s_service.get("custom"):
                    await resolve_hook(self.ssh_custom_svc_remove, self, info)
                else:
                    await self.get_service_backend().delete(service_name=self.service_name)
            except Exception as e:
                self.log.error("Removing the Service of %s failed: %s", self._log_name, e)
            self.k8s_service = None
        if self.forward:
            try:
                if self.forward.get("custom"):
                    await resolve_hook(self.ssh_custom_forward_remove, self, info)
                else:
                    await self.get_tunnel_client().delete_forward(self.forward["key"])
            except Exception as e:
                self.log.error("Removing the forward of %s failed: %s", self._log_name, e)
            self.forward = None
        elif self.service_name and self.outpost_name and self.ssh_custom_forward is None:
            outpost = self.get_outposts().get(self.outpost_name)
            if outpost is not None and not outpost.direct:
                # a forward may exist although we never learned its port (start cancelled)
                try:
                    await self.get_tunnel_client().delete_forward(self.forward_key)
                except Exception as e:
                    self.log.debug("No forward to remove for %s: %s", self._log_name, e)

    # ------------------------------------------------------------------ state
    def get_state(self):
        state = super().get_state()
        if self.start_id:
            state[STATE_KEY] = {
                "version": STATE_VERSION,
                "outpost": self.outpost_name,
                "start_id": self.start_id,
                "service_name": self.service_name,
                "service_address": (
                    {
                        "host": self.service_address.host,
                        "port": self.service_address.port,
                        "scheme": self.service_address.scheme,
                    }
                    if self.service_address
                    else None
                ),
                "address_source": self.address_source,
                "forward": dict(self.forward) if self.forward else None,
                "k8s_service": dict(self.k8s_service) if self.k8s_service else None,
                "target_url": self.target_url,
            }
        return state

    def load_state(self, state):
        super().load_state(state)
        data = (state or {}).get(STATE_KEY)
        if not data:
            return
        version = data.get("version", 0)
        if version > STATE_VERSION:
            self.log.warning(
                "State of %s has version %s, newer than this OutpostSpawner (%s)",
                self._log_name,
                version,
                STATE_VERSION,
            )
        self.outpost_name = data.get("outpost", "")
        self.start_id = data.get("start_id", "")
        self.service_name = data.get("service_name", "")
        addr = data.get("service_address")
        self.service_address = (
            ServiceAddress(addr["host"], int(addr["port"]), addr.get("scheme", "http"))
            if addr
            else None
        )
        self.address_source = data.get("address_source", "outpost")
        self.forward = dict(data["forward"]) if data.get("forward") else None
        self.k8s_service = dict(data["k8s_service"]) if data.get("k8s_service") else None
        self.target_url = data.get("target_url", "")

    def clear_state(self):
        super().clear_state()
        self._forget()

    def _forget(self):
        self.outpost_name = ""
        self.start_id = ""
        self.service_name = ""
        self.service_address = None
        self.address_source = "outpost"
        self.forward = None
        self.k8s_service = None
        self.target_url = ""


def _label(value: str) -> str:
    """A Kubernetes label value (<= 63 chars of [A-Za-z0-9._-])."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", value)[:63].strip("._-")
    return safe or "x"


__all__ = [
    "OutpostSpawner",
    "OutpostSpawnError",
    "make_service_name",
    "OutpostConfigError",
    "STATE_VERSION",
]
