"""What a worker does about the other workers of ``serve --workers N`` (coordination.py):
their changes to rows it holds, their requests to cancel its starts, and the processes it
started that they stopped. The sibling side of :class:`~.manager.ServiceManager` (a mixin
of it); docs/decisions/workers.md."""

import subprocess

from .models import RUNNING


class SiblingChanges:
    """ServiceManager's answers to coordination.py's callbacks, and SIGCHLD."""

    def _changed_elsewhere(self, row_id: int) -> None:
        """A sibling worker changed (or removed) this row: the next poll reads it, and a
        check in the background follows the change at once (a server stopped there loses
        its forwards here too). A server this worker starts or stops right now is its own."""
        live = self._spawners.get(row_id)
        if live is None or live.start_future is not None or live.stop_requested:
            return
        live.stale = True
        self._background(self._follow_change(row_id, live))

    def _all_changed_elsewhere(self) -> None:
        for row_id in list(self._spawners):
            self._changed_elsewhere(row_id)

    async def _follow_change(self, row_id: int, live) -> None:
        async with live.lock:
            if self._spawners.get(row_id) is not live or not live.stale:
                return  # a poll followed it already
            await self._apply_row(row_id, live, await self.store.poll_view(row_id))

    async def _apply_row(self, row_id: int, live, row):
        """Bring ``live`` up to the row as read (caller holds ``live.lock``): the Live to
        poll, or None when the server no longer runs (it is forgotten; the caller answers
        from the store). A state that changed elsewhere means a new spawner built from it;
        the index and the forward rights stay as long as the server runs."""
        if row is None or row.status != RUNNING:
            self._forget(row_id)
            return None
        if live.stale and live.state_enc != row.state_enc:
            if self.store.state(row) != live.state:  # another worker stored a new state
                full = await self.store.get_by_id(row_id)
                if full is None:
                    self._forget(row_id)
                    return None
                live = self._rebuild(full, live)
            live.state_enc = row.state_enc
        else:
            self._sync_state(live, row)
        live.stale = False
        return live

    def _rebuild(self, row, live):
        """A new Live of ``row`` built from its stored state, in ``live``'s place (index and
        forward rights stay: they follow the row, not the spawner object)."""
        proc = getattr(live.spawner, "proc", None)
        if isinstance(proc, subprocess.Popen) and proc.returncode is None:
            self._former_procs.add(proc)  # still this worker's child: collect it when it ends
        rebuilt = self._spawners[row.id] = self._build(row)
        rebuilt.key = live.key
        if row.service_address:
            self.runner.set_address(rebuilt.spawner, row.service_address)
        return rebuilt

    def _stop_requested(self, hub: str, name: str) -> None:
        """A sibling worker stops (hub, name), which this worker is starting: cancel that."""
        row_id = self._starting.get((hub, name))
        if row_id is not None:
            self._cancel_start(self._spawners.get(row_id))

    def collect_exited_children(self) -> None:
        """On SIGCHLD under ``serve --workers N``: collect the exit status of this worker's
        server processes (a LocalProcessSpawner's Popen). A sibling worker may have stopped
        one: until its parent collects it, a process that ended still answers kill(pid, 0),
        and the sibling's spawner would wait for it in vain."""
        for live in list(self._spawners.values()):
            proc = getattr(live.spawner, "proc", None)
            if isinstance(proc, subprocess.Popen):
                proc.poll()
        for proc in list(self._former_procs):
            if proc.poll() is not None:
                self._former_procs.discard(proc)
