"""JupyterHub Outpost: run JupyterHub spawners on remote systems.

Subpackages:

- ``outpost``: the remote side (REST API, store, flavors, spawner runner, SSH endpoint)
- ``hub``: the hub side (OutpostSpawner, hub API handlers, tunnel client, Service backends)
- ``tunnels``: the tunnel daemon that holds every SSH forward of a hub
- ``topology``: brings a scenario up on one machine, hosts as network namespaces
"""

__version__ = "0.1.0"
