"""The flavors a hub and its users see, the flavor check of a start and credits: the flavor
side of :class:`~.manager.ServiceManager` (a mixin of it, reading ``self.settings``,
``self.store`` and ``self.log``); the usage sent to hubs is in hub_calls.py."""

import copy

from . import flavors as flavor_rules
from .errors import OutpostError
from .hooks import call_hook
from .models import utcnow


class FlavorViews:
    """ServiceManager's flavor views and flavor updates."""

    def _flavor_source(self) -> flavor_rules.FlavorSource:
        option = self.settings.flavors
        if self._flavor_source_cache is None or self._flavor_source_cache.option is not option:
            self._flavor_source_cache = flavor_rules.FlavorSource(option)
        return self._flavor_source_cache

    def _flavor_config_error(self, e: Exception) -> OutpostError:
        self.log.error("Flavor configuration error: %s", e)
        return OutpostError(
            500,
            f"This Outpost's flavor configuration is invalid ({e}); tell its administrator.",
        )

    async def _flavors_for(self, hub: str) -> dict:
        try:
            return await self._flavor_source().for_hub(hub)
        except ValueError as e:
            raise self._flavor_config_error(e) from None

    async def _user_flavors(self, hub: str, authentication) -> tuple[dict, bool, set]:
        """The flavors of one user of ``hub`` (see FlavorSource.for_user)."""
        hook = self.settings.update_user_authentication
        try:
            if authentication and hook is not None:
                authentication = await call_hook(hook, copy.deepcopy(authentication))
                if not isinstance(authentication, dict):
                    raise ValueError("update_user_authentication must return a dict")
            return await self._flavor_source().for_user(hub, authentication)
        except ValueError as e:
            raise self._flavor_config_error(e) from None

    async def _admit_flavor(self, hub: str, flavor: str | None, authentication) -> dict:
        """The user's flavors, or a 403 when its user set forbids every flavor or does not
        include the chosen one."""
        flavors, forbidden, configured = await self._user_flavors(hub, authentication)
        if forbidden:
            raise OutpostError(
                403,
                "Your user may not start servers on this Outpost (its flavor configuration "
                "forbids every flavor for you).",
                reason="flavor_forbidden",
            )
        if flavor is not None and flavor in configured and flavor not in flavors:
            raise OutpostError(
                403,
                f"Flavor {flavor!r} is not available to your user on this Outpost; choose "
                f"one of: {', '.join(sorted(flavors)) or 'none'}.",
                reason="flavor_forbidden",
            )
        return flavors

    async def flavors(self, hub: str) -> dict:
        hub_flavors = await self._flavors_for(hub)
        usage = await self.store.usage(hub)
        return flavor_rules.usage_document(hub_flavors, usage)

    async def credits(self, hub: str, authentication: dict | None = None) -> dict:
        """GET /credits/ (the hub's) and POST /usercredits (one user's): the credit values
        of the flavors (``credits: {billing_value, billing_interval}``) and the billed
        server starts with the credits each used so far."""
        if authentication is None:
            flavors, user = await self._flavors_for(hub), None
        else:
            flavors, forbidden, _ = await self._user_flavors(hub, authentication)
            flavors = {} if forbidden else flavors
            user = str(authentication.get("name") or authentication.get("username") or "")
        now = utcnow()
        values = {}
        for name in flavors:
            billing = flavor_rules.billing(flavors, name)
            if billing:
                values[name] = {"billing_value": billing[0], "billing_interval": billing[1]}
        records = await self.store.credit_records(hub, user)
        return {"flavors": values, "servers": [record.summary(now) for record in records]}

    async def user_flavors(self, hub: str, authentication: dict) -> dict:
        """POST /userflavors: the flavors of the user ``authentication`` describes, with
        the hub's current usage; {} for a user forbidden every flavor."""
        flavors, forbidden, _ = await self._user_flavors(hub, authentication)
        if forbidden:
            return {}
        return flavor_rules.usage_document(flavors, await self.store.usage(hub))
