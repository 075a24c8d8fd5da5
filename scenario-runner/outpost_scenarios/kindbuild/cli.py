"""``jupyterhub-outpost kind``: the Docker engine, the node image, clusters.

    jupyterhub-outpost kind engine start|stop|status

Exit codes: 0 done, 1 a step failed (the message says which and what to do), 2 usage.
"""

from __future__ import annotations

import argparse
import sys

from .commands import BuildError
from .engine import RUNTIME, Engine


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="jupyterhub-outpost kind",
        description="Kind clusters from images built on this machine (docs/kind.md).",
    )
    sub = p.add_subparsers(dest="command", required=True)
    engine = sub.add_parser("engine", help="the project's Docker engine")
    engine.add_argument("action", choices=["start", "stop", "status"])
    return p


def say(message: str) -> None:
    print(f"kind | {message}", flush=True)


def engine_command(action: str) -> None:
    engine = Engine()
    if action == "start":
        started = engine.start()
        say(f"{'started' if started else 'already running'}: DOCKER_HOST={engine.host}")
    elif action == "stop":
        say("stopped" if engine.stop() else f"no dockerd of ours runs (pidfile {engine.pidfile})")
    else:
        problem = engine.problem()
        if problem:
            raise BuildError(problem)
        info = engine.info()
        wrapper = info["Runtimes"][RUNTIME].get("path")
        say(f"running: DOCKER_HOST={engine.host}, dockerd {info.get('ServerVersion')}")
        say(f"default runtime {info.get('DefaultRuntime')}: {wrapper}")
        if wrapper != str(engine.wrapper):
            say(f"(not this checkout's wrapper {engine.wrapper}: started by someone else)")


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        if args.command == "engine":
            engine_command(args.action)
    except (BuildError, TimeoutError) as e:
        print(f"jupyterhub-outpost kind {args.command}: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
