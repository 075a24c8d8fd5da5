"""The kind scenarios' hub chart runs: real JupyterHub and real configurable-http-proxy.

Both are started with the argv, files and environment of the rendered hub and proxy pods
(tests/charts/pod_files.py), each in a network namespace of its own, as two pods on a
cluster network. What Kubernetes would add is done by the test: the Services' names
resolve to the pods' addresses (cluster DNS: a hosts file per namespace in
/etc/netns/<namespace>/, which ``ip netns exec`` mounts over /etc/hosts; removed after the
test), the images' programs are found on PATH (the test environment's jupyterhub and
configurable-http-proxy from npm), and the kubelet's readiness probes are the rendered
ones, sent to the pods' addresses.

Proven: both pods become ready, the hub finds the proxy's API with the token both got from
the Secret ``hub``, and ``/hub/api`` answers through the proxy's public port with a
service token from ``hub.services``. Not proven: what Kubernetes itself does (Services,
NetworkPolicies, the images); the kind e2e (tests/e2e/kind) does that.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest
from jupyterhub.utils import exponential_backoff
from outpost_scenarios import netns

from tests.charts.chart_helpers import JUPYTERHUB, http_status, one, render
from tests.charts.pod_files import container, materialize, pod
from tests.helpers.hub_process import CHP, VENV_BIN

AVAILABLE, REASON = netns.isolation_available()
pytestmark = [
    pytest.mark.netns,
    pytest.mark.slow,
    pytest.mark.skipif(not AVAILABLE, reason=f"needs root and ip netns ({REASON})"),
]

NAMESPACE = "jhub"
TOKEN = "probe-service-token-0123456789"
VALUES = {
    "hub": {
        "config": {"JupyterHub": {"authenticator_class": "dummy"}},
        "services": {"probe": {"apiToken": TOKEN}},
        "loadRoles": {"probe": {"services": ["probe"], "scopes": ["list:users"]}},
    },
    # jupyterhub-idle-culler is in the hub image, not in the test environment
    "cull": {"enabled": False},
}


ETC_NETNS = Path("/etc/netns")


@pytest.fixture
def lab():
    with netns.Lab(isolation=True) as lab:
        try:
            yield lab
        finally:
            for host in lab.hosts.values():
                shutil.rmtree(ETC_NETNS / host.netns, ignore_errors=True)
    for host in lab.hosts.values():
        assert not (ETC_NETNS / host.netns).exists()
    with contextlib.suppress(OSError):
        ETC_NETNS.rmdir()  # when no other run uses it


def resolve(hosts, names: dict[str, str]) -> None:
    """Cluster DNS for ``hosts``: ``names`` (name -> address) in their /etc/hosts."""
    lines = ["127.0.0.1 localhost", *(f"{address} {name}" for name, address in names.items())]
    for host in hosts:
        (ETC_NETNS / host.netns).mkdir(parents=True, exist_ok=True)
        (ETC_NETNS / host.netns / "hosts").write_text("\n".join(lines) + "\n")


def port_of(spec: dict, name: str, probe: str) -> tuple[int, str]:
    """(container port, path) of a container's rendered readiness probe."""
    found = container(spec, name)
    get = found[probe]["httpGet"]
    [port] = [p["containerPort"] for p in found["ports"] if p["name"] == get["port"]]
    return port, get["path"]


async def wait_ready(url: str, process, log: Path, what: str) -> None:
    async def ready():
        assert process.returncode is None, f"{what} exited:\n{log.read_text()[-3000:]}"
        try:
            return await asyncio.to_thread(http_status, url) == 200
        except OSError:
            return False

    try:
        await exponential_backoff(ready, f"{what} ready at {url}", timeout=120)
    except TimeoutError:
        raise AssertionError(f"{what} not ready:\n{log.read_text()[-3000:]}") from None


async def test_hub_and_proxy_pods_become_ready_and_the_hub_api_answers_through_the_proxy(
    lab, tmp_path
):
    assert CHP.exists(), f"configurable-http-proxy not found at {CHP} (run `make node`)"
    objects, _ = render(JUPYTERHUB, VALUES, name="jupyterhub", namespace=NAMESPACE)
    lab.add_network("pods", host_access=True)
    hub_host = lab.add_host("hub", ["pods"])
    proxy_host = lab.add_host("proxy", ["pods"])
    addresses = {"hub": hub_host.ip, "proxy-api": proxy_host.ip, "proxy-public": proxy_host.ip}

    resolve([hub_host, proxy_host], addresses)
    hub = materialize(objects, "hub", "hub", tmp_path / "hub", NAMESPACE, addresses)
    proxy = materialize(objects, "proxy", "chp", tmp_path / "proxy", NAMESPACE, addresses)

    path = f"{VENV_BIN}:{CHP.parent}:{os.environ['PATH']}"
    processes = {}
    for name, host, c in (("proxy", proxy_host, proxy), ("hub", hub_host, hub)):
        log = tmp_path / f"{name}.log"
        with open(log, "w") as out:
            process = await host.create_subprocess_exec(
                *c.argv,
                env={"PATH": path, "HOME": str(c.root), **c.env},
                cwd=c.cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        processes[name] = (process, log)

    _, hub_spec = pod(objects, "hub")
    _, proxy_spec = pod(objects, "proxy")
    port, probe = port_of(proxy_spec, "chp", "readinessProbe")
    await wait_ready(f"http://{proxy_host.ip}:{port}{probe}", *processes["proxy"], "proxy")
    port, probe = port_of(hub_spec, "hub", "readinessProbe")
    await wait_ready(f"http://{hub_host.ip}:{port}{probe}", *processes["hub"], "hub")

    # proxy-public: its targetPort on the proxy pod
    public = one(objects, "Service", "proxy-public")["spec"]["ports"][0]["targetPort"]
    [port] = [
        p["containerPort"] for p in container(proxy_spec, "chp")["ports"] if p["name"] == public
    ]
    base = f"http://{proxy_host.ip}:{port}"

    async def routed():
        # the hub adds its route to CHP once it is up
        return await asyncio.to_thread(http_status, f"{base}/hub/api") == 200

    await exponential_backoff(routed, "the hub's route in the proxy", timeout=60)

    def get(url: str) -> object:
        request = urllib.request.Request(url, headers={"Authorization": f"token {TOKEN}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    assert "version" in await asyncio.to_thread(get, f"{base}/hub/api")
    assert await asyncio.to_thread(get, f"{base}/hub/api/users") == []
    for process, log in processes.values():
        assert process.returncode is None, log.read_text()[-3000:]
