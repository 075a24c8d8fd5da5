"""Hosts and networks on one machine: network namespaces joined by Linux bridges.

A :class:`Lab` is the set of networks and hosts made for one run. Every object it creates
(namespaces, bridges, veth interfaces) carries the lab's *prefix* (``jot`` + 5 hex digits,
unique per run), so parallel runs never collide and :func:`cleanup` finds the leftovers of
a run that crashed::

    from outpost_scenarios import netns

    with netns.Lab() as lab:                         # or: async with netns.Lab() as lab
        lab.add_network("public", host_access=True)  # the root namespace gets .1 on it
        lab.add_network("compute")
        hub = lab.add_host("hub", ["public"])
        outpost = lab.add_host("outpost", ["public", "compute"])
        node = lab.add_host("node1", ["compute"])
        proc = node.popen(["python3", "-m", "http.server", "--bind", node.ip, "8000"])
        reader, writer = await outpost.open_connection(node.ip, 8000)   # works
        await hub.open_connection(node.ip, 8000)                        # OSError: unreachable

A network is a bridge in the root namespace and a subnet (``10.231.N.0/24``, picked free
per run unless given). A host is a namespace with loopback up and one veth pair per
network (``eth0``, ``eth1``, ... inside, in the order given), with address ``.2``, ``.3``,
... in host order. Nothing forwards between networks: the namespaces keep
``net.ipv4.ip_forward=0`` and hosts get no default route, so a host reaches exactly the
hosts that share a network with it. A network made with ``host_access=True`` also gets
the address ``.1`` in the root namespace, so that this machine (a browser, a test) can
reach its hosts directly; the root namespace does not forward either: each lab's
iptables chain (:mod:`.host_firewall`) accepts traffic within each of its bridges and
drops anything routed to or from them, so labs also work where dockerd has set the
FORWARD policy to DROP and turned on forwarding.

Without root or without ``ip netns`` (or with ``JUPYTERHUB_OUTPOST_TOPOLOGY_ISOLATION=off``,
or ``Lab(isolation=False)``) the lab falls back to loopback: each host becomes one address
``127.231.R.H``, processes run directly, every host reaches every other, and a warning says
that isolation is off.

Processes started through a host run in their own session; :meth:`Lab.close` ends them
(SIGTERM, then SIGKILL), and ends everything else left in the namespaces, before it deletes
the interfaces and namespaces. A small registry file per run in
``/run/jupyterhub-outpost-topology/`` (deleted at close, and the directory with the last one) records the owner's pid and the
pids started, so :func:`cleanup_stale` can tell a crashed run from a live one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import hashlib
import ipaddress
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from . import host_firewall

log = logging.getLogger("outpost_scenarios")

ISOLATION_ENV = "JUPYTERHUB_OUTPOST_TOPOLOGY_ISOLATION"
REGISTRY_DIR = "/run/jupyterhub-outpost-topology"
PREFIX_RE = re.compile(r"jot[0-9a-f]{5}")  # used with fullmatch
#: subnets are picked from 10.231.N.0/24 (N from 1 to 254)
SUBNET_POOL = ipaddress.ip_network("10.231.0.0/16")
CLONE_NEWNET = 0x40000000
CLONE_NEWUTS = 0x04000000
IFNAMSIZ = 15

T = TypeVar("T")


class NetnsError(RuntimeError):
    """A namespace, bridge or interface could not be made or removed."""


# ---------------------------------------------------------------------------------------
# low-level helpers


def _ip(*args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    """Run ``ip ARGS`` (argv, no shell) and raise NetnsError with its stderr on failure."""
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, input=input)
    if check and proc.returncode != 0:
        raise NetnsError(f"'ip {' '.join(args)}' failed: {proc.stderr.strip() or proc.returncode}")
    return proc


def isolation_available() -> tuple[bool, str]:
    """(True, "") when network namespaces can be used here, else (False, the reason)."""
    env = os.environ.get(ISOLATION_ENV, "").strip().lower()
    if env in ("0", "off", "no", "false", "loopback"):
        return False, f"{ISOLATION_ENV}={env}"
    if os.geteuid() != 0:
        return False, "not running as root"
    if shutil.which("ip") is None:
        return False, "the 'ip' command (iproute2) is not installed"
    if _ip("netns", "list", check=False).returncode != 0:
        return False, "'ip netns list' does not work here"
    return True, ""


_libc = None


def _load_libc() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _setns(path: str) -> None:
    _load_libc()
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise NetnsError(f"setns({path}) failed: {os.strerror(err)}")
    finally:
        os.close(fd)


def child_setup(*, netns: str | None = None, hostname: str | None = None) -> Callable[[], None]:
    """A ``preexec_fn`` that moves the child into network namespace ``netns`` (by setns,
    keeping this machine's mounts) and/or gives it its own UTS namespace named ``hostname``.

    A hostname of its own lets daemons that check who they are by name (slurmctld compares
    it with ``SlurmctldHost``) see the host they run on, as on a real machine."""
    libc = _load_libc()  # before the fork: the child only makes system calls
    raw = (hostname or "").encode()
    path = f"/run/netns/{netns}" if netns else None

    def enter() -> None:
        if path is not None:
            _setns(path)
        if raw and (libc.unshare(CLONE_NEWUTS) != 0 or libc.sethostname(raw, len(raw)) != 0):
            err = ctypes.get_errno()
            raise OSError(err, f"cannot take the hostname {hostname!r}: {os.strerror(err)}")

    return enter


def call_in_netns(ns: str | None, func: Callable[[], T]) -> T:
    """Call ``func()`` in a fresh thread that has joined network namespace ``ns``.

    Sockets made inside ``func`` belong to that namespace for their whole life, even when
    used later from another thread (this is how :meth:`Host.socket` works). The thread
    ends after the call, so no thread of the pool is left in a foreign namespace.
    ``ns=None`` calls ``func`` directly.
    """
    if ns is None:
        return func()
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            _setns(f"/run/netns/{ns}")
            box["value"] = func()
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller
            box["error"] = e

    thread = threading.Thread(target=target, name=f"netns-{ns}")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def _proc_start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal(pid: int, sig: int, group: bool) -> None:
    if group:
        # processes started by a Host lead their own session, so pgid == pid
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
            return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _terminate_pids(pids: Sequence[int], timeout: float = 5.0, *, group: bool = False) -> None:
    """SIGTERM each pid (its process group with ``group``), wait up to ``timeout``, then SIGKILL."""
    pids = [p for p in pids if p != os.getpid()]
    for pid in pids:
        _signal(pid, signal.SIGTERM, group)
    deadline = time.monotonic() + timeout
    delay = 0.01
    while time.monotonic() < deadline:
        alive = [p for p in pids if _pid_alive(p) and not _is_zombie(p)]
        if not alive:
            return
        time.sleep(delay)  # polling the process table; there is no event to wait on
        delay = min(delay * 2, 0.2)
    for pid in pids:
        _signal(pid, signal.SIGKILL, group)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _netns_names() -> list[str]:
    proc = _ip("netns", "list", check=False)
    return [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]


def _link_names() -> list[str]:
    proc = _ip("-o", "link", "show", check=False)
    names = []
    for line in proc.stdout.splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            names.append(parts[1].strip().split("@", 1)[0])
    return names


# ---------------------------------------------------------------------------------------
# registry of runs (for crash recovery)


@contextlib.contextmanager
def _registry_lock():
    """Lock the registry (the directory itself: no lock file is left behind).

    On leaving, the directory is removed when it is empty, so a machine with no live run
    keeps nothing of ours outside the run dirs. A waiter that then holds the lock of a
    removed directory notices (inode changed) and locks the new one.
    """
    while True:
        os.makedirs(REGISTRY_DIR, exist_ok=True)
        fd = os.open(REGISTRY_DIR, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            same = os.stat(REGISTRY_DIR).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            left = os.listdir(REGISTRY_DIR)
            if not [n for n in left if n != ".lock"]:  # .lock: from an earlier version
                if left:
                    os.unlink(os.path.join(REGISTRY_DIR, ".lock"))
                os.rmdir(REGISTRY_DIR)
        os.close(fd)


def _registry_path(prefix: str) -> str:
    return os.path.join(REGISTRY_DIR, f"{prefix}.json")


def _read_registry(prefix: str) -> dict | None:
    try:
        with open(_registry_path(prefix)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def cleanup(prefix: str, *, log_removed: bool = True, _locked: bool = False) -> list[str]:
    """Remove every namespace, interface and process of the run with this ``prefix``.

    Safe to call for a run that crashed, for one that is half torn down, and twice. It ends
    every process inside the run's namespaces (and the processes the registry recorded,
    for loopback runs), deletes the namespaces, the bridges and veths, and the registry
    file. Returns what it removed, for the log.
    """
    if not prefix or not re.fullmatch(r"[A-Za-z0-9_-]{3,}", prefix):
        raise ValueError(f"refusing to clean up with prefix {prefix!r}")
    removed: list[str] = []
    record = _read_registry(prefix) if os.path.isdir(REGISTRY_DIR) else None
    if record:
        pids = [
            pid
            for pid, start in record.get("pids", [])
            if _proc_start_time(pid) is not None and _proc_start_time(pid) == start
        ]
        if pids:
            _terminate_pids(pids, group=True)
            removed.extend(f"process {p}" for p in pids)
    have_ip = shutil.which("ip") is not None and os.geteuid() == 0
    if have_ip:
        for ns in _netns_names():
            if not ns.startswith(prefix + "-"):
                continue
            pids = [int(p) for p in _ip("netns", "pids", ns, check=False).stdout.split()]
            if pids:
                _terminate_pids(pids)
                removed.extend(f"process {p} in {ns}" for p in pids)
            _ip("netns", "delete", ns, check=False)
            removed.append(f"namespace {ns}")
        ours = re.compile(re.escape(prefix) + r"[bvp][0-9]+")  # the names Lab gives
        for link in _link_names():
            if ours.fullmatch(link):
                _ip("link", "delete", link, check=False)
                removed.append(f"link {link}")
        removed.extend(host_firewall.remove(prefix))
    if os.path.exists(_registry_path(prefix)):
        if _locked:
            os.unlink(_registry_path(prefix))
        else:
            with _registry_lock(), contextlib.suppress(OSError):
                os.unlink(_registry_path(prefix))
    if removed and log_removed:
        log.info("cleanup %s: removed %s", prefix, ", ".join(removed))
    return removed


def _object_prefixes() -> set[str]:
    """The prefix each namespace, link and firewall chain here would have if a Lab made it."""
    names = _netns_names() + _link_names() if shutil.which("ip") else []
    return {name.split("-", 1)[0][:8] for name in names} | host_firewall.prefixes()


def cleanup_stale() -> list[str]:
    """Clean up every run whose owner process is gone (crashed or killed).

    A run is stale when its registry file names a pid that no longer runs, or when
    namespaces, links or firewall chains with a ``jot?????`` prefix exist without any
    registry file (the file is written before the first object is made and removed after
    the last). Live parallel runs are left alone. Returns the prefixes cleaned.
    """
    if os.geteuid() != 0:
        return []
    if not os.path.isdir(REGISTRY_DIR) and not any(
        PREFIX_RE.fullmatch(o) for o in _object_prefixes()
    ):
        return []
    cleaned = []
    with _registry_lock():
        prefixes = set()
        for name in os.listdir(REGISTRY_DIR):
            if name.endswith(".json") and PREFIX_RE.fullmatch(name[:-5]):
                record = _read_registry(name[:-5]) or {}
                owner = record.get("owner", [0, None])
                if _proc_start_time(owner[0]) != owner[1] or _is_zombie(owner[0]):
                    prefixes.add(name[:-5])
        for candidate in _object_prefixes():
            if PREFIX_RE.fullmatch(candidate) and not os.path.exists(_registry_path(candidate)):
                prefixes.add(candidate)
        for prefix in sorted(prefixes):
            cleanup(prefix, _locked=True)
            cleaned.append(prefix)
    return cleaned


# ---------------------------------------------------------------------------------------
# the objects


class Network:
    """A bridge (or, in loopback mode, nothing) and a subnet."""

    def __init__(
        self,
        lab: Lab,
        name: str,
        index: int,
        subnet: ipaddress.IPv4Network | None,
        host_access: bool,
    ):
        self.lab = lab
        self.name = name
        self.index = index
        self.subnet = subnet
        self.host_access = host_access
        self.bridge = f"{lab.prefix}b{index}" if lab.isolated else None
        self._next = 2

    @property
    def gateway(self) -> str | None:
        """The root namespace's address on this network (``host_access`` networks only)."""
        if self.subnet is None or not self.host_access:
            return None
        return str(self.subnet.network_address + 1)

    def _allocate(self) -> str:
        assert self.subnet is not None
        addr = self.subnet.network_address + self._next
        if addr >= self.subnet.broadcast_address:
            raise NetnsError(f"network {self.name} ({self.subnet}) has no free address left")
        self._next += 1
        return str(addr)

    def __repr__(self) -> str:
        return f"<Network {self.name} {self.subnet} bridge={self.bridge}>"


class Host:
    """One host: a network namespace (or a loopback address), with its addresses."""

    def __init__(self, lab: Lab, name: str, index: int):
        self.lab = lab
        self.name = name
        self.index = index
        self.netns: str | None = f"{lab.prefix}-{name}" if lab.isolated else None
        #: network name -> address of this host on it
        self.addresses: dict[str, str] = {}
        #: network name -> interface name inside the namespace
        self.interfaces: dict[str, str] = {}

    @property
    def ip(self) -> str:
        """The host's address on its first network (its only address in loopback mode)."""
        return next(iter(self.addresses.values()))

    def address(self, network: str) -> str:
        try:
            return self.addresses[network]
        except KeyError:
            raise KeyError(f"host {self.name} is not on network {network!r}") from None

    # processes -----------------------------------------------------------------------

    def argv(self, argv: Sequence[str]) -> list[str]:
        """The argv that runs ``argv`` inside this host (``ip netns exec NS ...``)."""
        argv = [str(a) for a in argv]
        if not argv:
            raise ValueError("empty argv")
        if self.netns is None:
            return argv
        return ["ip", "netns", "exec", self.netns, *argv]

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen:
        """Start ``argv`` in this host (own session); the lab ends it at close."""
        kwargs.setdefault("start_new_session", True)
        proc = subprocess.Popen(self.argv(argv), **kwargs)
        self.lab._track(proc.pid)
        return proc

    def run(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess:
        """``subprocess.run`` inside this host (blocking: use :meth:`arun` in async code)."""
        return subprocess.run(self.argv(argv), **kwargs)

    async def create_subprocess_exec(
        self, *argv: str, named: bool = False, host_cgroups: bool = False, **kwargs: Any
    ) -> asyncio.subprocess.Process:
        """``asyncio.create_subprocess_exec`` inside this host (own session); ended at close.

        ``named``: the process (and what it starts) sees this host's name as its hostname
        (a UTS namespace of its own; needs root, else the machine's hostname stays).
        ``host_cgroups``: enter the namespace without ``ip netns exec``, which remounts
        ``/sys`` for the namespace and so hides the cgroup file system (slurmd needs it)."""
        kwargs.setdefault("start_new_session", True)
        root = os.geteuid() == 0
        direct = host_cgroups and self.netns is not None
        if direct or (named and root):
            kwargs["preexec_fn"] = child_setup(
                netns=self.netns if direct else None, hostname=self.name if named and root else None
            )
        full = [str(a) for a in argv] if direct else self.argv(argv)
        proc = await asyncio.create_subprocess_exec(*full, **kwargs)
        self.lab._track(proc.pid)
        return proc

    async def arun(
        self, argv: Sequence[str], *, timeout: float | None = 60, check: bool = False
    ) -> tuple[int, str, str]:
        """Run ``argv`` inside this host and return ``(returncode, stdout, stderr)``."""
        proc = await self.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
            raise
        rc = proc.returncode
        if check and rc != 0:
            raise subprocess.CalledProcessError(rc, list(argv), out, err)
        return rc, out.decode(errors="replace"), err.decode(errors="replace")

    # sockets -------------------------------------------------------------------------

    def socket(self, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM) -> socket.socket:
        """A new socket that lives in this host's namespace (blocking mode)."""
        return call_in_netns(self.netns, lambda: socket.socket(family, type))

    async def open_connection(self, host: str, port: int, *, timeout: float = 5.0, **kwargs: Any):
        """``asyncio.open_connection`` made from inside this host.

        Raises ``OSError`` (e.g. ENETUNREACH, ECONNREFUSED) or ``TimeoutError`` when this
        host cannot reach ``host:port``.
        """
        sock = await asyncio.to_thread(self.socket)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (host, int(port))), timeout)
        except BaseException:
            sock.close()
            raise
        return await asyncio.open_connection(sock=sock, **kwargs)

    async def can_connect(self, host: str, port: int, *, timeout: float = 2.0) -> bool:
        """True when a TCP connection from this host to ``host:port`` succeeds."""
        try:
            _, writer = await self.open_connection(host, port, timeout=timeout)
        except (OSError, asyncio.TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    def free_port(self, ip: str | None = None) -> int:
        """A TCP port that is free on ``ip`` (default: this host's address) right now."""
        return self.free_ports(1, ip)[0]

    def free_ports(self, count: int, ip: str | None = None) -> list[int]:
        """``count`` distinct free TCP ports on ``ip``: all are held open while picking, so
        the kernel cannot hand out one port twice (picking one at a time can)."""

        def pick() -> list[int]:
            held = []
            try:
                for _ in range(count):
                    s = socket.socket()
                    held.append(s)
                    s.bind((ip or self.ip, 0))
                return [s.getsockname()[1] for s in held]
            finally:
                for s in held:
                    s.close()

        return call_in_netns(self.netns, pick)

    def __repr__(self) -> str:
        return f"<Host {self.name} {self.netns or 'loopback'} {self.addresses}>"


class Lab:
    """Networks and hosts of one run; see the module docstring.

    ``prefix``: name prefix of every object (default: ``jot`` + 5 random hex digits).
    ``isolation``: True requires namespaces, False forces the loopback fallback, None
    (default) uses namespaces when available and falls back otherwise.
    """

    def __init__(self, prefix: str | None = None, *, isolation: bool | None = None):
        self.prefix = prefix or f"jot{secrets.token_hex(3)[:5]}"
        if len(self.prefix) > 8 or not re.fullmatch(r"[a-z0-9]+", self.prefix):
            raise ValueError(f"prefix {self.prefix!r}: use at most 8 lowercase letters/digits")
        available, reason = isolation_available()
        if isolation and not available:
            raise NetnsError(f"network namespaces are not available: {reason}")
        self.isolated = available if isolation is None else bool(isolation)
        if not self.isolated:
            log.warning(
                "topology %s: network isolation is OFF (%s); every host is a loopback "
                "address 127.231.x.y and can reach every other host",
                self.prefix,
                reason or "isolation=False",
            )
        self.networks: dict[str, Network] = {}
        self.hosts: dict[str, Host] = {}
        self._veths = 0
        self._pids: list[tuple[int, str | None]] = []
        self._closed = False
        self._loopback_base = None
        self._registry = os.geteuid() == 0
        if self._registry:
            with _registry_lock():
                while self._prefix_taken():
                    if prefix:
                        raise NetnsError(f"prefix {prefix} is in use by another run")
                    self.prefix = f"jot{secrets.token_hex(3)[:5]}"
                self._write_registry()
        if not self.isolated:
            # 127.231.R.0/24 with R derived from the prefix: parallel runs differ
            r = int(hashlib.sha256(self.prefix.encode()).hexdigest()[:2], 16)
            self._loopback_base = ipaddress.ip_address(f"127.231.{r}.0")

    # registry ----------------------------------------------------------------------

    def _prefix_taken(self) -> bool:
        if os.path.exists(_registry_path(self.prefix)):
            return True
        if not self.isolated:
            return False
        ours = re.compile(re.escape(self.prefix) + r"(-.+|[bvp][0-9]+)")
        return any(ours.fullmatch(o) for o in _netns_names() + _link_names()) or (
            self.prefix in host_firewall.prefixes()
        )

    def _write_registry(self) -> None:
        if not self._registry:
            return
        record = {
            "prefix": self.prefix,
            "owner": [os.getpid(), _proc_start_time(os.getpid())],
            "isolated": self.isolated,
            "pids": [list(p) for p in self._pids],
        }
        os.makedirs(REGISTRY_DIR, exist_ok=True)
        tmp = _registry_path(self.prefix) + ".tmp"
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.replace(tmp, _registry_path(self.prefix))

    def _track(self, pid: int) -> None:
        self._pids.append((pid, _proc_start_time(pid)))
        if self._registry and not self._closed:
            with _registry_lock():
                self._write_registry()

    # building ----------------------------------------------------------------------

    def add_network(
        self, name: str, subnet: str | None = None, *, host_access: bool = False
    ) -> Network:
        """Create a network. ``subnet`` (a /24 or smaller) defaults to a free 10.231.N.0/24."""
        if name in self.networks:
            raise ValueError(f"network {name!r} exists already")
        index = len(self.networks)
        if not self.isolated:
            net = Network(self, name, index, None, host_access)
            self.networks[name] = net
            return net
        with _registry_lock():
            if subnet is None:
                net_subnet = self._free_subnet()
            else:
                net_subnet = ipaddress.ip_network(subnet)
                if host_access and self._subnet_in_use(net_subnet):
                    raise NetnsError(
                        f"subnet {net_subnet} of network {name} is in use on this machine"
                    )
            net = Network(self, name, index, net_subnet, host_access)
            self.networks[name] = net
            try:
                host_firewall.allow_bridge(self.prefix, net.bridge)
            except host_firewall.FirewallError as e:
                raise NetnsError(f"network {name}: {e}") from e
            _ip("link", "add", net.bridge, "type", "bridge")
            _ip("link", "set", net.bridge, "up")
            if host_access:
                _ip("addr", "add", f"{net.gateway}/{net_subnet.prefixlen}", "dev", net.bridge)
        return net

    def _subnet_in_use(self, subnet: ipaddress.IPv4Network) -> bool:
        out = _ip("-4", "-o", "addr", "show", check=False).stdout
        out += _ip("-4", "route", "show", "table", "all", check=False).stdout
        for word in re.findall(r"\d+\.\d+\.\d+\.\d+(?:/\d+)?", out):
            with contextlib.suppress(ValueError):
                if ipaddress.ip_network(word, strict=False).overlaps(subnet):
                    return True
        return any(
            n.subnet is not None and n.subnet.overlaps(subnet) for n in self.networks.values()
        )

    def _free_subnet(self) -> ipaddress.IPv4Network:
        # bridges of other live runs carry no address unless host_access: remember what
        # they use through their names is not possible, so pick from a random start.
        candidates = list(SUBNET_POOL.subnets(new_prefix=24))[1:-1]
        start = secrets.randbelow(len(candidates))
        for i in range(len(candidates)):
            subnet = candidates[(start + i) % len(candidates)]
            if not self._subnet_in_use(subnet):
                return subnet
        raise NetnsError(f"no free /24 left in {SUBNET_POOL}")

    def add_host(self, name: str, networks: Sequence[str]) -> Host:
        """Create a host on ``networks`` (names of networks made with :meth:`add_network`)."""
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,40}", name):
            raise ValueError(f"host name {name!r}: use letters, digits, '_', '.', '-'")
        if name in self.hosts:
            raise ValueError(f"host {name!r} exists already")
        for net in networks:
            if net not in self.networks:
                raise ValueError(f"host {name}: unknown network {net!r}")
        if not networks:
            raise ValueError(f"host {name}: give at least one network")
        host = Host(self, name, len(self.hosts))
        self.hosts[name] = host
        if not self.isolated:
            addr = str(self._loopback_base + 2 + host.index)
            for net in networks:
                host.addresses[net] = addr
            return host
        _ip("netns", "add", host.netns)
        _ip("-n", host.netns, "link", "set", "lo", "up")
        for i, net_name in enumerate(networks):
            net = self.networks[net_name]
            self._veths += 1
            outside = f"{self.prefix}v{self._veths}"
            inside = f"eth{i}"
            tmp = f"{self.prefix}p{self._veths}"
            assert len(outside) <= IFNAMSIZ and len(tmp) <= IFNAMSIZ
            _ip("link", "add", outside, "type", "veth", "peer", "name", tmp)
            _ip("link", "set", tmp, "netns", host.netns)
            _ip("-n", host.netns, "link", "set", tmp, "name", inside)
            _ip("link", "set", outside, "master", net.bridge, "up")
            addr = net._allocate()
            _ip("-n", host.netns, "addr", "add", f"{addr}/{net.subnet.prefixlen}", "dev", inside)
            _ip("-n", host.netns, "link", "set", inside, "up")
            host.addresses[net_name] = addr
            host.interfaces[net_name] = inside

        def no_forwarding() -> None:
            for path in ("/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"):
                with contextlib.suppress(OSError), open(path, "w") as f:
                    f.write("0")

        call_in_netns(host.netns, no_forwarding)
        return host

    def host(self, name: str) -> Host:
        try:
            return self.hosts[name]
        except KeyError:
            raise KeyError(f"no host {name!r} (hosts: {', '.join(self.hosts)})") from None

    # teardown ----------------------------------------------------------------------

    def close(self) -> None:
        """End every process of the lab and delete every namespace, veth and bridge."""
        if self._closed:
            return
        self._closed = True
        pids = [pid for pid, start in self._pids if start and _proc_start_time(pid) == start]
        _terminate_pids(pids, group=True)
        if self._registry or self.isolated:
            cleanup(self.prefix, log_removed=False)
        log.debug("topology %s: torn down", self.prefix)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Lab:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        mode = "netns" if self.isolated else "loopback"
        return f"<Lab {self.prefix} {mode} hosts={list(self.hosts)}>"
