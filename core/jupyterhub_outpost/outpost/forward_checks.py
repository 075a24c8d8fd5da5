"""Forward rights at work: may a hub open an SSH forward to an address now? The forward side
of :class:`~.manager.ServiceManager` (a mixin of it); the bookkeeping of who holds which
address is :class:`~.forward_rights.ForwardRights` (``self.rights``), see docs/security.md,
"Forward rights bound to live servers"."""

import asyncio
import time

from .forward_rights import address_key, split_address
from .forward_targets import is_allowed

RECHECK_TIMEOUT = 10.0  # longest a poll on behalf of a forward may take


class ForwardChecks:
    """ServiceManager's ``authorize_forward`` and the polls it makes."""

    async def authorize_forward(self, hub: str, host: str, port: int) -> bool:
        """May ``hub`` open an SSH forward to ``host:port`` now? Only when a server of this
        hub holds the address, confirmed by a poll at most ``forward_recheck_interval``
        seconds old, and no server of another hub holds it; else only to the admin's
        ``allowed_forward_targets``, and never to an address another hub's server holds."""
        key = address_key(host, port)
        if not key:
            return False
        if not any(h.hub == hub for h in self.rights.holders(key)):
            await self._adopt_running_at(key, host, port)  # a worker or replica started it
        interval = self.settings.forward_recheck_interval
        began = time.monotonic()
        holders = self.rights.holders(key)
        if len({h.hub for h in holders}) > 1:  # servers of several hubs: ask them all now
            recheck = holders
        else:
            recheck = self.rights.stale(key, interval)
        for holder in recheck:
            await self._recheck(holder.row_id)
        holders = self.rights.holders(key)
        if any(h.hub != hub for h in holders):
            if any(h.hub == hub for h in holders):
                self.log.warning("%s is held by servers of several hubs: no forward", key)
            return False
        if any(h.confirmed >= began or began - h.confirmed < interval for h in holders):
            return True  # this hub's server, confirmed running
        return is_allowed(self.settings.parsed_forward_targets, split_address(key)[0], port)

    async def _adopt_running_at(self, key: str, host: str, port: int) -> None:
        """Rows the store holds as running at this address that this process has not
        indexed (another replica started them): poll each, index it when it runs."""
        bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        variants = {key, f"{bare}:{port}", f"[{bare}]:{port}", f"{host}:{port}"}
        for row in await self.store.running_at(variants):
            if row.id not in self._spawners or self._spawners[row.id].key is None:
                self._live(row)
                await self._recheck(row.id)

    def _recheck_soon(self, row_id: int) -> None:
        if row_id not in self._rechecks:
            self._background(self._recheck(row_id))

    async def _recheck(self, row_id: int) -> None:
        """Poll server ``row_id`` now on behalf of a forward (one poll at a time per
        server, at most ``RECHECK_TIMEOUT`` s): running -> its address is confirmed (and
        indexed); ended or gone -> recorded, and its hub loses the address; a poll that
        fails or times out confirms nothing."""
        task = self._rechecks.get(row_id)
        if task is None or task.done():
            task = self._rechecks[row_id] = asyncio.ensure_future(self._poll_for_forward(row_id))
            task.add_done_callback(lambda _: self._rechecks.pop(row_id, None))
        try:
            await asyncio.shield(task)
        except Exception as e:
            self.log.warning("Polling server #%d for a forward failed: %s", row_id, e)

    async def _poll_for_forward(self, row_id: int) -> None:
        live = self._spawners.get(row_id)
        if live is None:
            self.rights.release(row_id)
            return
        async with asyncio.timeout(RECHECK_TIMEOUT), live.lock:
            row = await self.store.poll_view(row_id)
            live = await self._apply_row(row_id, live, row)  # None: forgotten, not running
            if live is None:
                return
            status = await self._poll_running(row_id, live)
            if status is None:
                if live.key is None:  # adopted: index it like a poll would
                    self._index_running(row.id, row.hub, row.name, row.service_address)
                return
        self._ended_now(row.hub, row.name, status)
