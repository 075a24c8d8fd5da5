"""``jupyterhub-outpost tunnels``: the hub's tunnel daemon.

Holds one SSH connection per Outpost endpoint and every forward over it, keeps the
forward table in ``--state-file``, and serves the API of docs/internals.md on
``--api-ip:--api-port``. The API token comes from ``OUTPOST_TUNNEL_API_TOKEN``; an
optional ``OUTPOST_TUNNEL_METRICS_TOKEN`` opens only ``GET /metrics``.
See docs/tunnels.md for operating it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import asyncssh
from tornado.httpserver import HTTPServer
from traitlets import Float, Integer, Unicode, default
from traitlets.config import Application

from .api import make_app
from .manager import ForwardManager
from .metrics import PrometheusTunnelMetrics, TunnelMetrics
from .table import ForwardRequestError

TOKEN_ENV = "OUTPOST_TUNNEL_API_TOKEN"  # noqa: S105 - the variable name, not a secret
METRICS_TOKEN_ENV = "OUTPOST_TUNNEL_METRICS_TOKEN"  # noqa: S105 - the variable name


class TunnelDaemon(Application):
    name = "jupyterhub-outpost-tunnels"
    description = "The hub's tunnel daemon: SSH forwards to Outpost endpoints behind an HTTP API."

    aliases = {
        "api-ip": "TunnelDaemon.api_ip",
        "api-port": "TunnelDaemon.api_port",
        "forward-ip": "TunnelDaemon.forward_ip",
        "ssh-key": "TunnelDaemon.ssh_key",
        "state-file": "TunnelDaemon.state_file",
        "log-level": "Application.log_level",
        "config": "TunnelDaemon.config_file",
    }

    config_file = Unicode("", help="Python config file to load (c.TunnelDaemon....).").tag(
        config=True
    )
    api_ip = Unicode("127.0.0.1", help="IP the HTTP API listens on.").tag(config=True)
    api_port = Integer(8765, help="Port the HTTP API listens on.").tag(config=True)
    forward_ip = Unicode(
        "127.0.0.1",
        help="IP the forwards' local ports listen on (0.0.0.0 in a pod that a Service targets).",
    ).tag(config=True)
    ssh_key = Unicode(
        "",
        help="""Private key file (OpenSSH format) used for every SSH connection: the hub's key.
        Create one with `jupyterhub-outpost keygen ssh --out FILE`.""",
    ).tag(config=True)
    state_file = Unicode(
        "outpost-tunnels.json",
        help="The forward table on disk (JSON, rewritten atomically on every change, mode 0600).",
    ).tag(config=True)
    reconnect_initial_delay = Float(
        0.5, help="First delay (seconds) before reconnecting a dropped SSH connection."
    ).tag(config=True)
    reconnect_max_delay = Float(
        30.0, help="Cap (seconds) of the exponential reconnect backoff."
    ).tag(config=True)
    connect_timeout = Float(15.0, help="Timeout (seconds) of one SSH connection attempt.").tag(
        config=True
    )
    keepalive_interval = Float(
        15.0,
        help="SSH keepalive interval (seconds); 3 missed keepalives count as a dropped connection.",
    ).tag(config=True)
    hold_timeout = Float(
        15.0,
        help="""How long (seconds) a client connection to a forward's local port is held while
        the SSH connection is down, before it is closed.""",
    ).tag(config=True)

    @default("log_format")
    def _log_format_default(self):
        return "[%(levelname)1.1s %(asctime)s.%(msecs).03d %(name)s] %(message)s"

    @default("log_datefmt")
    def _log_datefmt_default(self):
        return "%Y-%m-%d %H:%M:%S"

    @default("log_level")
    def _log_level_default(self):
        return "INFO"

    def initialize(self, argv=None):
        super().initialize(argv)
        if self.config_file:
            self.load_config_file(self.config_file)
            self.update_config(self.cli_config)

    def _fatal(self, message: str) -> None:
        self.log.critical(message)
        sys.exit(1)

    async def serve(self) -> None:
        token = os.environ.get(TOKEN_ENV, "")
        if not token.strip():
            self._fatal(f"{TOKEN_ENV} is not set: refusing to start without an API token")
        if not self.ssh_key:
            self._fatal(
                "--ssh-key is required (the hub's private key); "
                "create one with `jupyterhub-outpost keygen ssh --out FILE`"
            )
        try:
            client_key = asyncssh.read_private_key(self.ssh_key)
        except (OSError, asyncssh.KeyImportError) as e:
            self._fatal(f"cannot read the SSH key {self.ssh_key}: {e}")
        manager = ForwardManager(
            state_file=self.state_file,
            forward_ip=self.forward_ip,
            client_key=client_key,
            log=self.log,
            metrics=self.make_metrics(),
            hold_timeout=self.hold_timeout,
            link_options={
                "reconnect_initial_delay": self.reconnect_initial_delay,
                "reconnect_max_delay": self.reconnect_max_delay,
                "connect_timeout": self.connect_timeout,
                "keepalive_interval": self.keepalive_interval,
            },
        )
        try:
            await manager.restore()
        except ForwardRequestError as e:
            self._fatal(f"{e}; move the file away to start with an empty table")
        metrics_token = os.environ.get(METRICS_TOKEN_ENV, "").strip()
        server = HTTPServer(make_app(manager, token.strip(), metrics_token), xheaders=False)
        try:
            server.listen(self.api_port, self.api_ip)
        except OSError as e:
            await manager.close()
            self._fatal(f"cannot listen on {self.api_ip}:{self.api_port}: {e.strerror or e}")
        self.log.info(
            "Tunnel daemon API on http://%s:%s, forwards on %s, state in %s",
            self.api_ip,
            self.api_port,
            self.forward_ip,
            os.path.abspath(self.state_file),
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        self.log.info("Stopping the tunnel daemon (the forward table stays in the state file)")
        server.stop()
        await manager.close()

    def make_metrics(self) -> TunnelMetrics:
        """Hook: the TunnelMetrics that counts forwards, reconnects and bytes.

        The default counts into Prometheus metrics served at ``GET /metrics`` (token required).
        """
        return PrometheusTunnelMetrics()

    def start(self):
        asyncio.run(self.serve())


def main(argv: list[str] | None = None) -> None:
    app = TunnelDaemon()
    app.initialize(argv)
    app.start()


if __name__ == "__main__":
    main()
