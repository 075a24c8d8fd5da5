"""One supervised service process of a topology: start, readiness, restart policy, logs, stop.

A :class:`Service` runs one argv inside one host (a network namespace), in its own
session, with stdout and stderr merged and streamed line by line to a sink (the runner
prints ``name | line``) and to ``logs/NAME.log``. An unexpected exit is handled by the
restart policy (``no``, ``on-failure``, ``always``) with exponential backoff;
:meth:`Service.stop` is an intended stop and is never restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from jupyterhub.utils import exponential_backoff

from .netns import Host

log = logging.getLogger("outpost_scenarios")

LogSink = Callable[[str, str], None]


class ServiceError(RuntimeError):
    """A service did not start, did not become ready, or could not be stopped."""


@dataclass
class Readiness:
    """A resolved readiness check (placeholders already substituted)."""

    http: str | None = None
    tcp: str | None = None
    log: str | None = None
    from_host: Host | None = None
    timeout: float = 60.0

    def describe(self) -> str:
        if self.http:
            return f"HTTP {self.http}"
        if self.tcp:
            return f"TCP {self.tcp}"
        return f"log line matching {self.log!r}"


async def http_status(host: Host, url: str, timeout: float = 5.0) -> int:
    """GET ``url`` from inside ``host`` and return the HTTP status.

    https is checked without verifying the certificate: this is a readiness probe of a
    service of this topology, not a client that trusts it.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ServiceError(f"readiness check {url}: only http:// and https:// URLs can be checked")
    kwargs = {}
    if parts.scheme == "https":
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        kwargs = {"ssl": ctx, "server_hostname": parts.hostname}
    port = parts.port or (443 if parts.scheme == "https" else 80)
    reader, writer = await host.open_connection(parts.hostname, port, timeout=timeout, **kwargs)
    try:
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        writer.write(
            f"GET {path} HTTP/1.0\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
        m = re.match(rb"HTTP/\d(?:\.\d)? (\d{3})", line)
        if not m:
            raise ServiceError(f"{url}: not an HTTP answer: {line[:80]!r}")
        return int(m.group(1))
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def exit_code(proc: asyncio.subprocess.Process) -> int:
    """Wait until ``proc`` has exited and return its exit code.

    ``Process.wait()`` also waits until the process's stdout pipe is closed, which never
    happens while a descendant in another session holds it (the servers an Outpost
    starts): the exit of the service itself would go unnoticed. ``returncode`` is set as
    soon as the process is reaped, so this checks it with backoff alongside ``wait()``.
    """
    waiter = asyncio.ensure_future(proc.wait())
    delay = 0.02
    try:
        while proc.returncode is None and not waiter.done():
            await asyncio.wait([waiter], timeout=delay)
            delay = min(delay * 2, 0.5)
    finally:
        waiter.cancel()
    return proc.returncode


class Service:
    """A supervised process; see the module docstring."""

    def __init__(
        self,
        name: str,
        host: Host,
        argv: list[str],
        *,
        env: dict[str, str],
        cwd: str,
        log_file: str,
        sink: LogSink,
        ready: Readiness | None = None,
        url: str | None = None,
        restart: str = "no",
        stop_signal: str = "SIGTERM",
        stop_timeout: float = 10.0,
        host_cgroups: bool = False,
        on_change: Callable[[], None] | None = None,
    ):
        self.name = name
        self.host = host
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.log_file = log_file
        self.sink = sink
        self.ready = ready
        self.url = url
        self.restart = restart
        self.stop_signal = (
            signal.Signals[stop_signal] if isinstance(stop_signal, str) else stop_signal
        )
        self.stop_timeout = stop_timeout
        self.host_cgroups = host_cgroups
        self.on_change = on_change or (lambda: None)
        self.proc: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self.starts = 0
        self.last_exit: int | None = None
        self.tail: deque[str] = deque(maxlen=30)
        self._stopping = False
        self._supervisor: asyncio.Task | None = None
        self._reader: asyncio.Task | None = None
        self._ready_line = asyncio.Event()
        self._started_at = 0.0
        self._changed = asyncio.Condition()

    # state ---------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc and self.proc.returncode is None else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    async def wait_for(self, predicate: Callable[[Service], bool], timeout: float = 30) -> None:
        """Wait until ``predicate(self)`` holds (checked at every start and exit)."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: predicate(self)), timeout)

    async def _notify(self) -> None:
        self.on_change()
        async with self._changed:
            self._changed.notify_all()

    # running -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the process and supervise it (returns once it runs, not once it is ready)."""
        if self.running:
            return
        self._stopping = False
        await self._spawn()
        self._supervisor = asyncio.create_task(self._supervise(), name=f"supervise-{self.name}")

    async def _spawn(self) -> None:
        self._ready_line.clear()
        os.makedirs(self.cwd, exist_ok=True)
        self.sink(self.name, f"starting on {self.host.name}: {' '.join(self.argv)}")
        try:
            self.proc = await self.host.create_subprocess_exec(
                *self.argv,
                named=True,
                host_cgroups=self.host_cgroups,
                env=self.env,
                cwd=self.cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                limit=1 << 20,
            )
        except OSError as e:
            raise ServiceError(f"service {self.name}: could not start {self.argv[0]}: {e}") from e
        self.starts += 1
        self._started_at = time.monotonic()
        self._reader = asyncio.create_task(self._read(self.proc), name=f"log-{self.name}")
        await self._notify()

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        pattern = re.compile(self.ready.log) if self.ready and self.ready.log else None
        with open(self.log_file, "a", buffering=1) as f:
            while True:
                try:
                    raw = await proc.stdout.readline()
                except ValueError:  # a line longer than the limit
                    raw = await proc.stdout.read(1 << 16)
                if not raw:
                    break
                line = raw.decode(errors="replace").rstrip("\n")
                f.write(line + "\n")
                self.tail.append(line)
                self.sink(self.name, line)
                if pattern is not None and pattern.search(line):
                    self._ready_line.set()

    async def _supervise(self) -> None:
        delay = 1.0
        while True:
            proc = self.proc
            rc = await exit_code(proc)
            # the output of descendants that outlived it may keep the reader going
            await asyncio.wait([self._reader], timeout=2)
            self.last_exit = rc
            await self._notify()
            if self._stopping:
                return
            how = f"killed by {signal.Signals(-rc).name}" if rc < 0 else f"exited with code {rc}"
            again = self.restart == "always" or (self.restart == "on-failure" and rc != 0)
            if not again:
                self.sink(self.name, f"{how} (restart: {self.restart}, not restarting)")
                return
            if time.monotonic() - self._started_at > 30:
                delay = 1.0
            self.sink(self.name, f"{how}; restarting in {delay:.0f}s (restart: {self.restart})")
            await asyncio.sleep(delay)  # restart backoff, not synchronisation
            delay = min(delay * 2, 30.0)
            if self._stopping:
                return
            self.restarts += 1
            try:
                await self._spawn()
            except ServiceError as e:
                self.sink(self.name, str(e))
                return

    async def wait_ready(self) -> None:
        """Wait until the readiness check passes; fail at once if the process exits."""
        if self.ready is None:
            return
        check = self.ready
        where = check.from_host or self.host

        async def ready_now() -> bool:
            if not self.running:
                # the exit is seen here before the supervisor has recorded it: take the code
                # from the process, and let the reader finish so the output is complete
                code = self.proc.returncode if self.proc is not None else self.last_exit
                if self._reader is not None:
                    await asyncio.wait([self._reader], timeout=2)
                tail = "\n  ".join(list(self.tail)[-10:]) or "(no output)"
                raise ServiceError(
                    f"service {self.name} exited with code {code} before it was ready "
                    f"({check.describe()}); its last output:\n  {tail}"
                )
            if check.log:
                return self._ready_line.is_set()
            if check.tcp:
                ip, _, port = check.tcp.rpartition(":")
                return await where.can_connect(ip, int(port), timeout=2)
            try:
                return await asyncio.wait_for(http_status(where, check.http, timeout=5), 10) < 500
            except (OSError, asyncio.TimeoutError, ServiceError):
                return False

        try:
            await exponential_backoff(
                ready_now,
                f"service {self.name} not ready after {check.timeout:.0f}s "
                f"({check.describe()}, checked from host {where.name}); see {self.log_file}",
                start_wait=0.05,
                max_wait=1.0,
                timeout=check.timeout,
            )
        except asyncio.TimeoutError as e:
            raise ServiceError(str(e)) from None
        self.sink(self.name, f"ready ({check.describe()})")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the process group, as a fault would: the restart policy applies."""
        if self.proc is None or self.proc.returncode is not None:
            raise ServiceError(f"service {self.name} is not running")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    async def stop(self) -> int | None:
        """Stop on purpose (no restart): stop_signal, then SIGKILL after stop_timeout."""
        self._stopping = True
        proc = self.proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, self.stop_signal)
            try:
                await asyncio.wait_for(exit_code(proc), self.stop_timeout)
            except asyncio.TimeoutError:
                self.sink(self.name, f"did not stop within {self.stop_timeout:.0f}s; killing")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await exit_code(proc)
            # children that outlived the leader in the same group
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        if proc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 5)
            self.last_exit = proc.returncode
        await self._notify()
        return proc.returncode if proc else None
