"""A lab's own rules in this machine's iptables FORWARD path (for hosts that run Docker).

The hosts of a :class:`~outpost_scenarios.netns.Lab` talk through Linux bridges
in the root namespace. Where the kernel's br_netfilter is active with
``net.bridge.bridge-nf-call-iptables=1``, every frame that crosses a bridge also passes
iptables' FORWARD chain. dockerd turns both on, sets the FORWARD policy to DROP and turns
on ``net.ipv4.ip_forward``: without rules of our own, hosts on one network cannot reach
each other. The per-bridge option ``nf_call_iptables 0`` cannot undo that: the kernel hands
a frame to iptables when either the global sysctl or the bridge's option is on. Turning
the sysctl off would break Docker's and Kubernetes' own networking.

So a lab adds one chain of its own, ``OUTPOST-<prefix>``, with three rules per bridge::

    -A OUTPOST-<prefix> -i BRIDGE -o BRIDGE -j ACCEPT   # hosts on one network reach each other
    -A OUTPOST-<prefix> -i BRIDGE -j DROP               # nothing is routed out of the network
    -A OUTPOST-<prefix> -o BRIDGE -j DROP               # nor into it

and one jump to it: first in ``DOCKER-USER`` when that chain exists (Docker's place for
rules of others; dockerd keeps it across its restarts), else first in ``FORWARD`` (where a
dockerd that starts later puts its own rules above it, none of which drops our traffic).
The DROP rules keep the lab's promise that nothing forwards between networks even on a
machine that routes (dockerd's ``ip_forward=1``) and accepts forwarded traffic.

The rules go to the flavour of iptables that ``iptables`` is (``update-alternatives``:
nf_tables on Debian 12), which is the one dockerd uses; and also to the other flavour
when its filter table is loaded, since the kernel applies both. :func:`remove` deletes the
jump and the chain; :func:`prefixes` lists the labs that have a chain, so that stale-run
cleanup finds them. Only IPv4 is handled: labs use IPv4 addresses only.
"""

from __future__ import annotations

import re
import shutil
import subprocess

CHAIN_PREFIX = "OUTPOST-"
DOCKER_USER = "DOCKER-USER"
LEGACY_TABLES = "/proc/net/ip_tables_names"


class FirewallError(RuntimeError):
    """iptables refused a change."""


def chain(prefix: str) -> str:
    """The name of the chain of the lab with ``prefix``."""
    return f"{CHAIN_PREFIX}{prefix}"


def _run(argv: list[str], input: str | None = None) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, input=input)
    if proc.returncode != 0:
        raise FirewallError(f"'{' '.join(argv)}' failed: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout


def _legacy_filter_loaded() -> bool:
    try:
        with open(LEGACY_TABLES) as f:
            return "filter" in f.read().split()
    except OSError:
        return False


def commands() -> list[str]:
    """The iptables commands whose filter tables this machine applies (none: not installed).

    Listing never creates a table: the other flavour is asked only when its filter table
    exists already (legacy: ``/proc/net/ip_tables_names``; nf_tables: ``iptables-nft-save``
    prints nothing without tables).
    """
    if shutil.which("iptables") is None:
        return []
    found = ["iptables"]
    if "nf_tables" in _run(["iptables", "-V"]):
        if shutil.which("iptables-legacy") and _legacy_filter_loaded():
            found.append("iptables-legacy")
    elif shutil.which("iptables-nft-save") and "*filter" in _run(["iptables-nft-save"]):
        found.append("iptables-nft")
    return found


def _rules(command: str) -> list[str]:
    """``COMMAND -S`` of the filter table, without the comment lines."""
    out = _run([command, "-w", "-S"])
    return [line for line in out.splitlines() if line and not line.startswith("#")]


def _restore(command: str, lines: list[str]) -> None:
    script = "*filter\n" + "".join(f"{line}\n" for line in lines) + "COMMIT\n"
    _run([f"{command}-restore", "-w", "--noflush"], input=script)


def allow_bridge(prefix: str, bridge: str) -> None:
    """Let the hosts on ``bridge`` reach each other, and nothing be routed to or from it.

    Creates the lab's chain and its jump with the first bridge. Each flavour is changed in
    one ``iptables-restore`` transaction.
    """
    name = chain(prefix)
    for command in commands():
        rules = _rules(command)
        lines = []
        if f"-N {name}" not in rules:
            parent = DOCKER_USER if f"-N {DOCKER_USER}" in rules else "FORWARD"
            lines += [f":{name} - [0:0]", f"-I {parent} 1 -j {name}"]
        lines += [
            f"-A {name} -i {bridge} -o {bridge} -j ACCEPT",
            f"-A {name} -i {bridge} -j DROP",
            f"-A {name} -o {bridge} -j DROP",
        ]
        _restore(command, lines)


def remove(prefix: str) -> list[str]:
    """Delete the lab's chain and every jump to it; returns what was removed, for the log.

    Safe to call when nothing is there, and for a lab whose bridges are gone.
    """
    name = chain(prefix)
    removed = []
    for command in commands():
        rules = _rules(command)
        if f"-N {name}" not in rules:
            continue
        jumps = [r for r in rules if r.startswith("-A ") and r.endswith(f" -j {name}")]
        _restore(command, [f"-D {r[3:]}" for r in jumps] + [f"-F {name}", f"-X {name}"])
        removed.append(f"{command} chain {name}")
    return removed


def prefixes() -> set[str]:
    """The prefixes of every lab that has a chain here (live or left by a crashed run)."""
    pattern = re.compile(rf"-N {re.escape(CHAIN_PREFIX)}(\S+)")  # fullmatch
    found = set()
    for command in commands():
        for rule in _rules(command):
            if m := pattern.fullmatch(rule):
                found.add(m.group(1))
    return found
