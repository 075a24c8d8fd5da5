"""After a restart and while running: recovery of every stored server, the runtime reaper,
and the hubs' tunnel re-creation: the recovery side of :class:`~.manager.ServiceManager` (a
mixin of it)."""

from .hooks import decide
from .models import FAILED, RUNNING, STARTING, STOPPED, Service, utcnow

START_INTERRUPTED = (
    "The Outpost restarted while this server was starting (or, under --workers N, the worker "
    "that started it ended); start it again."
)


class Recovery:
    """ServiceManager's recovery at start-up, runtime reaper and tunnel re-creation."""

    async def recreate_tunnels(self) -> int:
        """Ask hubs to re-create the tunnels of their running servers (see the options
        ssh_recreate_at_start_global and ssh_recreate_at_start); returns how many requests
        were answered 2xx. Hook failures are logged; they never stop the Outpost."""
        rows = [
            row
            for row in await self.store.list_active()
            if row.status == RUNNING and row.service_address
        ]
        if not rows:
            return 0
        settings = self.settings
        try:
            hubs = sorted({row.hub for row in rows})
            done = await decide(settings.ssh_recreate_at_start_global, settings, hubs)
        except Exception as e:
            self.log.warning("ssh_recreate_at_start_global failed: %s", e)
            done = False
        if done:
            return 0
        sent = 0
        for row in rows:
            try:
                wanted = await decide(settings.ssh_recreate_at_start, settings, row.hub)
                env = self.store.secrets(row).get("env", {})
                url = self._hub_url(row.hub, "setuptunnel", env)
                token = env.get("JUPYTERHUB_API_TOKEN")
                if not wanted or not url or not token:
                    continue
            except Exception as e:
                self.log.warning("Not re-creating the tunnel of %s: %s", row.name, e)
                continue
            ok = await self.hub_client.post_json(
                url, {"service": row.service_address}, token, what="a tunnel re-creation request"
            )
            sent += bool(ok)
        return sent

    async def recover(self) -> None:
        """After a restart: reload every active server's spawner from its state and poll it."""
        rewritten = await self.store.reencrypt_all()
        if rewritten:
            self.log.info("Re-encrypted %d stored server(s) with the current first key", rewritten)
        rows = await self.store.list_active()
        if rows:
            self.log.info("Recovering %d server(s) from the store", len(rows))
        for row in rows:
            await self._recover_unless_busy(row)
            self._remember_flavors_token(row.hub, self.store.secrets(row).get("env", {}))

    async def recover_orphans(self) -> int:
        """Workers on one database (coordination.py): a STARTING server whose lock no worker
        holds was being started by a worker that died; recover it as after a restart (stop
        what the start had launched, mark it failed). Returns how many were recovered."""
        if not self.coordination.shared:
            return 0  # one process: its own starts are never orphans while it runs
        recovered = 0
        for row in await self.store.list_active():
            if row.status == STARTING:
                recovered += await self._recover_unless_busy(row)
        return recovered

    async def _recover_unless_busy(self, row: Service) -> bool:
        """Recover ``row`` unless another task or worker starts or stops it right now."""
        try:
            async with self.coordination.server_lock(row.hub, row.name, wait=False) as mine:
                if mine:  # read again: a start or stop may have finished meanwhile
                    current = await self.store.get_by_id(row.id)
                    if current is not None and current.status in (STARTING, RUNNING):
                        await self._recover_one(current)
                        return True
        except Exception:
            self.log.exception("Recovering server %s of hub %s failed", row.name, row.hub)
        return False

    async def _recover_one(self, row: Service) -> None:
        live = self._live(row)
        if row.status == STARTING:
            message = START_INTERRUPTED
            await self._cleanup_failed(row, live.spawner)
            await self.store.mark_ended(row.id, status=FAILED, exit_status=1, error=message)
            self.log.warning("Server %s of hub %s: %s", row.name, row.hub, message)
            return
        status = await self.runner.poll(live.spawner)
        if status is None:
            state = live.spawner.get_state()
            if state != live.state:  # a write (and, with workers, a notification) only then
                await self._save_state(row.id, live, state)
            self._index_running(row.id, row.hub, row.name, row.service_address)
            self.log.info("Server %s of hub %s is still running", row.name, row.hub)
        else:
            self._forget(row.id)
            await self.store.mark_ended(row.id, status=STOPPED, exit_status=int(status))
            await self.store.end_billing(row)
            self.log.info("Server %s of hub %s ended while the Outpost was down", row.name, row.hub)

    async def reap_expired(self) -> int:
        """Stop every server past its flavor's runtime; returns how many were stopped."""
        now = utcnow()
        reaped = 0
        for row in await self.store.list_active():
            if row.runtime_deadline is None or row.runtime_deadline > now:
                continue
            reason = f"The runtime of flavor {row.flavor!r} is over; the Outpost stopped it."
            self.log.info("Server %s of hub %s: %s", row.name, row.hub, reason)
            try:
                await self._stop(row, remove=False, reason=reason)
                reaped += 1
            except Exception:
                self.log.exception("Stopping expired server %s failed", row.name)
        return reaped
