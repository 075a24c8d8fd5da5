# ruff: noqa: F821  (c is the traitlets config object the Outpost injects)
# Example outpost_config.py for `jupyterhub-outpost --config outpost_config.py --ip 0.0.0.0 --port 8080`.
# Every option is described in docs/configuration.md (generated from the help texts).
import os

# --- Which hubs may use this Outpost (HTTP Basic: user name = hub name) -----------------
# A dict, or the path of a YAML/JSON file {hub: secret} (e.g. a mounted Kubernetes Secret).
c.JupyterHubOutpost.hub_credentials = os.environ.get(
    "OUTPOST_HUB_CREDENTIALS_FILE", "/etc/jupyterhub-outpost/hub_credentials.yaml"
)

# --- The spawner that runs servers on this system ---------------------------------------
# LocalProcessSpawner (the default) needs a system user per hub user. Other examples:
#   from kubespawner import KubeSpawner
#   c.JupyterHubOutpost.spawner_class = KubeSpawner
#   c.KubeSpawner.image = "jupyter/minimal-notebook:notebook-7.0.3"
#   c.JupyterHubOutpost.spawner_class = "batchspawner.SlurmSpawner"
#   c.SlurmSpawner.req_partition = "booster"
c.JupyterHubOutpost.spawner_class = "jupyterhub.spawner.LocalProcessSpawner"
c.LocalProcessSpawner.cmd = ["jupyterhub-singleuser"]
# The name the spawner sees (here: the system account). The default "{user}@{hub}" keeps
# the users of different hubs apart and lets no hub choose a local account; a hook maps
# hub users to accounts; "{user}" trusts every hub to name this system's accounts.
ACCOUNTS = {("examplehub", "alice"): "alice", ("examplehub", "bob"): "bob"}


def local_user_name(hub_name, user):
    return ACCOUNTS[(hub_name, user)]  # a KeyError refuses the start (403)


c.JupyterHubOutpost.local_user_name = local_user_name

# --- Logging ----------------------------------------------------------------------------
c.JupyterHubOutpost.log_level = "INFO"
logged_logger_name = os.environ.get("LOGGER_NAME", "MyOutpostInstance")
c.JupyterHubOutpost.log_format = (
    f"%(color)s[%(levelname)1.1s %(asctime)s.%(msecs).03d {logged_logger_name} "
    "%(name)s %(module)s:%(lineno)d]%(end_color)s %(message)s"
)


# --- Admin hooks (plain functions or coroutines) ----------------------------------------
async def allow_override(jupyterhub_name, misc):
    """'trustedhub' may override anything; other hubs only choose among allowed images.
    Keys that are not allowed are dropped (and named to the hub), never a failed start."""
    if jupyterhub_name == "trustedhub":
        return True
    if misc.get("image", "None") in ["allowed_image1", "allowed_image2"]:
        return {"image"}
    return False


c.JupyterHubOutpost.allow_override = allow_override


def sanitize_start_response(spawner, original_response):
    # Spawner.start() returned a URL or (ip, port); the hub needs "host:port".
    # Return "" when the address is not known yet (delayed tunneling).
    from jupyterhub_outpost.outpost.hooks import default_sanitize_start_response

    return default_sanitize_start_response(spawner, original_response)


c.JupyterHubOutpost.sanitize_start_response = sanitize_start_response

# Ask the hubs to re-create their tunnels when this Outpost restarts (default False): for
# hubs whose stock OutpostSpawner forwards ports itself; our OutpostSpawner does not need it.
c.JupyterHubOutpost.ssh_recreate_at_start = lambda outpost, hub_name: hub_name != "ourhub"


# --- Flavors: per-hub limits --------------------------------------------------------------
async def flavors(jupyterhub_name):
    if jupyterhub_name == "privileged":
        return {
            "typea": {
                "max": -1,
                "weight": 10,
                "display_name": "2GB RAM, 1VCPU, 5 days",
                "description": "JupyterLab will run for max 5 days with 2GB RAM and 1VCPU.",
                "runtime": {"days": 5},
            },
        }
    return {
        "typeb": {
            "max": 10,
            "weight": 9,
            "display_name": "4GB RAM, 1VCPUs, 2 hours",
            "description": "JupyterLab will run for max 2 hours with 4GB RAM and 1VCPUs.",
            "runtime": {"hours": 2},
        },
    }


c.JupyterHubOutpost.flavors = flavors
c.JupyterHubOutpost.flavors_undefined_max = 0  # only configured flavors may start


# Where this Outpost may call each hub (progress events, flavor usage, tunnel re-creation):
# only URLs built from these entries, never a URL a start request names. A hub without an
# entry gets no calls. The flavors token: the entry's, else the one the hub sends with its
# starts ($JUPYTERHUB_FLAVORS_UPDATE_TOKEN).
c.JupyterHubOutpost.hub_api = {
    "examplehub": {
        "url": "https://hub.example.org/hub/api",
        "outpost_name": "hpc",  # this Outpost's name in the hub's c.OutpostSpawner.outposts
        "flavors_update_token": os.environ.get("FLAVOR_EXAMPLEHUB_AUTH_TOKEN", ""),
    },
    "privileged": {"url": "https://privileged-hub.example.org/hub/api", "outpost_name": "hpc"},
}

# --- SSH endpoint (hubs tunnel to the servers through it) --------------------------------
c.JupyterHubOutpost.ssh_enabled = True
c.JupyterHubOutpost.ssh_port = 8022
c.JupyterHubOutpost.ssh_authorized_keys = "/etc/jupyterhub-outpost/ssh_authorized_keys.yaml"
# Delayed tunneling: targets hubs may reach although the Outpost does not know them yet.
c.JupyterHubOutpost.allowed_forward_targets = ["10.20.0.0/16:8000-9000"]

# --- Database: SQLite in --data-dir by default; PostgreSQL via SQL_TYPE=postgresql and
# SQL_USER/SQL_PASSWORD/SQL_HOST/SQL_PORT/SQL_DATABASE, or:
# c.JupyterHubOutpost.db_url = "postgresql://outpost:...@db.example.org/outpost"

# --- HTTPS and metrics ---------------------------------------------------------------------
# c.JupyterHubOutpost.certfile = "/etc/jupyterhub-outpost/tls.crt"
# c.JupyterHubOutpost.keyfile = "/etc/jupyterhub-outpost/tls.key"
# c.JupyterHubOutpost.metrics_token = os.environ["OUTPOST_METRICS_TOKEN"]
