"""What a user and an operator do and see on the kind scenarios, as test helpers.

A :class:`KindScenario` is one scenario installed on the session's two clusters (hub and
Outpost) with kind mode's own deploy (outpost_scenarios.kind_deploy), the way
docs/charts.md tells an operator. Its hub is driven through the proxy-public
LoadBalancer: users log in on the login page, pick an Outpost and a flavor on the
options form, follow the progress stream, open JupyterLab through the proxy (OAuth as a
browser does it) and run a kernel over its websocket through the SSH tunnel.

Every wait is a backoff wait on observable state (``wait_until``), never a sleep.
"""

from __future__ import annotations

import http.cookiejar
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

from outpost_scenarios import kind_deploy
from outpost_scenarios.kind import Cluster

from tests.helpers import kernel
from tests.helpers.hub_process import HubError, HubProcess, wait_until

USER_POD = "component=singleuser-server"  # KubeSpawner's label on user pods
FORWARD_SERVICE = "app.kubernetes.io/component=outpost-forward"  # hub-addons' per-server Services
OUTPOST_POD = "app.kubernetes.io/name=jupyterhub-outpost"
DEMO_PASSWORD = "kind-e2e"  # scenarios/*/kind/jupyterhub.yaml


@dataclass(frozen=True)
class SiteInfo:
    """One Outpost of a scenario as the hub names it, and where its servers run."""

    name: str  # what users pick on the options form
    cluster: str  # "hub" or "remote"
    namespace: str
    flavor: str


REMOTE = SiteInfo("remote", "remote", kind_deploy.OUTPOST_NS, "small")
LOCAL = SiteInfo("local", "hub", kind_deploy.LOCAL_OUTPOST_NS, "small")


class KindHub(HubProcess):
    """The scenario's hub behind proxy-public, with the e2e admin service token.

    Reuses HubProcess's REST helpers without starting a hub: the cluster runs it."""

    def __init__(self, url: str, admin_token: str, hub_cluster: Cluster):  # noqa: D107
        parts = urlsplit(url)
        self.ip, self.port = parts.hostname, parts.port or 80
        self.admin_token = admin_token
        self.hub_cluster = hub_cluster
        self.proc = None
        self._known_children: set[int] = set()

    def close(self) -> None:  # the cluster owns the hub
        pass

    def log_tail(self, lines: int = 80) -> str:
        try:
            return self.hub_cluster.kubectl(
                "logs", "-n", kind_deploy.HUB_NS, "deployment/hub", "-c", "hub", f"--tail={lines}"
            )
        except Exception as e:  # noqa: BLE001 - only for failure messages
            return f"(no hub log: {e})"

    def log_text(self) -> str:
        return self.log_tail(5000)

    def wait_back(self, timeout: float = 300) -> None:
        """Wait until the hub answers through the proxy again after its pod was replaced.

        A pod that kubectl reports ready is not yet reachable through the ``hub`` Service:
        until kube-proxy routes the Service to the new pod's address, the proxy's requests
        are refused (503) or lost (a read timeout), more so on a loaded node."""
        wait_until(
            lambda: self.api("GET", "/", timeout=10)[0] == 200,
            timeout,
            "the hub answering through the proxy",
            errors=(OSError,),
        )


class Browser:
    """A user's browser: cookies, the login form, the options form, JupyterLab."""

    def __init__(self, hub: KindHub, user: str):
        self.hub, self.user = hub, user
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def _xsrf(self) -> str:
        return next((c.value for c in self.jar if c.name == "_xsrf"), "")

    def get(self, path: str) -> tuple[int, str, str]:
        """(status, final URL after redirects, body)."""
        try:
            with self.opener.open(self.hub.url + path, timeout=60) as resp:
                return resp.status, resp.url, resp.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            return e.code, e.url, e.read().decode(errors="replace")

    def post_form(self, path: str, fields: dict) -> tuple[int, str, str]:
        data = urllib.parse.urlencode({**fields, "_xsrf": self._xsrf()}).encode()
        try:
            with self.opener.open(self.hub.url + path, data=data, timeout=120) as resp:
                return resp.status, resp.url, resp.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            return e.code, e.url, e.read().decode(errors="replace")

    def log_in(self) -> None:
        self.get("/hub/login")
        status, url, body = self.post_form(
            "/hub/login?next=", {"username": self.user, "password": DEMO_PASSWORD}
        )
        assert status == 200 and "/hub/login" not in urlsplit(url).path, (status, url, body[:500])

    def options_form(self, server: str) -> str:
        status, _, body = self.get(f"/hub/spawn/{self.user}/{server}")
        assert status == 200, (status, body[:500])
        return body

    def request_server(self, server: str, outpost: str, flavor: str) -> None:
        """Submit the options form (what the Start button does); the hub then shows the
        spawn-pending page while the server starts."""
        status, url, body = self.post_form(
            f"/hub/spawn/{self.user}/{server}", {"outpost": outpost, "flavor": flavor}
        )
        assert status == 200, (status, url, body[:800])

    def open_lab(self, server: str) -> str:
        """JupyterLab's page through the proxy, after the OAuth round trip a browser makes."""
        status, url, body = self.get(f"/user/{self.user}/{server}/lab")
        assert status == 200 and "/lab" in urlsplit(url).path, (status, url, body[:500])
        return body


class KindScenario:
    """One scenario installed on the session's clusters (teardown: :meth:`remove`)."""

    def __init__(
        self,
        name: str,
        hub_cluster: Cluster,
        remote_cluster: Cluster,
        sites,
        outpost_overrides: dict | None = None,
    ):
        self.name = name
        self.clusters = {"hub": hub_cluster, "remote": remote_cluster}
        self.sites: tuple[SiteInfo, ...] = tuple(sites)
        started = time.monotonic()
        client = kind_deploy.deploy(name, hub_cluster, remote_cluster, outpost_overrides)
        self.deploy_seconds = time.monotonic() - started
        self.hub = KindHub(client.url, client.token, hub_cluster)

    # -- where things run ----------------------------------------------------------------

    def cluster(self, site: SiteInfo) -> Cluster:
        return self.clusters[site.cluster]

    def user_pods(self, site: SiteInfo) -> list[dict]:
        return self.cluster(site).pods(site.namespace, USER_POD)

    def forward_services(self) -> list[dict]:
        return self.clusters["hub"].services(kind_deploy.HUB_NS, FORWARD_SERVICE)

    def outpost_pod(self, site: SiteInfo) -> dict:
        [pod] = [
            p
            for p in self.cluster(site).pods(site.namespace, OUTPOST_POD)
            if not p["metadata"].get("deletionTimestamp")
        ]
        return pod

    # -- the user's path -----------------------------------------------------------------

    def start_as_user(self, user: str, server: str, site: SiteInfo) -> list[dict]:
        """Log in, see the site and its flavor on the options form, submit it, and follow
        the progress stream to ready; returns the progress events."""
        browser = Browser(self.hub, user)
        browser.log_in()
        form = browser.options_form(server)
        assert f'value="{site.name}"' in form and site.flavor in form, form[:2000]
        _, events = self.hub.follow_start(
            lambda: browser.request_server(server, site.name, site.flavor),
            user,
            server,
            timeout=600,
        )
        assert events and events[-1].get("ready"), events
        self.hub.wait_for_server(user, server, timeout=120)
        return events

    def release_held_pod_when(self, ready_to_release) -> threading.Thread:
        """In the background: once a user pod of the remote site is held in its init
        container ("slowstart" users, scenarios/one-remote/kind/outpost.yaml) and
        ``ready_to_release()`` returned, let it go on."""
        remote = self.cluster(REMOTE)

        def held_pod() -> str | None:
            for pod in remote.pods(REMOTE.namespace, USER_POD):
                statuses = pod["status"].get("initContainerStatuses") or []
                if any(s.get("state", {}).get("running") for s in statuses):
                    return pod["metadata"]["name"]
            return None

        def release() -> None:
            name = wait_until(held_pod, 300, "a held user pod")
            ready_to_release()
            remote.kubectl(
                "exec",
                "-n",
                REMOTE.namespace,
                name,
                "-c",
                "hold",
                "--",
                "python3",
                "-c",
                "open('/tmp/release', 'w').close()",
            )

        thread = threading.Thread(target=release, daemon=True)
        thread.start()
        return thread

    def lab_and_kernel(self, user: str, server: str) -> KernelSession:
        browser = Browser(self.hub, user)
        browser.log_in()
        assert "JupyterLab" in browser.open_lab(server)
        return KernelSession(self.hub, user, server)

    def stop_and_assert_clean(self, user: str, server: str, site: SiteInfo) -> None:
        """Stop one server; then nothing of it is left at its site, and the hub lists it no
        more (another user's server on another site may run on)."""
        self.hub.stop_server(user, server, timeout=300)
        self.assert_nothing_left(site, server=f"{user}/{server}")

    def assert_nothing_left(self, *sites: SiteInfo, server: str = "") -> None:
        """No user pod on the sites (all by default), no per-server Service on the hub
        cluster, and no server in the hub (with ``server``: not that one)."""
        for site in sites or self.sites:
            wait_until(
                lambda site=site: not self.user_pods(site), 300, f"no user pod at {site.name}"
            )
        wait_until(lambda: not self.forward_services(), 120, "no per-server Service")
        if server:
            wait_until(lambda: server not in self.hub_side_servers(), 120, f"{server} gone")
        else:
            wait_until(lambda: not self.hub_side_servers(), 120, "no server in the hub")

    def hub_side_servers(self) -> list[str]:
        status, users = self.hub.api("GET", "/users")
        assert status == 200, users
        return [f"{u['name']}/{s}" for u in users for s in u.get("servers") or {}]

    def remove(self) -> None:
        kind_deploy.teardown(self.name, self.clusters["hub"], self.clusters["remote"])


class KernelSession:
    """One kernel of a user's server, reached through the proxy and the tunnel."""

    def __init__(self, hub: KindHub, user: str, server: str):
        self.hub, self.user, self.server = hub, user, server
        self.token = hub.user_token(user)
        status, body = hub.proxy_request(
            "POST", f"/user/{user}/{server}/api/kernels", {}, token=self.token, timeout=120
        )
        if status != 201:
            raise HubError(f"starting a kernel: {status} {body}")
        self.kernel_id = body["id"]
        self.count = 0
        assert self.run("n = 0; print(n)") == "0"

    def run(self, code: str, timeout: float = 60) -> str:
        url = (
            f"ws://{self.hub.ip}:{self.hub.port}/user/{self.user}/{self.server}"
            f"/api/kernels/{self.kernel_id}/channels"
        )
        return kernel.run_code(url, self.token, code, timeout=timeout).strip()

    def answers(self) -> bool:
        status, _ = self.hub.proxy_request(
            "GET", f"/user/{self.user}/{self.server}/api/status", token=self.token, timeout=10
        )
        return status == 200

    def still_the_same_kernel(self, within: float = 180) -> float:
        """Wait until the server answers through the proxy again; prove the kernel kept its
        state (its counter goes on). Returns the seconds it took."""
        t0 = time.monotonic()
        wait_until(
            self.answers,
            within,
            f"{self.user}/{self.server} reachable again",
            errors=(OSError,),  # a request lost on the way: not yet
        )
        took = time.monotonic() - t0
        self.count += 1
        assert self.run("n += 1; print(n)") == str(self.count), "not the same kernel"
        return took
