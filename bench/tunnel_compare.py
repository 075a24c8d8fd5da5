"""Compare the tunnel paths to a real jupyter-server: direct, OpenSSH, and ours.

    .venv/bin/python bench/tunnel_compare.py [--size-mb 200] [--requests 100] [--cross] [--json OUT]

In one run it starts, all on 127.0.0.1:

- a plain ``jupyter-server`` (token auth) serving a large file from its root dir;
- OpenSSH: a throwaway ``/usr/sbin/sshd`` (own config, host key and authorized_keys with
  ``restrict,port-forwarding`` in a temp dir) and ``ssh -N -L`` with a pinned known_hosts
  file and ``StrictHostKeyChecking=yes``;
- ours: the tunnel daemon (``jupyterhub-outpost tunnels``) -> SSHEndpoint (asyncssh).

With ``--cross`` it also measures the mixed paths (OpenSSH client -> our endpoint, our
daemon -> sshd), which show which side adds a delay. Our endpoint runs from
``tests/tunnels/endpoint_server.py`` (the same runner the tests use).

For each path it measures small-GET latency (``GET /api``, a NEW TCP connection per
request, p50/p99) and the throughput of one large download (``/files/<file>``), and prints
a table with ratios to direct. The functions are importable for later benchmarks.
Benchmarks are not tests: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncssh

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(sys.executable).parent
ENDPOINT_SCRIPT = ROOT / "tests" / "tunnels" / "endpoint_server.py"
SSHD = "/usr/sbin/sshd"


# ---------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, what: str, timeout: float = 30.0) -> None:
    """Poll ``predicate`` with exponential backoff until it is true."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout}s")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def http_ok(port: int, path: str = "/api") -> bool:
    try:
        status, _ = http_get(port, path)
    except OSError:
        return False
    return status == 200


@contextmanager
def process(argv: list[str], log_path: Path, env: dict | None = None):
    """Run ``argv`` (no shell) with output to ``log_path``; terminate it on exit."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def write_key(path: Path, key: asyncssh.SSHKey) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.export_private_key())


def public_line(key: asyncssh.SSHKey) -> str:
    return " ".join(key.export_public_key().decode().split()[:2])


# ---------------------------------------------------------------- measurements


def http_get(port: int, path: str, token: str | None = None, bufsize: int = 1 << 20):
    """One HTTP/1.0 GET on a new TCP connection (TCP_NODELAY like a proxy); (status, bytes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        auth = f"Authorization: token {token}\r\n" if token else ""
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{auth}\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(65536)
            if not chunk:
                break
            head += chunk
        header, _, rest = head.partition(b"\r\n\r\n")
        status = int(header.split()[1]) if header else 0
        n = len(rest)
        while True:
            chunk = s.recv(bufsize)
            if not chunk:
                break
            n += len(chunk)
    return status, n


def measure_latency(port: int, requests: int = 100, path: str = "/api") -> dict:
    """p50/p99 (ms) of small GETs, each on a NEW TCP connection."""
    for _ in range(5):  # warm up (first SSH channel, server caches)
        http_get(port, path)
    times = []
    for _ in range(requests):
        t0 = time.perf_counter()
        status, _ = http_get(port, path)
        times.append((time.perf_counter() - t0) * 1000)
        if status != 200:
            raise RuntimeError(f"GET {path} via port {port} answered {status}")
    times.sort()
    return {
        "p50_ms": statistics.median(times),
        "p99_ms": times[min(len(times) - 1, int(round(0.99 * len(times))) - 1)],
        "mean_ms": statistics.fmean(times),
    }


def tree_cpu_seconds(pid: int) -> float:
    """user+system CPU seconds of ``pid`` and its live descendants (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))  # fields[1] is ppid
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += cpu.get(p, 0.0)
        todo.extend(children.get(p, []))
    return total


def measure_throughput(
    port: int, path: str, token: str, expected: int, runs: int = 2, cpu_pids: dict | None = None
) -> dict:
    """MB/s of a large download (best of ``runs``); with ``cpu_pids`` ({side: pid}) also the
    CPU seconds per GB each side's process tree spent over all runs."""
    best = 0.0
    cpu_pids = cpu_pids or {}
    before = {side: tree_cpu_seconds(pid) for side, pid in cpu_pids.items()}
    for _ in range(runs):
        t0 = time.perf_counter()
        status, n = http_get(port, path, token)
        elapsed = time.perf_counter() - t0
        if status != 200 or n != expected:
            raise RuntimeError(f"download via port {port}: status {status}, {n}/{expected} bytes")
        best = max(best, n / elapsed / 1e6)
    result = {"mb_per_s": best}
    for side, pid in cpu_pids.items():
        spent = tree_cpu_seconds(pid) - before[side]
        result[f"{side}_cpu_s_per_gb"] = spent / (runs * expected / 1e9)
    return result


def measure(
    port: int, file_path: str, token: str, size: int, requests: int, cpu_pids: dict | None = None
) -> dict:
    result = measure_latency(port, requests)
    result.update(measure_throughput(port, file_path, token, size, cpu_pids=cpu_pids))
    return result


# ---------------------------------------------------------------- the three paths


@contextmanager
def jupyter_server(workdir: Path, size_mb: int, token: str):
    """A plain jupyter-server on 127.0.0.1 with a ``size_mb`` file; yields (port, path, size)."""
    root = workdir / "root"
    root.mkdir()
    block = os.urandom(1 << 20)
    with open(root / "big.bin", "wb") as f:
        for _ in range(size_mb):
            f.write(block)
    port = free_port()
    argv = [
        str(BIN / "jupyter-server"),
        f"--IdentityProvider.token={token}",
        f"--port={port}",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.open_browser=False",
        "--ServerApp.port_retries=0",
    ]
    if os.geteuid() == 0:
        argv.append("--allow-root")
    env = dict(
        os.environ,
        JUPYTER_CONFIG_DIR=str(workdir / "jcfg"),
        JUPYTER_DATA_DIR=str(workdir / "jdata"),
    )
    with process(argv, workdir / "jupyter-server.log", env=env):
        wait_for(lambda: http_ok(port), "jupyter-server", timeout=60)
        yield port, "/files/big.bin", size_mb << 20


@dataclass
class SSHServer:
    """A running SSH server: where it listens, its host key line, the user and key to log in."""

    port: int
    host_key: str
    user: str
    client_key_path: Path
    pid: int


@contextmanager
def sshd_server(workdir: Path, target_port: int):
    """A throwaway OpenSSH ``sshd`` (own config, host key, ``restrict,port-forwarding`` key)."""
    d = workdir / "sshd"
    d.mkdir()
    host_key, client_key = (asyncssh.generate_private_key("ssh-ed25519") for _ in range(2))
    write_key(d / "host_key", host_key)
    write_key(d / "client_key", client_key)
    (d / "authorized_keys").write_text(f"restrict,port-forwarding {public_line(client_key)}\n")
    port = free_port()
    (d / "sshd_config").write_text(
        "\n".join(
            [
                f"ListenAddress 127.0.0.1:{port}",
                f"HostKey {d / 'host_key'}",
                f"PidFile {d / 'sshd.pid'}",
                f"AuthorizedKeysFile {d / 'authorized_keys'}",
                "StrictModes no",
                "UsePAM no",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PubkeyAuthentication yes",
                "PermitRootLogin prohibit-password",
                "AllowTcpForwarding local",
                "AllowAgentForwarding no",
                "X11Forwarding no",
                "PermitTTY no",
                "",
            ]
        )
    )
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation directory
    user = os.environ.get("USER") or "root"
    with process([SSHD, "-D", "-e", "-f", str(d / "sshd_config")], d / "sshd.log") as sshd:
        wait_for(lambda: port_open(port), "sshd")
        yield SSHServer(port, public_line(host_key), user, d / "client_key", sshd.pid)


@contextmanager
def endpoint_server(workdir: Path, target_port: int):
    """Our SSHEndpoint in its own process, allowing forwards to ``target_port`` only."""
    d = workdir / "endpoint"
    d.mkdir()
    client_key, host_key = (asyncssh.generate_private_key("ssh-ed25519") for _ in range(2))
    write_key(d / "hub_key", client_key)
    write_key(d / "host_key", host_key)
    (d / "keys.json").write_text(json.dumps({"hub": [public_line(client_key)]}))
    port = free_port()
    argv = [PYTHON, str(ENDPOINT_SCRIPT), "--host-key", str(d / "host_key")]
    argv += ["--port", str(port), "--authorized-keys", str(d / "keys.json")]
    argv += ["--allow", f"127.0.0.1:{target_port}"]
    with process(argv, d / "endpoint.log") as endpoint:
        wait_for(lambda: port_open(port), "SSH endpoint")
        yield SSHServer(port, public_line(host_key), "hub", d / "hub_key", endpoint.pid)


@contextmanager
def openssh_client(workdir: Path, server: SSHServer, target_port: int):
    """``ssh -N -L`` with a pinned known_hosts file; yields (local port, client pid)."""
    d = workdir / f"ssh-client-{server.port}"
    d.mkdir()
    (d / "known_hosts").write_text(f"[127.0.0.1]:{server.port} {server.host_key}\n")
    local_port = free_port()
    argv = [
        "ssh",
        "-N",
        "-F",
        "/dev/null",
        "-i",
        str(server.client_key_path),
        "-p",
        str(server.port),
        "-L",
        f"127.0.0.1:{local_port}:127.0.0.1:{target_port}",
        "-o",
        f"UserKnownHostsFile={d / 'known_hosts'}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "ExitOnForwardFailure=yes",
        f"{server.user}@127.0.0.1",
    ]
    with process(argv, d / "ssh.log") as ssh:
        wait_for(lambda: ssh.poll() is not None or port_open(local_port), "ssh -L", timeout=30)
        if ssh.poll() is not None:
            raise RuntimeError(f"ssh exited: {(d / 'ssh.log').read_text()}")
        wait_for(lambda: http_ok(local_port), "OpenSSH forward")
        yield local_port, ssh.pid


@contextmanager
def daemon_client(workdir: Path, server: SSHServer, target_port: int):
    """Our tunnel daemon with one forward through ``server``; yields (local port, daemon pid)."""
    d = workdir / f"daemon-{server.port}"
    d.mkdir()
    api_port = free_port()
    token = os.urandom(16).hex()
    argv = [PYTHON, "-m", "jupyterhub_outpost", "tunnels", "--api-port", str(api_port)]
    argv += ["--ssh-key", str(server.client_key_path), "--state-file", str(d / "state.json")]
    env = dict(os.environ, OUTPOST_TUNNEL_API_TOKEN=token)
    with process(argv, d / "daemon.log", env=env) as daemon:
        wait_for(lambda: port_open(api_port), "tunnel daemon")
        body = {
            "ssh": {
                "host": "127.0.0.1",
                "port": server.port,
                "user": server.user,
                "host_key": server.host_key,
            },
            "target_host": "127.0.0.1",
            "target_port": target_port,
        }
        request = urllib.request.Request(
            f"http://127.0.0.1:{api_port}/forwards/bench.server",
            data=json.dumps(body).encode(),
            method="PUT",
            headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - 127.0.0.1
            forward = json.load(response)
        local_port = forward["local_port"]
        wait_for(lambda: http_ok(local_port), "our forward")
        yield local_port, daemon.pid


# (hub-side client, Outpost-side server) of each measured path
PATHS = {
    "openssh": (openssh_client, sshd_server),
    "ours": (daemon_client, endpoint_server),
    # cross paths: which side adds the per-connection delay
    "ssh>ours": (openssh_client, endpoint_server),
    "ours>sshd": (daemon_client, sshd_server),
}


@contextmanager
def tunnel(name: str, workdir: Path, target_port: int):
    """The path ``name`` of PATHS; yields (local port, {"hub": pid, "outpost": pid})."""
    client, server_factory = PATHS[name]
    path_dir = workdir / name.replace(">", "-to-")
    path_dir.mkdir()
    with server_factory(path_dir, target_port) as server:
        with client(path_dir, server, target_port) as (local_port, client_pid):
            yield local_port, {"hub": client_pid, "outpost": server.pid}


def run_all(
    size_mb: int = 200,
    requests: int = 100,
    workdir: str | None = None,
    paths: tuple[str, ...] = ("openssh", "ours"),
) -> dict:
    """Measure direct and ``paths`` (keys of PATHS); {path: {p50_ms, p99_ms, mean_ms, mb_per_s,
    hub_cpu_s_per_gb, outpost_cpu_s_per_gb}}."""
    tmp = Path(workdir or tempfile.mkdtemp(prefix="tunnel-bench-"))
    token = os.urandom(16).hex()
    results: dict[str, dict] = {}
    have_openssh = shutil.which("ssh") is not None and os.path.exists(SSHD)
    try:
        with jupyter_server(tmp, size_mb, token) as (jport, fpath, size):
            results["direct"] = measure(jport, fpath, token, size, requests)
            for name in paths:
                if not have_openssh and ("ssh" in name):
                    continue
                with tunnel(name, tmp, jport) as (port, pids):
                    results[name] = measure(port, fpath, token, size, requests, pids)
    finally:
        if workdir is None:
            shutil.rmtree(tmp, ignore_errors=True)
    return results


def format_table(results: dict) -> str:
    direct = results["direct"]
    lines = [
        f"{'path':<9} {'p50 ms':>8} {'p99 ms':>8} {'MB/s':>8}   {'p50 x':>6} {'p99 x':>6} "
        f"{'MB/s x':>6}   {'hub CPU s/GB':>12} {'outpost CPU s/GB':>16}",
    ]
    for name, r in results.items():
        hub = r.get("hub_cpu_s_per_gb")
        outpost = r.get("outpost_cpu_s_per_gb")
        lines.append(
            f"{name:<9} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} {r['mb_per_s']:8.1f}   "
            f"{r['p50_ms'] / direct['p50_ms']:6.2f} {r['p99_ms'] / direct['p99_ms']:6.2f} "
            f"{r['mb_per_s'] / direct['mb_per_s']:6.2f}   "
            f"{'-' if hub is None else f'{hub:.2f}':>12} "
            f"{'-' if outpost is None else f'{outpost:.2f}':>16}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument(
        "--cross",
        action="store_true",
        help="also measure OpenSSH client -> our endpoint and our daemon -> sshd",
    )
    args = parser.parse_args(argv)
    paths = tuple(PATHS) if args.cross else ("openssh", "ours")
    results = run_all(args.size_mb, args.requests, paths=paths)
    print(format_table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
