"""Hub API endpoints for Outposts, added with ``c.JupyterHub.extra_handlers``.

All live under ``/hub/api/outpost/``; ``_default`` names the default server::

    POST events/{user}/{server}       a progress event of a starting server
                                      (the server's token: access:servers on that server)
    POST setuptunnel/{user}/{server}  {"service": "host:port"} only: where the server is
                                      (delayed tunneling; re-creation after an Outpost restart)
    POST flavors/{outpost}            an Outpost's current flavor usage (that Outpost's own
                                      token: its flavors_update_token in outposts)
    GET  flavors                      every Outpost's flavors (any authenticated user)
    GET  orphans                      servers at Outposts no spawner holds (admin:servers)
    DELETE orphans/{outpost}/{name}[/{start_id}]  stop one of them (admin:servers)

Use :func:`outpost_handlers` in jupyterhub_config.py::

    from jupyterhub_outpost.hub import outpost_handlers
    c.JupyterHub.extra_handlers = outpost_handlers()
"""

from __future__ import annotations

import hashlib
import hmac

from tornado import web

from .addresses import AddressError, parse_service_address, target_allowed
from .api_handler import OutpostAPIHandler
from .flavors import flavor_cache, normalize_flavors
from .orphans import OrphansHandler
from .outposts import OutpostAPI


class EventsHandler(OutpostAPIHandler):
    """POST a progress event ``{"progress", "message", "html_message", "failed"}``."""

    async def post(self, user_name, server_name):
        server_name = "" if server_name == "_default" else server_name
        self.require_server_access(user_name, server_name)
        _, spawner = self.outpost_spawner(user_name, server_name)
        event = self.json_body()
        start_id = event.get("start_id")
        if start_id and spawner.start_id and start_id != spawner.start_id:
            raise web.HTTPError(409, "The event belongs to an earlier start of this server")
        if not spawner._spawn_pending:
            # late events of a finished start are not shown anywhere; accept and drop
            self.set_status(204)
            return
        spawner.add_event(event)
        self.set_status(204)


class SetupTunnelHandler(OutpostAPIHandler):
    """POST ``{"service": "host:port"}``: the server's address for its forward."""

    async def post(self, user_name, server_name):
        server_name = "" if server_name == "_default" else server_name
        self.require_server_access(user_name, server_name)
        _, spawner = self.outpost_spawner(user_name, server_name)
        body = self.json_body()
        if set(body) != {"service"}:
            extra = sorted(set(body) - {"service"})
            raise web.HTTPError(
                400,
                f"Only the field 'service' is accepted{f'; unexpected: {extra}' if extra else ''}",
            )
        try:
            address = parse_service_address(body["service"], allow_url=False)
        except AddressError as e:
            raise web.HTTPError(400, f"Invalid service address: {e}") from None
        outpost = spawner.get_outposts().get(spawner.outpost_name)
        if outpost is None:
            raise web.HTTPError(409, "This server is not starting or running")
        if not target_allowed(address, outpost.setuptunnel_targets):
            raise web.HTTPError(
                403, f"{address} is not an allowed tunnel target for {outpost.name}"
            )
        try:
            action = await spawner.setup_tunnel(address)
        except ValueError as e:
            raise web.HTTPError(409, str(e)) from None
        except Exception as e:
            self.log.error("setuptunnel for %s failed: %s", spawner._log_name, e)
            raise web.HTTPError(502, "The tunnel could not be set up; see the hub log") from None
        if action == "updated":
            # the forward moved: persist the new address for the next hub restart
            spawner.orm_spawner.state = spawner.get_state()
            self.db.commit()
        self.write({"status": action})


class FlavorsUpdateHandler(OutpostAPIHandler):
    """POST an Outpost's flavors ``{name: {max, current, ...}}``.

    Accepted only with that Outpost's own token (its ``flavors_update_token`` in
    ``c.OutpostSpawner.outposts``, as ``Authorization: token <t>`` or ``Bearer <t>``): no
    other credential, not even an admin's, may change an Outpost's flavors, and one
    Outpost's token changes no other Outpost's. Cookies play no part (no XSRF check).
    """

    def check_xsrf_cookie(self):
        pass

    async def post(self, outpost_name):
        outpost = self.outposts().get(outpost_name)
        if outpost is None:
            raise web.HTTPError(404, "Unknown Outpost")
        if not outpost.flavors_update_token:
            raise web.HTTPError(
                403,
                f"Outpost {outpost_name} has no flavors_update_token at this hub: its flavor "
                "updates are not accepted (the hub asks it for its flavors instead).",
            )
        if not _token_matches(self.request.headers.get("Authorization", ""), outpost):
            raise web.HTTPError(403, f"Not the flavors update token of Outpost {outpost_name}.")
        try:
            flavors = normalize_flavors(self.json_body())
        except ValueError as e:
            raise web.HTTPError(400, f"Invalid flavors: {e}") from None
        flavor_cache.update(outpost_name, flavors)
        self.set_status(204)


class FlavorsHandler(OutpostAPIHandler):
    """GET ``{outpost: {"display_name", "flavors": {...}}}`` (any authenticated user)."""

    async def get(self):
        if not self.current_user:
            # an API answers 403, not a redirect to the login page
            raise web.HTTPError(403, "Missing or invalid credentials.")
        settings = self.spawner_settings()
        out = {}
        for name, outpost in self.outposts().items():
            api = OutpostAPI(outpost, timeout=settings.request_timeout)
            out[name] = {
                "display_name": outpost.label,
                "flavors": await flavor_cache.get(api, ttl=settings.flavors_cache_ttl),
            }
        self.write(out)


def _token_matches(header: str, outpost) -> bool:
    """Constant time: the token of an ``Authorization: token|Bearer <t>`` header is this
    Outpost's flavors update token."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() not in ("token", "bearer"):
        token = ""
    digest = hashlib.sha256
    return hmac.compare_digest(
        digest(token.strip().encode()).digest(),
        digest(outpost.flavors_update_token.encode()).digest(),
    )


def outpost_handlers() -> list[tuple[str, type]]:
    """The handlers for ``c.JupyterHub.extra_handlers`` (paths are below /hub/)."""
    name = r"([^/]+)"
    return [
        (rf"/api/outpost/events/{name}/{name}", EventsHandler),
        (rf"/api/outpost/setuptunnel/{name}/{name}", SetupTunnelHandler),
        (rf"/api/outpost/flavors/{name}", FlavorsUpdateHandler),
        (r"/api/outpost/flavors", FlavorsHandler),
        (r"/api/outpost/orphans", OrphansHandler),
        (rf"/api/outpost/orphans/{name}/{name}(?:/{name})?", OrphansHandler),
    ]
