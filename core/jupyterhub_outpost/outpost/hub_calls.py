"""The Outpost's calls to hubs: progress-event and setuptunnel URLs and flavor usage, only
at URLs built from the hub's ``hub_api`` entry (hub_api.py), each hub with its own flavors
token; the outbound side of :class:`~.manager.ServiceManager` (a mixin of it)."""

from .hooks import call_hook

# the flavors update token a hub may send with a start (the original Outpost's wire format)
FLAVORS_UPDATE_TOKEN_ENV = "JUPYTERHUB_FLAVORS_UPDATE_TOKEN"  # noqa: S105 - a variable name


class HubCalls:
    """ServiceManager's URLs of a hub and its flavor updates."""

    def _hub_url(self, hub: str, kind: str, env: dict) -> str:
        """The hub's events or setuptunnel URL for the server of ``env``; "" when this
        Outpost has no hub_api entry for the hub (then nothing is sent)."""
        endpoints = self.settings.hub_endpoints(hub)
        user = env.get("JUPYTERHUB_USER", "")
        if endpoints is None or not user:
            return ""
        return endpoints.server_url(kind, user, env.get("JUPYTERHUB_SERVER_NAME", ""))

    def _remember_flavors_token(self, hub: str, env: dict) -> None:
        token = env.get(FLAVORS_UPDATE_TOKEN_ENV)
        if token:
            self._flavor_tokens_sent[hub] = token

    async def _flavors_token(self, hub: str, endpoints) -> str:
        """The hub's entry in hub_api, else flavors_update_token (string or hook), else
        the token the hub itself sent with its latest start."""
        if endpoints.flavors_update_token:
            return endpoints.flavors_update_token
        option = self.settings.flavors_update_token
        token = await call_hook(option, hub) if callable(option) else option
        return token or self._flavor_tokens_sent.get(hub, "")

    async def send_flavor_update(self, hub: str) -> bool:
        """POST the hub's flavor usage to its flavors update URL; never raises."""
        endpoints = self.settings.hub_endpoints(hub)
        url = endpoints.flavors_url() if endpoints is not None else ""
        if not url:
            return False
        try:
            token = await self._flavors_token(hub, endpoints)
            if not token:
                self.log.debug("No flavors update token for hub %s: no update sent", hub)
                return False
            document = await self.flavors(hub)
        except Exception as e:
            self.log.warning("Flavor update for hub %s not sent: %s", hub, e)
            return False
        return await self.hub_client.post_json(url, document, token, what="flavor usage")
