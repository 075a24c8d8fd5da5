"""``jupyterhub-outpost topology up|down``: run a scenario on this machine.

    jupyterhub-outpost topology up SCENARIO_DIR [--mode local|kind] [--run-dir DIR]
    jupyterhub-outpost topology down [SCENARIO_DIR | --run-dir DIR]
    jupyterhub-outpost topology down --mode kind SCENARIO_DIR   # delete its kind clusters
    jupyterhub-outpost topology status [SCENARIO_DIR | --run-dir DIR]
    jupyterhub-outpost topology exec HOST [SCENARIO_DIR | --run-dir DIR] -- ARGV...
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
import sys

from . import netns, rundir
from .rundir import read_state
from .runner import Topology, TopologyError, down_run_dir
from .services import ServiceError
from .spec import SpecError, load

EXIT_USAGE = 2


def kind_engine_problem() -> str | None:
    """None when kind mode can use or start the project's Docker engine, else why not."""
    from .kindbuild.engine import INSTALL_HINT, Engine

    if Engine().answers():
        return None
    if os.geteuid() != 0:
        return "starting the project's Docker engine (dockerd) needs root"
    if not (shutil.which("dockerd") or shutil.which("dockerd", path="/usr/sbin")):
        return f"dockerd is not installed: {INSTALL_HINT}"
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
    down.add_argument(
        "--mode",
        choices=["local", "kind"],
        default="local",
        help="kind: delete the scenario's kind clusters",
    )
    down.add_argument("--log-level", default="INFO")
    status = sub.add_parser(
        "status", help="hosts, addresses, services and URL of a running scenario"
    )
    status.add_argument("scenario", nargs="?", help="scenario folder (to find ./run/NAME)")
    status.add_argument("--run-dir", help="the run dir given to 'up'")
    status.add_argument("--log-level", default="WARNING")
    ex = sub.add_parser(
        "exec", help="run a command inside a host: exec HOST [--run-dir DIR] -- ARGV"
    )
    ex.add_argument("host")
    ex.add_argument("scenario", nargs="?", help="scenario folder (to find ./run/NAME)")
    ex.add_argument("--run-dir", help="the run dir given to 'up'")
    ex.add_argument("--log-level", default="WARNING")
    clean = sub.add_parser("cleanup", help="remove namespaces/bridges of crashed runs")
    clean.add_argument("--log-level", default="INFO")
    return p


async def run_up(args: argparse.Namespace) -> int:
    spec = load(args.scenario)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    topo = Topology(spec, run_dir=args.run_dir, isolation=False if args.no_isolation else None)
    say = topo.sink

    def on_signal(sig: signal.Signals) -> None:
        if not stop.is_set():
            stop.set()
            return
        # a second signal: the orderly teardown is taking too long; end everything now
        say("topology", f"{sig.name} again: ending every process and removing the hosts now")
        if topo.lab is not None:
            topo.lab.close()
        rundir.remove_state(topo.run_dir)
        os._exit(130)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, on_signal, sig)
    start = asyncio.create_task(topo.start())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait([start, stopper], return_when=asyncio.FIRST_COMPLETED)
    if not start.done():
        say("topology", "stop requested while starting; tearing down")
        # asyncio.wait_for in Python < 3.12 can swallow a cancellation: repeat it
        while not start.done():
            start.cancel()
            await asyncio.wait([start], timeout=1)
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


def find_run_dir(args: argparse.Namespace) -> str:
    if args.run_dir:
        return args.run_dir
    if args.scenario:
        try:
            return os.path.abspath(os.path.join("run", load(args.scenario).name))
        except SpecError as e:
            sys.exit(f"topology {args.command}: {e}")
    sys.exit(f"topology {args.command}: give the scenario folder or --run-dir")


def print_status(run_dir: str) -> int:
    state = read_state(run_dir)
    if state is None:
        print(f"no topology is up in {run_dir}")
        return 1
    mode = "network namespaces" if state.get("isolated") else "loopback (no isolation)"
    print(
        f"{state.get('name')} (prefix {state.get('prefix')}, {mode}), runner pid {state['runner'][0]}"
    )
    for name, host in state.get("hosts", {}).items():
        addrs = ", ".join(f"{net}={ip}" for net, ip in host["addresses"].items())
        print(f"  host {name:<12} {addrs}  netns {host.get('netns') or '-'}")
    for name, svc in state.get("services", {}).items():
        pid = svc.get("pid") or "stopped"
        print(f"  service {name:<12} on {svc['host']:<10} pid {pid}  {svc.get('url') or ''}")
    if state.get("open_url"):
        print(f"  open {state['open_url']}")
    return 0


def exec_in_host(run_dir: str, host: str, argv: list[str]) -> None:
    state = read_state(run_dir)
    if state is None:
        sys.exit(f"topology exec: no topology is up in {run_dir}")
    if host not in state.get("hosts", {}):
        sys.exit(f"topology exec: no host {host!r} (hosts: {', '.join(state.get('hosts', {}))})")
    if not argv:
        sys.exit("topology exec: give the command after --")
    ns = state["hosts"][host].get("netns")
    full = ["ip", "netns", "exec", ns, *argv] if ns else argv
    os.execvp(full[0], full)  # noqa: S606 - an argv, no shell, on purpose


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    command: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, command = argv[:i], argv[i + 1 :]
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
        if args.mode == "kind":
            if not args.scenario:
                sys.exit("topology down --mode kind: give the scenario folder")
            from . import kind

            sys.exit(kind.down(args.scenario))
        print(down_run_dir(find_run_dir(args)))
        return
    if args.command == "status":
        sys.exit(print_status(find_run_dir(args)))
    if args.command == "exec":
        exec_in_host(find_run_dir(args), args.host, command)
    if args.mode == "kind":
        problem = kind_engine_problem()
        if problem:
            print(
                "topology up --mode kind: kind runs Kubernetes inside Docker containers, and "
                f"the project's Docker engine cannot run here ({problem}). Or use --mode "
                "local, which needs only root and 'ip netns'.",
                file=sys.stderr,
            )
            sys.exit(EXIT_USAGE)
        from . import kind  # the charts on kind clusters named after the scenario

        sys.exit(kind.up(args.scenario))
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
