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

Each step lives in its own module, as a mixin of this class (its options are options of
``OutpostSpawner``: ``c.OutpostSpawner.<name>``):

- start_request.py: the start request, its hooks, flavor choice, asynchronous starts
- progress.py: the remote spawner's progress events
- tunnel_setup.py: forwards, Services, setuptunnel (delayed tunneling)
- poll_and_stop.py: poll, stop, clean-up, an interrupted start after a hub restart
- state.py: the fields kept in the hub database

This module holds the class itself, the Outposts it talks to, and the options form.
"""

from __future__ import annotations

import asyncio

from jupyterhub.spawner import Spawner
from traitlets import Callable, Dict, Float, Unicode, Union, default

from .flavors import flavor_cache, normalize_flavors
from .hooks import resolve_hook
from .options_form import options_from_form, render_options_form
from .outposts import Outpost, OutpostAPI, OutpostConfigError, OutpostError, parse_outposts
from .poll_and_stop import PollAndStopMixin
from .progress import ProgressMixin
from .spawn_error import OutpostSpawnError
from .start_request import StartRequestMixin, make_service_name
from .state import STATE_KEY, STATE_VERSION, SpawnerStateMixin
from .tunnel_setup import TunnelSetupMixin


class OutpostSpawner(
    StartRequestMixin,
    ProgressMixin,
    TunnelSetupMixin,
    PollAndStopMixin,
    SpawnerStateMixin,
    Spawner,
):
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

    request_timeout = Float(
        30,
        help="""Seconds to wait for the Outpost's answer to status, stop and flavors requests.""",
    ).tag(config=True)

    flavors_cache_ttl = Float(
        300,
        help="""Seconds a fetched flavor list stays valid; Outposts also push updates.""",
    ).tag(config=True)

    # hooks are compatible with jupyterhub-outpostspawner: same names, same arguments; a
    # value, a function or a coroutine
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

    request_kwargs = Union(
        [Dict(), Callable()],
        default_value={},
        help="""Extra keyword arguments of every request to the Outpost (tornado's HTTPRequest,
        e.g. {"request_timeout": 60, "connect_timeout": 10, "client_cert": ...}), as the
        stock OutpostSpawner has them. ``request_kwargs(spawner, user_options)``; may be a
        coroutine. TLS verification cannot be turned off here (give the Outpost's
        ``ca_certs``).""",
    ).tag(config=True)

    outpost_authentication = Callable(
        default_value=None,
        allow_none=True,
        help="""What the Outposts learn about the user for their per-user flavor rules
        (``users:`` of their flavor document): ``outpost_authentication(spawner)`` -> dict,
        may be a coroutine. Sent with each start request and in POST /userflavors for the
        options form and the flavor choice. Default: ``{"name": user name, "groups":
        [group names]}``.""",
    ).tag(config=True)

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
        kwargs = await resolve_hook(self.request_kwargs, self, user_options) or {}
        return OutpostAPI(
            outpost,
            timeout=self.request_timeout,
            extra_headers=headers,
            services_url=url or None,
            request_kwargs=kwargs,
        )

    async def get_authentication(self) -> dict:
        """What the Outposts' per-user flavor rules match (see outpost_authentication)."""
        if self.outpost_authentication is not None:
            return dict(await resolve_hook(self.outpost_authentication, self) or {})
        groups = getattr(self.user, "groups", None) or []
        return {"name": self.user.name, "groups": sorted(getattr(g, "name", g) for g in groups)}

    async def flavors_for_user(self, api: OutpostAPI) -> dict[str, dict]:
        """This user's flavors on one Outpost (POST /userflavors); the Outpost's flavors for
        every user when it does not answer that (e.g. an older Outpost)."""
        try:
            return normalize_flavors(await api.user_flavors(await self.get_authentication()))
        except (OutpostError, ValueError) as e:
            self.log.debug("No user flavors from Outpost %s (%s)", api.outpost.name, e)
            return await flavor_cache.get(api, ttl=self.flavors_cache_ttl)

    # ------------------------------------------------------------------ options form
    @default("options_form")
    def _default_options_form(self):
        return self._render_options_form

    async def _render_options_form(self, spawner=None) -> str:
        outposts = self.get_outposts()
        if not outposts:
            return ""
        apis = [await self.get_api(outpost, {}) for outpost in outposts.values()]
        results = await asyncio.gather(*(self.flavors_for_user(api) for api in apis))
        return render_options_form(outposts, dict(zip(outposts, results, strict=True)))

    @default("apply_user_options")
    def _default_apply_user_options(self):
        # user_options are the Outpost's business (sent with the start request), not
        # settings of this spawner
        return lambda spawner, user_options: None

    @default("options_from_form")
    def _default_options_from_form(self):
        return lambda formdata, spawner=None: options_from_form(formdata)


__all__ = [
    "OutpostSpawner",
    "OutpostSpawnError",
    "make_service_name",
    "OutpostConfigError",
    "STATE_KEY",
    "STATE_VERSION",
]
