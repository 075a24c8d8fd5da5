# The hub of the one-remote scenario (rendered by the topology runner into
# RUN_DIR/files/hub/jupyterhub_config.py; {...} placeholders are filled in per run).
# JupyterHub starts configurable-http-proxy and the tunnel daemon; the one Outpost's
# servers are reached through the tunnel only.
import importlib.util
import os
import shutil

from jupyterhub_outpost.hub import outpost_handlers, tunnel_daemon_service

c = get_config()  # noqa: F821

HUB_IP = "{host:hub.ip}"

# --- where the hub listens ---------------------------------------------------------------
c.JupyterHub.ip = HUB_IP  # the proxy's public side: what the browser opens
c.JupyterHub.port = {port:hub.proxy}
c.JupyterHub.hub_ip = HUB_IP  # the hub API: Outposts and servers call it here
c.JupyterHub.hub_port = {port:hub.api}
c.JupyterHub.hub_connect_ip = HUB_IP  # no default route: never guess the address
c.ConfigurableHTTPProxy.api_url = "http://{host:hub.ip}:{port:hub.proxy_api}"
_chp = "{bin_dir}/../node/node_modules/.bin/configurable-http-proxy"
c.ConfigurableHTTPProxy.command = [
    _chp if os.path.exists(_chp) else shutil.which("configurable-http-proxy") or _chp
]
c.JupyterHub.cleanup_servers = False  # servers survive a hub restart
c.JupyterHub.log_level = "INFO"

# --- users: the demo login -----------------------------------------------------------------
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = "outpost-demo"
c.Authenticator.allow_all = True
c.Authenticator.admin_users = {"admin"}
c.JupyterHub.allow_named_servers = True
if importlib.util.find_spec("jupyterlab"):
    c.Spawner.default_url = "/lab"  # JupyterLab where installed (servers share this venv)
c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 120  # a server on a busy 2-core machine starts slowly

# --- the OutpostSpawner ------------------------------------------------------------------
c.JupyterHub.spawner_class = "outpost"
c.JupyterHub.extra_handlers = outpost_handlers()  # events, setuptunnel, flavors
c.OutpostSpawner.outposts = {
    "remote": {
        "display_name": "Remote site (through the SSH tunnel)",
        "description": "Outpost on {host:outpost.ip.public}; servers on the site network",
        "url": "http://{host:outpost.ip.public}:{port:outpost.api}",
        "hub_name": "hub",
        "secret_file": "{secret_file:outpost_password}",
        # the token with which this Outpost alone may report its flavor usage
        "flavors_update_token": "{secret:flavors_token}",
        "ssh": {
            "host": "{host:outpost.ip.public}",
            "port": {port:outpost.ssh},
            "user": "hub",
            "host_key": "{ssh_pub:outpost_host}",
        },
    },
}
c.OutpostSpawner.tunnel_api_url = "http://{host:hub.ip}:{port:hub.tunnels}"
c.OutpostSpawner.tunnel_api_token = "{secret:tunnel_token}"

c.JupyterHub.services = [
    # the tunnel daemon, started and supervised by the hub like the proxy
    tunnel_daemon_service(
        ssh_key="{ssh_key:hub}",
        state_file="{data_dir:hub}/outpost-tunnels.json",
        token="{secret:tunnel_token}",
        api_ip=HUB_IP,
        api_port={port:hub.tunnels},
        forward_ip=HUB_IP,  # the proxy runs on this host too
        # reconnect within 5 s of an Outpost restart (default: backoff up to 30 s)
        extra_args=["--TunnelDaemon.reconnect_max_delay=5"],
    ),
    # an API token for operators and the end-to-end tests (RUN_DIR/secrets/admin_token)
    {"name": "scenario-admin", "api_token": "{secret:admin_token}"},
]
c.JupyterHub.load_roles = [
    {
        "name": "scenario-admin",
        "scopes": ["admin:users", "admin:servers", "access:servers", "tokens", "read:users"],
        "services": ["scenario-admin"],
    },
]
