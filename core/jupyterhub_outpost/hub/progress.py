"""Progress of a start: the events the Outpost relays, shown to the user as they come."""

from __future__ import annotations

import asyncio
from html import escape

from traitlets import Bool, HasTraits

_EVENT_KEYS = {"progress", "message", "html_message", "failed"}
_MAX_EVENTS = 500


class ProgressMixin(HasTraits):
    """OutpostSpawner's progress: ``add_event`` (the events endpoint) feeds ``progress()``."""

    allow_html_events = Bool(
        False,
        help="""Show the ``html_message`` of progress events from Outposts as HTML. Off by default:
        a remote site could otherwise put markup into the hub's pages; the text is escaped.""",
    ).tag(config=True)

    def add_event(self, event: dict) -> dict:
        """Store a progress event reported by the Outpost (via the events endpoint).

        The remote spawner's first event is JupyterHub's own "Server requested" (the Outpost
        drives it like a hub); this hub already showed that line, so it is dropped. An event
        equal to the one before is kept once: batch spawners repeat their state every poll
        ("Pending in queue..." each second while a job waits), which would otherwise fill
        the start's events and crowd out what comes after the wait."""
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
        if self._events and self._events[-1] == clean:
            return clean
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
