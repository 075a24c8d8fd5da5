"""What every benchmark needs: percentiles, process memory, HTTP on raw sockets, and a
record of every process the run started (ended at the end, also after a failure).

The process and port helpers of ``bench/tunnel_compare.py`` are reused, not copied.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from bench.tunnel_compare import free_port, wait_for  # noqa: F401 - re-exported

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(sys.executable).parent


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank (p99 of 100 values is the 99th)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(round(q * len(ordered)))))
    return ordered[rank - 1]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def rss_kb(pid: int) -> int:
    """Resident set size (VmRSS) of ``pid`` in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def machine() -> dict:
    """What the numbers were measured on."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "mem_gb": round(mem_kb / 1024 / 1024, 1),
        "loadavg": list(os.getloadavg()),
        "kernel": os.uname().release,
        "python": sys.version.split()[0],
    }


# ---------------------------------------------------------------- processes


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    return children


def descendants(pid: int) -> list[int]:
    tree = _children_map()
    found, todo = [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def end_descendants(timeout: float = 10) -> list[int]:
    """SIGTERM every process this bench started that is still alive, SIGKILL after
    ``timeout``; returns the pids that were left (the run's own pids only)."""
    left = descendants(os.getpid())
    for pid in left:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(p) for p in left):
        time.sleep(0.1)
    for pid in left:
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return left


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@contextmanager
def background(argv: list[str], log_path: Path, env: dict | None = None):
    """Run ``argv`` (no shell), output to ``log_path``; SIGTERM (then SIGKILL) on exit."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


# ---------------------------------------------------------------- HTTP


async def async_get(port: int, path: str, headers: dict | None = None, timeout: float = 30):
    """One HTTP/1.0 GET on a new connection to 127.0.0.1 (asyncio); (status, body bytes)."""

    async def go():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            lines = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
            writer.write(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n{lines}\r\n".encode())
            data = await reader.read()
        finally:
            writer.close()
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split()[1]) if head else 0
        return status, body

    return await asyncio.wait_for(go(), timeout)
