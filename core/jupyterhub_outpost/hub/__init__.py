"""The hub side: OutpostSpawner, the hub API endpoints for Outposts, Service backends.

For jupyterhub_config.py::

    from jupyterhub_outpost.hub import outpost_handlers, tunnel_daemon_service
    c.JupyterHub.spawner_class = "outpost"
    c.JupyterHub.extra_handlers = outpost_handlers()
    c.JupyterHub.services = [tunnel_daemon_service(ssh_key="/srv/jupyterhub/outpost_ed25519")]

See docs/hub.md.
"""

from .handlers import outpost_handlers
from .spawner import OutpostSpawner
from .tunnel_service import tunnel_daemon_service

__all__ = [
    "OutpostSpawner",
    "outpost_handlers",
    "tunnel_daemon_service",
]
