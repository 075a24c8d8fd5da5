"""``make bench``: every benchmark of issue #7 in one run (a few minutes).

    .venv/bin/python -m bench [--smoke] [--json PATH] [--doc PATH] [--only tunnel,hub,...]

Prints one line per figure with its baseline and ratio, writes ``bench/results/latest.json``
and regenerates ``docs/performance.md`` with ``docs/performance.png``. ``--smoke`` runs
every figure with tiny sizes (the test suite's version) and writes only where told
(``--json``/``--doc``), never over the committed results. Benchmarks, not tests: a
missed target is reported, not raised; the exit code is 1 only when a figure could not
be measured. Every process the run started is ended before it exits.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench import doc, forwards, hub, outpost, report, tunnel
from bench.common import ROOT, end_descendants, machine

FULL = {
    "size_mb": 200,  # tunnel download (MiB) and each hub-load download
    "requests": 100,  # small GETs per tunnel path
    "ws_rounds": 50,  # kernel execute round trips per tunnel path
    "spawns": 20,
    "warmup_spawns": 0,
    "load_users": 4,
    "api_requests": 200,
    "load_seconds": 40,
    "servers": 1000,
    "concurrent_starts": 200,
    "sequential_starts": 50,
    "poll_seconds": 10,
    "poll_rounds": 3,
    "forwards": 500,
}
SMOKE = {
    "size_mb": 1,
    "requests": 10,
    "ws_rounds": 3,
    "spawns": 1,
    "warmup_spawns": 0,
    "load_users": 1,
    "api_requests": 10,
    "load_seconds": 4,
    "servers": 20,
    "concurrent_starts": 10,
    "sequential_starts": 3,
    "poll_seconds": 1,
    "poll_rounds": 1,
    "forwards": 5,
}
SECTIONS = ("tunnel", "hub", "outpost", "tunnels")  # "hub" also gives spawn, "outpost" db


def measure(sections, params: dict, workdir: Path, log) -> tuple[dict, dict]:
    results: dict = {}
    errors: dict = {}
    steps = {
        "tunnel": lambda: {"tunnel": tunnel.run(workdir, params, log)},
        "hub": lambda: dict(zip(("hub", "spawn"), hub.run(workdir, params, log), strict=True)),
        "outpost": lambda: dict(
            zip(
                ("outpost", "db", "workers", "profile"),
                outpost.run(workdir, params, log),
                strict=True,
            )
        ),
        "tunnels": lambda: {"tunnels": forwards.run(workdir, params, log)},
    }
    for section in sections:
        started = time.monotonic()
        log(f"[{section}]")
        try:
            results.update(steps[section]())
        except Exception as e:  # one figure's failure must not lose the others
            errors[section] = f"{type(e).__name__}: {e}"
            log(traceback.format_exc())
        finally:
            left = end_descendants()
            if left:
                log(f"  ended {len(left)} process(es) left by [{section}]")
        log(f"  ({time.monotonic() - started:.0f}s)")
    return results, errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (the test's version)")
    parser.add_argument("--json", help="results file (default bench/results/latest.json)")
    parser.add_argument("--doc", help="page to regenerate (default docs/performance.md)")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--page-only",
        action="store_true",
        help="measure nothing: regenerate the page (and plot) from the results file",
    )
    args = parser.parse_args(argv)
    if args.smoke and not (args.json and args.doc):
        parser.error("--smoke needs --json and --doc (it never overwrites the real results)")
    params = dict(SMOKE if args.smoke else FULL)
    sections = args.only.split(",") if args.only else list(SECTIONS)
    json_path = Path(args.json) if args.json else ROOT / "bench" / "results" / "latest.json"
    doc_path = Path(args.doc) if args.doc else ROOT / "docs" / "performance.md"

    if args.page_only:
        import json

        results = json.loads(json_path.read_text())
        doc.write(doc_path, results, report.rows(results, results["params"]))
        print(f"wrote {doc_path} from {json_path}")
        return 0

    def log(text: str) -> None:
        print(text, flush=True)

    os.chdir(ROOT)  # the helpers run `python -m bench.*` and import tests.helpers
    workdir = Path(tempfile.mkdtemp(prefix="outpost-bench-"))
    started = time.monotonic()
    info = {
        "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "smoke": args.smoke,
        "params": params,
    }
    log(
        f"bench: {info['machine']['nproc']} CPUs ({info['machine']['cpu_model']}), "
        f"load average {info['machine']['loadavg'][0]:.2f}; work dir {workdir}"
    )
    try:
        results, errors = measure(sections, params, workdir, log)
    finally:
        end_descendants()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    info["duration_s"] = round(time.monotonic() - started, 1)
    info["loadavg_end"] = list(os.getloadavg())
    info["errors"] = errors
    results = {**info, **results}
    table = report.rows(results, params)
    log("")
    log("figure                                 value      baseline / ratio / target")
    for row in table:
        log(report.summary_line(row))
    missing = report.missing_keys(results)
    if missing:
        log(f"not measured: {', '.join(missing)}")
    for section, error in errors.items():
        log(f"[{section}] failed: {error}")
    report.write_json(json_path, results, table)
    doc.write(doc_path, results, table)
    log(f"wrote {json_path} and {doc_path} ({info['duration_s']:.0f}s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
