"""Flavors: per-hub limits on how many servers of a kind may run, and for how long.

A flavor is ``{"max": int, "weight": int, "display_name": str, "description": str,
"runtime": {timedelta kwargs}}``. ``max`` < 0 is unlimited. A start without a flavor, or
with a flavor the hub does not have, is limited by ``flavors_undefined_max``.
"""

from datetime import datetime, timedelta

from .hooks import call_hook

FLAVOR_FIELDS = ("max", "weight", "display_name", "description", "runtime")


async def flavors_for_hub(flavors_option, hub: str) -> dict:
    """The configured flavors of one hub (the option is a dict or a hook(hub_name))."""
    if callable(flavors_option):
        value = await call_hook(flavors_option, hub)
    else:
        value = flavors_option
    if value is not None and not isinstance(value, dict):
        raise ValueError(f"The flavors of hub {hub!r} must be a dict, not {type(value).__name__}.")
    value = dict(value or {})
    validate_flavors(value, hub)
    return value


def flavor_limit(flavors: dict, flavor: str | None, undefined_max: int) -> int:
    if flavor is not None and flavor in flavors:
        return int(flavors[flavor].get("max", -1))
    return int(undefined_max)


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
        doc[name] = entry
    return doc


def validate_flavors(flavors: dict, hub: str) -> None:
    """Raise ValueError naming the first malformed flavor (checked when first used)."""
    for name, flavor in flavors.items():
        if not isinstance(flavor, dict):
            raise ValueError(f"Flavor {name!r} of hub {hub!r} must be a dict.")
        unknown = set(flavor) - set(FLAVOR_FIELDS)
        if unknown:
            raise ValueError(
                f"Flavor {name!r} of hub {hub!r} has unknown keys {sorted(unknown)}; "
                f"allowed: {', '.join(FLAVOR_FIELDS)}."
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
