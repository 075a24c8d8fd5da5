"""Flavors: per-hub limits on how many servers of a kind may run, and for how long.

A flavor is ``{"max": int, "maxPerUser": int, "weight": int, "display_name": str,
"description": str, "runtime": {timedelta kwargs}, "credits": {"billing_value": int,
"billing_interval": seconds}}`` (other keys are kept, as the original
Outpost keeps them). ``max`` < 0 is unlimited; ``maxPerUser`` (default unlimited) limits one
user's servers of the flavor. A start without a flavor, or with a flavor the hub does not
have, is limited by ``flavors_undefined_max``.

The ``flavors`` option is a dict ``{flavor name: flavor}`` (every hub), the original's
document with ``hubs:`` and ``users:`` sets (``flavor_rules.py``), the path of a YAML or JSON
file holding either (read again when it changes), or a hook (hub_name) -> either.
"""

from datetime import datetime, timedelta

from . import flavor_rules
from .credentials import FileBackedMapping
from .hooks import call_hook


class FlavorSource:
    """The configured flavors of each hub and user (see the module docstring)."""

    def __init__(self, option):
        self.option = option
        self._file = FileBackedMapping(option, "flavors") if isinstance(option, str) else None

    async def _value(self, hub: str):
        if self._file is not None:
            value = self._file.get()
        elif callable(self.option):
            value = await call_hook(self.option, hub)
        else:
            value = self.option
        if value is not None and not isinstance(value, dict):
            raise ValueError(
                f"The flavors of hub {hub!r} must be a dict, not {type(value).__name__}."
            )
        return value or {}

    async def for_hub(self, hub: str) -> dict:
        value = await self._value(hub)
        flavors = flavor_rules.hub_flavors(value, hub) if flavor_rules.is_document(value) else value
        validate_flavors(flavors, hub)
        return dict(flavors)

    async def for_user(self, hub: str, authentication: dict | None) -> tuple[dict, bool, set]:
        """``(flavors, forbidden, configured)``: the user's flavors, whether its user set
        forbids every flavor, and the names of all configured flavors."""
        value = await self._value(hub)
        if not flavor_rules.is_document(value):
            validate_flavors(value, hub)
            return dict(value), False, set(value)
        flavors, forbidden = flavor_rules.user_flavors(value, hub, authentication)
        validate_flavors(flavors, hub)
        return flavors, forbidden, set(value["flavors"])


def flavor_limit(flavors: dict, flavor: str | None, undefined_max: int) -> int:
    if flavor is not None and flavor in flavors:
        return int(flavors[flavor].get("max", -1))
    return int(undefined_max)


def user_limit(flavors: dict, flavor: str | None) -> int:
    """How many servers of ``flavor`` one user may run (-1: unlimited)."""
    if flavor is not None and flavor in flavors:
        return int(flavors[flavor].get("maxPerUser", -1))
    return -1


def billing(flavors: dict, flavor: str | None) -> tuple[int, int] | None:
    """``(billing_value, billing_interval)`` of a flavor with ``credits``, else None."""
    credits = (flavors.get(flavor) or {}).get("credits") if flavor else None
    if not credits:
        return None
    return int(credits.get("billing_value", 0)), int(credits.get("billing_interval", 600))


def runtime_of(flavors: dict, flavor: str | None) -> timedelta | None:
    """The flavor's runtime as a timedelta; None when unlimited or unknown."""
    if flavor is None or flavor not in flavors:
        return None
    runtime = flavors[flavor].get("runtime")
    if not runtime:
        return None
    if isinstance(runtime, (int, float)):
        return timedelta(seconds=runtime)
    return timedelta(**runtime)


def deadline(flavors: dict, flavor: str | None, now: datetime) -> datetime | None:
    runtime = runtime_of(flavors, flavor)
    return now + runtime if runtime else None


def usage_document(flavors: dict, usage: dict) -> dict:
    """GET /flavors and the flavor update body: each flavor with its ``current`` count."""
    doc = {}
    for name, flavor in flavors.items():
        entry = {
            "max": int(flavor.get("max", -1)),
            "current": int(usage.get(name, 0)),
            "weight": int(flavor.get("weight", 0)),
            "display_name": str(flavor.get("display_name", name)),
            "description": str(flavor.get("description", "")),
            "runtime": flavor.get("runtime") or None,
        }
        if "maxPerUser" in flavor:
            entry["maxPerUser"] = int(flavor["maxPerUser"])
        doc[name] = entry
    return doc


def validate_flavors(flavors: dict, hub: str) -> None:
    """Raise ValueError naming the first malformed flavor (checked when first used)."""
    for name, flavor in flavors.items():
        if not isinstance(flavor, dict):
            raise ValueError(f"Flavor {name!r} of hub {hub!r} must be a dict.")
        for key in ("max", "maxPerUser", "weight"):
            if key in flavor and (
                isinstance(flavor[key], bool) or not isinstance(flavor[key], int)
            ):
                raise ValueError(f"Flavor {name!r} of hub {hub!r}: {key} must be an integer.")
        credits = flavor.get("credits")
        if credits is not None and not (
            isinstance(credits, dict)
            and all(
                isinstance(credits.get(key, 1), int) and credits.get(key, 1) >= 0
                for key in ("billing_value", "billing_interval")
            )
        ):
            raise ValueError(
                f"Flavor {name!r} of hub {hub!r}: credits must be {{billing_value: int, "
                "billing_interval: seconds}}."
            )
        runtime = flavor.get("runtime")
        if runtime and not isinstance(runtime, (int, float)):
            try:
                timedelta(**runtime)
            except TypeError as e:
                raise ValueError(
                    f"Flavor {name!r} of hub {hub!r}: runtime must be timedelta keywords "
                    f"such as {{'hours': 2}} ({e})."
                ) from None
