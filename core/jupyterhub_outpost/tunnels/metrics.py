"""Hook for the tunnel daemon's metrics.

The daemon calls these methods; the default does nothing. A Prometheus implementation
(forwards, reconnects, bytes) can subclass :class:`TunnelMetrics` later without touching
the connection code.
"""

from __future__ import annotations


class TunnelMetrics:
    """No-op metrics sink; override what you count."""

    def forward_added(self, key: str) -> None:
        pass

    def forward_removed(self, key: str) -> None:
        pass

    def connection_opened(self, key: str) -> None:
        """A local client connection was forwarded over SSH."""

    def connection_refused(self, key: str, reason: str) -> None:
        """A local client connection was closed without being forwarded."""

    def ssh_connected(self, target: str) -> None:
        pass

    def ssh_reconnect(self, target: str) -> None:
        """An SSH connection dropped and the daemon starts reconnecting."""

    def bytes(self, key: str, direction: str, n: int) -> None:
        """``n`` bytes moved; direction is ``"to_target"`` or ``"from_target"``."""


class PrometheusTunnelMetrics(TunnelMetrics):
    """Counts into a private prometheus_client registry (served at the API's ``/metrics``).

    Labels stay low-cardinality: SSH endpoints (``user@host:port``) and directions, never
    forward keys (one per server).
    """

    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = CollectorRegistry()
        self.forwards = Gauge(
            "outpost_tunnel_forwards", "Forwards in the table", registry=self.registry
        )
        self.ssh_connects = Counter(
            "outpost_tunnel_ssh_connects",
            "SSH connections established",
            ["endpoint"],
            registry=self.registry,
        )
        self.ssh_reconnects = Counter(
            "outpost_tunnel_ssh_reconnects",
            "SSH connection attempts after a drop or failure",
            ["endpoint"],
            registry=self.registry,
        )
        self.client_connections = Counter(
            "outpost_tunnel_client_connections",
            "Client connections to forwards' local ports, by result",
            ["result"],
            registry=self.registry,
        )
        self.bytes_moved = Counter(
            "outpost_tunnel_bytes",
            "Bytes forwarded, by direction",
            ["direction"],
            registry=self.registry,
        )
        self._to_target = self.bytes_moved.labels("to_target")
        self._from_target = self.bytes_moved.labels("from_target")

    def forward_added(self, key: str) -> None:
        self.forwards.inc()

    def forward_removed(self, key: str) -> None:
        self.forwards.dec()

    def connection_opened(self, key: str) -> None:
        self.client_connections.labels("forwarded").inc()

    def connection_refused(self, key: str, reason: str) -> None:
        self.client_connections.labels(reason.replace(" ", "_")).inc()

    def ssh_connected(self, target: str) -> None:
        self.ssh_connects.labels(target).inc()

    def ssh_reconnect(self, target: str) -> None:
        self.ssh_reconnects.labels(target).inc()

    def bytes(self, key: str, direction: str, n: int) -> None:
        (self._to_target if direction == "to_target" else self._from_target).inc(n)

    def exposition(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)
