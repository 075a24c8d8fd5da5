"""JupyterHub Outpost: run JupyterHub spawners on remote systems.

Subpackages:

- ``outpost``: the remote side (REST API, store, flavors, spawner runner, SSH endpoint)
- ``hub``: the hub side (OutpostSpawner, hub API handlers, tunnel client, Service backends)
- ``tunnels``: the tunnel daemon that holds every SSH forward of a hub

The scenario runner (``jupyterhub-outpost topology``) is a separate distribution,
``jupyterhub-outpost-scenarios`` (``scenario-runner/`` in the source tree).
"""

__version__ = "0.1.0"
