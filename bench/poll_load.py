"""Closed-loop poll load on an Outpost (figures 4 and 6), in its own process.

    python -m bench.poll_load --port P --auth "Basic ..." --names 1000 --seconds 10 \
        --concurrency 8 [--cpu 1]

``--concurrency`` keep-alive connections each send ``GET /services/b<i>`` (i round-robin
over ``--names`` servers) as soon as the previous answer arrived, for ``--seconds`` after
one second of warm-up. Prints ``{"rps", "p50_ms", "p99_ms", "requests", "errors"}``.
``--cpu`` pins this process to that core, away from the Outpost's.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import time

from bench.common import KeepAliveClient, percentile


async def load(args) -> dict:
    names = itertools.cycle(range(args.names))
    times: list[float] = []
    errors = 0
    warm_until = time.monotonic() + 1.0
    stop_at = warm_until + args.seconds

    async def worker():
        nonlocal errors
        client = KeepAliveClient(args.port, {"Authorization": args.auth})
        try:
            while True:
                t0 = time.monotonic()
                if t0 >= stop_at:
                    return
                try:
                    status, _ = await client.request("GET", f"/services/b{next(names)}")
                except (OSError, asyncio.IncompleteReadError):
                    client.close()
                    status = 0
                t1 = time.monotonic()
                if t0 >= warm_until:
                    if status == 200:
                        times.append((t1 - t0) * 1000)
                    else:
                        errors += 1
        finally:
            client.close()

    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    return {
        "rps": len(times) / args.seconds,
        "p50_ms": percentile(times, 0.5),
        "p99_ms": percentile(times, 0.99),
        "requests": len(times),
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--auth", required=True)
    parser.add_argument("--names", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--cpu", type=int)
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    print(json.dumps(asyncio.run(load(args))))


if __name__ == "__main__":
    main()
