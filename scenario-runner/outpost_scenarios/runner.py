"""Bring a topology up and down: hosts, generated files, services in dependency order.

Python API (what end-to-end tests use)::

    from outpost_scenarios.runner import Topology

    async with Topology.up("scenarios/one-remote") as topo:
        topo.host("hub").ip                 # address of the hub host (first network)
        topo.url("hub")                     # the service's url (or its ready.http URL)
        topo.open_url                       # what `topology up` tells the user to open
        await topo.stop_service("outpost")  # on purpose: not restarted
        await topo.start_service("outpost") # start again, wait until ready
        topo.kill_service("outpost", signal.SIGKILL)   # a fault: the restart policy applies
        topo.secret("api_token"), topo.path("files/hub/jupyterhub_config.py")

On leaving the block (or on :meth:`Topology.down`) every service is stopped in reverse
dependency order and every namespace, veth and bridge is removed. :func:`down_run_dir`
does the same for a topology brought up by another process (``topology down``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from . import netns, rundir
from .services import LogSink, Readiness, Service, ServiceError
from .spec import Context, TopologySpec, load, render

log = logging.getLogger("outpost_scenarios")


class TopologyError(RuntimeError):
    """The topology could not be brought up or down; the message says what to do."""


def print_sink(width: int = 12, stream=None, color: bool | None = None) -> LogSink:
    """A log sink that prints ``name | line``, coloured per service on a terminal."""
    stream = stream or sys.stdout
    color = stream.isatty() if color is None else color
    palette = ["36", "33", "35", "32", "34", "31", "96", "93", "95", "92"]
    assigned: dict[str, str] = {}

    def sink(name: str, line: str) -> None:
        label = f"{name:<{width}}|"
        if color:
            code = assigned.setdefault(name, palette[len(assigned) % len(palette)])
            label = f"\033[{code}m{label}\033[0m"
        with contextlib.suppress(OSError, ValueError):
            stream.write(f"{label} {line}\n")
            stream.flush()

    return sink


class Topology:
    """A running topology; build it with :meth:`up`."""

    def __init__(
        self,
        spec: TopologySpec,
        *,
        run_dir: str | None = None,
        isolation: bool | None = None,
        sink: LogSink | None = None,
    ):
        self.spec = spec
        self.run_dir = os.path.abspath(run_dir or rundir.default_run_dir(spec))
        self.isolation = isolation
        width = max([len(n) for n in spec.services] + [8])
        self.sink = sink or print_sink(width)
        self.lab: netns.Lab | None = None
        self.ctx: Context | None = None
        self.services: dict[str, Service] = {}
        self.open_url: str | None = None
        self._closed = False

    # building ----------------------------------------------------------------------

    @classmethod
    @contextlib.asynccontextmanager
    async def up(
        cls,
        path: str | TopologySpec,
        *,
        run_dir: str | None = None,
        isolation: bool | None = None,
        sink: LogSink | None = None,
    ) -> AsyncIterator[Topology]:
        """Bring the topology at ``path`` (scenario folder or file) up; down on exit."""
        spec = path if isinstance(path, TopologySpec) else load(path)
        topo = cls(spec, run_dir=run_dir, isolation=isolation, sink=sink)
        try:
            await topo.start()
            yield topo
        finally:
            await topo.down()

    async def start(self) -> None:
        """Make hosts, generate files, start every service in order and wait until ready."""
        await asyncio.to_thread(self._claim_run_dir)
        self.lab = await asyncio.to_thread(netns.Lab, isolation=self.isolation)
        self._write_state()
        try:
            await asyncio.to_thread(self._build_hosts)
            self.ctx = await asyncio.to_thread(self._build_context)
            self._write_state()
            self.open_url = render(self.spec.open_url, self.ctx) if self.spec.open_url else None
            for name in self.spec.start_order():
                self.services[name] = self._make_service(name)
            await self._start_all()
        except BaseException:
            await self.down()
            raise

    async def _start_all(self) -> None:
        """Start every service once the services it depends on are ready.

        Services that do not depend on each other start at the same time; the first
        failure cancels the others' starts (and :meth:`start` tears everything down).
        """
        ready = {name: asyncio.Event() for name in self.spec.services}

        async def one(name: str) -> None:
            for dep in self.spec.services[name].depends_on:
                await ready[dep].wait()
            await self._start_and_wait(self.services[name])
            ready[name].set()

        tasks = [asyncio.create_task(one(n), name=f"start-{n}") for n in self.spec.start_order()]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _claim_run_dir(self) -> None:
        state = rundir.read_state(self.run_dir)
        if state:
            owner = state.get("runner", [0, None])
            if (
                owner[1] is not None
                and netns._proc_start_time(owner[0]) == owner[1]
                and not netns._is_zombie(owner[0])
            ):
                raise TopologyError(
                    f"{self.run_dir} is in use by a running topology (runner pid {owner[0]}); "
                    f"run 'jupyterhub-outpost topology down --run-dir {self.run_dir}' first, "
                    "or give another --run-dir"
                )
            # a crashed earlier run: remove what it left
            teardown_state(state)
        rundir.prepare(self.run_dir)

    def _build_hosts(self) -> None:
        for net in self.spec.networks.values():
            self.lab.add_network(net.name, net.subnet, host_access=net.host_access)
        for host in self.spec.hosts.values():
            self.lab.add_host(host.name, host.networks)

    def _build_context(self) -> Context:
        spec, lab = self.spec, self.lab
        ctx = Context(
            run_dir=self.run_dir,
            scenario_dir=spec.scenario_dir,
            python=sys.executable,
            host_addresses={h.name: dict(h.addresses) for h in lab.hosts.values()},
            host_netns={h.name: h.netns for h in lab.hosts.values()},
            networks={
                n.name: {"subnet": str(n.subnet) if n.subnet else None, "gateway": n.gateway}
                for n in lab.networks.values()
            },
            ports={},
            secrets={},
            secret_files={},
            ssh_keys={},
            ssh_pubs={},
            files=rundir.file_paths(spec, self.run_dir),
            data_dirs={s: os.path.join(self.run_dir, "data", s) for s in spec.services},
        )
        # "auto" ports are picked per host in one go, so that no two of them are the same
        auto = {}
        for svc in spec.services.values():
            wanted = [p for p in svc.ports.values() if p == "auto"]
            auto[svc.host] = auto.get(svc.host, 0) + len(wanted)
        picked = {h: iter(lab.host(h).free_ports(n)) for h, n in auto.items() if n}
        for svc in spec.services.values():
            ctx.ports[svc.name] = {
                pname: (next(picked[svc.host]) if port == "auto" else int(port))
                for pname, port in svc.ports.items()
            }
        for d in ctx.data_dirs.values():
            os.makedirs(d, exist_ok=True)
        rundir.generate_secrets(spec, ctx)
        rundir.render_files(spec, ctx)
        return ctx

    def _make_service(self, name: str) -> Service:
        svc, ctx = self.spec.services[name], self.ctx
        where = f"services.{name}"

        def r(text: str, key: str) -> str:
            return render(text, ctx, name, where=f"{where}.{key}")

        env = dict(os.environ) if svc.inherit_env else {"PATH": os.environ.get("PATH", "")}
        env.update({k: r(v, f"env.{k}") for k, v in svc.env.items()})
        env.setdefault("PYTHONUNBUFFERED", "1")
        ready = None
        if svc.ready:
            ready = Readiness(
                http=r(svc.ready.http, "ready.http") if svc.ready.http else None,
                tcp=r(svc.ready.tcp, "ready.tcp") if svc.ready.tcp else None,
                log=svc.ready.log,
                from_host=self.lab.host(svc.ready.from_host) if svc.ready.from_host else None,
                timeout=svc.ready.timeout,
            )
        return Service(
            name,
            self.lab.host(svc.host),
            [r(a, f"argv[{i}]") for i, a in enumerate(svc.argv)],
            env=env,
            cwd=r(svc.cwd, "cwd") if svc.cwd else ctx.data_dirs[name],
            log_file=os.path.join(self.run_dir, "logs", f"{name}.log"),
            sink=self.sink,
            ready=ready,
            url=r(svc.url, "url") if svc.url else None,
            restart=svc.restart,
            stop_signal=svc.stop_signal,
            stop_timeout=svc.stop_timeout,
            host_cgroups=svc.host_cgroups,
            on_change=self._write_state,
        )

    async def _start_and_wait(self, service: Service) -> None:
        for dep in self.spec.services[service.name].depends_on:
            if not self.services[dep].running:
                raise TopologyError(
                    f"service {service.name} depends on {dep}, which is not running; "
                    f"start {dep} first"
                )
        await service.start()
        await service.wait_ready()

    # state file --------------------------------------------------------------------

    def _write_state(self) -> None:
        if self.lab is None or self._closed:
            return
        state = {
            "scenario": self.spec.path,
            "name": self.spec.name,
            "prefix": self.lab.prefix,
            "isolated": self.lab.isolated,
            "runner": [os.getpid(), netns._proc_start_time(os.getpid())],
            "hosts": {
                h.name: {"netns": h.netns, "addresses": h.addresses}
                for h in self.lab.hosts.values()
            },
            "services": {
                name: {"pid": s.pid, "host": s.host.name, "url": s.url}
                for name, s in self.services.items()
            },
            "pids": [
                [s.pid, netns._proc_start_time(s.pid)] for s in self.services.values() if s.pid
            ],
            "open_url": self.open_url,
        }
        with contextlib.suppress(OSError):
            rundir.write_state(self.run_dir, state)

    # using -------------------------------------------------------------------------

    def host(self, name: str) -> netns.Host:
        return self.lab.host(name)

    def service(self, name: str) -> Service:
        try:
            return self.services[name]
        except KeyError:
            raise KeyError(f"no service {name!r} (services: {', '.join(self.services)})") from None

    def url(self, name: str) -> str:
        """The URL of service ``name`` (its ``url``, else its ``ready.http``)."""
        url = self.service(name).url
        if not url:
            raise KeyError(f"service {name} has no url (give it 'url:' or 'ready: {{http: ...}}')")
        return url

    def reachability_problem(self, url: str) -> str | None:
        """Why this machine's browser cannot open ``url``, or None (no packet is sent)."""
        host = urlsplit(url).hostname or ""
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            return None
        if not self.lab.isolated or addr.is_loopback:
            return None
        for net in self.lab.networks.values():
            if net.subnet is not None and addr in net.subnet and not net.host_access:
                return (
                    f"{host} is on network {net.name}, which this machine cannot reach; "
                    f"give that network 'host_access: true' or open a host on one that has it"
                )
        return None

    def port(self, service: str, name: str) -> int:
        return self.ctx.ports[service][name]

    def secret(self, name: str) -> str:
        return self.ctx.secrets[name]

    def path(self, relative: str) -> str:
        """An absolute path inside the run dir."""
        return os.path.join(self.run_dir, relative)

    async def stop_service(self, name: str) -> int | None:
        """Stop a service on purpose (not restarted); returns its exit code."""
        return await self.service(name).stop()

    async def start_service(self, name: str, *, wait_ready: bool = True) -> None:
        """Start a stopped service again (and wait until it is ready)."""
        service = self.service(name)
        await service.start()
        if wait_ready:
            await service.wait_ready()

    def kill_service(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal a service's process group like a fault would; its restart policy applies."""
        self.service(name).kill(sig)

    # tearing down ------------------------------------------------------------------

    async def down(self) -> None:
        """Stop every service (reverse order) and remove hosts, networks and the state file."""
        if self._closed:
            return
        errors = []
        for name in reversed(list(self.services)):
            try:
                await self.services[name].stop()
            except Exception as e:  # keep tearing down
                errors.append(f"{name}: {e}")
        self._closed = True
        if self.lab is not None:
            await self.lab.aclose()
        rundir.remove_state(self.run_dir)
        if errors:
            log.warning("topology %s: errors while stopping: %s", self.spec.name, "; ".join(errors))


# ---------------------------------------------------------------------------------------
# tearing down a topology of another process


def teardown_state(state: dict[str, Any]) -> list[str]:
    """Remove what a (dead) runner left: its service processes, namespaces, links."""
    removed = []
    pids = [
        pid
        for pid, start in state.get("pids", [])
        if pid and start and netns._proc_start_time(pid) == start
    ]
    if pids:
        netns._terminate_pids(pids, group=True)
        removed.extend(f"process {p}" for p in pids)
    prefix = state.get("prefix")
    if prefix:
        removed.extend(netns.cleanup(prefix))
    return removed


def down_run_dir(run_dir: str, *, timeout: float = 60.0) -> str:
    """Tear down the topology whose state is in ``run_dir``; returns what happened."""
    state = rundir.read_state(run_dir)
    if state is None:
        return f"nothing to tear down: no {rundir.STATE_FILE} in {run_dir}"
    pid, start = state.get("runner", [0, None])

    def runner_alive() -> bool:
        return (
            start is not None and netns._proc_start_time(pid) == start and not netns._is_zombie(pid)
        )

    if runner_alive():
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        delay = 0.05
        # the runner is not our child: poll the process table until it is gone
        while runner_alive() and time.monotonic() < deadline:
            time.sleep(delay)
            delay = min(delay * 2, 0.5)
        if runner_alive():
            os.kill(pid, signal.SIGKILL)
    removed = teardown_state(state)
    rundir.remove_state(run_dir)
    what = f"; removed leftovers: {', '.join(removed)}" if removed else ""
    return f"topology {state.get('name')} ({state.get('prefix')}) is down{what}"


__all__ = ["Topology", "TopologyError", "ServiceError", "down_run_dir", "print_sink"]
