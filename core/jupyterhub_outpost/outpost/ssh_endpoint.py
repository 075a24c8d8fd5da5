"""The Outpost's SSH endpoint: an asyncssh server that only forwards to allowed targets.

A hub connects with SSH user = its hub name and one of its public keys (from the
``authorized_keys`` callable, read at every login so that a reloaded key file takes
effect at once). Under a *shared* user name (``shared_usernames``, by default
``jhuboutpost``, which the stock OutpostSpawner uses) any hub may log in: the key decides
which hub it is, and a key that more than one hub lists is refused. The only thing it may do is open ``direct-tcpip`` channels (``ssh -L``),
and each one is checked with ``authorize_forward(hub, host, port)`` before the Outpost
connects to the target. Session channels (shell, exec, subsystem, pty), agent and X11
forwarding, remote forwards (``tcpip-forward``) and Unix sockets are refused; password and
keyboard-interactive authentication are off.

The host key is generated once (ed25519, file mode 0600) and kept; hubs pin
:attr:`SSHEndpoint.public_host_key`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import weakref
from collections.abc import Awaitable, Callable, Mapping

import asyncssh
from asyncssh.forward import SSHForwarder

from ..tunnels import fastpath
from .forward_rights import address_key

# Flow-control window and packet size of accepted channels (what we advertise for the data
# we receive). asyncssh's defaults (2 MiB / 32 KiB) cost throughput: every packet is a
# Python-level encrypt/decrypt, so fewer, larger packets move more bytes per second
# (measured: docs/decisions/ssh-endpoint.md). 128 KiB stays below OpenSSH's 256 KiB packet
# limit, so OpenSSH clients keep working.
CHANNEL_WINDOW = 8 * 1024 * 1024
CHANNEL_MAX_PKTSIZE = 128 * 1024


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Disable Nagle on a TCP transport (no 40 ms delayed-ACK stalls on small writes)."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class HostKeyError(Exception):
    """The SSH host key file exists but cannot be used; the message says which and why."""


def _read_host_key(path: str) -> asyncssh.SSHKey:
    try:
        return asyncssh.read_private_key(path)
    except (OSError, asyncssh.KeyImportError, ValueError) as e:
        raise HostKeyError(
            f"cannot read the SSH host key {path}: {e}. Hubs pin this key: restore the file "
            "from a backup, or move it away to create a new one (and re-pin it on every hub)."
        ) from None


def load_or_create_host_key(path: str, log: logging.Logger | None = None) -> asyncssh.SSHKey:
    """Read the ed25519 host key at ``path``; create it (mode 0600) when it does not exist.

    Raises :class:`HostKeyError` when the file exists but cannot be read.
    """
    if os.path.exists(path):
        mode = os.stat(path).st_mode & 0o777
        if mode & 0o077 and log:
            log.warning("SSH host key %s is readable by others (mode %o); chmod 600 it", path, mode)
        return _read_host_key(path)
    key = asyncssh.generate_private_key("ssh-ed25519", comment="jupyterhub-outpost")
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(key.export_private_key())
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)  # fails if another process created the key meanwhile
    except FileExistsError:
        return _read_host_key(path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    if log:
        log.info("Created SSH host key %s (%s)", path, key.get_fingerprint("sha256"))
    return key


def public_key_line(key: asyncssh.SSHKey) -> str:
    """``"ssh-ed25519 AAAA..."`` without a comment."""
    return " ".join(key.export_public_key("openssh").decode().split()[0:2])


class _EndpointServer(asyncssh.SSHServer):
    """One instance per accepted SSH connection."""

    def __init__(self, endpoint: SSHEndpoint):
        self._endpoint = endpoint
        self._conn: asyncssh.SSHServerConnection | None = None
        self._hub: str | None = None
        self._peer = "?"
        self._authenticated = False
        self._unknown_hub = False
        self._shared_user = ""  # the shared user name logged in with; the key names the hub

    # -- connection lifecycle --
    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        peer = conn.get_extra_info("peername")
        self._peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        sock = conn.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        fastpath.install_receive(conn)  # fewer copies per received packet (uploads)
        fastpath.set_read_size(getattr(conn, "_transport", None))
        self._endpoint._connections.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._endpoint._connections.discard(self._conn)
        if self._hub and not self._authenticated and not self._unknown_hub:
            self._endpoint.log.warning(
                "SSH login refused for hub %r from %s: no authorized key of this hub matched",
                self._hub,
                self._peer,
            )
        elif self._hub:
            self._endpoint.log.info(
                "SSH connection of hub %s from %s closed", self._hub, self._peer
            )

    # -- authentication: public keys of the hub named by the user name --
    def begin_auth(self, username: str) -> bool:
        assert self._conn is not None
        self._hub = username
        keys = self._endpoint._authorized_keys_for(username)
        if keys is None and username in self._endpoint.shared_usernames:
            self._hub, self._shared_user = None, username  # validate_public_key decides
        elif keys is None:
            self._unknown_hub = True
            self._endpoint.log.warning(
                "SSH login refused: unknown hub %r from %s", username, self._peer
            )
        else:
            self._conn.set_authorized_keys(keys)
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def host_based_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        """Only for a shared user name: the hub is the one that lists this key."""
        if not self._shared_user or username != self._shared_user:
            return False
        hubs = self._endpoint._hubs_with_key(key, self._peer.rsplit(":", 1)[0])
        if len(hubs) > 1:
            self._endpoint.log.warning(
                "SSH login as %r from %s refused: the key is listed for several hubs (%s); "
                "those hubs must log in with their hub name as SSH user",
                username,
                self._peer,
                ", ".join(sorted(hubs)),
            )
        self._hub = hubs[0] if len(hubs) == 1 else None
        return self._hub is not None

    def auth_completed(self) -> None:
        self._authenticated = True
        shared = f" (as {self._shared_user})" if self._shared_user else ""
        self._endpoint.log.info("SSH login of hub %s%s from %s", self._hub, shared, self._peer)

    # -- what an authenticated hub may do --
    def session_requested(self) -> bool:
        self._refuse("session (shell/exec/subsystem/pty)", "-")
        return False

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        self._refuse("remote forward (tcpip-forward)", f"{listen_host}:{listen_port}")
        return False

    def unix_connection_requested(self, dest_path: str) -> bool:
        self._refuse("unix socket forward", dest_path)
        return False

    def unix_server_requested(self, listen_path: str) -> bool:
        self._refuse("remote unix socket forward", listen_path)
        return False

    def tun_requested(self, unit):  # pragma: no cover - asyncssh default refuses too
        self._refuse("tun forward", str(unit))
        return False

    def tap_requested(self, unit):  # pragma: no cover
        self._refuse("tap forward", str(unit))
        return False

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int):
        assert self._conn is not None
        chan = self._conn.create_tcp_channel(window=CHANNEL_WINDOW, max_pktsize=CHANNEL_MAX_PKTSIZE)
        fastpath.install(chan)  # fewer copies per data packet (downloads are sent from here)
        return chan, self._open_forward(dest_host, dest_port)

    async def _open_forward(self, host: str, port: int) -> SSHForwarder:
        endpoint = self._endpoint
        hub = self._hub or "?"
        key = (hub, address_key(host, port))
        # [opens in flight, revocations meanwhile]: a revocation while we connect wins
        opening = endpoint._opening.setdefault(key, [0, 0])
        opening[0] += 1
        revoked = opening[1]
        try:
            peer = await self._connect(hub, host, port)
            if opening[1] != revoked:
                peer.close()
                self._refuse("forward", f"{host}:{port}", "the server stopped meanwhile")
                raise asyncssh.ChannelOpenError(
                    asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
                    f"forwarding to {host}:{port} is no longer allowed for hub {hub}",
                )
        finally:
            opening[0] -= 1
            if not opening[0]:
                endpoint._opening.pop(key, None)
        endpoint._track(key, peer)
        endpoint.log.debug("SSH forward of hub %s to %s:%s opened", hub, host, port)
        if endpoint.on_forward_opened is not None:
            endpoint.on_forward_opened(hub, host, port)
        return SSHForwarder(peer)

    async def _connect(self, hub: str, host: str, port: int) -> SSHForwarder:
        """Authorize the forward, then connect to the target; the TCP side's forwarder."""
        endpoint = self._endpoint
        try:
            allowed = await endpoint.authorize_forward(hub, host, port)
        except Exception:
            endpoint.log.exception("authorize_forward(%r, %r, %r) failed", hub, host, port)
            allowed = False
        if not allowed:
            self._refuse("forward", f"{host}:{port}", "target not allowed for this hub")
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED,
                f"forwarding to {host}:{port} is not allowed for hub {hub}",
            )
        loop = asyncio.get_running_loop()
        connect_host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        try:
            transport, peer = await loop.create_connection(SSHForwarder, connect_host, port)
        except OSError as e:
            endpoint.log.warning(
                "SSH forward of hub %s to %s:%s failed: %s", hub, host, port, e.strerror or e
            )
            raise asyncssh.ChannelOpenError(
                asyncssh.OPEN_CONNECT_FAILED, f"cannot connect to {host}:{port}: {e}"
            ) from None
        set_nodelay(transport)
        fastpath.set_read_size(transport)
        return peer

    def _refuse(self, what: str, target: str, reason: str = "not allowed on this endpoint") -> None:
        # the target comes from the client: never let it forge log lines
        if not target.isprintable():
            target = repr(target)
        self._endpoint.log.warning(
            "SSH endpoint refused %s for hub %s to %s: %s (peer %s)",
            what,
            self._hub or "?",
            target,
            reason,
            self._peer,
        )
        if self._endpoint.on_refusal is not None:
            self._endpoint.on_refusal(self._hub or "?", what, target, reason)


class SSHEndpoint:
    """The Outpost's SSH endpoint (see docs/internals.md, "Outpost <-> SSH endpoint").

    ``authorized_keys()`` returns ``{hub name: [OpenSSH public key lines]}``; it is called at
    every login. ``authorize_forward(hub, host, port)`` is awaited for every channel.
    ``on_forward_opened(hub, host, port)`` and ``on_refusal(hub, what, target, reason)`` are
    optional hooks (metrics).
    """

    def __init__(
        self,
        *,
        host_key_path: str,
        listen_host: str,
        listen_port: int,
        authorized_keys: Callable[[], Mapping[str, list[str]]],
        authorize_forward: Callable[[str, str, int], Awaitable[bool]],
        log: logging.Logger,
        login_timeout: float = 30,
        keepalive_interval: float = 30,
        shared_usernames: frozenset[str] | set[str] = frozenset({"jhuboutpost"}),
        reuse_port: bool = False,
    ):
        self.host_key_path = host_key_path
        self.listen_host = listen_host
        self.listen_port = listen_port
        self.authorized_keys = authorized_keys
        self.authorize_forward = authorize_forward
        self.log = log
        self.login_timeout = login_timeout
        self.keepalive_interval = keepalive_interval
        self.shared_usernames = frozenset(shared_usernames)
        self.reuse_port = reuse_port  # several Outpost workers listen on one port
        self.on_forward_opened: Callable[[str, str, int], None] | None = None
        self.on_refusal: Callable[[str, str, str, str], None] | None = None
        self._connections: set[asyncssh.SSHServerConnection] = set()
        # open forwards by (hub, address key): closed when the hub's right ends (revoke)
        self._open: dict[tuple[str, str], weakref.WeakSet[SSHForwarder]] = {}
        self._opening: dict[tuple[str, str], list[int]] = {}  # see _open_forward
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._host_key = load_or_create_host_key(host_key_path, log)

    def revoke(self, hub: str, key: str) -> int:
        """``hub`` may no longer forward to the address ``key`` (``forward_rights.address_key``):
        close its open forwards there, and any that is being opened; returns how many."""
        if (hub, key) in self._opening:
            self._opening[(hub, key)][1] += 1
        forwarders = list(self._open.pop((hub, key), ()))
        for forwarder in forwarders:
            forwarder.close()  # the TCP side; it closes the SSH channel too
        if forwarders:
            self.log.info(
                "Closed %d SSH forward(s) of hub %s to %s: its server there is gone",
                len(forwarders),
                hub,
                key,
            )
        return len(forwarders)

    def _track(self, key: tuple[str, str], forwarder: SSHForwarder) -> None:
        if len(self._open) > 1000:  # forget addresses whose forwards have all closed
            self._open = {k: v for k, v in self._open.items() if v}
        self._open.setdefault(key, weakref.WeakSet()).add(forwarder)

    @property
    def fingerprint(self) -> str:
        """``"SHA256:..."`` of the host key."""
        return self._host_key.get_fingerprint("sha256")

    @property
    def public_host_key(self) -> str:
        """``"ssh-ed25519 AAAA..."``: the line a hub pins."""
        return public_key_line(self._host_key)

    @property
    def bound_port(self) -> int:
        """The port actually listened on (differs from ``listen_port`` when that is 0)."""
        if self._acceptor is None:
            return self.listen_port
        return self._acceptor.sockets[0].getsockname()[1]

    def _authorized_keys_for(self, hub: str) -> asyncssh.SSHAuthorizedKeys | None:
        try:
            all_keys = self.authorized_keys() or {}
        except Exception:
            self.log.exception("Could not read the hubs' SSH authorized keys")
            return None
        lines = all_keys.get(hub)
        if not lines:
            return None
        if isinstance(lines, str):
            lines = [lines]
        good = []
        for i, line in enumerate(lines):
            line = (line or "").strip()
            if not line or line.startswith("#"):
                continue
            try:
                asyncssh.import_authorized_keys(line)
            except (asyncssh.KeyImportError, ValueError):
                self.log.error("Ignoring unreadable SSH public key #%d of hub %s", i + 1, hub)
                continue
            good.append(line)
        if not good:
            return None
        return asyncssh.import_authorized_keys("\n".join(good) + "\n")

    def _hubs_with_key(self, key: asyncssh.SSHKey, peer_host: str) -> list[str]:
        """The hubs whose authorized keys accept ``key`` from ``peer_host``."""
        try:
            hubs = list((self.authorized_keys() or {}).keys())
        except Exception:
            self.log.exception("Could not read the hubs' SSH authorized keys")
            return []
        found = []
        for hub in hubs:
            keys = self._authorized_keys_for(hub)
            if keys is not None and keys.validate(key, peer_host, peer_host) is not None:
                found.append(hub)
        return found

    async def start(self) -> None:
        """Listen on ``listen_host:listen_port``."""
        self._acceptor = await asyncssh.listen(
            self.listen_host,
            self.listen_port,
            server_factory=lambda: _EndpointServer(self),
            server_host_keys=[self._host_key],
            config=[],  # no server config file
            gss_host=None,
            password_auth=False,
            kbdint_auth=False,
            host_based_auth=False,
            gss_auth=False,
            agent_forwarding=False,
            x11_forwarding=False,
            allow_pty=False,
            allow_scp=False,
            process_factory=None,
            login_timeout=self.login_timeout,
            keepalive_interval=self.keepalive_interval,
            keepalive_count_max=3,
            reuse_address=True,
            reuse_port=self.reuse_port,
        )
        self.log.info(
            "SSH endpoint listening on %s:%s, host key %s",
            self.listen_host,
            self.bound_port,
            self.fingerprint,
        )

    async def stop(self) -> None:
        """Stop listening and close every open connection."""
        if self._acceptor is not None:
            self._acceptor.close()
            await self._acceptor.wait_closed()
            self._acceptor = None
        connections = list(self._connections)
        for conn in connections:
            conn.close()
        for conn in connections:
            try:
                await asyncio.wait_for(conn.wait_closed(), 5)
            except (TimeoutError, asyncio.TimeoutError):
                self.log.warning("SSH connection did not close within 5s")
        self._connections.clear()
