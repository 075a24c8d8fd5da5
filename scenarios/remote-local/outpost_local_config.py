# The local Outpost of the remote-local scenario: it runs on the hub host (rendered by the
# topology runner into RUN_DIR/files/local/outpost_config.py). Its servers listen on the
# hub host's address, so the proxy reaches them directly: no SSH endpoint, no tunnel.
from jupyterhub.spawner import SimpleLocalProcessSpawner

c = get_config()  # noqa: F821


class LocalSpawner(SimpleLocalProcessSpawner):
    """A local process per server, with progress messages the user sees on the hub."""

    async def progress(self):
        yield {"progress": 40, "message": "Local Outpost: starting JupyterLab next to the hub"}


c.JupyterHubOutpost.spawner_class = LocalSpawner
c.LocalSpawner.cmd = ["{bin_dir}/jupyterhub-singleuser"]
c.LocalSpawner.args = [
    "--allow-root",  # the demo runs everything as root
    "--ServerApp.open_browser=False",
    "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
]
c.LocalSpawner.ip = "{host:hub.ip}"  # the proxy (on this host) reaches it directly
c.LocalSpawner.home_dir_template = "{data_dir:local}/home/{username}"
c.LocalSpawner.interrupt_timeout = 3
c.LocalSpawner.term_timeout = 3
c.LocalSpawner.kill_timeout = 3
c.LocalSpawner.env_keep = ["PATH", "LANG", "LC_ALL", "PYTHONUNBUFFERED"]

c.JupyterHubOutpost.hub_credentials = "{file:local/hub_credentials.yaml}"
c.JupyterHubOutpost.ssh_enabled = False  # the hub never tunnels to this Outpost

c.JupyterHubOutpost.flavors = {
    "small": {
        "max": 4,
        "weight": 10,
        "display_name": "Small",
        "description": "1 CPU, 2 GB (not enforced in the demo), at most 8 hours",
        "runtime": {"hours": 8},
    },
}
c.JupyterHubOutpost.flavors_undefined_max = 0
# where this Outpost calls the hub (progress events, flavor usage, tunnel re-creation):
# only URLs built from this entry, never URLs a start request names
c.JupyterHubOutpost.hub_api = {
    "hub": {
        "url": "http://{host:hub.ip}:{port:hub.api}/hub/api",
        "outpost_name": "local",  # its name in the hub's c.OutpostSpawner.outposts
        "flavors_update_token": "{secret:local_flavors_token}",
    },
}
