"""Forward rights: which live server holds which address, and so which hub may forward to it.

A hub may open an SSH forward to ``host:port`` only while one of *its* servers holds that
address and no server of another hub does. A server holds its address from the moment the
store says it runs (start, recovery after a restart, a poll that found it running) until it
stops, ends, fails a poll or is replaced; then its hub's right ends at once and the open
forwards of that hub to that address are closed (``on_revoke``). Spawners reuse addresses (a
fixed port, a pod IP after the pod died, a batch node), so a stale record must never let
one hub reach another hub's new server: every holder is confirmed by a poll no older than
``recheck`` seconds before a forward is allowed (the manager polls when it is older).

Addresses are compared in one canonical form (:func:`address_key`): IP literals as
``ipaddress`` writes them (IPv6 in brackets), host names lower-case without a trailing dot.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass


def address_key(host: str, port: int | str) -> str:
    """``host:port`` in the canonical form used for every comparison; "" when malformed."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        port = int(port)
        ip = ipaddress.ip_address(bare)
    except ValueError:
        ip = None
    if not isinstance(port, int) or not 0 < port < 65536 or not bare:
        return ""
    if ip is not None:
        return f"[{ip.compressed}]:{port}" if ip.version == 6 else f"{ip.compressed}:{port}"
    return f"{bare.lower().rstrip('.')}:{port}"


def split_address(address: str) -> tuple[str, str]:
    """``"host:port"`` (IPv6 in brackets) -> ``(host, port)``."""
    host, _, port = address.rpartition(":")
    return host, port


@dataclass
class Holder:
    row_id: int
    hub: str
    confirmed: float  # time.monotonic() of the last poll that found it running


class ForwardRights:
    """The holders of every address (see the module docstring). Not thread-safe: used on
    the Outpost's event loop only."""

    def __init__(self, on_revoke: Callable[[str, str], None] | None = None):
        self.on_revoke = on_revoke  # (hub, address key): close that hub's forwards there
        self._by_address: dict[str, dict[int, Holder]] = {}
        self._address_of: dict[int, str] = {}

    def hold(self, row_id: int, hub: str, address: str) -> list[Holder]:
        """Server ``row_id`` of ``hub`` runs at ``address`` (just confirmed). Returns the
        other hubs' holders of the same address: they cannot all be alive, so the caller
        checks them at once. A server that holds this address already keeps it (confirmed;
        its hub's forwards stay open)."""
        key = address_key(*split_address(address))
        if key and self._address_of.get(row_id) == key:
            self.confirm(row_id)
        else:
            self.release(row_id)
            if not key:
                return []
            self._by_address.setdefault(key, {})[row_id] = Holder(row_id, hub, time.monotonic())
            self._address_of[row_id] = key
        return [h for h in self._by_address[key].values() if h.hub != hub]

    def confirm(self, row_id: int) -> None:
        """A poll found server ``row_id`` running."""
        key = self._address_of.get(row_id)
        if key is not None:
            self._by_address[key][row_id].confirmed = time.monotonic()

    def release(self, row_id: int) -> None:
        """Server ``row_id`` stopped, ended, failed or was replaced: its hub's right to its
        address ends now (unless another server of the same hub holds it too)."""
        key = self._address_of.pop(row_id, None)
        if key is None:
            return
        holders = self._by_address[key]
        holder = holders.pop(row_id)
        if not holders:
            del self._by_address[key]
        if self.on_revoke is not None and all(h.hub != holder.hub for h in holders.values()):
            self.on_revoke(holder.hub, key)

    def holders(self, key: str) -> list[Holder]:
        return list(self._by_address.get(key, {}).values())

    def stale(self, key: str, recheck: float) -> list[Holder]:
        """The holders of ``key`` whose last confirmation is older than ``recheck`` s."""
        now = time.monotonic()
        return [h for h in self.holders(key) if now - h.confirmed >= recheck]
