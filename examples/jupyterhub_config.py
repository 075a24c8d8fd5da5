# jupyterhub_config.py for a hub with one remote Outpost (reached through SSH tunnels)
# and one local Outpost (its servers are directly reachable). See docs/hub.md.
#
# Before starting the hub:
#   jupyterhub-outpost keygen ssh --out /srv/jupyterhub/outpost_ed25519
#       -> give outpost_ed25519.pub to the remote Outpost's admin (ssh_authorized_keys)
#   export OUTPOST_TUNNEL_API_TOKEN=$(openssl rand -hex 32)   # hub <-> tunnel daemon
#   openssl rand -hex 32 > /srv/jupyterhub/secrets/outpost-hpc-flavors   # one per Outpost
#       -> give it to that Outpost's admin (hub_api entry's flavors_update_token), or let
#          the hub send it with each start (JUPYTERHUB_FLAVORS_UPDATE_TOKEN)
# and put each Outpost's password into the files named below.
from jupyterhub_outpost.hub import outpost_handlers, tunnel_daemon_service

c = get_config()  # noqa: F821

c.JupyterHub.spawner_class = "outpost"
c.JupyterHub.allow_named_servers = True
# Outposts and remote servers call the hub API at this address
c.JupyterHub.hub_ip = "0.0.0.0"
c.JupyterHub.hub_connect_url = "https://hub.example.org"
# servers keep running across hub restarts; the OutpostSpawner recognises them
c.JupyterHub.cleanup_servers = False

# --- hub API endpoints for Outposts: progress events, setuptunnel, flavors ---------------
c.JupyterHub.extra_handlers = outpost_handlers()
c.JupyterHub.services = [
    # the tunnel daemon, started and supervised by the hub like the proxy
    tunnel_daemon_service(
        ssh_key="/srv/jupyterhub/outpost_ed25519",
        state_file="/srv/jupyterhub/outpost-tunnels.json",
    ),
]

# --- the Outposts ----------------------------------------------------------------------
c.OutpostSpawner.outposts = {
    "hpc": {
        "display_name": "HPC cluster (remote)",
        "url": "https://outpost.hpc.example.org",
        "hub_name": "examplehub",
        "secret_file": "/srv/jupyterhub/secrets/outpost-hpc",
        # the only token with which flavor usage of "hpc" is accepted (no other Outpost's)
        "flavors_update_token_file": "/srv/jupyterhub/secrets/outpost-hpc-flavors",
        "ssh": {
            "host": "outpost.hpc.example.org",
            "port": 8022,
            "user": "examplehub",
            # from the Outpost admin: `jupyterhub-outpost keygen fingerprint` / the .pub line
            "host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI...",
        },
        # addresses a delayed-tunneling server may report via setuptunnel
        "setuptunnel_targets": ["10.20.0.0/16:8000-9000"],
    },
    "local": {
        "display_name": "This cluster",
        "url": "http://outpost.outpost.svc:8080",
        "hub_name": "examplehub",
        "secret_file": "/srv/jupyterhub/secrets/outpost-local",
        "direct": True,  # servers are reachable by cluster DNS: no tunnel
    },
}
c.OutpostSpawner.default_outpost = "local"
c.Spawner.start_timeout = 600  # remote batch systems can take a while
c.Spawner.http_timeout = 120

# On Kubernetes (zero-to-jupyterhub) the proxy reaches tunnelled servers through one
# Service per server that selects the hub pod (which runs the tunnel daemon):
# c.OutpostSpawner.service_backend = "kubernetes"
# c.OutpostSpawner.kubernetes_service_selector = {"app": "jupyterhub", "component": "hub"}
# and the daemon must listen on the pod's address:
# tunnel_daemon_service(..., forward_ip="0.0.0.0")
