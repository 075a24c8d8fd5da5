# The remote Outpost of the one-remote, remote-local and external-tunnel scenarios: one file,
# linked from the other two folders. The topology runner renders it into
# RUN_DIR/files/outpost/outpost_config.py; {...} placeholders are filled in per run.
# Its servers are jupyterhub-singleuser processes on the Outpost host, listening on the
# site network only, so the hub reaches them through this Outpost's SSH endpoint.
from jupyterhub.spawner import SimpleLocalProcessSpawner

c = get_config()  # noqa: F821


class SiteSpawner(SimpleLocalProcessSpawner):
    """A local process per server, with progress messages the user sees on the hub."""

    async def progress(self):
        yield {"progress": 20, "message": "Remote site: preparing the home directory"}
        yield {"progress": 40, "message": "Remote site: starting JupyterLab on the site network"}


c.JupyterHubOutpost.spawner_class = SiteSpawner
c.SiteSpawner.cmd = ["{bin_dir}/jupyterhub-singleuser"]
c.SiteSpawner.args = [
    "--allow-root",  # the demo runs everything as root
    "--ServerApp.open_browser=False",
    "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
]
c.SiteSpawner.ip = "{host:outpost.ip.site}"  # the site network: not routable from the hub
c.SiteSpawner.home_dir_template = "{data_dir:outpost}/home/{username}"
c.SiteSpawner.interrupt_timeout = 3
c.SiteSpawner.term_timeout = 3
c.SiteSpawner.kill_timeout = 3
c.SiteSpawner.env_keep = ["PATH", "LANG", "LC_ALL", "PYTHONUNBUFFERED"]

# the hub's credentials and SSH key
c.JupyterHubOutpost.hub_credentials = "{file:outpost/hub_credentials.yaml}"
c.JupyterHubOutpost.ssh_authorized_keys = {"hub": ["{ssh_pub:hub}"]}
c.JupyterHubOutpost.ssh_ip = "{host:outpost.ip.public}"
c.JupyterHubOutpost.ssh_port = {port:outpost.ssh}
c.JupyterHubOutpost.ssh_host_key_file = "{ssh_key:outpost_host}"

# what users may pick; usage is pushed to the hub
c.JupyterHubOutpost.flavors = {
    "small": {
        "max": 10,
        "weight": 10,
        "display_name": "Small",
        "description": "1 CPU, 2 GB (not enforced in the demo), at most 8 hours",
        "runtime": {"hours": 8},
    },
    "large": {
        "max": 2,
        "weight": 5,
        "display_name": "Large",
        "description": "4 CPUs, 8 GB (not enforced in the demo), at most 2 hours; 2 at a time",
        "runtime": {"hours": 2},
    },
}
c.JupyterHubOutpost.flavors_undefined_max = 0
# where this Outpost calls the hub (progress events, flavor usage, tunnel re-creation):
# only URLs built from this entry, never URLs a start request names
c.JupyterHubOutpost.hub_api = {
    "hub": {
        "url": "http://{host:hub.ip}:{port:hub.api}/hub/api",
        "outpost_name": "remote",  # its name in the hub's c.OutpostSpawner.outposts
        "flavors_update_token": "{secret:flavors_token}",
    },
}
