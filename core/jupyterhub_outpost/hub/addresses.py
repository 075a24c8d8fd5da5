"""Server addresses that Outposts and servers report to the hub: parsing and checking.

An address is ``host:port`` (``[v6]:port`` for IPv6), or a URL ``http(s)://host:port/``
as some spawners' ``start()`` return it. The host must be a DNS name or an IP literal:
nothing that could become an option, a path, a user or a command anywhere downstream.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlparse

_HOSTNAME_RE = re.compile(  # used with fullmatch: "$" would let a trailing newline through
    r"(?=.{1,253}\Z)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
    r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?"
)


class AddressError(ValueError):
    """The address is malformed or not allowed; the message says which part."""


@dataclass(frozen=True)
class ServiceAddress:
    host: str
    port: int
    scheme: str = "http"

    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def validate_host(host: str) -> str:
    """Return the host when it is an IP literal or a DNS name; raise AddressError."""
    if not isinstance(host, str) or not host:
        raise AddressError("the host is empty")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None:
        if ip.is_unspecified or ip.is_multicast or ip.is_link_local:
            raise AddressError(
                f"{host} is not a server address (unspecified, multicast or link-local)"
            )
        return str(ip)
    if not _HOSTNAME_RE.fullmatch(host) or host.replace(".", "").isdigit():
        raise AddressError("the host must be a DNS name or an IP address")
    return host.rstrip(".").lower()


def validate_port(port) -> int:
    if isinstance(port, bool):
        raise AddressError("the port must be a number")
    if isinstance(port, str):
        if not port.isdigit() or len(port) > 5:
            raise AddressError("the port must be a number")
        port = int(port)
    if not isinstance(port, int) or not 0 < port < 65536:
        raise AddressError("the port must be between 1 and 65535")
    return port


def parse_service_address(value: str, *, allow_url: bool = True) -> ServiceAddress:
    """``host:port``, ``[v6]:port`` or (when ``allow_url``) ``http(s)://host:port[/path]``."""
    if not isinstance(value, str) or not value or len(value) > 300:
        raise AddressError("the address must be a non-empty 'host:port' string")
    if any(c.isspace() for c in value):
        raise AddressError("the address contains whitespace")
    scheme = "http"
    if "://" in value:
        if not allow_url:
            raise AddressError("expected 'host:port', not a URL")
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or parsed.username or parsed.password:
            raise AddressError("only http(s) URLs without credentials are accepted")
        if parsed.query or parsed.fragment:
            raise AddressError("the URL must not have a query or fragment")
        scheme = parsed.scheme
        try:
            host, port = parsed.hostname, parsed.port
        except ValueError:
            raise AddressError("the URL has an invalid port") from None
        if port is None:
            raise AddressError("the URL needs an explicit port")
        return ServiceAddress(validate_host(host or ""), validate_port(port), scheme)
    if value.startswith("["):
        host, sep, port = value[1:].partition("]:")
        if not sep:
            raise AddressError("expected '[v6-address]:port'")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise AddressError("the bracketed host must be an IPv6 address") from None
    else:
        host, sep, port = value.rpartition(":")
        if not sep:
            raise AddressError("expected 'host:port'")
    return ServiceAddress(validate_host(host), validate_port(port), scheme)


def _port_matches(spec: str, port: int) -> bool:
    if spec == "*":
        return True
    lo, _, hi = spec.partition("-")
    try:
        return int(lo) <= port <= int(hi or lo)
    except ValueError:
        return False


def target_allowed(address: ServiceAddress, patterns) -> bool:
    """True when ``host:port`` matches one of ``"CIDR-or-host-glob:port-or-range"``.

    ``None`` means "no restriction beyond :func:`validate_host`". IPv6 CIDRs are written
    in brackets: ``"[fd00::/8]:8000-9000"``.
    """
    if patterns is None:
        return True
    for pattern in patterns:
        if pattern.startswith("["):
            host_pat, _, port_pat = pattern[1:].partition("]:")
        else:
            host_pat, _, port_pat = pattern.rpartition(":")
        if not host_pat or not _port_matches(port_pat, address.port):
            continue
        try:
            net = ipaddress.ip_network(host_pat, strict=False)
        except ValueError:
            net = None
        if net is not None:
            try:
                if ipaddress.ip_address(address.host) in net:
                    return True
            except ValueError:
                continue
        elif fnmatch.fnmatchcase(address.host, host_pat.lower()):
            return True
    return False
