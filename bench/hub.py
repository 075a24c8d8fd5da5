"""Figures 2 [hub] and 3 [spawn]: the hub's API while users download through their
tunnels, and the time from a start request to a ready server, direct and via an Outpost.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench.common import PYTHON, ROOT, median, percentile
from bench.site import hub_with_local_spawner, hub_with_outpost


def api_get_ms(hub, path: str = "/users", *, via_proxy: bool = True) -> float:
    """One GET of the hub API (new connection), in ms: through the proxy as a browser
    does, or (``via_proxy=False``) on the hub's own port, which leaves the proxy out."""
    base = hub.api_url if via_proxy else hub.hub_api_url
    request = urllib.request.Request(
        base + path, headers={"Authorization": f"token {hub.admin_token}"}
    )
    t0 = time.perf_counter()
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - 127.0.0.1
        response.read()
        status = response.status
    elapsed = (time.perf_counter() - t0) * 1000
    if status != 200:
        raise RuntimeError(f"GET /hub/api{path} answered {status}")
    return elapsed


def api_p99(hub, requests: int, *, via_proxy: bool = True) -> float:
    for _ in range(5):
        api_get_ms(hub, via_proxy=via_proxy)
    times = [api_get_ms(hub, via_proxy=via_proxy) for _ in range(requests)]
    return percentile(times, 0.99)


def spawn_seconds(hub, user: str, server: str, options: dict) -> float:
    """Seconds from POST /users/{user}/servers/{server} to ready (the hub answers 201 once
    the server answered its HTTP check and the proxy route is in, as slow_spawn_timeout is
    longer than the start)."""
    t0 = time.perf_counter()
    status, body = hub.api("POST", f"/users/{user}/servers/{server}", options, timeout=150)
    if status == 202:  # slower than slow_spawn_timeout: wait for ready
        hub.wait_for_server(user, server, timeout=150)
    elif status != 201:
        raise RuntimeError(f"start of {user}/{server}: {status} {body}\n{hub.log_tail(30)}")
    return time.perf_counter() - t0


def spawn_series(hubs: dict, count: int, warmup: int, log) -> dict:
    """Median seconds of ``count`` starts per path (after ``warmup`` each). The paths take
    turns (direct, outpost, direct, ...) so that a change in the machine's load during the
    series hits both alike; every server is stopped before the next start."""
    times: dict = {path: [] for path in hubs}
    for i in range(count + warmup):
        for path, (hub, options) in hubs.items():
            name = f"s{i}"
            seconds = spawn_seconds(hub, "spawner", name, options)
            hub.stop_server("spawner", name)
            if i >= warmup:
                times[path].append(seconds)
    for path, values in times.items():
        log(f"    {path} starts: {', '.join(f'{t:.2f}' for t in values)}")
    return {path: median(values) for path, values in times.items()}


def downloads(hub, users: list[str], seconds: float, workdir: Path) -> list[subprocess.Popen]:
    """One download loop per user (own process) through the proxy and the user's tunnel."""
    procs = []
    for user in users:
        argv = [PYTHON, "-m", "bench.download_loop", "--port", str(hub.port)]
        argv += ["--path", f"/user/{user}/lab/files/big.bin", "--token", hub.admin_token]
        argv += ["--seconds", str(seconds)]
        with open(workdir / f"download-{user}.log", "ab") as log:
            procs.append(
                subprocess.Popen(
                    argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, start_new_session=False
                )
            )
    return procs


def run(workdir: Path, p: dict, log=print) -> tuple[dict, dict]:
    """([hub] figure, [spawn] figure)."""
    users = [f"u{i}" for i in range(p["load_users"])]
    spawn: dict = {}
    hub_figure: dict = {}
    with (
        hub_with_local_spawner(workdir, ["spawner"], 1) as local_hub,
        hub_with_outpost(workdir, ["spawner", *users], p["size_mb"]) as (hub, options, _o),
    ):
        log(f"  spawn: {p['spawns']} starts each, direct and through the Outpost, in turns")
        medians = spawn_series(
            {"direct": (local_hub, {}), "outpost": (hub, options)},
            p["spawns"],
            p["warmup_spawns"],
            log,
        )
        spawn["ready_s_direct"], spawn["ready_s_outpost"] = medians["direct"], medians["outpost"]
        local_hub.close()  # not needed for the load figure
        log(f"  hub: {len(users)} servers, API p99 idle and under {len(users)} downloads")
        for user in users:
            spawn_seconds(hub, user, "lab", options)
        hub_figure["api_p99_ms_idle"] = api_p99(hub, p["api_requests"])
        hub_figure["hub_port_p99_ms_idle"] = api_p99(hub, p["api_requests"], via_proxy=False)
        procs = downloads(hub, users, p["load_seconds"], workdir)
        try:
            time.sleep(min(2.0, p["load_seconds"] / 4))  # every download under way
            hub_figure["api_p99_ms_loaded"] = api_p99(hub, p["api_requests"])
            # the same without the proxy, which also carries the downloads
            hub_figure["hub_port_p99_ms_loaded"] = api_p99(hub, p["api_requests"], via_proxy=False)
        finally:
            moved = 0
            for proc in procs:
                out, _ = proc.communicate(timeout=p["load_seconds"] + 120)
                try:
                    moved += json.loads(out)["bytes"]
                except (ValueError, KeyError):
                    pass
        hub_figure["load_MBps_total"] = moved / p["load_seconds"] / 1e6
        for user in users:
            try:
                hub.stop_server(user, "lab")
            except (urllib.error.URLError, TimeoutError):
                pass
    return hub_figure, spawn
