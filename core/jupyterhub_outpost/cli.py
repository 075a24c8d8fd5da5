"""The ``jupyterhub-outpost`` command: one console script, several subcommands.

``serve`` (the default) runs the Outpost. Each subcommand lives in the module that owns
it and is imported only when asked for, so ``jupyterhub-outpost serve`` never imports the
tunnel daemon.

Other installed distributions add subcommands through the entry point group
``jupyterhub_outpost.commands`` (name -> callable taking argv): the scenario runner
(``scenario-runner/`` in the source tree, distribution ``jupyterhub-outpost-scenarios``)
adds ``topology`` this way, so the product's wheel carries no scenario tooling.
"""

import importlib
import sys
from importlib.metadata import entry_points

# subcommand -> (module, callable taking argv, one-line help)
SUBCOMMANDS = {
    "serve": ("jupyterhub_outpost.outpost.app", "main", "run the Outpost REST service (default)"),
    "tunnels": ("jupyterhub_outpost.tunnels.daemon", "main", "run the hub's tunnel daemon"),
    "db-upgrade": (
        "jupyterhub_outpost.outpost.db_upgrade",
        "main",
        "upgrade the Outpost database schema and exit",
    ),
    "keygen": ("jupyterhub_outpost.keys", "main", "generate SSH keys and encryption keys"),
}
PLUGIN_GROUP = "jupyterhub_outpost.commands"
# subcommands that other distributions provide: name -> (help, how to get it)
RUNNER_MISSING = (
    "the scenario runner (distribution jupyterhub-outpost-scenarios) is not installed; "
    "in a source checkout run 'make runner' or 'pip install -e ./scenario-runner'"
)
PLUGINS = {
    "topology": ("bring a scenario up on this machine", RUNNER_MISSING),
    "kind": ("Docker engine, kind node image and kind clusters built here", RUNNER_MISSING),
}


def plugin(name: str):
    """The entry point that provides subcommand ``name``, or None."""
    found = entry_points(group=PLUGIN_GROUP, name=name)
    return next(iter(found), None)


def usage() -> str:
    lines = ["usage: jupyterhub-outpost [SUBCOMMAND] [options]", "", "subcommands:"]
    for name, (_, _, text) in SUBCOMMANDS.items():
        lines.append(f"  {name:<12} {text}")
    for name, (text, _) in PLUGINS.items():
        installed = "" if plugin(name) else " (not installed)"
        lines.append(f"  {name:<12} {text}{installed}")
    lines.append("")
    lines.append("Run 'jupyterhub-outpost SUBCOMMAND --help' for the options of one.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help", "help"):
        print(usage())
        return
    if argv and argv[0] in PLUGINS:
        name = argv.pop(0)
        entry = plugin(name)
        if entry is None:
            sys.exit(f"jupyterhub-outpost {name}: {PLUGINS[name][1]}")
        entry.load()(argv)
        return
    name = argv.pop(0) if argv and argv[0] in SUBCOMMANDS else "serve"
    module_name, func_name, _ = SUBCOMMANDS[name]
    module = importlib.import_module(module_name)
    getattr(module, func_name)(argv)


if __name__ == "__main__":
    main()
