# The Outpost of the delayed-tunnel scenario, on the site's login host (rendered by the
# topology runner into RUN_DIR/files/outpost/outpost_config.py; {...} placeholders are
# filled in per run). Each server is a minibatch job on the compute host node1:
# batchspawner submits it, the job starts later, wraps jupyterhub-singleuser in
# report_address, and reports its own address to the hub's setuptunnel URL.
import os

from outpost_scenarios.minibatch_spawner import MiniBatchSpawner

c = get_config()  # noqa: F821

HOMES = "{data_dir:minibatch}/home"  # the site's shared home directories


class SiteBatchSpawner(MiniBatchSpawner):
    """MiniBatchSpawner that answers the hub "" only once the job has reported.

    The Outpost never tells the hub the address (delayed tunneling): the server reports
    it to the hub itself. start() returns once the job has also told the scheduler, so
    that a job that never reports (cancelled by minibatch's --address-timeout) fails the
    start with the scheduler's reason instead of leaving the hub waiting.
    """

    def home(self) -> str:
        path = os.path.join(HOMES, self.user.name)
        os.makedirs(path, exist_ok=True)
        return path

    def get_env(self):
        env = super().get_env()
        env["HOME"] = self.home()
        return env

    def get_args(self):
        return [*super().get_args(), f"--ServerApp.root_dir={self.home()}"]

    def cmd_formatted_for_batch(self) -> str:
        if (self.user_options or {}).get("e2e_fault") == "never-report":
            # fault injection for tests/e2e: a job that never starts a server
            return "{python} -c 'import time; time.sleep(3600)'"
        return super().cmd_formatted_for_batch()

    async def start(self):
        self.delayed_address = False  # wait until the job reported its address ...
        await super().start()
        return ""  # ... but leave telling the hub to the server (setuptunnel)


c.JupyterHubOutpost.spawner_class = SiteBatchSpawner
c.SiteBatchSpawner.minibatch_server = "http://{host:node1.ip}:{port:minibatch.api}"
c.SiteBatchSpawner.minibatch_token_file = "{secret_file:minibatch}"
c.SiteBatchSpawner.req_runtime = "08:00:00"
# the job's name says whose server it is (`minibatch list`: name=jupyterhub-alice)
c.SiteBatchSpawner.batch_script = """#!minibatch
#MB name=jupyterhub-{username}
#MB runtime={runtime}
{prologue}
{cmd}
{epilogue}
"""
c.SiteBatchSpawner.cmd = ["{bin_dir}/jupyterhub-singleuser"]
c.SiteBatchSpawner.args = [
    "--allow-root",  # jobs run as root here
    "--ServerApp.open_browser=False",
    "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
]
c.SiteBatchSpawner.start_timeout = 120

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
        "description": "one node slot, at most 8 hours (minibatch on node1)",
        "runtime": {"hours": 8},
    },
}
c.JupyterHubOutpost.flavors_undefined_max = 0
c.JupyterHubOutpost.flavors_update_token = "{secret:flavors_token}"
