"""The hub's view of each Outpost's flavors: fetched with GET /flavors, cached, and
replaced whenever an Outpost POSTs its current usage to the flavors update endpoint.

One :class:`FlavorCache` lives in the hub process (:data:`flavor_cache`); the options
form, the start-time check in the spawner and the hub API handlers share it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from .outposts import OutpostAPI, OutpostError

log = logging.getLogger("jupyterhub_outpost.hub.flavors")

_FLAVOR_FIELDS = {
    "max",
    "maxPerUser",
    "current",
    "weight",
    "display_name",
    "description",
    "runtime",
}


def normalize_flavors(data: Any) -> dict[str, dict]:
    """Check an Outpost's flavors document; returns ``{name: flavor}``.

    Accepts the bare ``{name: {max, current, ...}}`` dict or ``{"flavors": {...}}``.
    Raises ValueError when it is neither.
    """
    if isinstance(data, dict) and set(data) == {"flavors"} and isinstance(data["flavors"], dict):
        data = data["flavors"]
    if not isinstance(data, dict):
        raise ValueError("flavors must be a JSON object: name -> flavor")
    out: dict[str, dict] = {}
    for name, flavor in data.items():
        if not isinstance(name, str) or not name or len(name) > 128:
            raise ValueError("flavor names must be non-empty strings of at most 128 characters")
        if not isinstance(flavor, dict):
            raise ValueError(f"flavor {name!r} must be a JSON object")
        for key in ("max", "current", "weight"):
            if key in flavor and not (
                isinstance(flavor[key], int) and not isinstance(flavor[key], bool)
            ):
                raise ValueError(f"flavor {name!r}: {key} must be an integer")
        out[name] = {k: v for k, v in flavor.items() if k in _FLAVOR_FIELDS}
    return out


def flavor_is_full(flavor: dict) -> bool:
    """A flavor with ``max`` >= 0 and ``current`` >= ``max`` cannot be chosen."""
    limit = flavor.get("max", -1)
    return isinstance(limit, int) and limit >= 0 and flavor.get("current", 0) >= limit


def sorted_flavors(flavors: dict[str, dict]) -> list[tuple[str, dict]]:
    """Flavors by descending weight, then name (the order users see)."""
    return sorted(flavors.items(), key=lambda kv: (-int(kv[1].get("weight", 0) or 0), kv[0]))


class FlavorCache:
    """Per-Outpost flavors with the time they were learned.

    ``get`` answers from the cache while it is younger than ``ttl`` seconds, otherwise it
    asks the Outpost; an Outpost that does not answer keeps its last known flavors (or
    none). ``update`` stores what an Outpost pushed.
    """

    def __init__(self) -> None:
        self._flavors: dict[str, dict[str, dict]] = {}
        self._learned: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def clear(self) -> None:
        self._flavors.clear()
        self._learned.clear()
        self._locks.clear()

    def update(self, outpost: str, flavors: dict[str, dict]) -> None:
        self._flavors[outpost] = flavors
        self._learned[outpost] = time.monotonic()

    def cached(self, outpost: str) -> dict[str, dict] | None:
        return self._flavors.get(outpost)

    async def get(self, api: OutpostAPI, *, ttl: float) -> dict[str, dict]:
        name = api.outpost.name
        if name in self._flavors and time.monotonic() - self._learned[name] < ttl:
            return self._flavors[name]
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            if name in self._flavors and time.monotonic() - self._learned[name] < ttl:
                return self._flavors[name]
            try:
                self.update(name, normalize_flavors(await api.flavors()))
            except (OutpostError, ValueError) as e:
                log.warning("Could not refresh the flavors of Outpost %s: %s", name, e)
                # ask again in at most 30 s; keep what we knew
                self._learned[name] = time.monotonic() - ttl + min(ttl, 30)
                self._flavors.setdefault(name, {})
            return self._flavors[name]


flavor_cache = FlavorCache()
