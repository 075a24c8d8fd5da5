# The Outpost of the delayed-tunnel scenario, on the site's login host (rendered by the
# topology runner into RUN_DIR/files/outpost/outpost_config.py; {...} placeholders are
# filled in per run). Each server is a Slurm job: batchspawner's SlurmSpawner submits it
# with sbatch, Slurm runs it on node1 when the node has room, and the job wraps
# jupyterhub-singleuser in report_address, which reports the server's own address to the
# hub's setuptunnel URL (delayed tunneling). The Outpost answers the hub "" as soon as the
# job runs.
from outpost_scenarios.slurm_spawner import LabSlurmSpawner

c = get_config()  # noqa: F821


class SiteSlurmSpawner(LabSlurmSpawner):
    """The site's spawner; ``e2e_fault`` lets tests/e2e start a job whose server never listens."""

    def cmd_formatted_for_batch(self) -> str:
        if (self.user_options or {}).get("e2e_fault") == "never-listens":
            # report_address gives up after 15 s and ends the job: it dies before reporting
            return f"{self.report_command} --timeout 15 -- sleep 3600"
        return super().cmd_formatted_for_batch()


c.JupyterHubOutpost.spawner_class = SiteSlurmSpawner
# one trusted hub whose user names are the cluster's accounts: jobs are submitted as, named
# after and run in the homes of the hub's users (as the scenario's Ansible inventory says)
c.JupyterHubOutpost.local_user_name = "{user}"
c.SiteSlurmSpawner.homes_dir = "{run_dir}/homes"  # the site's shared home directories
c.SiteSlurmSpawner.req_partition = "batch"
c.SiteSlurmSpawner.req_nprocs = "1"
c.SiteSlurmSpawner.req_runtime = "08:00:00"
c.SiteSlurmSpawner.cmd = ["{bin_dir}/jupyterhub-singleuser"]
c.SiteSlurmSpawner.args = [
    "--allow-root",  # jobs run as root here
    "--ServerApp.open_browser=False",
    "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
]
c.SiteSlurmSpawner.start_timeout = 120

# the hub's credentials and SSH key; the tunnel may reach any unprivileged port of node1
# (the addresses jobs report on node1), as the hub's setuptunnel_targets say too
c.JupyterHubOutpost.hub_credentials = "{file:outpost/hub_credentials.yaml}"
c.JupyterHubOutpost.ssh_authorized_keys = {"hub": ["{ssh_pub:hub}"]}
c.JupyterHubOutpost.ssh_ip = "{host:login.ip.public}"
c.JupyterHubOutpost.ssh_port = {port:outpost.ssh}
c.JupyterHubOutpost.ssh_host_key_file = "{ssh_key:outpost_host}"
c.JupyterHubOutpost.allowed_forward_targets = ["{host:node1.ip}/32:1024-65535"]

c.JupyterHubOutpost.flavors = {
    "batch": {
        "max": 4,
        "weight": 10,
        "display_name": "Batch job",
        "description": "one CPU of node1 for at most 8 hours (a Slurm job)",
        "runtime": {"hours": 8},
    },
}
c.JupyterHubOutpost.flavors_undefined_max = 0
# where this Outpost calls the hub (progress events, flavor usage, tunnel re-creation):
# only URLs built from this entry, never URLs a start request names
c.JupyterHubOutpost.hub_api = {
    "hub": {
        "url": "http://{host:hub.ip}:{port:hub.api}/hub/api",
        "outpost_name": "hpc",  # its name in the hub's c.OutpostSpawner.outposts
        "flavors_update_token": "{secret:flavors_token}",
    },
}
