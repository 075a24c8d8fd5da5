"""The forward table at run time: listeners, SSH links, and persistence.

Invariants:

- every forward in the table has a bound local listener (or ``state = "error"`` saying why
  its stored port could not be bound after a restart);
- one :class:`SSHLink` per distinct ``(host, port, user, host_key)``, closed when its last
  forward goes away;
- the state file is rewritten after every change of the table (not on state changes), by
  group commit: the lock covers only the in-memory change and the bind; one writer task then
  saves the whole table, and each PUT/DELETE waits (outside the lock) for a save that includes
  its change before it answers. A burst of N requests costs ~1-2 saves, not N, and an answered
  request is still in the state file when the daemon is SIGKILLed right after.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

import asyncssh

from .link import LocalListener, SSHLink, backoff_delays
from .metrics import TunnelMetrics
from .table import ForwardSpec, SSHTarget, load_state, save_state


class ForwardConflict(Exception):
    """The request cannot be done as asked (e.g. the local port is in use)."""


class ForwardManager:
    def __init__(
        self,
        *,
        state_file: str,
        forward_ip: str,
        client_key: asyncssh.SSHKey,
        log: logging.Logger,
        metrics: TunnelMetrics | None = None,
        hold_timeout: float = 15.0,
        link_options: dict | None = None,
    ):
        self.state_file = state_file
        self.forward_ip = forward_ip
        self.client_key = client_key
        self.log = log
        self.metrics = metrics or TunnelMetrics()
        self.hold_timeout = hold_timeout
        self.link_options = link_options or {}
        self.specs: dict[str, ForwardSpec] = {}
        self.listeners: dict[str, LocalListener] = {}
        self.bind_errors: dict[str, str] = {}
        self.links: dict[SSHTarget, SSHLink] = {}
        self._lock = asyncio.Lock()
        # group commit: _version counts table changes, _saved_version is the last one on disk
        self._version = 0
        self._saved_version = 0
        self._writer: asyncio.Task | None = None
        self._rebind_tasks: dict[str, asyncio.Task] = {}
        # a restored forward whose port is taken retries like a dropped SSH connection
        self.rebind_initial_delay = self.link_options.get("reconnect_initial_delay", 0.5)
        self.rebind_max_delay = self.link_options.get("reconnect_max_delay", 30.0)

    # -- links --
    def _link_for(self, target: SSHTarget) -> SSHLink:
        link = self.links.get(target)
        if link is None:
            link = SSHLink(
                target,
                client_key=self.client_key,
                log=self.log,
                metrics=self.metrics,
                **self.link_options,
            )
            self.links[target] = link
            link.start()
        return link

    async def _release_unused_links(self) -> None:
        used = {spec.ssh for spec in self.specs.values()}
        for target in [t for t in self.links if t not in used]:
            link = self.links.pop(target)
            self.log.info("No forwards left over %s; closing it", target.describe())
            await link.close()

    # -- persistence --
    def _changed(self) -> int:
        """Count a change of the table (call after changing ``specs``); its version."""
        self._version += 1
        return self._version

    async def _write_loop(self) -> None:
        """Save the table until the file holds the latest version (the only writer)."""
        try:
            while self._saved_version < self._version:
                # snapshot and version together, with no await between: the file written
                # holds at least every change counted up to ``version``
                version = self._version
                specs = sorted(self.specs.values(), key=lambda s: s.key)
                await asyncio.to_thread(save_state, self.state_file, specs)
                self._saved_version = version
        finally:
            self._writer = None

    async def _durable(self, version: int) -> None:
        """Return once the state file holds change ``version`` (raises if the save failed)."""
        while self._saved_version < version:
            if self._writer is None:
                self._writer = asyncio.create_task(self._write_loop())
            # shielded: a cancelled request must not cancel the save the others wait for
            await asyncio.shield(self._writer)

    async def restore(self) -> None:
        """Load the state file and bring every stored forward back on its local port."""
        specs = load_state(self.state_file)
        moved = False
        async with self._lock:
            for spec in specs:
                if spec.local_host != self.forward_ip:
                    # --forward-ip changed since the table was written: follow the flag
                    spec = replace(spec, local_host=self.forward_ip)
                    moved = True
                self.specs[spec.key] = spec
                listener = self._new_listener(spec)
                try:
                    await listener.bind(spec.local_host, spec.local_port)
                except OSError as e:
                    self.bind_errors[spec.key] = (
                        f"cannot listen on {spec.local_host}:{spec.local_port}: {e.strerror or e}"
                        "; retrying"
                    )
                    self.log.error("Forward %s: %s", spec.key, self.bind_errors[spec.key])
                    self._rebind_tasks[spec.key] = asyncio.create_task(self._rebind(spec.key))
                self.listeners[spec.key] = listener
                self.metrics.forward_added(spec.key)
            if moved:
                await self._durable(self._changed())
            if specs:
                self.log.info("Restored %d forward(s) from %s", len(specs), self.state_file)

    async def _rebind(self, key: str) -> None:
        """Retry binding a restored forward's stored port (with backoff) until it works,
        the forward is deleted, or a PUT gives it a listener."""
        delays = backoff_delays(self.rebind_initial_delay, self.rebind_max_delay)
        try:
            while True:
                await asyncio.sleep(next(delays))
                async with self._lock:
                    spec = self.specs.get(key)
                    listener = self.listeners.get(key)
                    if spec is None or listener is None or key not in self.bind_errors:
                        return
                    try:
                        await listener.bind(spec.local_host, spec.local_port)
                    except OSError:
                        continue
                    del self.bind_errors[key]
                    self.log.info(
                        "Forward %s: listening on %s:%s again",
                        key,
                        spec.local_host,
                        spec.local_port,
                    )
                    return
        finally:
            self._rebind_tasks.pop(key, None)

    def _new_listener(self, spec: ForwardSpec) -> LocalListener:
        return LocalListener(
            key=spec.key,
            link=self._link_for(spec.ssh),
            target_host=spec.target_host,
            target_port=spec.target_port,
            hold_timeout=self.hold_timeout,
            log=self.log,
            metrics=self.metrics,
        )

    # -- API operations --
    def describe(self, key: str) -> dict:
        spec = self.specs[key]
        data = spec.to_dict()
        data["ssh"] = dict(data["ssh"])
        if key in self.bind_errors:
            data["state"] = "error"
            data["error"] = self.bind_errors[key]
            data["permanent"] = False  # the bind is retried
            return data
        link = self.links.get(spec.ssh)
        state = link.state if link else "connecting"
        data["state"] = state
        if link is not None and link.error and state == "error":
            data["error"] = link.error
            # a wrong host key or a refused login: waiting will not help
            data["permanent"] = link.hard_error
        return data

    def list(self) -> list[dict]:
        return [self.describe(key) for key in sorted(self.specs)]

    async def put(
        self,
        key: str,
        *,
        ssh: SSHTarget,
        target_host: str,
        target_port: int,
        local_port: int | None,
    ) -> dict:
        """Create or re-point ``key``. Raises :class:`ForwardConflict` if the port cannot be bound."""
        async with self._lock:
            old = self.specs.get(key)
            old_listener = self.listeners.get(key)
            keep_port = (
                old is not None
                and old_listener is not None
                and old_listener.server is not None
                and (local_port is None or local_port == old.local_port)
            )
            if keep_port:
                spec = replace(old, ssh=ssh, target_host=target_host, target_port=target_port)
                listener = old_listener
                listener.link = self._link_for(ssh)
                listener.target_host = target_host
                listener.target_port = target_port
            else:
                wanted = local_port
                if wanted is None and old is not None:
                    wanted = old.local_port  # restored forward whose port failed to bind
                spec = ForwardSpec(
                    key=key,
                    ssh=ssh,
                    target_host=target_host,
                    target_port=target_port,
                    local_host=self.forward_ip,
                    local_port=wanted or 0,
                )
                listener = self._new_listener(spec)
                try:
                    bound = await listener.bind(self.forward_ip, wanted or 0)
                except OSError as e:
                    await self._release_unused_links()
                    raise ForwardConflict(
                        f"cannot listen on {self.forward_ip}:{wanted}: {e.strerror or e}"
                    ) from None
                spec = replace(spec, local_port=bound)
                if old_listener is not None:
                    await old_listener.close()
            self.specs[key] = spec
            self.listeners[key] = listener
            self.bind_errors.pop(key, None)
            listener.link.retry_now()  # a hub waits for this forward: no backoff wait
            version = self._changed()
            await self._release_unused_links()
            if old is None:
                self.metrics.forward_added(key)
            self.log.info(
                "Forward %s: %s:%s -> %s -> %s:%s",
                key,
                spec.local_host,
                spec.local_port,
                ssh.describe(),
                target_host,
                target_port,
            )
            forward = self.describe(key)
        # outside the lock: concurrent requests share one save (group commit)
        await self._durable(version)
        return forward

    async def delete(self, key: str) -> bool:
        async with self._lock:
            if key not in self.specs:
                return False
            del self.specs[key]
            self.bind_errors.pop(key, None)
            version = self._changed()
            listener = self.listeners.pop(key, None)
            if listener is not None:
                await listener.close()
            await self._release_unused_links()
            self.metrics.forward_removed(key)
            self.log.info("Forward %s removed", key)
        await self._durable(version)
        return True

    async def close(self) -> None:
        """Close listeners and SSH connections (the state file keeps the table)."""
        for task in list(self._rebind_tasks.values()):
            task.cancel()
        if self._writer is not None:
            try:
                await asyncio.shield(self._writer)  # let a save in progress finish
            except Exception as e:
                self.log.error("Saving %s failed: %s", self.state_file, e)
        async with self._lock:
            for listener in self.listeners.values():
                await listener.close()
            self.listeners.clear()
            for link in self.links.values():
                await link.close()
            self.links.clear()
