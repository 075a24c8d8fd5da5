"""Generate docs/configuration.md from the options' help texts.

    python docs/generate_config_reference.py          # rewrite docs/configuration.md
    python docs/generate_config_reference.py --check  # exit 1 when the file is stale

Each entry of SECTIONS documents one configurable class. To add a class (e.g. the hub
side's OutpostSpawner), append a Section with its import path; only options defined on
that class and its mixins from this package (plus ``inherited``) are listed, in definition
order.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import sys
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
OUTPUT = os.path.join(HERE, "configuration.md")


@dataclass
class Section:
    module: str
    cls: str
    title: str
    intro: str
    inherited: list[str] = field(default_factory=list)  # options of base classes to list
    flags: dict[str, str] = field(default_factory=dict)  # option -> command-line flag


SECTIONS = [
    Section(
        module="jupyterhub_outpost.outpost.app",
        cls="JupyterHubOutpost",
        title="Outpost: `c.JupyterHubOutpost`",
        intro=(
            "Options of `jupyterhub-outpost serve`, set in `outpost_config.py` "
            "(`--config`). The configured spawner's own options are set as "
            "`c.<SpawnerClass>.<option>` in the same file. Hooks may be plain functions "
            "or coroutines."
        ),
        flags={
            "config_file": "--config",
            "ip": "--ip",
            "port": "--port",
            "data_dir": "--data-dir",
            "log_level": "--log-level",
        },
    ),
    Section(
        module="jupyterhub_outpost.hub.spawner",
        cls="OutpostSpawner",
        title="Hub: `c.OutpostSpawner`",
        intro=(
            'Options of the hub\'s spawner (`c.JupyterHub.spawner_class = "outpost"`), set in '
            "`jupyterhub_config.py`; see docs/hub.md. JupyterHub's own Spawner options "
            "(`start_timeout`, `http_timeout`, ...) apply as usual. Hooks may be values, "
            "functions or coroutines."
        ),
    ),
]

ENVIRONMENT = """\
## Environment variables (Outpost)

| variable | meaning |
|---|---|
| `OUTPOST_CRYPT_KEYS` | Comma-separated Fernet keys that encrypt spawner state and what hubs send (tokens, env, certs) at rest. The first key encrypts, every key decrypts: rotate by putting a new key first, keep the old one until rows were rewritten. Unset: a key is generated once into `<data-dir>/crypt_key` (mode 0600) with a warning; set it explicitly when several Outposts share one database. |
| `SQL_TYPE` | `postgresql` to use PostgreSQL (with the variables below); unset or `sqlite`: an SQLite file in the data directory. Ignored when `db_url` is set. |
| `SQL_USER`, `SQL_PASSWORD`, `SQL_HOST`, `SQL_PORT`, `SQL_DATABASE` | PostgreSQL connection (`SQL_PORT` defaults to 5432). |
| `OUTPOST_METRICS_TOKEN` | Default of `metrics_token`. |

## Environment a hub sends with a start request (Outpost reads)

| variable | used for |
|---|---|
| `JUPYTERHUB_API_TOKEN` | the server's token; also authenticates progress events and tunnel re-creation requests |
| `JUPYTERHUB_USER`, `JUPYTERHUB_USER_ID`, `JUPYTERHUB_SERVER_NAME`, `JUPYTERHUB_SERVICE_PREFIX` | the stand-in user and server the spawner sees; user and server also name the hub's events and setuptunnel paths (percent-encoded) |
| `JUPYTERHUB_FLAVORS_UPDATE_TOKEN` | the flavors token when the hub's `hub_api` entry and `flavors_update_token` give none; used only against that hub's `hub_api` URL and never passed to the server |
| `JUPYTERHUB_EVENTS_URL`, `JUPYTERHUB_SETUPTUNNEL_URL`, `JUPYTERHUB_FLAVORS_UPDATE_URL` | passed to the server (which may report its own address to its setuptunnel URL); **never called by the Outpost**, which calls a hub only at URLs built from its `hub_api` entry |

## Operating the Outpost

- **Restart and recovery.** Stopping or killing the Outpost never stops servers. At start-up
  every server the database holds as running is rebuilt from its stored spawner state
  (`load_state`) and polled: still running -> listed, pollable and stoppable as before; ended
  meanwhile -> its exit status is reported to the hub's next poll. A server that was still
  *starting* when the Outpost died is stopped and reported failed ("start it again").
- **Schema upgrades** run at start-up; `jupyterhub-outpost db-upgrade --config FILE --data-dir DIR`
  does the same and exits (e.g. as a Helm pre-upgrade hook). Both are idempotent.
- **Key rotation.** Generate a key, set `OUTPOST_CRYPT_KEYS=<new>,<old>` and restart: at
  start-up every stored row is re-encrypted with the new (first) key, so after that one start
  the old key can be removed from the list.
- **Flavor limits** are enforced when a start is admitted, in one database transaction per hub
  (with a PostgreSQL advisory lock, so replicas sharing a database also hold `max`). A refused
  start (403/409/400) leaves no row.
- **Errors** are JSON `{"error": "..."}`. Every answer, errors included, carries its request id
  (`X-Request-Id`; a 500's message names it), which the Outpost's log lines (`req=...`) also
  carry; a 401 carries `WWW-Authenticate` (Basic for the API, Bearer for `/metrics`).
"""


def _default_text(cls, name, trait) -> str:
    if name in getattr(cls, "_trait_default_generators", {}):
        return "computed (see text)"
    value = trait.default_value
    if callable(value) and hasattr(value, "__name__"):
        return f"`{value.__module__}.{value.__name__}`"
    if isinstance(value, type):
        return f"`{value.__module__}.{value.__name__}`"
    try:
        text = trait.default_value_repr()
    except Exception:
        text = repr(value)
    if text in ("traitlets.Undefined", "<Undefined>"):
        return "(computed, see text)"
    return f"`{text}`"


def _help(trait) -> str:
    text = getattr(trait, "_original_help", None) or trait.help or ""
    return inspect.cleandoc(text)


def _type_name(trait) -> str:
    name = type(trait).__name__
    if name == "Union":
        return " or ".join(type(t).__name__ for t in trait.trait_types)
    if name == "EntryPointType":
        return "Spawner class"
    return name


def _definition_order(cls: type) -> dict[str, tuple[int, int]]:
    """Option name -> (rank of its class, position in that class) for the options defined by
    the class itself and the mixins of this package it is made of (OutpostSpawner's steps),
    in that order."""
    package = cls.__module__.split(".")[0]
    ours = [c for c in cls.__mro__ if c is cls or c.__module__.split(".")[0] == package]
    order: dict[str, tuple[int, int]] = {}
    for rank, klass in enumerate(ours):
        for i, name in enumerate(klass.__dict__):
            order.setdefault(name, (rank, i))
    return order


def render_section(section: Section) -> str:
    cls = getattr(importlib.import_module(section.module), section.cls)
    order = _definition_order(cls)
    own = [
        name
        for name, trait in cls.class_traits(config=True).items()
        if name in order or name in section.inherited
    ]
    # definition order: inherited first, then the class and its mixins
    own.sort(key=lambda n: order.get(n, (-1, -1)))
    traits = cls.class_traits(config=True)
    lines = [f"## {section.title}", "", section.intro, ""]
    for name in own:
        trait = traits[name]
        lines.append(f"### `c.{section.cls}.{name}`")
        lines.append("")
        meta = f"{_type_name(trait)}, default {_default_text(cls, name, trait)}"
        if name in section.flags:
            meta += f"; command line `{section.flags[name]}`"
        lines.append(f"*{meta}*")
        lines.append("")
        lines.append(_help(trait))
        lines.append("")
    return "\n".join(lines)


def generate() -> str:
    parts = [
        "# Configuration reference",
        "",
        "<!-- Generated by docs/generate_config_reference.py from the options' help texts;"
        " do not edit by hand. A test fails when this file is stale. -->",
        "",
    ]
    for section in SECTIONS:
        parts.append(render_section(section))
    parts.append(ENVIRONMENT)
    return "\n".join(parts).rstrip() + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when the file is stale")
    args = parser.parse_args(argv)
    text = generate()
    if args.check:
        current = open(OUTPUT, encoding="utf-8").read() if os.path.exists(OUTPUT) else ""
        if current != text:
            print(f"{OUTPUT} is stale: run python docs/generate_config_reference.py")
            return 1
        return 0
    with open(OUTPUT, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
