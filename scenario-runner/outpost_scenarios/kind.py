"""Kind mode: a scenario on two kind clusters with the project's charts.

``jupyterhub-outpost topology up scenarios/<name> --mode kind`` (``make scenario-<name>
MODE=kind``) and the kind e2e (tests/e2e/kind) both use this module:

- a hub cluster ``<name>-hub`` (the hub with the hub image, installed with this
  package's zero-to-jupyterhub stand-in ``scenario-runner/charts/jupyterhub`` since z2jh's
  chart cannot be fetched here; hub-addons; and
  for remote-local the local Outpost) and an Outpost cluster ``<name>-remote``
  (jupyterhub-outpost with KubeSpawner), created from the kind configs next to this file;
- both images built from images/ and loaded into the clusters;
- the releases installed with the values in ``scenarios/<name>/kind/*.yaml`` plus what
  one run generates (keys, passwords, addresses), the way docs/charts.md tells an
  operator to.

Everything goes through argv lists (``docker``, ``kind``, ``kubectl``; no shell) and
Helm's Go engine from the ``helm-python-sdk`` wheel (no helm binary), imported only when
a release is installed.

LoadBalancer Services: when ``cloud-provider-kind`` is on PATH it is started for the run
and gives every LoadBalancer an address on the kind Docker network (reachable from the
other cluster and from this host on Linux). Without it, the Services fall back to
NodePort and the node container's address is used.

Kind mode needs a source checkout (the charts, images/ and scenarios/ are not in the
Python package) and a Docker engine.
"""

from __future__ import annotations

import copy
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import yaml

HERE = Path(__file__).resolve().parent
ROOT = Path(os.environ.get("OUTPOST_SOURCE_DIR") or HERE.parents[1])
HUB_CONFIG = HERE / "kind-hub.yaml"
REMOTE_CONFIG = HERE / "kind-outpost.yaml"
OUTPOST_IMAGE = "ghcr.io/jupyterhub-outpost/outpost:kind"
HUB_IMAGE = "ghcr.io/jupyterhub-outpost/hub:kind"
# Takes zero-to-jupyterhub's values (docs/charts.md, "The kind scenarios' hub").
HUB_CHART = ROOT / "scenario-runner" / "charts" / "jupyterhub"
HUB_NS = "jhub"
OUTPOST_NS = "outpost"
SCENARIOS = ["one-remote", "remote-local", "external-tunnel", "delayed-tunnel"]
HELM_MISSING = (
    "kind mode installs the charts with Helm's Go engine from the helm-python-sdk wheel, "
    "which is not installed here: pip install 'helm-python-sdk>=0.2.2' "
    "(or the project's test extras: pip install -e '.[test]')"
)


class KindError(RuntimeError):
    """Something kind mode needs is missing or a step failed."""


def run(argv: list[str], *, timeout: float = 1800, env: dict | None = None) -> str:
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT
    )
    if result.returncode != 0:
        raise KindError(f"{argv[:3]} failed ({result.returncode}): {result.stderr[-2000:]}")
    return result.stdout


def helm_python():
    """The helm-python-sdk module, imported lazily (it is in the test extras)."""
    try:
        import helm_python
    except ImportError as e:
        raise KindError(HELM_MISSING) from e
    return helm_python


def build_images() -> None:
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    run(["docker", "build", "-f", "images/outpost/Dockerfile", "-t", OUTPOST_IMAGE, "."], env=env)
    run(["docker", "build", "-f", "images/hub/Dockerfile", "-t", HUB_IMAGE, "."], env=env)


def merge(base: dict, *overrides: dict) -> dict:
    """Helm's -f semantics: maps merge deeply, anything else (lists too) is replaced."""
    out = copy.deepcopy(base)
    for override in overrides:
        for key, value in override.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merge(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
    return out


def scenario_values(scenario: str, name: str) -> dict:
    return yaml.safe_load((ROOT / "scenarios" / scenario / "kind" / name).read_text()) or {}


@dataclass
class Keys:
    """Generated per run: what operators exchange between the two sides."""

    hub_private: str
    hub_public: str
    host_private: str
    host_public: str
    password: str

    @classmethod
    def generate(cls) -> Keys:
        hub = asyncssh.generate_private_key("ssh-ed25519")
        host = asyncssh.generate_private_key("ssh-ed25519")
        return cls(
            hub_private=hub.export_private_key().decode(),
            hub_public=hub.export_public_key().decode().strip(),
            host_private=host.export_private_key().decode(),
            host_public=host.export_public_key().decode().strip(),
            password=os.urandom(24).hex(),
        )


class Cluster:
    """One kind cluster, driven by the kind and kubectl binaries, with Helm on it."""

    def __init__(
        self,
        name: str,
        config: Path,
        kind_path: Path | str | None = None,
        kubectl_path: Path | str | None = None,
        workdir: Path | None = None,
    ):
        self.name = name
        self.config = Path(config)
        self.kind_path = str(kind_path or shutil.which("kind") or "kind")
        self.kubectl_path = str(kubectl_path or shutil.which("kubectl") or "kubectl")
        self.kubeconfig_path = (workdir or ROOT / "run" / "kind") / name / "kubeconfig"

    def exists(self) -> bool:
        return self.name in run([self.kind_path, "get", "clusters"], timeout=60).split()

    def create(self, images: list[str]) -> None:
        """Create the cluster (or reuse one of this name) and load the images into it."""
        self.kubeconfig_path.parent.mkdir(parents=True, exist_ok=True)
        kubeconfig = f"--kubeconfig={self.kubeconfig_path}"
        if self.exists():
            run([self.kind_path, "export", "kubeconfig", "--name", self.name, kubeconfig])
        else:
            run(
                [
                    self.kind_path,
                    "create",
                    "cluster",
                    "--name",
                    self.name,
                    "--config",
                    str(self.config),
                    kubeconfig,
                    "--wait",
                    "300s",
                ]
            )
        for image in images:
            run([self.kind_path, "load", "docker-image", image, "--name", self.name])

    def delete(self) -> None:
        argv = [self.kind_path, "delete", "cluster", "--name", self.name]
        if self.kubeconfig_path.exists():
            argv.append(f"--kubeconfig={self.kubeconfig_path}")
        run(argv, timeout=600)

    def kubectl(self, *args: str) -> str:
        return run(
            [self.kubectl_path, *args],
            env={**os.environ, "KUBECONFIG": str(self.kubeconfig_path)},
            timeout=900,
        )

    def helm(self, namespace: str):
        return helm_python().Config(
            kubeconfig_path=self.kubeconfig_path.resolve(), namespace=namespace
        )

    def install(self, release: str, chart, values: dict, namespace: str, **kwargs) -> None:
        """helm upgrade --install --wait."""
        hp = helm_python()
        with self.helm(namespace) as helm:
            try:
                helm.status(release)
            except hp.HelmNotFoundError:
                helm.install(
                    chart,
                    release,
                    values,
                    namespace=namespace,
                    create_namespace=True,
                    wait="watcher",
                    timeout=900,
                    **kwargs,
                )
            else:
                helm.upgrade(
                    chart,
                    release,
                    values,
                    namespace=namespace,
                    wait="watcher",
                    timeout=900,
                    **kwargs,
                )

    def uninstall(self, release: str, namespace: str) -> None:
        with self.helm(namespace) as helm:
            helm.uninstall(release, wait="watcher", timeout=600, ignore_not_found=True)

    def delete_namespace(self, namespace: str) -> None:
        self.kubectl(
            "delete", "namespace", namespace, "--ignore-not-found", "--wait=true", "--timeout=600s"
        )

    def node_address(self) -> str:
        out = run(
            [
                "docker",
                "inspect",
                "-f",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
                f"{self.name}-control-plane",
            ]
        )
        return out.split()[0]

    def service_address(self, namespace: str, name: str, timeout: float = 300) -> tuple[str, int]:
        """(host, port) from outside the cluster: the LoadBalancer address, else node:nodePort."""
        deadline = time.monotonic() + timeout
        while True:
            service = json.loads(
                self.kubectl("get", "service", "-n", namespace, name, "-o", "json")
            )
            port = service["spec"]["ports"][0]
            if service["spec"]["type"] == "NodePort":
                return self.node_address(), port["nodePort"]
            ingress = service.get("status", {}).get("loadBalancer", {}).get("ingress") or []
            if ingress:
                return ingress[0].get("ip") or ingress[0]["hostname"], port["port"]
            if time.monotonic() > deadline:
                raise TimeoutError(f"Service {namespace}/{name} got no LoadBalancer address")
            time.sleep(3)

    def rollout_restart(self, namespace: str, deployment: str) -> None:
        self.kubectl("rollout", "restart", "-n", namespace, f"deployment/{deployment}")
        self.kubectl(
            "rollout", "status", "-n", namespace, f"deployment/{deployment}", "--timeout=600s"
        )

    def pods(self, namespace: str, selector: str) -> list[dict]:
        return json.loads(
            self.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json")
        )["items"]

    def services(self, namespace: str, selector: str) -> list[dict]:
        return json.loads(
            self.kubectl("get", "services", "-n", namespace, "-l", selector, "-o", "json")
        )["items"]


class LoadBalancers:
    """cloud-provider-kind for the run, or None: then Services use NodePort."""

    def __init__(self) -> None:
        self.binary = shutil.which("cloud-provider-kind")
        self.process: subprocess.Popen | None = None

    @property
    def available(self) -> bool:
        return self.binary is not None

    def start(self) -> None:
        if self.binary:
            self.process = subprocess.Popen(
                [self.binary], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.process = None

    def service_type(self) -> str:
        return "LoadBalancer" if self.available else "NodePort"


# --- the values each release gets: scenario file + what this run generated -------------


def outpost_values(scenario: str, keys: Keys, service_type: str) -> dict:
    """The remote Outpost's values: the scenario's file, the hub's password and public
    key, the host key generated for this run, and LoadBalancer or NodePort Services."""
    name = "outpost-remote.yaml" if scenario == "remote-local" else "outpost.yaml"
    return merge(
        scenario_values(scenario, name),
        {
            "hubs": {"hub": {"password": keys.password, "sshPublicKeys": [keys.hub_public]}},
            "ssh": {"hostKey": keys.host_private},
            "service": {"type": service_type},
            "sshService": {"type": service_type},
        },
    )


def local_outpost_values(scenario: str, password: str) -> dict:
    return merge(
        scenario_values(scenario, "outpost-local.yaml"), {"hubs": {"hub": {"password": password}}}
    )


def addons_values(
    scenario: str,
    keys: Keys,
    *,
    api: tuple[str, int],
    ssh: tuple[str, int],
    hub_api_url: str,
    local_password: str | None = None,
) -> dict:
    """hub-addons' values: the scenario's file plus the remote Outpost's addresses, the
    pinned host key and the credentials of this run."""
    outposts = {
        "remote": {
            "url": f"http://{api[0]}:{api[1]}",
            "password": keys.password,
            "hubApiUrl": hub_api_url,
            "ssh": {"host": ssh[0], "port": ssh[1], "hostKey": keys.host_public},
        }
    }
    if local_password:
        outposts["local"] = {"password": local_password}
    return merge(
        scenario_values(scenario, "hub-addons.yaml"),
        {"sshKey": keys.hub_private, "outposts": outposts},
    )


def z2jh_values(scenario: str, addons_z2jh_values: dict, service_type: str, e2e_token: str) -> dict:
    """The hub chart's values (zero-to-jupyterhub's keys): the scenario's jupyterhub.yaml,
    then what hub-addons rendered (as a second -f file), then an admin service token (for
    the e2e test and for waiting on the hub API)."""
    return merge(
        scenario_values(scenario, "jupyterhub.yaml"),
        addons_z2jh_values,
        {
            "proxy": {"service": {"type": service_type}},
            "hub": {
                "services": {"e2e": {"apiToken": e2e_token}},
                "loadRoles": {
                    "e2e": {
                        "services": ["e2e"],
                        "scopes": ["admin:users", "admin:servers", "access:servers", "list:users"],
                    }
                },
            },
        },
    )


def demo_login(scenario: str) -> str:
    """What to type on the login page (the scenario's DummyAuthenticator password)."""
    config = scenario_values(scenario, "jupyterhub.yaml").get("hub", {}).get("config", {})
    password = config.get("DummyAuthenticator", {}).get("password")
    if password:
        return f"any user name, password {password}"
    return f"see hub.config in scenarios/{scenario}/kind/jupyterhub.yaml"


# --- a scenario: deploy and teardown -----------------------------------------------------


class Hub:
    """The hub's REST API through its proxy, with an admin service token."""

    def __init__(self, url: str, token: str):
        self.url = url.rstrip("/")
        self.token = token

    def request(self, method: str, path: str, body: dict | None = None, timeout: float = 30):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(  # noqa: S310 (http on the kind network)
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
                text = resp.read().decode()
                return resp.status, (
                    json.loads(text) if text.strip().startswith(("{", "[")) else text
                )
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except (urllib.error.URLError, OSError) as e:
            return 0, str(e)

    def wait(self, what: str, check, timeout: float = 900, interval: float = 5):
        deadline = time.monotonic() + timeout
        while True:
            result = check()
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out waiting for {what}")
            time.sleep(interval)


def deploy(scenario: str, hub: Cluster, remote: Cluster, lbs: LoadBalancers) -> Hub:
    """Install both sides of a scenario the way docs/charts.md tells an operator to."""
    outpost_chart = ROOT / "charts" / "jupyterhub-outpost"
    addons_chart = ROOT / "charts" / "hub-addons"
    keys = Keys.generate()
    service_type = lbs.service_type()
    e2e_token = secrets.token_hex(32)

    # 1. The Outpost cluster (and, for remote-local, the local Outpost on the hub cluster).
    remote.install(
        "outpost", outpost_chart, outpost_values(scenario, keys, service_type), OUTPOST_NS
    )
    api = remote.service_address(OUTPOST_NS, "outpost-jupyterhub-outpost")
    ssh = remote.service_address(OUTPOST_NS, "outpost-jupyterhub-outpost-ssh")
    local_password = None
    if scenario == "remote-local":
        local_password = secrets.token_hex(24)
        hub.install(
            "outpost-local",
            outpost_chart,
            local_outpost_values(scenario, local_password),
            "outpost-local",
        )

    # 2. hub-addons, then the hub chart with the z2jh values hub-addons renders.
    def addons(hub_api_url: str) -> dict:
        return addons_values(
            scenario, keys, api=api, ssh=ssh, hub_api_url=hub_api_url, local_password=local_password
        )

    hub.install("hub-addons", addons_chart, addons("http://hub.invalid/hub/api"), HUB_NS)
    configmap = json.loads(
        hub.kubectl("get", "configmap", "-n", HUB_NS, "hub-addons-hub-config", "-o", "json")
    )
    rendered = yaml.safe_load(configmap["data"]["z2jh-values.yaml"])
    values = z2jh_values(scenario, rendered, service_type, e2e_token)
    hub.install("jupyterhub", HUB_CHART, values, HUB_NS)
    proxy_host, proxy_port = hub.service_address(HUB_NS, "proxy-public")
    hub_url = f"http://{proxy_host}:{proxy_port}"

    # 3. Now the hub's public URL is known: tell the Outposts' servers, restart the hub.
    hub.install("hub-addons", addons_chart, addons(f"{hub_url}/hub/api"), HUB_NS)
    hub.rollout_restart(HUB_NS, "hub")
    client = Hub(hub_url, e2e_token)
    client.wait("the hub API", lambda: client.request("GET", "/hub/api/")[0] == 200, timeout=300)
    return client


def teardown(scenario: str, hub: Cluster, remote: Cluster) -> None:
    """Uninstall every release of a scenario (the clusters stay)."""
    for release, namespace in (("jupyterhub", HUB_NS), ("hub-addons", HUB_NS)):
        hub.uninstall(release, namespace)
    hub.delete_namespace(HUB_NS)
    if scenario == "remote-local":
        hub.uninstall("outpost-local", "outpost-local")
        hub.delete_namespace("outpost-local")
    remote.uninstall("outpost", OUTPOST_NS)
    remote.delete_namespace(OUTPOST_NS)  # the kept Secret and PVC go with it


# --- topology up/down --mode kind ---------------------------------------------------------


def scenario_name(path: str) -> str:
    """scenarios/<name> (or its topology.yaml) -> <name>, checked against the kind values."""
    p = Path(path)
    if p.is_file():
        p = p.parent
    name = p.resolve().name
    if not (ROOT / "scenarios" / name / "kind").is_dir():
        raise KindError(
            f"no kind values for scenario {name!r} in {ROOT / 'scenarios'} (kind mode runs "
            f"from a source checkout and knows: {', '.join(SCENARIOS)})"
        )
    return name


def clusters_for(scenario: str) -> tuple[Cluster, Cluster]:
    return (
        Cluster(f"{scenario}-hub", HUB_CONFIG),
        Cluster(f"{scenario}-remote", REMOTE_CONFIG),
    )


def missing_tools() -> str | None:
    for tool in ("kind", "kubectl"):
        if shutil.which(tool) is None:
            return (
                f"the {tool} binary is not on PATH (install it: "
                "https://kind.sigs.k8s.io/docs/user/quick-start/#installation, "
                "https://kubernetes.io/docs/tasks/tools/)"
            )
    try:
        helm_python()
    except KindError as e:
        return str(e)
    return None


def say(message: str) -> None:
    print(f"kind | {message}", flush=True)


def up(scenario_path: str) -> int:
    """Bring a scenario up on kind, wait for Ctrl-C/SIGTERM, delete the clusters."""
    try:
        scenario = scenario_name(scenario_path)
    except KindError as e:
        print(f"topology up --mode kind: {e}", file=sys.stderr)
        return 2
    problem = missing_tools()
    if problem:
        print(f"topology up --mode kind: {problem}", file=sys.stderr)
        return 2

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGHUP)}
    hub, remote = clusters_for(scenario)
    lbs = LoadBalancers()
    code = 0
    try:
        say("building the images (docker build images/outpost, images/hub)")
        build_images()
        lbs.start()
        if not lbs.available:
            say("cloud-provider-kind is not on PATH: Services use NodePort")
        say(f"creating the clusters {hub.name} and {remote.name}")
        hub.create([HUB_IMAGE, OUTPOST_IMAGE])
        remote.create([OUTPOST_IMAGE])
        say(f"installing {scenario} (this pulls the user server images)")
        client = deploy(scenario, hub, remote, lbs)
        say(f"{scenario} is up on kind ({hub.name}, {remote.name})")
        say(f"open {client.url}/hub/")
        say(f"login: {demo_login(scenario)}")
        say(f"kubeconfigs: {hub.kubeconfig_path}, {remote.kubeconfig_path}")
        say(
            "Ctrl-C (or 'jupyterhub-outpost topology down --mode kind "
            f"scenarios/{scenario}') deletes the clusters"
        )
        while hub.exists():  # 'topology down --mode kind' elsewhere ends this run too
            time.sleep(5)
        say(f"the cluster {hub.name} is gone")
    except KeyboardInterrupt:
        say("stop requested")
    except Exception as e:  # noqa: BLE001 - a helm/kind/kubectl failure: say it, tear down
        print(f"topology up --mode kind: could not bring {scenario} up: {e}", file=sys.stderr)
        code = 1
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the teardown is not interrupted
        say("deleting the clusters")
        if down_clusters(hub, remote)[1]:
            code = code or 1
        lbs.stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)
    say(f"{scenario} is down")
    return code


def down_clusters(*clusters: Cluster) -> tuple[list[str], list[str]]:
    """Delete those of the clusters that exist: (deleted, failed) names."""
    deleted, failed = [], []
    for cluster in clusters:
        try:
            if cluster.exists():
                cluster.delete()
                deleted.append(cluster.name)
        except (KindError, OSError, subprocess.TimeoutExpired) as e:
            print(f"kind | could not delete {cluster.name}: {e}", file=sys.stderr)
            failed.append(cluster.name)
    return deleted, failed


def down(scenario_path: str) -> int:
    """topology down --mode kind: delete the scenario's clusters."""
    try:
        scenario = scenario_name(scenario_path)
    except KindError as e:
        print(f"topology down --mode kind: {e}", file=sys.stderr)
        return 2
    if shutil.which("kind") is None:
        print("topology down --mode kind: the kind binary is not on PATH", file=sys.stderr)
        return 2
    deleted, failed = down_clusters(*clusters_for(scenario))
    print(f"deleted kind clusters: {', '.join(deleted) or '-'}")
    if failed:
        print(f"topology down --mode kind: could not delete {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
