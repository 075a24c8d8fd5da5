"""Parsing and matching of ``allowed_forward_targets``.

An admin lists the targets a hub may open SSH forwards to even when the Outpost's store
does not hold a server at that address (delayed tunneling). One entry is
``HOST:PORTS``:

- ``HOST`` is either a CIDR or a single IP address (``10.20.0.0/16``, ``10.0.0.7``,
  ``[fd00::/64]``: IPv6 in square brackets), or a hostname glob (``*.cluster.local``,
  ``jwc*``) using ``*`` and ``?``; hostnames compare case-insensitively.
- ``PORTS`` is one port (``8888``) or an inclusive range (``8000-9000``), 1..65535.

Matching rules (chosen so that a glob can never be used to reach an address by a
trick spelling):

- A target given as an IP address (IPv4, IPv6, IPv4-mapped IPv6) matches only CIDR
  entries. ``10.0.0.1.evil.com`` is a hostname, not an address in ``10.0.0.0/8``.
- A target given as a hostname matches only glob entries.
- Target hosts that look numeric but are not a canonical IP address (``010.0.0.1``,
  ``167772161``, ``0x0a000001``) and hosts with characters that cannot appear in a
  hostname are never allowed.

Everything here is a pure function.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

# used with fullmatch: "$" would let a trailing newline through
_GLOB_RE = re.compile(r"[a-z0-9*?]([a-z0-9*?_.-]{0,252})")
_HOSTNAME_RE = re.compile(r"[a-z0-9_]([a-z0-9_.-]{0,252})")
# "numeric looking" hosts: digits/dots only, or hex literals; resolvers may read these as addresses
_NUMERIC_LIKE_RE = re.compile(r"(0x[0-9a-f]+|[0-9.]+)([.](0x[0-9a-f]+|[0-9]+))*")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ForwardTargetError(ValueError):
    """An ``allowed_forward_targets`` entry cannot be parsed; the message says why."""


@dataclass(frozen=True)
class ForwardTarget:
    """One parsed entry: either ``network`` or ``host_glob`` is set."""

    entry: str
    port_min: int
    port_max: int
    network: IPNetwork | None = None
    host_glob: str | None = None

    def matches(self, host: str, port: int) -> bool:
        return target_matches(self, host, port)


def _parse_ports(text: str, entry: str) -> tuple[int, int]:
    parts = text.split("-")
    if len(parts) > 2 or not all(p.isascii() and p.isdigit() for p in parts):
        raise ForwardTargetError(
            f"allowed_forward_targets entry {entry!r}: port {text!r} is not a number or "
            "a range like 8000-9000"
        )
    numbers = [int(p) for p in parts]
    for n in numbers:
        if not 1 <= n <= 65535:
            raise ForwardTargetError(
                f"allowed_forward_targets entry {entry!r}: port {n} is outside 1-65535"
            )
    lo, hi = numbers[0], numbers[-1]
    if lo > hi:
        raise ForwardTargetError(
            f"allowed_forward_targets entry {entry!r}: port range {text!r} is reversed"
        )
    return lo, hi


def parse_target(entry: str) -> ForwardTarget:
    """Parse one ``HOST:PORTS`` entry; raise :class:`ForwardTargetError` when malformed."""
    if not isinstance(entry, str):
        raise ForwardTargetError(f"allowed_forward_targets entry {entry!r} is not a string")
    text = entry.strip()
    if not text or any(c.isspace() for c in text):
        raise ForwardTargetError(
            f"allowed_forward_targets entry {entry!r} is empty or contains whitespace"
        )
    if text.startswith("["):
        host_part, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ForwardTargetError(
                f"allowed_forward_targets entry {entry!r}: expected '[IPv6-CIDR]:PORTS'"
            )
        port_part = rest[1:]
        bracketed = True
    else:
        host_part, sep, port_part = text.rpartition(":")
        if not sep:
            raise ForwardTargetError(
                f"allowed_forward_targets entry {entry!r}: expected 'HOST:PORTS', "
                "e.g. '10.20.0.0/16:8000-9000' or '*.cluster.local:8888'"
            )
        if ":" in host_part:
            raise ForwardTargetError(
                f"allowed_forward_targets entry {entry!r}: write IPv6 addresses in "
                "brackets, e.g. '[fd00::/64]:8888'"
            )
        bracketed = False
    if not host_part:
        raise ForwardTargetError(f"allowed_forward_targets entry {entry!r}: the host is empty")
    lo, hi = _parse_ports(port_part, entry)

    looks_like_address = (
        bracketed or "/" in host_part or _NUMERIC_LIKE_RE.fullmatch(host_part.lower())
    )
    if looks_like_address:
        try:
            network = ipaddress.ip_network(host_part, strict=True)
        except ValueError as e:
            raise ForwardTargetError(
                f"allowed_forward_targets entry {entry!r}: {host_part!r} is not a valid "
                f"IP address or CIDR ({e})"
            ) from None
        if bracketed and network.version != 6:
            raise ForwardTargetError(
                f"allowed_forward_targets entry {entry!r}: brackets are for IPv6 only"
            )
        return ForwardTarget(entry=text, port_min=lo, port_max=hi, network=network)

    glob = host_part.lower().rstrip(".")
    if not _GLOB_RE.fullmatch(glob) or ".." in glob:
        raise ForwardTargetError(
            f"allowed_forward_targets entry {entry!r}: {host_part!r} is not a hostname glob "
            "(letters, digits, '.', '-', '_', and the wildcards '*' and '?')"
        )
    return ForwardTarget(entry=text, port_min=lo, port_max=hi, host_glob=glob)


def parse_targets(entries: Iterable[str]) -> list[ForwardTarget]:
    """Parse every entry; raise one :class:`ForwardTargetError` listing all bad entries."""
    if isinstance(entries, str):
        raise ForwardTargetError(
            "allowed_forward_targets must be a list of 'HOST:PORTS' strings, not one string"
        )
    parsed, errors = [], []
    for entry in entries:
        try:
            parsed.append(parse_target(entry))
        except ForwardTargetError as e:
            errors.append(str(e))
    if errors:
        raise ForwardTargetError("; ".join(errors))
    return parsed


def normalize_host(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | str | None:
    """An IP address object, a lower-case hostname, or None when ``host`` is never allowed."""
    if not isinstance(host, str) or not host or len(host) > 253:
        return None
    text = host.strip()
    if text != host:
        return None
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            return address.ipv4_mapped
        return address
    name = text.lower()
    if name.endswith("."):
        name = name[:-1]
    if not _HOSTNAME_RE.fullmatch(name) or ".." in name or _NUMERIC_LIKE_RE.fullmatch(name):
        return None
    return name


def target_matches(target: ForwardTarget, host: str, port: int) -> bool:
    """True when ``host:port`` is inside ``target`` (see the module docstring for the rules)."""
    if isinstance(port, bool) or not isinstance(port, int):
        return False
    if not target.port_min <= port <= target.port_max:
        return False
    normalized = normalize_host(host)
    if normalized is None:
        return False
    if isinstance(normalized, str):
        return target.host_glob is not None and fnmatch.fnmatchcase(normalized, target.host_glob)
    return target.network is not None and normalized in target.network


def is_allowed(targets: Iterable[ForwardTarget], host: str, port: int) -> bool:
    """True when any of ``targets`` allows ``host:port``."""
    return any(target_matches(t, host, port) for t in targets)
