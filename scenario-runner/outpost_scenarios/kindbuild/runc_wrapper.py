#!/usr/bin/python3 -IS
"""runc for the project's Docker engine: asks only for capabilities this host can give.

dockerd runs it as its default runtime (``--add-runtime outpost-runc=<this file>
--default-runtime outpost-runc``, see ``engine.py``). It removes from the OCI spec every
capability that is not in this process's capability bounding set, then execs the real
runc (``/usr/sbin/runc``, Debian's ``runc`` package) with the same arguments.

Why: kind starts its node containers with ``--privileged``, so Docker asks runc for every
capability it knows. The project's VMs lack CAP_SYS_RESOURCE in their bounding set
(``grep CapBnd /proc/self/status`` -> 000001fffeffffff), and runc then fails with
"unable to apply caps: operation not permitted"; ``--cap-drop`` has no effect on
privileged containers. A capability outside the bounding set can never be held by any
process on this host, so dropping it from the request changes nothing a container could
do. On a host whose bounding set is full the spec is left untouched.

The spec is where runc reads it: ``config.json`` in the bundle for ``create`` and ``run``
(``--bundle``/``-b``, default the working directory) and the ``--process``/``-p`` file
for ``exec``. It is rewritten only when something is removed, through a temporary file
and a rename.

Python rather than a compiled wrapper: no build step before the engine exists (the
engine is what builds everything else), one readable file the tests import, and the
host's python3 is already a requirement of the project. It runs only for the outer
engine's containers (kind nodes), not for the pods inside them.
"""

from __future__ import annotations

import json
import os
import sys

RUNC = "/usr/sbin/runc"

# Linux capability numbers (include/uapi/linux/capability.h): index = bit in CapBnd.
CAPABILITIES = (
    "CAP_CHOWN CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER CAP_FSETID CAP_KILL "
    "CAP_SETGID CAP_SETUID CAP_SETPCAP CAP_LINUX_IMMUTABLE CAP_NET_BIND_SERVICE "
    "CAP_NET_BROADCAST CAP_NET_ADMIN CAP_NET_RAW CAP_IPC_LOCK CAP_IPC_OWNER CAP_SYS_MODULE "
    "CAP_SYS_RAWIO CAP_SYS_CHROOT CAP_SYS_PTRACE CAP_SYS_PACCT CAP_SYS_ADMIN CAP_SYS_BOOT "
    "CAP_SYS_NICE CAP_SYS_RESOURCE CAP_SYS_TIME CAP_SYS_TTY_CONFIG CAP_MKNOD CAP_LEASE "
    "CAP_AUDIT_WRITE CAP_AUDIT_CONTROL CAP_SETFCAP CAP_MAC_OVERRIDE CAP_MAC_ADMIN CAP_SYSLOG "
    "CAP_WAKE_ALARM CAP_BLOCK_SUSPEND CAP_AUDIT_READ CAP_PERFMON CAP_BPF CAP_CHECKPOINT_RESTORE"
).split()

# runc's global options that take a value (``runc --help``); the others are flags.
GLOBAL_OPTIONS_WITH_VALUE = {"--root", "--log", "--log-format", "--criu", "--rootless"}


def bounding_set(status_text: str) -> int:
    """The CapBnd mask from the text of /proc/<pid>/status."""
    for line in status_text.splitlines():
        if line.startswith("CapBnd:"):
            return int(line.split()[1], 16)
    raise ValueError("no CapBnd line in /proc/self/status")


def unavailable(mask: int) -> set[str]:
    """Names of the known capabilities whose bit is not in ``mask``."""
    return {name for bit, name in enumerate(CAPABILITIES) if not mask >> bit & 1}


def subcommand(args: list[str]) -> tuple[str | None, list[str]]:
    """(runc subcommand, its arguments) after runc's global options."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in GLOBAL_OPTIONS_WITH_VALUE:
            i += 2
        elif arg.startswith("-"):
            i += 1
        else:
            return arg, args[i + 1 :]
    return None, []


def option(args: list[str], long: str, short: str) -> str | None:
    """The value of ``--long V``, ``--long=V``, ``-s V`` or ``-s=V`` in ``args``."""
    for i, arg in enumerate(args):
        if arg in (long, short) and i + 1 < len(args):
            return args[i + 1]
        for name in (long, short):
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def spec_file(args: list[str]) -> str | None:
    """The OCI file runc will read capabilities from for this invocation, if any."""
    command, rest = subcommand(args)
    if command in ("create", "run"):
        bundle = option(rest, "--bundle", "-b") or os.getcwd()
        return os.path.join(bundle, "config.json")
    if command == "exec":
        return option(rest, "--process", "-p")
    return None


def strip_capabilities(document: dict, drop: set[str]) -> bool:
    """Remove ``drop`` from every capability set of a spec (``config.json``: under
    ``process``) or a process file (``exec --process``: at the top). True if changed."""
    process = document.get("process", document)
    capabilities = process.get("capabilities") or {}
    changed = False
    for kind, names in capabilities.items():
        if isinstance(names, list) and drop.intersection(names):
            capabilities[kind] = [name for name in names if name not in drop]
            changed = True
    return changed


def rewrite(path: str, drop: set[str]) -> None:
    with open(path, encoding="utf-8") as f:
        document = json.load(f)
    if not strip_capabilities(document, drop):
        return
    temporary = f"{path}.outpost-runc.tmp"
    with open(temporary, "w", encoding="utf-8") as f:
        json.dump(document, f)
    os.replace(temporary, path)


def main(args: list[str]) -> None:
    path = spec_file(args)
    if path:
        with open("/proc/self/status", encoding="ascii") as f:
            drop = unavailable(bounding_set(f.read()))
        try:
            if drop:
                rewrite(path, drop)
        except (OSError, ValueError):
            pass  # a missing or broken spec: runc itself reports it to its caller
    try:
        os.execv(RUNC, ["runc", *args])  # noqa: S606 (exec, no shell: the wrapper becomes runc)
    except OSError as e:
        sys.stderr.write(f"outpost-runc: cannot run {RUNC} ({e}); install Debian's runc package\n")
        sys.exit(127)


if __name__ == "__main__":
    main(sys.argv[1:])
