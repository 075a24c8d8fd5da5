"""The Outpost's SSH endpoint: its options (``c.JupyterHubOutpost.ssh_*``,
``allowed_forward_targets``) and its start, a mixin of the application
(:class:`~.app.JupyterHubOutpost`)."""

import os

from jupyterhub.traitlets import Callable
from traitlets import Bool, Dict, Float, HasTraits, Integer, List, Unicode, Union, default

from .errors import StartupError


class SSHEndpointSettings(HasTraits):
    """The application's SSH endpoint options and ``start_ssh_endpoint``."""

    ssh_recreate_at_start = Union(
        [Callable(), Bool()],
        default_value=False,
        help="""At start-up, ask each hub to re-create the tunnels of its running servers
        (POST {"service": "host:port"} to each server's setuptunnel URL built from the hub's
        hub_api entry, with the server's API token): True, False (the default), or a hook (outpost, hub_name) ->
        bool, called once per server (may be a coroutine; outpost is this application).
        Off by default: a hub without tunnels answers such a request by stopping the
        server, and our OutpostSpawner's tunnel daemon reconnects by itself. Turn it on for
        hubs whose stock OutpostSpawner forwards ports itself (ssh_during_startup).""",
    ).tag(config=True)

    ssh_recreate_at_start_global = Union(
        [Callable(), Bool()],
        default_value=False,
        help="""Tunnel re-creation per hub instead of per server: False (the default), or a
        hook (outpost, hub_names) -> bool, called once at start-up with the names of the
        hubs that have running servers here (may be a coroutine). When it returns a true
        value, the hook has taken care of the tunnels and ssh_recreate_at_start is not
        consulted; True skips the per-server requests.""",
    ).tag(config=True)

    ssh_enabled = Bool(
        True,
        help="""Run the SSH endpoint through which hubs reach the servers (port forwards
        only: no shell, exec, agent or X11).""",
    ).tag(config=True)

    ssh_ip = Unicode(help="Address the SSH endpoint listens on. Default: the same as ip.").tag(
        config=True
    )

    @default("ssh_ip")
    def _ssh_ip_default(self):
        return self.ip

    ssh_port = Integer(8022, help="Port of the SSH endpoint.").tag(config=True)

    ssh_host_key_file = Unicode(
        help="""The SSH endpoint's host key (ed25519). Created once with mode 0600 when
        missing; keep it, hubs pin it. Default: <data_dir>/ssh_host_ed25519_key.""",
    ).tag(config=True)

    @default("ssh_host_key_file")
    def _ssh_host_key_file_default(self):
        return os.path.join(self.data_dir, "ssh_host_ed25519_key")

    ssh_authorized_keys = Union(
        [Dict(), Unicode()],
        default_value={},
        help="""The hubs' SSH public keys: {hub name: [OpenSSH public key lines]}, or the
        path of a YAML or JSON file holding that mapping (read again when it changes).
        The SSH user name is the hub name.""",
    ).tag(config=True)

    ssh_shared_usernames = List(
        Unicode(),
        default_value=["jhuboutpost"],
        help="""SSH user names under which any hub may log in with one of its keys (the key
        tells which hub it is; a key listed for several hubs is refused there). The stock
        OutpostSpawner logs in as "jhuboutpost" unless configured otherwise. A hub's own
        name always works. Empty: hubs must log in with their hub name.""",
    ).tag(config=True)

    forward_recheck_interval = Float(
        10.0,
        help="""Seconds for which a poll that found a server running lets its hub open SSH
        forwards to its address. An older one is repeated before the next forward opens
        (at most 10 s; a poll that fails confirms nothing). Forward rights end at once
        when the server stops, ends, fails a poll or another hub's server reports the same
        address, and that hub's open forwards to the address are closed. 0: poll before
        every forward.""",
    ).tag(config=True)

    allowed_forward_targets = List(
        Unicode(),
        default_value=[],
        help="""Targets any authenticated hub may forward to besides its own running
        servers (delayed tunneling), as "CIDR-or-host-glob:port-or-range", e.g.
        "10.20.0.0/16:8000-9000" or "*.cluster.local:8888". Default: none.""",
    ).tag(config=True)

    async def start_ssh_endpoint(self, *, reuse_port: bool = False) -> None:
        """Start the endpoint; ``reuse_port``: several workers listen on the same port."""
        from .ssh_endpoint import SSHEndpoint

        def authorized_keys():
            return self.authorized_keys.get()

        self.ssh_endpoint = endpoint = SSHEndpoint(
            host_key_path=self.ssh_host_key_file,
            listen_host=self.ssh_ip,
            listen_port=self.ssh_port,
            authorized_keys=authorized_keys,
            authorize_forward=self.manager.authorize_forward,
            log=self.log,
            shared_usernames=set(self.ssh_shared_usernames),
            reuse_port=reuse_port,
        )
        # a server that stops, ends or is replaced closes its hub's forwards to it
        self.manager.rights.on_revoke = endpoint.revoke
        if not self.authorized_keys.get():
            self.log.warning(
                "The SSH endpoint runs but ssh_authorized_keys is empty: no hub can open a "
                "tunnel (set c.JupyterHubOutpost.ssh_authorized_keys, or ssh_enabled = False)."
            )
        try:
            await self.ssh_endpoint.start()
        except OSError as e:
            raise StartupError(
                f"The SSH endpoint cannot listen on {self.ssh_ip}:{self.ssh_port}: {e.strerror}"
                " (ssh_ip/ssh_port; set ssh_enabled = False if hubs reach servers directly)."
            ) from None
        self.log.info(
            "SSH endpoint at %s:%s, host key %s",
            self.ssh_ip,
            self.ssh_endpoint.bound_port,
            self.ssh_endpoint.fingerprint,
        )
