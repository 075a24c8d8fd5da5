"""Relays a starting server's ``progress()`` events to the hub.

The events go to ``JUPYTERHUB_EVENTS_URL`` (from the start request's env) with the
server's own API token, one POST per event, in order, until the start future resolves
(``jupyterhub.utils.iterate_until``, as the hub's progress API does). When the start
fails, a final event ``{"progress": 100, "failed": True, "message": ...}`` follows.
A hub that does not answer never slows down or breaks the start. ``send=False`` (the
admin's ``send_events``) sends nothing.
"""

from jupyterhub.utils import iterate_until

EVENTS_URL_ENV = "JUPYTERHUB_EVENTS_URL"


class EventRelay:
    def __init__(self, hub_client, env: dict, log, *, send: bool = True):
        self.client = hub_client
        self.url = env.get(EVENTS_URL_ENV, "") if send else ""
        self.token = env.get("JUPYTERHUB_API_TOKEN", "")
        self.log = log
        self.failures = 0

    @property
    def enabled(self) -> bool:
        return bool(self.url and self.token)

    async def send(self, event: dict) -> None:
        if not self.enabled or self.failures >= 3:
            return  # give up on a hub that keeps refusing: the start goes on
        ok = await self.client.post_json(self.url, event, self.token, what="a progress event")
        if not ok:
            self.failures += 1

    async def relay(self, spawner, start_future) -> None:
        """Forward every progress event until ``start_future`` resolves."""
        if not self.enabled:
            return
        try:
            async for event in iterate_until(start_future, spawner._generate_progress()):
                await self.send(event)
        except Exception:
            self.log.exception("Relaying progress events failed; the start goes on.")

    async def send_failure(self, message: str) -> None:
        await self.send({"progress": 100, "failed": True, "message": message})
