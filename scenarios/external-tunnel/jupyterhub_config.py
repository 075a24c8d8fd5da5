# The hub of the external-tunnel scenario (rendered by the topology runner into
# RUN_DIR/files/hub/jupyterhub_config.py; {...} placeholders are filled in per run).
# JupyterHub starts neither the proxy nor the tunnel daemon: both are services of their
# own (the daemon on its own host), so servers stay reachable while the hub is stopped.
import importlib.util

from jupyterhub_outpost.hub import outpost_handlers

c = get_config()  # noqa: F821

HUB_IP = "{host:hub.ip}"

# --- where the hub listens ---------------------------------------------------------------
c.JupyterHub.hub_ip = HUB_IP  # the hub API: Outposts and servers call it here
c.JupyterHub.hub_port = {port:hub.api}
c.JupyterHub.hub_connect_ip = HUB_IP  # no default route: never guess the address
# configurable-http-proxy runs as its own service (topology service "proxy"): the hub
# only talks to its API, and the proxy keeps routing users to their servers while the
# hub is stopped
c.ConfigurableHTTPProxy.should_start = False
c.ConfigurableHTTPProxy.api_url = "http://{host:hub.ip}:{port:proxy.api}"
c.ConfigurableHTTPProxy.auth_token = "{secret:proxy_token}"
c.JupyterHub.bind_url = "http://{host:hub.ip}:{port:proxy.http}/"  # the proxy's public URL
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
# the external tunnel daemon, on the tunnel host; the proxy targets its forwards there
c.OutpostSpawner.tunnel_api_url = "http://{host:tunnel.ip}:{port:tunnels.api}"
c.OutpostSpawner.tunnel_api_token = "{secret:tunnel_token}"

c.JupyterHub.services = [
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
