"""Servers an Outpost runs for this hub that no spawner of this hub holds.

Every start is in the hub database before its request leaves (``OutpostSpawner``'s
``_record_start``), so a server at an Outpost whose ``(name, start_id)`` no spawner's stored
state holds was not started by this hub database: it was left behind, e.g. when the hub
database was restored from an older backup. Nothing here stops anything by itself: an admin
lists the orphans and stops the ones they choose::

    GET    /hub/api/outpost/orphans                              (admin:servers)
        {outpost: {"orphans": [{"name", "start_id", "status", ...}], "error": null | "..."}}
    DELETE /hub/api/outpost/orphans/{outpost}/{name}[/{start_id}]  (admin:servers)
        200 {"stopped": true}; 409 when a spawner holds it; 404 unknown Outpost or server

Caution: an Outpost lists the servers of its *hub credentials*. Two hubs sharing one set of
credentials (never do that) would see each other's servers as orphans.
"""

from __future__ import annotations

from jupyterhub import orm
from jupyterhub.scopes import needs_scope
from tornado import web

from .api_handler import OutpostAPIHandler
from .outposts import OutpostAPI, OutpostError
from .state import STATE_KEY


def held_starts(db) -> dict[tuple[str, str, str], str]:
    """``(outpost, service name, start_id) -> "user:server"`` of every start recorded in the
    hub database (running servers and starts in flight alike)."""
    held = {}
    for orm_spawner in db.query(orm.Spawner).filter(orm.Spawner.state.isnot(None)):
        record = (orm_spawner.state or {}).get(STATE_KEY) or {}
        key = (record.get("outpost"), record.get("service_name"), record.get("start_id"))
        if all(key):
            owner = orm_spawner.user.name if orm_spawner.user else "?"
            held[key] = f"{owner}:{orm_spawner.name}" if orm_spawner.name else owner
    return held


class OrphansHandler(OutpostAPIHandler):
    def api(self, outpost) -> OutpostAPI:
        return OutpostAPI(outpost, timeout=self.spawner_settings().request_timeout)

    @needs_scope("admin:servers")
    async def get(self):
        held = held_starts(self.db)
        report = {}
        for name, outpost in self.outposts().items():
            try:
                items = await self.api(outpost).list()
            except OutpostError as e:
                report[name] = {"orphans": [], "error": e.message}
                continue
            orphans = [
                item for item in items if (name, item.get("name"), item.get("start_id")) not in held
            ]
            report[name] = {"orphans": orphans, "error": None}
        self.write(report)

    @needs_scope("admin:servers")
    async def delete(self, outpost_name, server, start_id=None):
        start_id = start_id or ""  # a server started without one is stopped by name
        outpost = self.outposts().get(outpost_name)
        if outpost is None:
            raise web.HTTPError(404, f"Unknown Outpost {outpost_name!r}")
        owner = held_starts(self.db).get((outpost_name, server, start_id))
        if owner is not None:
            raise web.HTTPError(
                409, f"Not an orphan: it is the server {owner}; stop it through the hub instead"
            )
        try:
            known = await self.api(outpost).stop(server, start_id)
        except OutpostError as e:
            raise web.HTTPError(502, f"Outpost {outpost_name!r}: {e.message}") from None
        if not known:
            raise web.HTTPError(404, f"Outpost {outpost_name!r} does not know {server!r}")
        self.log.warning(
            "Stopped orphaned server %s (start %s) on Outpost %s at the request of %s",
            server,
            start_id,
            outpost_name,
            self.current_user.name,
        )
        self.write({"stopped": True})
