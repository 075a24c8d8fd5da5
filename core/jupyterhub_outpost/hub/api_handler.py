"""The base of the hub API endpoints for Outposts (handlers.py, orphans.py)."""

from __future__ import annotations

from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.scopes import has_scope
from tornado import web

from .. import strict_json
from .spawner import OutpostSpawner

_MAX_BODY = 64 * 1024


class OutpostAPIHandler(APIHandler):
    """Base of the hub's Outpost endpoints: JSON bodies, the configured Outposts, access checks."""

    def json_body(self) -> dict:
        if len(self.request.body or b"") > _MAX_BODY:
            raise web.HTTPError(413, "Request body too large")
        try:
            data = strict_json.loads(self.request.body or b"")
        except ValueError as e:
            raise web.HTTPError(400, f"The request body must be JSON ({e})") from None
        if not isinstance(data, dict):
            raise web.HTTPError(400, "The request body must be a JSON object")
        return data

    def spawner_settings(self):
        """A config-only OutpostSpawner: ``c.OutpostSpawner.*`` as the spawners see it."""
        cached = self.settings.get("_outpost_spawner_settings")
        if cached is None:
            spawner_class = self.settings.get("spawner_class")
            if not (isinstance(spawner_class, type) and issubclass(spawner_class, OutpostSpawner)):
                spawner_class = OutpostSpawner
            cached = spawner_class(config=self.settings.get("config"))
            self.settings["_outpost_spawner_settings"] = cached
        return cached

    def outposts(self):
        """The configured Outposts (``c.OutpostSpawner.outposts``), parsed once per hub."""
        return self.spawner_settings().get_outposts()

    def require_server_access(self, user_name: str, server_name: str) -> None:
        """The token must hold access:servers on this server (a server's own token does)."""
        if not self.current_user:
            raise web.HTTPError(403, "Missing or invalid credentials.")
        scope = f"access:servers!server={user_name}/{server_name}"
        if not has_scope(scope, self.parsed_scopes, db=self.db):
            raise web.HTTPError(404, "No access to resources or resources not found")

    def outpost_spawner(self, user_name: str, server_name: str):
        user = self.find_user(user_name)
        if user is None or server_name not in user.spawners:
            raise web.HTTPError(404, "No such server")
        spawner = user.spawners[server_name]
        if not hasattr(spawner, "add_event") or not hasattr(spawner, "setup_tunnel"):
            raise web.HTTPError(404, "This server is not run by an OutpostSpawner")
        return user, spawner
