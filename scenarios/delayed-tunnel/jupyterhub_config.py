# The hub of the delayed-tunnel scenario (rendered by the topology runner into
# RUN_DIR/files/hub/jupyterhub_config.py; {...} placeholders are filled in per run).
# JupyterHub starts configurable-http-proxy and the tunnel daemon. The HPC Outpost
# answers a start with "" and each server reports its own address to setuptunnel.
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
c.Spawner.poll_interval = 10  # notice a server whose batch job died within seconds

# --- the OutpostSpawner ------------------------------------------------------------------
c.JupyterHub.spawner_class = "outpost"
c.JupyterHub.extra_handlers = outpost_handlers()  # events, setuptunnel, flavors
c.OutpostSpawner.outposts = {
    "hpc": {
        "display_name": "HPC site (batch job, delayed tunnel)",
        "description": "Outpost on the login host {host:login.ip.public}; jobs on node1",
        "url": "http://{host:login.ip.public}:{port:outpost.api}",
        "hub_name": "hub",
        "secret_file": "{secret_file:outpost_password}",
        # the token with which this Outpost alone may report its flavor usage
        "flavors_update_token": "{secret:flavors_token}",
        "ssh": {
            "host": "{host:login.ip.public}",
            "port": {port:outpost.ssh},
            "user": "hub",
            "host_key": "{ssh_pub:outpost_host}",
        },
        # the addresses a job may report (the Outpost's allowed_forward_targets agree)
        "setuptunnel_targets": ["{host:node1.ip}/32:1024-65535"],
        # the hub's API as the site sees it: its jobs reach the hub only through the
        # site's egress relay on the login host
        "hub_api_url": "http://{host:login.ip.site}:{port:egress.hub}/hub/api",
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
