"""Download one URL on 127.0.0.1 again and again for a bounded time (figure 2's load).

    python -m bench.download_loop --port P --path /user/u0/lab/files/big.bin --token T --seconds 20

Prints ``{"bytes": N, "downloads": M}`` when the time is up (a download under way is
finished first, so the loop ends at most one download after ``--seconds``).
"""

from __future__ import annotations

import argparse
import json
import time

from bench.tunnel_compare import http_get


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args()
    deadline = time.monotonic() + args.seconds
    total = count = 0
    while time.monotonic() < deadline:
        status, n = http_get(args.port, args.path, args.token)
        if status != 200:
            raise SystemExit(f"download answered {status}")
        total += n
        count += 1
    print(json.dumps({"bytes": total, "downloads": count}))


if __name__ == "__main__":
    main()
