"""The ``jupyterhub-outpost`` command: one console script, several subcommands.

``serve`` (the default) runs the Outpost. Each subcommand lives in the module that owns
it and is imported only when asked for, so ``jupyterhub-outpost serve`` never imports the
tunnel daemon or the topology runner.
"""

import importlib
import sys

# subcommand -> (module, callable taking argv, one-line help)
SUBCOMMANDS = {
    "serve": ("jupyterhub_outpost.outpost.app", "main", "run the Outpost REST service (default)"),
    "tunnels": ("jupyterhub_outpost.tunnels.daemon", "main", "run the hub's tunnel daemon"),
    "topology": ("jupyterhub_outpost.topology.cli", "main", "bring a scenario up on this machine"),
    "db-upgrade": (
        "jupyterhub_outpost.outpost.migrations",
        "main",
        "upgrade the Outpost database schema and exit",
    ),
    "keygen": ("jupyterhub_outpost.keys", "main", "generate SSH keys and encryption keys"),
}


def usage() -> str:
    lines = ["usage: jupyterhub-outpost [SUBCOMMAND] [options]", "", "subcommands:"]
    for name, (_, _, text) in SUBCOMMANDS.items():
        lines.append(f"  {name:<12} {text}")
    lines.append("")
    lines.append("Run 'jupyterhub-outpost SUBCOMMAND --help' for the options of one.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help", "help"):
        print(usage())
        return
    if argv and argv[0] in SUBCOMMANDS:
        name = argv.pop(0)
    else:
        name = "serve"
    module_name, func_name, _ = SUBCOMMANDS[name]
    module = importlib.import_module(module_name)
    getattr(module, func_name)(argv)


if __name__ == "__main__":
    main()
