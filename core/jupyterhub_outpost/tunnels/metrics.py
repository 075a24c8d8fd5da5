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
