"""``jupyterhub-outpost topology up|down``: run a scenario on this machine.

    jupyterhub-outpost topology up SCENARIO_DIR [--mode local|kind] [--run-dir DIR]
    jupyterhub-outpost topology down [SCENARIO_DIR | --run-dir DIR]
    jupyterhub-outpost topology cleanup          # remove leftovers of crashed runs

``up`` stays in the foreground, streams every service's log as ``name | line``, and tears
everything down on Ctrl-C or SIGTERM (or when ``topology down`` is run elsewhere).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import subprocess
import sys

from . import netns
from .runner import Topology, TopologyError, down_run_dir
from .services import ServiceError
from .spec import SpecError, load

EXIT_USAGE = 2
DOCKER_SOCKET = "/var/run/docker.sock"


def docker_problem() -> str | None:
    """None when a Docker engine answers here, else why not (for --mode kind)."""
    docker = shutil.which("docker")
    if docker is None:
        return "no 'docker' command on PATH"
    try:
        proc = subprocess.run(
            [docker, "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=15,
        )
    except subprocess.TimeoutExpired:
        return "'docker info' did not answer within 15s"
    if proc.returncode != 0:
        return f"'docker info' failed: {proc.stderr.strip() or proc.returncode}"
    return None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="jupyterhub-outpost topology",
        description="Run a scenario on this machine: each host a network namespace.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="bring a scenario up (foreground; Ctrl-C tears it down)")
    up.add_argument("scenario", help="scenario folder (holding topology.yaml) or topology file")
    up.add_argument("--mode", choices=["local", "kind"], default="local")
    up.add_argument(
        "--run-dir", help="where generated files, data and logs go (default ./run/NAME)"
    )
    up.add_argument(
        "--no-isolation",
        action="store_true",
        help="hosts become loopback addresses (what happens anyway without root or ip netns)",
    )
    up.add_argument("--log-level", default="INFO")
    down = sub.add_parser("down", help="tear down a scenario brought up by 'topology up'")
    down.add_argument("scenario", nargs="?", help="scenario folder (to find ./run/NAME)")
    down.add_argument("--run-dir", help="the run dir given to 'up'")
    down.add_argument("--log-level", default="INFO")
    clean = sub.add_parser("cleanup", help="remove namespaces/bridges of crashed runs")
    clean.add_argument("--log-level", default="INFO")
    return p


async def run_up(args: argparse.Namespace) -> int:
    spec = load(args.scenario)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    topo = Topology(spec, run_dir=args.run_dir, isolation=False if args.no_isolation else None)
    say = topo.sink
    start = asyncio.create_task(topo.start())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait([start, stopper], return_when=asyncio.FIRST_COMPLETED)
    if not start.done():
        say("topology", "stop requested while starting; tearing down")
        start.cancel()
        await asyncio.gather(start, return_exceptions=True)
        await topo.down()
        return 130
    try:
        start.result()
    except (ServiceError, TopologyError, SpecError, netns.NetnsError) as e:
        print(f"topology up: could not bring {spec.name} up: {e}", file=sys.stderr)
        return 1
    hosts = ", ".join(f"{h.name}={h.ip}" for h in topo.lab.hosts.values())
    say("topology", f"{spec.name} is up (prefix {topo.lab.prefix}; hosts {hosts})")
    if not topo.lab.isolated:
        say("topology", "network isolation is OFF: every host is a loopback address")
    if topo.open_url:
        say("topology", f"open {topo.open_url}")
        problem = topo.reachability_problem(topo.open_url)
        if problem:
            say("topology", f"warning: {problem}")
    if spec.login:
        say("topology", f"login: {spec.login}")
    say("topology", f"logs and generated files: {topo.run_dir}")
    say("topology", "Ctrl-C (or 'jupyterhub-outpost topology down') tears everything down")
    await stopper
    say("topology", "tearing down")
    await topo.down()
    say("topology", f"{spec.name} is down")
    return 0


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "cleanup":
        cleaned = netns.cleanup_stale()
        print(f"cleaned {len(cleaned)} stale run(s): {', '.join(cleaned) or '-'}")
        return
    if args.command == "down":
        if args.run_dir:
            run_dir = args.run_dir
        elif args.scenario:
            try:
                run_dir = os.path.abspath(os.path.join("run", load(args.scenario).name))
            except SpecError as e:
                sys.exit(f"topology down: {e}")
        else:
            sys.exit("topology down: give the scenario folder or --run-dir")
        print(down_run_dir(run_dir))
        return
    if args.mode == "kind":
        problem = docker_problem()
        if problem:
            print(
                "topology up --mode kind: kind runs Kubernetes inside Docker containers, and "
                f"there is no Docker engine here ({problem}). Install and start Docker "
                f"(the daemon must answer on {DOCKER_SOCKET}), or use --mode local, which "
                "needs only root and 'ip netns'.",
                file=sys.stderr,
            )
            sys.exit(EXIT_USAGE)
        print(
            "topology up --mode kind: a Docker engine is here, but kind mode is not "
            "implemented by this runner yet; use --mode local.",
            file=sys.stderr,
        )
        sys.exit(EXIT_USAGE)
    stale = netns.cleanup_stale()
    if stale:
        print(f"removed leftovers of crashed runs: {', '.join(stale)}", file=sys.stderr)
    try:
        code = asyncio.run(run_up(args))
    except SpecError as e:
        sys.exit(f"topology up: {e}")
    except TopologyError as e:
        sys.exit(f"topology up: {e}")
    sys.exit(code)


if __name__ == "__main__":
    main()
