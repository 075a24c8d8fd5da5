"""Figure 1 [tunnel]: the data path to a real jupyter-server, direct, through OpenSSH
(``ssh -L`` -> ``sshd``) and through ours (tunnel daemon -> SSH endpoint).

The servers and tunnels are ``bench/tunnel_compare.py``'s (one jupyter-server, one path
at a time); this adds the websocket round trip of a kernel ``execute_request``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request
from pathlib import Path

import websocket

from bench import tunnel_compare as tc
from bench.common import median
from tests.helpers.kernel import execute_request

PATHS = {"openssh": "openssh", "outpost": "ours"}  # our key -> tunnel_compare's path name


def start_kernel(port: int, token: str) -> str:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/kernels",
        data=json.dumps({"name": "python3"}).encode(),
        method="POST",
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - 127.0.0.1
        return json.load(response)["id"]


def measure_ws_rtt(port: int, token: str, kernel_id: str, rounds: int) -> float:
    """Median ms from sending an ``execute_request`` on an open kernel websocket to its
    ``execute_reply`` (after 3 warm-up rounds)."""
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{port}/api/kernels/{kernel_id}/channels",
        header=[f"Authorization: token {token}"],
        timeout=60,
    )
    ws.sock.setsockopt(6, 1, 1)  # IPPROTO_TCP, TCP_NODELAY
    times = []
    try:
        for i in range(rounds + 3):
            msg_id, text = execute_request("1")
            t0 = time.perf_counter()
            ws.send(text)
            while True:
                msg = json.loads(ws.recv())
                if (
                    msg.get("parent_header", {}).get("msg_id") == msg_id
                    and msg.get("msg_type") == "execute_reply"
                ):
                    break
            if i >= 3:
                times.append((time.perf_counter() - t0) * 1000)
    finally:
        ws.close()
    return median(times)


def measure_path(port: int, token: str, kernel_id: str, file_path: str, size: int, p) -> dict:
    latency = tc.measure_latency(port, p["requests"])
    ws = measure_ws_rtt(port, token, kernel_id, p["ws_rounds"])
    throughput = tc.measure_throughput(port, file_path, token, size, runs=1)
    return {
        "latency_p50_ms": latency["p50_ms"],
        "latency_p99_ms": latency["p99_ms"],
        "ws_rtt_p50_ms": ws,
        "throughput_MBps": throughput["mb_per_s"],
    }


def run(workdir: Path, p: dict, log=print) -> dict:
    """{direct|openssh|outpost: {latency_p50_ms, latency_p99_ms, ws_rtt_p50_ms,
    throughput_MBps}}; OpenSSH is left out (None) when ssh or sshd is missing."""
    work = workdir / "tunnel"
    work.mkdir()
    token = os.urandom(16).hex()
    results: dict = {}
    have_openssh = shutil.which("ssh") is not None and os.path.exists(tc.SSHD)
    with tc.jupyter_server(work, p["size_mb"], token) as (jport, file_path, size):
        kernel_id = start_kernel(jport, token)
        log(f"  tunnel: direct ({p['requests']} GETs, {p['ws_rounds']} ws, {p['size_mb']} MiB)")
        results["direct"] = measure_path(jport, token, kernel_id, file_path, size, p)
        for key, name in PATHS.items():
            if key == "openssh" and not have_openssh:
                results[key] = None
                continue
            log(f"  tunnel: {key}")
            with tc.tunnel(name, work, jport) as (port, _pids):
                results[key] = measure_path(port, token, kernel_id, file_path, size, p)
    return results
