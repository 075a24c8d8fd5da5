"""Figures 4 [outpost], 6 [db] and 7 [workers]: how many servers one Outpost can track.

The Outpost is the real ``jupyterhub-outpost serve`` (tests/helpers/outpost_process.py)
with ``bench.cheap_spawner.CheapSpawner``, pinned to CPU 0 with ``taskset``; the poll load
(``wrk``, bench/poll_load.py) runs in its own process pinned to CPU 1. Order: 200 starts
fired at once, then ``sequential_starts`` one after the other (their latency), then starts
up to ``servers`` (16 at a time), resident memory, then ``poll_rounds`` rounds of polls for
``poll_seconds`` each. [workers]: the PostgreSQL Outpost of [db] started again with
``--workers 2`` on both cores (it recovers every server), the poll load unpinned and
pipelined (``PIPELINE``), against the one process under the same load.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from pathlib import Path

import aiohttp

from bench import poll_load, profile
from bench import tunnel_compare as tc
from bench.common import ROOT, percentile, rss_kb
from tests.helpers.outpost_process import OutpostProcess
from tests.helpers.postgres import PostgresServer

HUB = "benchhub"
OUTPOST_CPU = 0
LOAD_CPU = 1
# Polls per write of figure 7's load, for one worker and two alike (why: figure 7 in
# bench/doc.py's METHOD)
PIPELINE = 4


class BenchOutpost(OutpostProcess):
    """The test helper's Outpost at log level INFO (what operators run, not DEBUG); with
    ``pin=True`` under ``taskset -c 0`` (one core; ``taskset`` execs, the pid stays)."""

    def __init__(self, *args, pin: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.pin = pin

    def argv(self) -> list[str]:
        argv = super().argv()
        argv[argv.index("--log-level") + 1] = "INFO"
        if self.pin and shutil.which("taskset") and (os.cpu_count() or 1) > 1:
            argv = ["taskset", "-c", str(OUTPOST_CPU), *argv]
        return argv


def start_body(i: int) -> bytes:
    user = f"user{i}"
    return json.dumps(
        {
            "name": f"b{i}",
            "env": {
                "JUPYTERHUB_USER": user,
                "JUPYTERHUB_SERVER_NAME": "",
                "JUPYTERHUB_API_TOKEN": os.urandom(16).hex(),
                "JUPYTERHUB_SERVICE_PREFIX": f"/user/{user}/",
                "JUPYTERHUB_API_URL": "http://127.0.0.1:1/hub/api",
            },
            "user_options": {"start_id": f"s{i}"},
        }
    ).encode()


async def start_many(url: str, auth: dict, indices: range, concurrency: int) -> tuple[int, int]:
    """POST /services for each index, ``concurrency`` at a time; (ok, errors)."""
    ok = errors = 0
    gate = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    headers = {**auth, "Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int):
            nonlocal ok, errors
            async with gate:
                try:
                    async with session.post(
                        f"{url}/services",
                        data=start_body(i),
                        headers=headers,
                        timeout=aiohttp.ClientTimeout(total=120),
                    ) as response:
                        await response.read()
                        if response.status == 200:
                            ok += 1
                        else:
                            errors += 1
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    errors += 1

        await asyncio.gather(*(one(i) for i in indices))
    return ok, errors


def sequential_starts(url: str, auth: dict, indices: range) -> list[float]:
    """POST /services for each index, one after the other: each start's milliseconds."""
    times = []

    async def run():
        headers = {**auth, "Content-Type": "application/json"}
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            for i in indices:
                t0 = time.perf_counter()
                async with session.post(
                    f"{url}/services", data=start_body(i), headers=headers
                ) as r:
                    await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"start {i}: {r.status}")
                times.append((time.perf_counter() - t0) * 1000)

    asyncio.run(run())
    return times


def write_config(workdir: Path) -> Path:
    config = workdir / "outpost_config.py"
    config.write_text(
        f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
from bench.cheap_spawner import CheapSpawner
c.JupyterHubOutpost.spawner_class = CheapSpawner
c.JupyterHubOutpost.runtime_check_interval = 3600
"""
    )
    return config


def load_args(
    outpost: BenchOutpost, p: dict, workdir: Path, pin=True, connections=8, pipeline=1
) -> dict:
    """poll_load.run's arguments but ``seconds``."""
    return dict(
        port=outpost.port,
        auth=outpost.auth(HUB)["Authorization"],
        names=p["servers"],
        workdir=workdir,
        connections=connections,
        cpu=LOAD_CPU if pin and (os.cpu_count() or 1) > 1 else None,
        pipeline=pipeline,
    )


def profile_polls(outpost: BenchOutpost, p: dict, workdir: Path, log) -> dict:
    """bench/profile.py's summary of one more round of polls (figure 4's load)."""
    reason = profile.unavailable_reason()
    if reason:
        log(f"    profile skipped: {reason}")
        return {"skipped": reason}
    out = workdir / "py-spy.txt"
    process_before, main_before = profile.cpu_seconds(outpost.pid)
    spy = profile.start(outpost.pid, p["poll_seconds"], out)
    # one second longer than the sampling, which starts once py-spy attached
    poll_load.run(seconds=p["poll_seconds"] + 1, **load_args(outpost, p, workdir))
    summary = profile.finish(spy, out, p["poll_seconds"])
    process_after, main_after = profile.cpu_seconds(outpost.pid)
    summary["servers"] = p["servers"]
    summary["main_thread_cpu_share"] = (main_after - main_before) / max(
        1e-9, process_after - process_before
    )
    log(f"    profile: {summary.get('samples', 0)} samples {summary.get('skipped', '')}")
    return summary


def measure_polls(
    outpost: BenchOutpost,
    p: dict,
    workdir: Path,
    log,
    pin: bool = True,
    connections: int = 8,
    pipeline: int = 1,
) -> dict:
    """The poll load (bench/poll_load.py, wrk) on a filled Outpost after one second of
    warm-up, ``poll_rounds`` times ``poll_seconds``: the round with the median rate (others'
    load on this shared machine comes in bursts), with the Outpost's CPU per poll."""
    load = load_args(outpost, p, workdir, pin, connections, pipeline)
    poll_load.run(seconds=1, **load)  # every connection open, every server polled once
    rounds = []
    for _ in range(p["poll_rounds"]):
        cpu_before = tc.tree_cpu_seconds(outpost.pid)
        polls = poll_load.run(seconds=p["poll_seconds"], **load)
        cpu_s = tc.tree_cpu_seconds(outpost.pid) - cpu_before
        polls["cpu_ms_per_poll"] = cpu_s * 1000 / max(1, polls["requests"])
        log(f"    polls: {polls}")
        if polls["errors"]:
            raise RuntimeError(f"{polls['errors']} polls failed: {outpost.log_text()[-2000:]}")
        rounds.append(polls)
    return sorted(rounds, key=lambda r: r["rps"])[len(rounds) // 2]


def capacity(workdir: Path, p: dict, env: dict | None, *, concurrent: bool, log, keep=None) -> dict:
    """Start an Outpost on ``env``'s database, fill it, measure; the [outpost] dict.
    ``keep(outpost)``: called with the filled Outpost before it is closed (after the
    measured polls)."""
    workdir.mkdir()
    outpost = BenchOutpost(
        write_config(workdir),
        workdir / "data",
        hub_credentials={HUB: os.urandom(16).hex()},
        env=env,
        cwd=str(ROOT),
        pin=True,
    )
    result: dict = {}
    try:
        outpost.start(timeout=60)
        auth = outpost.auth(HUB)
        time.sleep(0.5)
        idle_kb = rss_kb(outpost.pid)
        filled = 0
        if concurrent:
            burst = min(p["concurrent_starts"], p["servers"])
            t0 = time.perf_counter()
            ok, errors = asyncio.run(start_many(outpost.url, auth, range(burst), burst))
            log(
                f"    {burst} starts at once: {ok} ok, {errors} errors in {time.perf_counter() - t0:.1f}s"
            )
            result["concurrent_starts_ok"], result["concurrent_starts_errors"] = ok, errors
            filled = burst
            times = sequential_starts(
                outpost.url, auth, range(filled, filled + p["sequential_starts"])
            )
            filled += p["sequential_starts"]
            result["start_p50_ms"] = percentile(times, 0.5)
            result["start_p99_ms"] = percentile(times, 0.99)
            log(f"    {len(times)} sequential starts: p50 {result['start_p50_ms']:.1f} ms")
        t0 = time.perf_counter()
        ok, errors = asyncio.run(start_many(outpost.url, auth, range(filled, p["servers"]), 16))
        if errors:
            raise RuntimeError(f"{errors} of {p['servers'] - filled} starts failed")
        log(f"    filled to {p['servers']} servers in {time.perf_counter() - t0:.1f}s")
        time.sleep(0.5)
        full_kb = rss_kb(outpost.pid)
        result["rss_kb_per_server"] = (full_kb - idle_kb) / p["servers"]
        result["rss_mb_idle"] = idle_kb / 1024
        result["rss_mb_full"] = full_kb / 1024
        polls = measure_polls(outpost, p, workdir, log)
        result["poll_rps"] = polls["rps"]
        result["poll_p99_ms"] = polls["p99_ms"]
        result["poll_p50_ms"] = polls["p50_ms"]
        # CPU the Outpost spent per poll: 1000 / this is the rate one free core would give
        result["poll_cpu_ms"] = polls["cpu_ms_per_poll"]
        result["load_cpu_ms"] = polls["load_cpu_ms_per_poll"]  # wrk's, on the other core
        if keep is not None:
            keep(outpost)
    finally:
        outpost.close()
    return result


def two_workers(outpost: BenchOutpost, p: dict, workdir: Path, log) -> dict:
    """The filled PostgreSQL Outpost started again with ``--workers 2`` on both cores:
    under figure 7's pipelined load, then under figure 6's."""
    outpost.terminate()
    outpost.pin = False
    outpost.extra_args = [*outpost.extra_args, "--workers", "2"]
    listening = outpost.log_text().count("Outpost API at")
    t0 = time.perf_counter()
    outpost.start(timeout=120)
    # the leader listens once it recovered every server
    tc.wait_for(
        lambda: outpost.log_text().count("Outpost API at") >= listening + 2, "2 workers", 120
    )
    log(f"    2 workers up (recovering {p['servers']} servers) in {time.perf_counter() - t0:.1f}s")
    # 16 connections: the kernel spreads connections over the workers by a hash of their
    # addresses, and 8 often split 6:2; the load stays closed-loop and saturating
    polls = measure_polls(outpost, p, workdir, log, pin=False, connections=16, pipeline=PIPELINE)
    plain = measure_polls(outpost, p, workdir, log, pin=False, connections=16)
    return {
        "poll_rps_2": polls["rps"],
        "poll_cpu_ms_2": polls["cpu_ms_per_poll"],  # both workers'
        "load_cpu_ms_2": polls["load_cpu_ms_per_poll"],  # wrk's, on the same two cores
        "poll_rps_2_unpipelined": plain["rps"],
        "poll_p99_ms_2_unpipelined": plain["p99_ms"],
        "load_cpu_ms_2_unpipelined": plain["load_cpu_ms_per_poll"],
    }


def one_replica(outpost: BenchOutpost, p: dict, workdir: Path, log) -> dict:
    """The filled PostgreSQL Outpost started again as one replica (``--replicated``, one
    process pinned as in [db]): its polls wait for a notification barrier."""
    outpost.terminate()
    outpost.pin = True
    outpost.extra_args = [a for a in outpost.extra_args if a not in ("--workers", "2")]
    outpost.extra_args.append("--replicated")
    outpost.start(timeout=120)
    polls = measure_polls(outpost, p, workdir, log)
    return {
        "poll_rps_replica": polls["rps"],
        "poll_p99_ms_replica": polls["p99_ms"],
        "poll_cpu_ms_replica": polls["cpu_ms_per_poll"],
    }


def run(workdir: Path, p: dict, log=print) -> tuple[dict, dict, dict, dict]:
    """([outpost] figure on SQLite, [db] figure, [workers] figure, the poll profile)."""
    log(f"  outpost: SQLite, {p['servers']} servers, {p['poll_seconds']}s of polls")
    polls_profile: dict = {}

    def profiled(filled):
        polls_profile.update(profile_polls(filled, p, workdir, log))

    outpost = capacity(workdir / "outpost-sqlite", p, None, concurrent=True, log=log, keep=profiled)
    db = {"poll_rps_sqlite": outpost["poll_rps"], "poll_rps_postgresql": None}
    workers: dict = {
        "poll_rps_1": None,
        "poll_rps_2": None,
        "poll_rps_2_unpipelined": None,
        "poll_rps_replica": None,
    }
    reason = PostgresServer.unavailable_reason()
    if reason:
        log(f"  db: PostgreSQL skipped: {reason}")
        return outpost, db, workers, polls_profile
    log(f"  db: PostgreSQL 15, {p['servers']} servers; then workers: the same with 2 workers")
    with PostgresServer() as pg:
        env = pg.create_database("bench").env

        def keep(filled):
            one = measure_polls(filled, p, workdir, log, pipeline=PIPELINE)
            workers["poll_rps_1"] = one["rps"]
            workers["poll_cpu_ms_1"] = one["cpu_ms_per_poll"]
            workers["load_cpu_ms_1"] = one["load_cpu_ms_per_poll"]
            workers.update(two_workers(filled, p, workdir, log))
            workers.update(one_replica(filled, p, workdir, log))

        pg_result = capacity(
            workdir / "outpost-postgresql", p, env, concurrent=False, log=log, keep=keep
        )
    db["poll_rps_postgresql"] = pg_result["poll_rps"]
    db["poll_p99_ms_postgresql"] = pg_result["poll_p99_ms"]
    db["poll_cpu_ms_postgresql"] = pg_result["poll_cpu_ms"]
    return outpost, db, workers, polls_profile
