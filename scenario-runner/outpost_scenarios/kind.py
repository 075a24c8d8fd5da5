"""Kind mode: a scenario on two kind clusters built here, with the project's charts.

``jupyterhub-outpost topology up scenarios/<name> --mode kind`` (``make scenario-<name>
MODE=kind``) and the kind e2e (tests/e2e/kind) both use this module:

- the node image, kind and kubectl come from :mod:`outpost_scenarios.kindbuild` (built on
  this machine from the Go module proxy and Debian; the project's own Docker engine);
- the images the charts run come from :mod:`outpost_scenarios.images` (Debian base by
  debootstrap, wheels from PyPI, configurable-http-proxy from npm) and are loaded into
  the clusters with ``kind load``;
- a hub cluster ``<name>-hub`` (the z2jh-compatible hub chart of ``scenario-runner/charts/
  jupyterhub`` with charts/hub-addons, and for remote-local the local Outpost) and an
  Outpost cluster ``<name>-remote`` (charts/jupyterhub-outpost with KubeSpawner);
- every LoadBalancer Service gets an address from MetalLB on the kind Docker network,
  reachable from this host and from the other cluster's pods: the Outposts' APIs and SSH
  endpoints and the hub's proxy-public are such Services;
- the releases are installed as docs/charts.md tells an operator (:mod:`.kind_deploy`).

Everything goes through argv lists (``docker``, ``kind``, ``kubectl``; no shell) and
Helm's Go engine from the ``helm-python-sdk`` wheel (no helm binary).
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

from .kindbuild.commands import BuildError, run
from .source import source_root

HERE = Path(__file__).resolve().parent
HUB_CONFIG = HERE / "kind-hub.yaml"
REMOTE_CONFIG = HERE / "kind-outpost.yaml"
IMAGE_TAG = "kind"
SCENARIOS = ["one-remote", "remote-local", "external-tunnel", "delayed-tunnel"]
HELM_MISSING = (
    "kind mode installs the charts with Helm's Go engine from the helm-python-sdk wheel, "
    "which is not installed here: pip install 'helm-python-sdk>=0.2.2' "
    "(or the project's test extras: pip install -e '.[test]')"
)


class KindError(RuntimeError):
    """Something kind mode needs is missing or a step failed."""


def kindcluster():
    """kindbuild's cluster module (imported when a cluster is driven: the node image build
    and its Go recipes are not needed to render values)."""
    from .kindbuild import cluster

    return cluster


def helm_python():
    """The helm-python-sdk module, imported lazily (it is in the test extras)."""
    try:
        import helm_python
    except ImportError as e:
        raise KindError(HELM_MISSING) from e
    return helm_python


def build_images(say=print) -> dict[str, str]:
    """The outpost, hub, singleuser and configurable-http-proxy images, tagged ``kind``."""
    from .images import ImageBuilder, ImageBuildError, engine_env

    try:
        builder = ImageBuilder(source_root(), tag=IMAGE_TAG, docker_env=engine_env(say), log=say)
        report = builder.build_all()
    except ImageBuildError as e:
        raise KindError(str(e)) from e
    return report.images


class Cluster:
    """One kind cluster of the node image built here, with MetalLB, driven by kind,
    kubectl and Helm."""

    def __init__(self, name: str, config: Path, tools, workdir: Path | None = None):
        self.name = name
        self.config = Path(config)
        self.tools = tools
        self.kubeconfig_path = (workdir or source_root() / "run" / "kind") / name / "kubeconfig"

    def exists(self) -> bool:
        return self.name in kindcluster().clusters(self.tools)

    def reusable(self) -> bool:
        """Whether :meth:`create` reuses the cluster (kept from an earlier run)."""
        return kindcluster().reusable(self.name, self.tools)

    def create(self, images: list[str]) -> None:
        """Create the cluster (or reuse one of this name) and load the images into it."""
        kindcluster().create_cluster(
            self.name, self.config, tools=self.tools, kubeconfig=self.kubeconfig_path
        )
        for image in images:
            run(
                [str(self.tools.kind), "load", "docker-image", image, "--name", self.name],
                env=self.tools.env(),
                timeout=900,
            )
        # A loaded image replaces the one of its tag in the node's containerd, which keeps
        # the old one untagged (0.5 GB per rebuild, until the disk is full): remove those
        # (not every unused image: the ones just loaded are not used yet).
        node = ["docker", "exec", f"{self.name}-control-plane", "crictl", "--timeout", "300s"]
        listing = json.loads(run([*node, "images", "-o", "json"], env=self.tools.env()))
        untagged = [i["id"] for i in listing.get("images", []) if not i.get("repoTags")]
        if untagged:
            run([*node, "rmi", *untagged], env=self.tools.env(), timeout=900)

    def delete(self) -> None:
        kindcluster().delete_cluster(self.name, tools=self.tools)

    def kubectl(self, *args: str, timeout: float = 900) -> str:
        return run(
            [str(self.tools.kubectl), *args],
            env=self.tools.env(self.kubeconfig_path),
            timeout=timeout,
        )

    def kubectl_input(self, stdin: bytes, *args: str, timeout: float = 120) -> str:
        """kubectl with ``stdin`` (secrets go there, never into an argv)."""
        return run(
            [str(self.tools.kubectl), *args],
            env=self.tools.env(self.kubeconfig_path),
            timeout=timeout,
            stdin=stdin,
        )

    def json(self, *args: str) -> dict:
        return json.loads(self.kubectl(*args, "-o", "json"))

    def helm(self, namespace: str):
        return helm_python().Config(
            kubeconfig_path=self.kubeconfig_path.resolve(), namespace=namespace
        )

    def install(self, release: str, chart, values: dict, namespace: str) -> None:
        """``helm upgrade --install --wait``. A release left pending by a run killed in the
        middle of its install or upgrade ("another operation is in progress") is first
        uninstalled or rolled back to its last deployed revision."""
        hp = helm_python()
        with self.helm(namespace) as helm:
            try:
                status = helm.status(release).get("info", {}).get("status", "")
            except hp.HelmNotFoundError:
                status = None
            if status == "pending-install":
                helm.uninstall(release, wait="watcher", timeout=600)
                status = None
            elif status and status.startswith("pending-"):
                helm.rollback(release, wait="watcher", timeout=600)
            if status is None:
                helm.install(
                    chart,
                    release,
                    values,
                    namespace=namespace,
                    create_namespace=True,
                    wait="watcher",
                    timeout=900,
                )
            else:
                helm.upgrade(
                    chart, release, values, namespace=namespace, wait="watcher", timeout=900
                )

    def uninstall(self, release: str, namespace: str) -> None:
        with self.helm(namespace) as helm:
            helm.uninstall(release, wait="watcher", timeout=600, ignore_not_found=True)

    def delete_namespace(self, namespace: str) -> None:
        self.kubectl(
            "delete", "namespace", namespace, "--ignore-not-found", "--wait=true", "--timeout=600s"
        )

    def service_address(self, namespace: str, name: str, timeout: float = 300) -> tuple[str, int]:
        """(address, port) of a LoadBalancer Service, as MetalLB assigned it."""
        deadline = time.monotonic() + timeout
        delay = 0.2
        while True:
            service = self.json("get", "service", "-n", namespace, name)
            ingress = service.get("status", {}).get("loadBalancer", {}).get("ingress") or []
            if ingress:
                return ingress[0]["ip"], service["spec"]["ports"][0]["port"]
            if time.monotonic() > deadline:
                raise KindError(
                    f"Service {namespace}/{name} ({service['spec']['type']}) got no "
                    f"LoadBalancer address from MetalLB within {timeout:.0f}s"
                )
            time.sleep(delay)  # polling the API server: no watch in kubectl's JSON output
            delay = min(delay * 2, 3)

    def rollout_restart(self, namespace: str, deployment: str) -> None:
        self.kubectl("rollout", "restart", "-n", namespace, f"deployment/{deployment}")
        self.rollout_status(namespace, deployment)

    def rollout_status(self, namespace: str, deployment: str) -> None:
        self.kubectl(
            "rollout", "status", "-n", namespace, f"deployment/{deployment}", "--timeout=600s"
        )

    def pods(self, namespace: str, selector: str) -> list[dict]:
        return self.json("get", "pods", "-n", namespace, "-l", selector)["items"]

    def services(self, namespace: str, selector: str) -> list[dict]:
        return self.json("get", "services", "-n", namespace, "-l", selector)["items"]


def clusters_for(scenario: str, tools, workdir: Path | None = None) -> tuple[Cluster, Cluster]:
    return (
        Cluster(f"{scenario}-hub", HUB_CONFIG, tools, workdir),
        Cluster(f"{scenario}-remote", REMOTE_CONFIG, tools, workdir),
    )


def images_for(images: dict[str, str], scenario: str) -> tuple[list[str], list[str]]:
    """(images the hub cluster runs, images the Outpost cluster runs)."""
    hub = [images["hub"], images["configurable-http-proxy"]]
    if scenario == "remote-local":  # the local Outpost runs KubeSpawner on the hub cluster
        hub += [images["outpost"], images["singleuser"]]
    return hub, [images["outpost"], images["singleuser"]]


# --- topology up/down --mode kind ---------------------------------------------------------


def scenario_name(path: str) -> str:
    """scenarios/<name> (or its topology.yaml) -> <name>, checked against the kind values."""
    p = Path(path)
    if p.is_file():
        p = p.parent
    name = p.resolve().name
    scenarios = source_root() / "scenarios"
    if not (scenarios / name / "kind").is_dir():
        raise KindError(
            f"no kind values for scenario {name!r} in {scenarios} (kind mode runs "
            f"from a source checkout and knows: {', '.join(SCENARIOS)})"
        )
    return name


def say(message: str) -> None:
    print(f"kind | {message}", flush=True)


def up(scenario_path: str) -> int:
    """Bring a scenario up on kind, wait for Ctrl-C/SIGTERM, delete the clusters."""
    from . import kind_deploy

    try:
        scenario = scenario_name(scenario_path)
        helm_python()
    except (KindError, FileNotFoundError) as e:
        print(f"topology up --mode kind: {e}", file=sys.stderr)
        return 2

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGHUP)}
    code = 0
    hub = remote = None
    try:
        say("the node image, kind and kubectl (built here on the first run: long)")
        tools = kindcluster().ensure_node_image(say)
        say("the images of images/ (make images)")
        images = build_images(say)
        hub, remote = clusters_for(scenario, tools)
        hub_images, remote_images = images_for(images, scenario)
        say(f"creating the clusters {hub.name} and {remote.name}")
        hub.create(hub_images)
        remote.create(remote_images)
        say(f"installing {scenario}")
        client = kind_deploy.deploy(scenario, hub, remote)
        say(f"{scenario} is up on kind ({hub.name}, {remote.name})")
        say(f"open {client.url}/hub/")
        say(f"login: {kind_deploy.demo_login(scenario)}")
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
    except (KindError, BuildError, OSError) as e:
        print(f"topology up --mode kind: could not bring {scenario} up: {e}", file=sys.stderr)
        code = 1
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the teardown is not interrupted
        if hub is not None:
            say("deleting the clusters")
            if down_clusters(hub, remote)[1]:
                code = code or 1
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
        except (BuildError, OSError) as e:
            print(f"kind | could not delete {cluster.name}: {e}", file=sys.stderr)
            failed.append(cluster.name)
    return deleted, failed


def down(scenario_path: str) -> int:
    """topology down --mode kind: delete the scenario's clusters."""
    try:
        scenario = scenario_name(scenario_path)
        tools = kindcluster().ensure_node_image(say)
    except (KindError, BuildError, FileNotFoundError) as e:
        print(f"topology down --mode kind: {e}", file=sys.stderr)
        return 2
    deleted, failed = down_clusters(*clusters_for(scenario, tools))
    print(f"deleted kind clusters: {', '.join(deleted) or '-'}")
    if failed:
        print(f"topology down --mode kind: could not delete {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
