"""The poll path: the poll side of :class:`~.manager.ServiceManager` (a mixin of it).

``self._running`` maps (hub, name) of each RUNNING server with a live spawner
to its row id, and ``self.rights`` (``forward_rights.ForwardRights``) records which server
holds which address for ``authorize_forward``. They are only set once the store says
RUNNING (start, recovery, a poll that found it running) and cleared on every stop, reap,
end, failed poll and failed start; clearing an address closes that hub's forwards to it.
Every change of a row goes through this object or, under ``serve --workers N``, through a
sibling worker (or replica) that announces it (coordination.py): while
``self.coordination.fresh()`` says that no sibling's change is pending here (a replica:
``synced()``, every change announced before the poll was received) and no announced change
of the server is still to be read (``Live.stale``), a poll of an indexed server is answered
without reading the store: its hub, name and start id are those of the index, and the
state it compares with is the one last stored (``Live.state``). Otherwise the poll reads
the row once by primary key, as every poll of a server that is not indexed.
"""

from typing import NamedTuple

from .errors import OutpostError
from .models import FAILED, RUNNING, STARTING, STOPPED


class Polls:
    """ServiceManager's poll of one server and the state it keeps for polls."""

    def _sync_state(self, live, row) -> None:
        """``live.state`` := the state of ``row`` as read (decrypted only when it changed)."""
        if live.state_enc != row.state_enc:
            live.state = self.store.state(row)
            live.state_enc = row.state_enc

    async def _save_state(self, row_id: int, live, state: dict) -> None:
        await self.store.update(row_id, state=state)
        live.state, live.state_enc = state, None

    def indexed(self, hub: str, name: str) -> bool:
        """Is this server indexed as running (its poll needs no lookup by name)?"""
        return (hub, name) in self._running

    async def poll(self, hub: str, name: str, start_id: str | None = None) -> dict:
        row_id = self._running.get((hub, name))
        live = self._spawners.get(row_id) if row_id is not None else None
        if live is None:
            return await self._poll_lookup(hub, name, start_id)
        if start_id and live.start_id != start_id:
            raise OutpostError(
                404, f"No server {name!r} with start id {start_id!r} on this Outpost."
            )
        async with live.lock:
            fresh = self.coordination.fresh() or await self.coordination.synced()
            if fresh and not live.stale:
                current = live if live.key == (hub, name) else None
            else:
                current = await self._apply_row(row_id, live, await self.store.poll_view(row_id))
            if current is not None and self._spawners.get(row_id) is current:
                status = await self._poll_running(row_id, current)
                if status is None:
                    return {"status": None}
            else:
                status = _MISSED  # stopped or ended meanwhile: answer as without the index
        if status is _MISSED:
            return await self._poll_lookup(hub, name, start_id)
        return self._ended_now(hub, name, status)

    async def _poll_lookup(self, hub: str, name: str, start_id: str | None) -> dict:
        """A poll of a server that is not indexed as running: find it by name."""
        row = await self._row(hub, name, start_id)
        if row.status == STARTING:
            return {"status": None}
        if row.status in (STOPPED, FAILED):
            return _ended(row)
        live = self._live(row)
        async with live.lock:
            row = await self.store.poll_view(row.id)
            if row is None:  # stopped meanwhile
                raise OutpostError(404, f"No server {name!r} on this Outpost.")
            if row.status != RUNNING:  # ended meanwhile (reaper, concurrent poll)
                return _ended(row)
            self._sync_state(live, row)
            status = await self._poll_running(row.id, live)
            if status is None:
                self._index_running(row.id, hub, name, row.service_address)
                return {"status": None}
        return self._ended_now(hub, name, status)

    async def _poll_running(self, row_id: int, live) -> int | None:
        """Poll a RUNNING server's spawner (caller holds ``live.lock``; ``live.state`` is
        the stored state); store what changed."""
        if self.settings.poll_requires_state and not live.state:
            self.rights.confirm(row_id)  # the admin's choice: such a server counts as running
            return None  # nothing to poll by (the original Outpost's answer: running)
        status = await self.runner.poll(live.spawner)
        state = live.spawner.get_state()
        if status is None:
            self.rights.confirm(row_id)
            if state != live.state:  # most polls change nothing: no write
                await self._save_state(row_id, live, state)
            return None
        hub, name = live.key or ("", "")
        self._unindex(row_id)
        await self.store.update(
            row_id, state=state, status=STOPPED, exit_status=int(status), error=None
        )
        live.state, live.state_enc = state, None
        await self.store.end_billing(_Server(hub, name, live.start_id))
        return int(status)

    def _ended_now(self, hub: str, name: str, status: int) -> dict:
        self.log.info("Server %s of hub %s ended with status %s", name, hub, status)
        self._background(self.send_flavor_update(hub))
        return {"status": status}


_MISSED = object()  # an indexed poll found the row no longer running


class _Server(NamedTuple):
    """What ``Store.end_billing`` reads of a row."""

    hub: str
    name: str
    start_id: str


def _ended(row) -> dict:
    result = {"status": row.exit_status if row.exit_status is not None else 0}
    if row.error:
        result["error"] = row.error
    return result
