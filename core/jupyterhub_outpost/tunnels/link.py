"""One SSH connection to one Outpost endpoint, kept up with backoff, and the local side of forwards.

:class:`SSHLink` holds the asyncssh client connection for one
``(host, port, user, host_key)``; every forward to that endpoint opens its channels on it.
The host key is pinned: the only trusted key is the one given, so a different key makes
the connection fail (``state = "error"``, with the reason) and it is retried with backoff.

:class:`LocalListener` is the listening socket of one forward. It stays bound while the
SSH connection is down. A client that connects then is *held* (its socket is not read)
for up to ``hold_timeout`` seconds waiting for the SSH connection; if it does not come
back in time the client's socket is closed without data. This lets a proxy's first
request after a reconnect succeed instead of failing, and never leaves a client hanging
longer than ``hold_timeout``. When the last attempt failed in a way that waiting cannot fix
(host key mismatch, login refused), clients are closed at once instead of being held.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket

import asyncssh
from asyncssh.forward import SSHForwarder

from . import fastpath
from .metrics import TunnelMetrics
from .table import SSHTarget

# Receive window / packet size of the channels we open: downloads flow towards us, so our
# window bounds one connection's throughput (window / RTT) and our packet size how many
# Python-level decrypts a megabyte costs. See docs/decisions/ssh-endpoint.md.
CHANNEL_WINDOW = 8 * 1024 * 1024
CHANNEL_MAX_PKTSIZE = 128 * 1024
# AES-GCM first: with AES-NI it is ~2x cheaper per byte than chacha20-poly1305 in asyncssh
# (measured, same decision record); the rest of asyncssh's defaults stay allowed.
ENCRYPTION_ALGS = [
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
]


CLOSE_TIMEOUT = 5.0  # seconds close() waits for the connection task to end


def _retrieve(task: asyncio.Task) -> None:
    """Mark the task's outcome as seen (no 'exception was never retrieved' at exit)."""
    if not task.cancelled():
        task.exception()


def set_nodelay(sock) -> None:
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def backoff_delays(initial: float, maximum: float, factor: float = 2.0):
    """Yield exponentially growing delays (with jitter), capped at ``maximum``."""
    delay = initial
    while True:
        yield random.uniform(delay / 2, delay)  # noqa: S311 - jitter, not crypto
        delay = min(maximum, delay * factor)


def describe_error(exc: BaseException, target: SSHTarget) -> str:
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        pinned = asyncssh.import_public_key(target.host_key).get_fingerprint("sha256")
        return (
            f"host key mismatch: the SSH endpoint did not present the pinned host key {pinned} "
            f"({exc.reason}); compare ssh.host_key with the Outpost's host key fingerprint"
        )
    if isinstance(exc, asyncssh.PermissionDenied):
        return (
            f"SSH login refused ({exc.reason}); is the hub's public key authorized on the Outpost?"
        )
    if isinstance(exc, asyncssh.DisconnectError):
        return f"SSH connection failed: {exc.reason}"
    # before OSError: TimeoutError is one, with neither strerror nor text ("cannot connect: ")
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return "SSH connection timed out"
    if isinstance(exc, OSError):
        return f"cannot connect: {exc.strerror or exc}"
    return f"SSH connection failed: {exc!r}"


class SSHLink:
    """The (re)connecting SSH client connection for one :class:`SSHTarget`."""

    def __init__(
        self,
        target: SSHTarget,
        *,
        client_key: asyncssh.SSHKey,
        log: logging.Logger,
        metrics: TunnelMetrics,
        reconnect_initial_delay: float = 0.5,
        reconnect_max_delay: float = 30.0,
        connect_timeout: float = 15.0,
        keepalive_interval: float = 15.0,
    ):
        self.target = target
        self.client_key = client_key
        self.log = log
        self.metrics = metrics
        self.reconnect_initial_delay = reconnect_initial_delay
        self.reconnect_max_delay = reconnect_max_delay
        self.connect_timeout = connect_timeout
        self.keepalive_interval = keepalive_interval
        self.state = "connecting"
        self.error: str | None = None
        self.hard_error = False  # the last attempt failed in a way that waiting will not fix
        self.conn: asyncssh.SSHClientConnection | None = None
        self._up = asyncio.Event()
        self._wake = asyncio.Event()  # ends a reconnect backoff early
        self._task: asyncio.Task | None = None
        self._closing = False

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"ssh-link {self.target.describe()}")

    async def close(self) -> None:
        self._closing = True
        if self.conn is not None:
            self.conn.close()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # bounded: Python 3.11's asyncio.wait_for (inside asyncssh.connect) can swallow a
            # cancel that races the connection coming up; _run then sees _closing and ends
            await asyncio.wait({task}, timeout=CLOSE_TIMEOUT)
            task.add_done_callback(_retrieve)
        if self.conn is not None:  # connected while being cancelled
            self.conn.close()
            self.conn = None
        self._up.clear()

    def retry_now(self) -> None:
        """Someone needs the connection now (a new forward): if it waits out a reconnect
        backoff, try at once instead."""
        if self.state == "error" and not self.hard_error:
            self._wake.set()

    async def _backoff(self, delay: float) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), delay)
        except (asyncio.TimeoutError, TimeoutError):
            pass

    async def wait_up(self, timeout: float) -> asyncssh.SSHClientConnection | None:
        """The connection once it is up, or None after ``timeout`` seconds."""
        if self.conn is not None and self._up.is_set():
            return self.conn
        try:
            await asyncio.wait_for(self._up.wait(), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            return None
        return self.conn

    async def _connect(self) -> asyncssh.SSHClientConnection:
        t = self.target
        pinned = asyncssh.import_public_key(t.host_key)
        host = t.host[1:-1] if t.host.startswith("[") and t.host.endswith("]") else t.host
        conn = await asyncssh.connect(
            host,
            t.port,
            username=t.user,
            client_keys=[self.client_key],
            known_hosts=([pinned], [], []),  # trust exactly the pinned key
            server_host_key_algs=[pinned.get_algorithm()],
            config=[],  # never read ~/.ssh/config
            agent_path=None,
            agent_forwarding=False,
            x11_forwarding=False,
            password_auth=False,
            kbdint_auth=False,
            gss_auth=False,
            host_based_auth=False,
            preferred_auth="publickey",
            encryption_algs=ENCRYPTION_ALGS,
            connect_timeout=self.connect_timeout,
            keepalive_interval=self.keepalive_interval,
            keepalive_count_max=3,
        )
        set_nodelay(conn.get_extra_info("socket"))
        fastpath.install_receive(conn)  # fewer copies per received packet (downloads)
        fastpath.set_read_size(conn._transport)
        return conn

    async def _run(self) -> None:
        delays = None
        first = True
        while not self._closing:
            if not first:
                self.metrics.ssh_reconnect(self.target.describe())
            first = False
            self._wake.clear()  # a retry_now() from here on ends the next backoff
            try:
                conn = await self._connect()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                # a wrong host key or a refused login will not heal by waiting
                self.hard_error = isinstance(
                    e, asyncssh.HostKeyNotVerifiable | asyncssh.PermissionDenied
                )
                error = describe_error(e, self.target)
                repeated = self.state == "error" and error == self.error
                self.state = "error"
                self.error = error
                if delays is None:
                    delays = backoff_delays(self.reconnect_initial_delay, self.reconnect_max_delay)
                delay = next(delays)
                # the same failure again is logged at debug level only (no log flood while down)
                self.log.log(
                    logging.DEBUG if repeated else logging.ERROR,
                    "SSH connection to %s failed: %s; retrying in %.1fs",
                    self.target.describe(),
                    self.error,
                    delay,
                )
                await self._backoff(delay)
                continue
            if self._closing:  # close() ran while connecting and its cancel was lost
                conn.close()
                break
            self.conn = conn
            delays = None
            self.state = "up"
            self.error = None
            self.hard_error = False
            self._up.set()
            self.metrics.ssh_connected(self.target.describe())
            self.log.info("SSH connection to %s is up", self.target.describe())
            await self.conn.wait_closed()
            self._up.clear()
            self.conn = None
            if self._closing:
                break
            self.state = "connecting"
            self.log.warning("SSH connection to %s dropped; reconnecting", self.target.describe())
            delays = backoff_delays(self.reconnect_initial_delay, self.reconnect_max_delay)
            await self._backoff(next(delays))


class _ChannelSide(SSHForwarder):
    """The SSH channel's end of one forwarded connection (counts bytes from the target)."""

    def __init__(self, peer: SSHForwarder, count):
        super().__init__(peer)
        self._count = count

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        fastpath.install(transport)  # the channel: fewer copies per data packet (uploads)

    def data_received(self, data: bytes, datatype=None) -> None:
        self._count("from_target", len(data))
        super().data_received(data, datatype)


class _LocalSide(SSHForwarder):
    """One accepted local client connection; attached to an SSH channel once the link is up."""

    def __init__(self, listener: LocalListener):
        super().__init__()
        self._listener = listener
        self._attached = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # sets TCP_NODELAY
        fastpath.set_read_size(transport)
        transport.pause_reading()  # hold the client until the channel is open
        # uvloop starts reading after connection_made even when paused in it: pause again
        # once it has (what it read meanwhile is buffered and sent when attached)
        asyncio.get_running_loop().call_soon(self._hold)
        self._listener.connections.add(self)
        self._task = asyncio.create_task(self._attach(transport.get_extra_info("peername")))

    def _hold(self) -> None:
        if self._transport is not None and not self._attached:
            self._transport.pause_reading()

    def connection_lost(self, exc) -> None:
        self._listener.connections.discard(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes, datatype=None) -> None:
        self._listener.count("to_target", len(data))
        super().data_received(data, datatype)

    async def _attach(self, peername) -> None:
        listener = self._listener
        orig_host, orig_port = (peername[0], peername[1]) if peername else ("", 0)
        link = listener.link
        hold = 0 if link.hard_error else listener.hold_timeout
        conn = await link.wait_up(hold)
        if self._transport is None:
            return  # the client went away while held
        if conn is None:
            listener.log.warning(
                "Forward %s: closing a client connection, SSH to %s not up within %ss (%s)",
                listener.key,
                link.target.describe(),
                hold,
                link.error or "connecting",
            )
            listener.metrics.connection_refused(listener.key, "ssh down")
            self.close()
            return
        try:
            await conn.create_connection(
                lambda: _ChannelSide(self, listener.count),
                listener.target_host,
                listener.target_port,
                orig_host,
                orig_port,
                window=CHANNEL_WINDOW,
                max_pktsize=CHANNEL_MAX_PKTSIZE,
            )
        except (asyncssh.Error, OSError) as e:
            reason = getattr(e, "reason", None) or str(e)
            listener.log.warning(
                "Forward %s: the SSH endpoint refused a channel to %s:%s: %s",
                listener.key,
                listener.target_host,
                listener.target_port,
                reason,
            )
            listener.metrics.connection_refused(listener.key, "channel refused")
            self.close()
            return
        except Exception:
            listener.log.exception("Forward %s: opening a channel failed", listener.key)
            listener.metrics.connection_refused(listener.key, "channel refused")
            self.close()
            return
        if self._transport is None:
            if self._peer is not None:
                self._peer.close()
            return
        listener.metrics.connection_opened(listener.key)
        if self._inpbuf:  # read before the channel was open (uvloop, see connection_made)
            data, self._inpbuf = self._inpbuf, b""
            self._peer.write(data)
        if self._eof_received:
            self._peer.write_eof()
        self._attached = True
        self._transport.resume_reading()


class LocalListener:
    """The local listening socket of one forward."""

    def __init__(
        self,
        *,
        key: str,
        link: SSHLink,
        target_host: str,
        target_port: int,
        hold_timeout: float,
        log: logging.Logger,
        metrics: TunnelMetrics,
    ):
        self.key = key
        self.link = link
        self.target_host = target_host
        self.target_port = target_port
        self.hold_timeout = hold_timeout
        self.log = log
        self.metrics = metrics
        self.server: asyncio.AbstractServer | None = None
        self.connections: set[_LocalSide] = set()

    def count(self, direction: str, n: int) -> None:
        self.metrics.bytes(self.key, direction, n)

    async def bind(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0: any free port); return the bound port. Raises OSError."""
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: _LocalSide(self), host, port, reuse_address=True, backlog=512
        )
        return self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for side in list(self.connections):
            side.close()
        self.connections.clear()
