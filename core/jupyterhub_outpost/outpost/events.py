"""Relays a starting server's ``progress()`` events to the hub.

The events go to the hub's events URL for this server, built from this Outpost's
``hub_api`` entry of the hub (never a URL of the request: ``hub_api.py``), with the
server's own API token, one POST per event, in order, until the start future resolves
(``jupyterhub.utils.iterate_until``, as the hub's progress API does). When the start
fails, a final event ``{"progress": 100, "failed": True, "message": ...}`` follows.
An event equal to the one sent before is not sent again (a batch spawner repeats "Pending
in queue..." every second while its job waits: one request per waiting job and second).
A hub that does not answer never slows down or breaks the start. An empty ``url`` (no
``hub_api`` entry, or the admin's ``send_events`` is off) sends nothing.
"""

from jupyterhub.utils import iterate_until


class EventRelay:
    def __init__(self, hub_client, url: str, env: dict, log):
        self.client = hub_client
        self.url = url  # "" when the hub has no hub_api entry: nothing is sent
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
        last = None
        try:
            async for event in iterate_until(start_future, spawner._generate_progress()):
                if event != last:
                    await self.send(event)
                    last = dict(event)  # a spawner may change and yield one dict again
        except Exception:
            self.log.exception("Relaying progress events failed; the start goes on.")

    async def send_failure(self, message: str) -> None:
        await self.send({"progress": 100, "failed": True, "message": message})
