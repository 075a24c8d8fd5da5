"""JupyterHub's configuration in the hub pod of the scenario runner's z2jh stand-in.

It reads this release's Helm values from the mounted Secret (``z2jh.get_config``) and
maps them the way zero-to-jupyterhub's hub configuration does, for the keys this chart
implements (docs/charts.md, "What differs from zero-to-jupyterhub"). The order is z2jh's:
the chart's own settings, then ``hub.config``, then the ``hub.extraConfig`` snippets in
the order of their keys, so that a snippet has the last word.
"""

import os
import re
import sys

from jupyterhub.utils import url_path_join

c = get_config()  # noqa: F821 (the config loader provides get_config)

# z2jh.py sits next to this file (both are mounted from the ConfigMap "hub").
sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
from z2jh import (  # noqa: E402
    get_config,
    get_name,
    get_name_env,
    get_secret_value,
    set_config_if_not_none,
)


def camel(name):
    """snake_case trait name -> the camelCase key z2jh uses for it."""
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), name)


# --- the hub, its proxy and its database ---------------------------------------------

c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
# The proxy runs in its own pod behind the Service proxy-api; its token comes from the
# environment (CONFIGPROXY_AUTH_TOKEN, from the Secret "hub").
c.ConfigurableHTTPProxy.api_url = (
    f"http://{get_name('proxy-api')}:{get_name_env('proxy-api', '_SERVICE_PORT')}"
)
c.ConfigurableHTTPProxy.should_start = False
# User servers outlive a hub restart; routes are checked every minute.
c.JupyterHub.cleanup_servers = False
c.JupyterHub.last_activity_interval = 60
c.JupyterHub.tornado_settings = {"slow_spawn_timeout": 0}

# The hub listens on all addresses of its pod; the proxy and servers reach it through
# the Service hub.
c.JupyterHub.hub_bind_url = "http://:8081"
c.JupyterHub.hub_connect_url = f"http://{get_name('hub')}:{get_name_env('hub', '_SERVICE_PORT')}"

c.JupyterHub.db_url = {"sqlite-pvc": "sqlite:///jupyterhub.sqlite", "sqlite-memory": "sqlite://"}[
    get_config("hub.db.type")
]

for trait in (
    "base_url",
    "concurrent_spawn_limit",
    "active_server_limit",
    "allow_named_servers",
    "named_server_limit_per_user",
):
    set_config_if_not_none(c.JupyterHub, trait, "hub." + camel(trait))
set_config_if_not_none(c.Spawner, "consecutive_failure_limit", "hub.consecutiveFailureLimit")

# --- KubeSpawner (singleuser) --------------------------------------------------------

release = get_config("Release.Name")
chart = f"{get_config('Chart.Name')}-{get_config('Chart.Version')}".replace("+", "_")
c.KubeSpawner.common_labels = {
    "app": "jupyterhub",
    "app.kubernetes.io/name": "jupyterhub",
    "release": release,
    "app.kubernetes.io/instance": release,
    "chart": chart,
    "helm.sh/chart": chart,
    "app.kubernetes.io/managed-by": "kubespawner",
}
c.KubeSpawner.namespace = os.environ.get("POD_NAMESPACE", "default")

for trait, key in (
    ("start_timeout", None),
    ("image_pull_policy", "image.pullPolicy"),
    ("image_pull_secrets", "image.pullSecrets"),
    ("extra_labels", None),
    ("extra_annotations", None),
    ("uid", None),
    ("fs_gid", None),
    ("service_account", "serviceAccountName"),
    ("node_selector", None),
    ("mem_limit", "memory.limit"),
    ("mem_guarantee", "memory.guarantee"),
    ("cpu_limit", "cpu.limit"),
    ("cpu_guarantee", "cpu.guarantee"),
    ("environment", "extraEnv"),
    ("profile_list", None),
):
    set_config_if_not_none(c.KubeSpawner, trait, "singleuser." + (key or camel(trait)))

image = get_config("singleuser.image.name")
if image:
    tag = get_config("singleuser.image.tag") or get_config("Chart.AppVersion")
    c.KubeSpawner.image = f"{image}:{tag}" if tag else image

# An explicit null command means the image's own (z2jh: distinct from unset).
_unset = object()
cmd = get_config("singleuser.cmd", _unset)
if cmd is not _unset:
    c.Spawner.cmd = cmd
set_config_if_not_none(c.Spawner, "default_url", "singleuser.defaultUrl")

storage = get_config("singleuser.storage")
if storage["type"] == "dynamic":
    dynamic = storage["dynamic"]
    c.KubeSpawner.storage_pvc_ensure = True
    if dynamic.get("pvcNameTemplate"):
        c.KubeSpawner.pvc_name_template = dynamic["pvcNameTemplate"]
    set_config_if_not_none(
        c.KubeSpawner, "storage_class", "singleuser.storage.dynamic.storageClass"
    )
    set_config_if_not_none(
        c.KubeSpawner, "storage_access_modes", "singleuser.storage.dynamic.storageAccessModes"
    )
    set_config_if_not_none(c.KubeSpawner, "storage_capacity", "singleuser.storage.capacity")
    c.KubeSpawner.volumes = [
        {
            "name": dynamic["volumeNameTemplate"],
            "persistentVolumeClaim": {"claimName": "{pvc_name}"},
        }
    ]
    c.KubeSpawner.volume_mounts = [
        {"name": dynamic["volumeNameTemplate"], "mountPath": storage["homeMountPath"]}
    ]
c.KubeSpawner.volumes.extend(storage["extraVolumes"])
c.KubeSpawner.volume_mounts.extend(storage["extraVolumeMounts"])

# --- services and roles (hub.services, hub.loadRoles, cull) --------------------------

c.JupyterHub.services = []
c.JupyterHub.load_roles = []

if get_config("cull.enabled"):
    # jupyterhub-idle-culler with only the scopes it needs (z2jh's command line).
    cull = get_config("cull")
    scopes = ["list:users", "read:users:activity", "read:servers", "delete:servers"]
    base_url = c.JupyterHub.get("base_url", "/")
    command = [
        "python3",
        "-m",
        "jupyterhub_idle_culler",
        "--url=http://localhost:8081" + url_path_join(base_url, "hub/api"),
    ]
    for option, key in (("timeout", "timeout"), ("cull-every", "every"), ("max-age", "maxAge")):
        if cull.get(key):
            command.append(f"--{option}={cull[key]}")
    command.append(f"--concurrency={cull['concurrency']}")
    if cull["users"]:
        command.append("--cull-users")
        scopes.append("admin:users")
    if not cull["adminUsers"]:
        command.append("--cull-admin-users=false")
    if cull["removeNamedServers"]:
        command.append("--remove-named-servers")
    c.JupyterHub.services.append({"name": "jupyterhub-idle-culler", "command": command})
    c.JupyterHub.load_roles.append(
        {"name": "jupyterhub-idle-culler", "scopes": scopes, "services": ["jupyterhub-idle-culler"]}
    )

# hub.services and hub.loadRoles are maps (mergeable across values files) of what
# JupyterHub wants as lists; a service's token is always the one in the Secret (given in
# the values, or generated once).
for name, service in get_config("hub.services", {}).items():
    service.setdefault("name", name)
    service.pop("apiToken", None)
    service["api_token"] = get_secret_value(f"hub.services.{name}.apiToken")
    c.JupyterHub.services.append(service)
for name, role in get_config("hub.loadRoles", {}).items():
    role.setdefault("name", name)
    c.JupyterHub.load_roles.append(role)

if get_config("debug.enabled"):
    c.JupyterHub.log_level = "DEBUG"
    c.Spawner.debug = True

# --- secrets, hub.config, hub.extraConfig --------------------------------------------

c.JupyterHub.cookie_secret = get_secret_value("hub.config.JupyterHub.cookie_secret")
c.CryptKeeper.keys = get_secret_value("hub.config.CryptKeeper.keys").split(";")

# hub.config is traitlets configuration as YAML; the secrets in it were put into the
# Secret by the chart and are loaded from there (above or from the environment).
_in_secret = {
    "JupyterHub": ("cookie_secret", "proxy_auth_token", "services"),
    "ConfigurableHTTPProxy": ("auth_token",),
    "CryptKeeper": ("keys",),
}
for section, settings in get_config("hub.config", {}).items():
    for trait in _in_secret.get(section, ()):
        settings.pop(trait, None)
    c[section].update(settings)

for key, snippet in sorted(get_config("hub.extraConfig", {}).items()):
    print(f"Loading hub.extraConfig: {key}")
    # hub.extraConfig is configuration the operator wrote, run as z2jh runs it
    exec(compile(snippet, f"hub.extraConfig.{key}", "exec"))  # noqa: S102
