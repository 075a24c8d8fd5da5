"""``jupyterhub-outpost kind``: the Docker engine, the node image, clusters.

    jupyterhub-outpost kind engine start|stop|status
    jupyterhub-outpost kind images                   # build or find the node image and the
                                                     # programs (make kind-images)
    jupyterhub-outpost kind cluster create NAME [--config FILE] [--kubeconfig FILE]
    jupyterhub-outpost kind cluster delete NAME

Exit codes: 0 done, 1 a step failed (the message says which and what to do), 2 usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .cluster import create_cluster, delete_cluster, ensure_helm, ensure_node_image
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
    images = sub.add_parser(
        "images", help="build what is missing of the node image, kind, kubectl and helm"
    )
    images.add_argument(
        "--report",
        type=Path,
        help="write what this build did (seconds, whether the node image was built) to this "
        "JSON file; make e2e-kind records it as the run's first step",
    )
    cluster = sub.add_parser("cluster", help="create or delete a kind cluster with MetalLB")
    cluster.add_argument("action", choices=["create", "delete"])
    cluster.add_argument("name")
    cluster.add_argument("--config", type=Path, help="kind config file (single node)")
    cluster.add_argument("--kubeconfig", type=Path, help="where to write the kubeconfig")
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


def images_command(report: Path | None) -> None:
    start, load = time.monotonic(), os.getloadavg()[0]
    said: list[str] = []

    def say_and_keep(message: str) -> None:
        said.append(message)
        say(message)

    tools = ensure_node_image(say_and_keep)
    say(
        f"node image {tools.image} ({time.monotonic() - start:.0f} s; load average "
        f"{load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end)"
    )
    say(f"kind {tools.kind}")
    say(f"kubectl {tools.kubectl}")
    say(f"helm {ensure_helm(say)}")
    say(f"DOCKER_HOST={tools.docker_host}")
    if report:
        built = any(m.startswith("node image") and m.endswith(" built") for m in said)
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(
            json.dumps({"seconds": round(time.monotonic() - start, 1), "node_image_built": built})
        )


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        if args.command == "engine":
            engine_command(args.action)
        elif args.command == "images":
            images_command(args.report)
        elif args.action == "create":
            kubeconfig = create_cluster(
                args.name, args.config, tools=ensure_node_image(say), kubeconfig=args.kubeconfig
            )
            say(f"cluster {args.name} is up: KUBECONFIG={kubeconfig}")
        else:
            delete_cluster(args.name, tools=ensure_node_image(say))
            say(f"cluster {args.name} deleted")
    except (BuildError, TimeoutError) as e:
        print(f"jupyterhub-outpost kind {args.command}: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
