"""ServiceManager: the life of every server this Outpost runs, for every hub.

Handlers call ``start``/``poll``/``stop``/``list``/``flavors``; the app calls
``recover`` at start-up, ``reap_expired`` periodically and ``authorize_forward`` for
the SSH endpoint. The flavor views live in flavor_views.py; recovery, the reaper and the
tunnel re-creation in recovery.py; the calls to hubs in hub_calls.py; the forward checks
in forward_checks.py (mixins of this class). The store is the truth;
``self._spawners`` caches the live Spawner objects (rebuilt from stored state after a
restart).

Poll path: ``self._running`` maps (hub, name) of each RUNNING server with a live spawner
to its row id, and ``self.rights`` (``forward_rights.ForwardRights``) records which server
holds which address for ``authorize_forward``: see polls.py (a mixin of this class).
"""

import asyncio
import subprocess
import time
from dataclasses import dataclass, field

from jupyterhub.spawner import SpawnException

from . import flavors as flavor_rules
from .coordination import SingleProcess
from .errors import OutpostError
from .events import EventRelay
from .flavor_views import FlavorViews
from .forward_checks import ForwardChecks
from .forward_rights import ForwardRights
from .hooks import call_hook, decide
from .hub_calls import HubCalls
from .local_users import local_user_name
from .models import FAILED, RUNNING, STOPPED, Service, utcnow
from .overrides import dropped_event, split_overrides
from .polls import Polls
from .recovery import Recovery
from .server_logs import ServerLogs
from .sibling_changes import SiblingChanges
from .store import AlreadyRunning, FlavorFull


@dataclass
class Live:
    """A built spawner and its pending start, if any."""

    spawner: object
    start_future: asyncio.Future | None = None
    stop_requested: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    start_id: str = ""
    key: tuple[str, str] | None = None  # (hub, name) while indexed as running
    state: dict | None = None  # the state last stored, decrypted
    state_enc: str | None = None  # its encrypted form as read from the store, if known
    stale: bool = False  # a sibling worker changed the row: read it before answering


class ServiceManager(Polls, FlavorViews, Recovery, HubCalls, ForwardChecks, SiblingChanges):
    # seconds between two looks at a starting spawner's state besides its trait changes
    state_check_interval = 0.5

    def __init__(
        self, *, settings, store, runner, hub_client, log, server_logs=None, coordination=None
    ):
        self.settings = settings  # the JupyterHubOutpost app: options are read live
        self.store = store
        # sibling workers' changes, server locks, leader (coordination.py)
        self.coordination = coordination or SingleProcess()
        self.coordination.on_change = self._changed_elsewhere
        self.coordination.on_resync = self._all_changed_elsewhere
        self.coordination.on_stop_request = self._stop_requested
        self._starting: dict[tuple[str, str], int] = {}  # (hub, name) -> row id
        self._former_procs: set[subprocess.Popen] = set()  # of spawners rebuilt meanwhile
        self.runner = runner
        self.hub_client = hub_client
        self.log = log
        self.server_logs = server_logs or ServerLogs(0)
        self._spawners: dict[int, Live] = {}
        self._running: dict[tuple[str, str], int] = {}  # (hub, name) -> row id
        self.rights = ForwardRights()  # who holds which address (the app sets on_revoke)
        self._rechecks: dict[int, asyncio.Task] = {}  # polls on behalf of forwards
        self._flavor_tokens_sent: dict[str, str] = {}  # hub -> token it sent with a start
        self._flavor_source_cache: flavor_rules.FlavorSource | None = None
        self._tasks: set[asyncio.Task] = set()

    # --- helpers ---------------------------------------------------------------------
    def _background(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _row(self, hub: str, name: str, start_id: str | None) -> Service:
        row = await self.store.get(hub, name)
        if row is None or (start_id and row.start_id != start_id):
            detail = f" with start id {start_id!r}" if start_id else ""
            raise OutpostError(404, f"No server {name!r}{detail} on this Outpost.")
        return row

    def _live(self, row: Service) -> Live:
        live = self._spawners.get(row.id)
        if live is None:
            live = self._spawners[row.id] = self._build(row)
        return live

    def _build(self, row: Service) -> Live:
        """A Live of ``row`` with a spawner built from its stored state."""
        secrets = self.store.secrets(row)
        state = self.store.state(row)
        spawner = self.runner.build(
            hub=row.hub,
            row_id=row.id,
            env=secrets.get("env", {}),
            user_options=row.user_options or {},
            misc=row.misc or {},
            state=state,
            # decided once at the start (older rows: the hub's user name)
            local_user=secrets.get("local_user"),
        )
        return Live(spawner, start_id=row.start_id, state=state, state_enc=row.state_enc)

    def _index_running(self, row_id: int, hub: str, name: str, address: str) -> None:
        """The store says this server runs: let polls and forwards find it in memory."""
        live = self._spawners.get(row_id)
        if live is None:
            return
        if live.key is not None and self._running.get(live.key) == row_id:
            del self._running[live.key]
        live.key = (hub, name)
        self._running[live.key] = row_id
        if not address:
            self.rights.release(row_id)
            return
        self.runner.set_address(live.spawner, address)
        for other in self.rights.hold(row_id, hub, address):
            # one address, live servers of two hubs: at most one is really there; no hub
            # may forward to it until polls tell which (authorize_forward refuses)
            self.log.warning(
                "Server %s of hub %s runs at %s, which server #%d of hub %s held: checking it",
                name,
                hub,
                address,
                other.row_id,
                other.hub,
            )
            self._recheck_soon(other.row_id)

    def _unindex(self, row_id: int) -> None:
        self.rights.release(row_id)  # closes the hub's forwards to the address
        live = self._spawners.get(row_id)
        if live is None:
            return
        if live.key is not None and self._running.get(live.key) == row_id:
            del self._running[live.key]
        live.key = None

    def _masked(self, text: str) -> str:
        """``text`` with the live spawners' secrets masked: a spawner's error message goes
        to the hub, which shows and logs it."""
        return self.runner.redactor.redact(text)

    def _forget(self, row_id: int) -> None:
        self._unindex(row_id)
        self._spawners.pop(row_id, None)

    # --- start ---------------------------------------------------------------------
    async def _overrides(self, hub: str, name: str, misc: dict) -> tuple[dict, list[str]]:
        """The overrides to apply and the names of those dropped (see overrides.py)."""
        try:
            applied, dropped = await split_overrides(
                self.settings.allow_override, hub, misc, self.runner.spawner_class
            )
        except Exception as e:
            self.log.error("c.JupyterHubOutpost.allow_override failed: %s", e)
            applied, dropped = {}, sorted(misc)
        return applied, dropped

    async def start(self, hub: str, body: dict, *, background: bool) -> dict:
        """Admit, store and start one server; ``{"service": "host:port" or ""}``. The
        server's lock (coordination.py) is held from the admission to the end of the start,
        so that no other worker starts or stops it meanwhile."""
        name = body["name"]
        lock = self.coordination.server_lock(hub, name)
        await lock.__aenter__()
        try:
            row, coro = await self._admit(hub, body, background)
        except BaseException:
            await lock.__aexit__(None, None, None)
            raise
        self._starting[(hub, name)] = row.id
        coro = self._holding(lock, (hub, name), coro)
        if background:
            self._background(coro)
            return {"service": ""}
        return {"service": await coro}

    async def _holding(self, lock, key: tuple[str, str], coro):
        try:
            return await coro
        finally:
            self._starting.pop(key, None)
            await lock.__aexit__(None, None, None)

    async def _admit(self, hub: str, body: dict, background: bool):
        """The stored row of an admitted start, and the coroutine that runs the start."""
        name = body["name"]
        env = body.get("env") or {}
        user_options = body.get("user_options") or {}
        misc, dropped = await self._overrides(hub, name, body.get("misc") or {})
        option = self.settings.local_user_name
        local_user = await local_user_name(option, hub, env.get("JUPYTERHUB_USER", ""), self.log)
        flavor = user_options.get("flavor") or None
        hub_flavors = await self._admit_flavor(hub, flavor, body.get("authentication"))
        limit = flavor_rules.flavor_limit(hub_flavors, flavor, self.settings.flavors_undefined_max)
        try:
            row = await self.store.reserve(
                hub=hub,
                name=name,
                start_id=str(user_options.get("start_id") or ""),
                flavor=flavor,
                limit=limit,
                user_name=env.get("JUPYTERHUB_USER", ""),
                user_options=user_options,
                misc=misc,
                secrets={
                    "env": env,
                    "certs": body.get("certs") or {},
                    "internal_trust_bundles": body.get("internal_trust_bundles") or {},
                    "local_user": local_user,
                },
                runtime_deadline=flavor_rules.deadline(hub_flavors, flavor, utcnow()),
                user_limit=flavor_rules.user_limit(hub_flavors, flavor),
                global_user_limit=self.settings.global_max_per_user,
            )
        except AlreadyRunning:
            raise OutpostError(
                409,
                f"Server {name!r} is already running on this Outpost. Stop it first, "
                "or start it under another name.",
            ) from None
        except FlavorFull as e:
            what = f"flavor {e.flavor!r}" if e.flavor else "servers without a known flavor"
            if e.per_user:
                what = f"{what} per user" if e.flavor else "servers per user on this Outpost"
                whose = f"user {env.get('JUPYTERHUB_USER', '')!r} of hub {hub!r}"
            else:
                whose = f"hub {hub!r}"
            raise OutpostError(
                403,
                f"The limit for {what} is reached ({e.limit} running for {whose}). "
                "Stop another server of this flavor or choose another flavor.",
                reason="flavor_full",
            ) from None
        self._remember_flavors_token(hub, env)
        self.server_logs.forget(hub, name)  # lines of an earlier start of this name
        self.log.info(
            "Starting server %s for hub %s (flavor %s)",
            name,
            hub,
            flavor,
            extra={"hub": hub, "server": name},
        )
        if dropped:
            self.log.warning(
                "Spawner overrides not applied (not allowed by allow_override, or not "
                "options of the spawner): %s",
                ", ".join(dropped),
            )
        try:
            live = self._live(row)
        except Exception as e:
            await self.store.remove(row.id)
            self.log.exception("Building the spawner for %s failed", name)
            raise OutpostError(
                500,
                f"This Outpost cannot build its spawner ({type(e).__name__}: {e}); "
                "the Outpost administrator must fix its configuration.",
            ) from None
        billing = flavor_rules.billing(hub_flavors, flavor)
        coro = self._run_start(
            row, live, body, keep_failed=background, dropped=dropped, billing=billing
        )
        return row, coro

    async def _send_events(self, hub: str) -> bool:
        try:
            return await decide(self.settings.send_events, hub)
        except Exception as e:
            self.log.warning("c.JupyterHubOutpost.send_events failed (no events sent): %s", e)
            return False

    async def _run_start(
        self,
        row: Service,
        live: Live,
        body: dict,
        *,
        keep_failed: bool,
        dropped: list[str],
        billing: tuple[int, int] | None = None,
    ) -> str:
        env = body.get("env") or {}
        send = await self._send_events(row.hub)
        url = self._hub_url(row.hub, "events", env) if send else ""
        relay = EventRelay(self.hub_client, url, env, self.log)
        spawner = live.spawner
        began = time.monotonic()
        if dropped:
            await relay.send(dropped_event(dropped))
        try:
            async with live.lock:
                if live.stop_requested:
                    raise _StartCancelled()
                await self.runner.prepare(
                    spawner,
                    hub=row.hub,
                    row_id=row.id,
                    certs=body.get("certs") or {},
                    bundles=body.get("internal_trust_bundles") or {},
                )
                future = live.start_future = self.runner.start(spawner)
                relay_task = asyncio.ensure_future(relay.relay(spawner, future))
                saver = asyncio.ensure_future(self._save_state_during(row.id, spawner, future))
                try:
                    response = await future
                except asyncio.CancelledError:
                    if asyncio.current_task().cancelling():
                        raise
                    raise _StartCancelled() from None
                finally:
                    live.start_future = None
                    saver.cancel()
                    await asyncio.gather(saver, return_exceptions=True)
                    await _finish_relay(relay_task)
                address = await call_hook(self.settings.sanitize_start_response, spawner, response)
                address = address or ""
                state = spawner.get_state()
                await self.store.update(
                    row.id,
                    status=RUNNING,
                    service_address=address,
                    started_at=utcnow(),
                    state=state,
                )
                live.state, live.state_enc = state, None
                self._index_running(row.id, row.hub, row.name, address)
                if billing:
                    await self.store.start_billing(row, *billing)
            self._observe_start(row.hub, "started", began)
            self.log.info("Server %s of hub %s runs at %r", row.name, row.hub, address)
            self._background(self.send_flavor_update(row.hub))
            return address
        except _StartCancelled:
            message = f"Start of server {row.name!r} was cancelled by a stop request."
            await relay.send_failure(message)
            raise OutpostError(409, message, reason="cancelled") from None
        except Exception as e:
            message = self._masked(_failure_message(row.name, e))
            if isinstance(e, asyncio.TimeoutError):
                message = (
                    f"Server {row.name!r} did not start within {spawner.start_timeout} "
                    "seconds (Spawner.start_timeout)."
                )
            reason = "timeout" if isinstance(e, asyncio.TimeoutError) else "spawner_error"
            self._observe_start(row.hub, "failed", began, reason)
            self.log.warning("Start of %s for hub %s failed: %s", row.name, row.hub, message)
            self.log.debug("Start failure details", exc_info=True)
            await relay.send_failure(message)
            await self._cleanup_failed(row, spawner)
            if keep_failed:
                await self.store.mark_ended(row.id, status=FAILED, exit_status=1, error=message)
            else:  # the answer carries the error; nothing is left to poll
                await self.store.remove(row.id)
                self.server_logs.forget(row.hub, row.name)
            self._background(self.send_flavor_update(row.hub))
            error = OutpostError(500, message, reason=reason)
            error.counted = True  # in outpost_start_failures_total already
            raise error from None

    async def _save_state_during(self, row_id: int, spawner, future) -> None:
        """While ``start()`` runs, store the spawner's state whenever it changes (a pid, a
        batch job id): an Outpost killed mid-start then finds, at its restart, what the
        start had launched and stops it, instead of leaving an orphan.

        A change of any spawner trait (``pid``, ``job_id``, ...) wakes the save at once;
        every ``state_check_interval`` seconds the state is compared as well, for spawners
        that keep their state outside traits."""
        interval = self.state_check_interval
        changed = asyncio.Event()

        def wake(_change) -> None:
            changed.set()

        spawner.observe(wake)
        last = None
        try:
            while not future.done():
                changed.clear()
                state = spawner.get_state()
                if state and state != last:
                    try:
                        await self.store.update(row_id, state=state)
                        last = state
                        continue  # a trait may have changed during the write
                    except Exception:
                        self.log.debug(
                            "Saving the state of a starting server failed", exc_info=True
                        )
                waker = asyncio.ensure_future(changed.wait())
                try:
                    await asyncio.wait(
                        {future, waker}, timeout=interval, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    waker.cancel()
        finally:
            spawner.unobserve(wake)

    def _observe_start(self, hub: str, outcome: str, began: float, reason: str = "") -> None:
        metrics = getattr(self.settings, "metrics", None)
        if metrics is not None:
            metrics.observe_start(hub, outcome, time.monotonic() - began)
            if reason:
                metrics.start_failures.labels(hub, reason).inc()

    async def _cleanup_failed(self, row: Service, spawner) -> None:
        self._forget(row.id)
        if spawner is None:
            return
        try:
            await self.runner.stop(spawner, hub=row.hub, row_id=row.id, now=True)
        except Exception:
            self.log.exception("Cleaning up after the failed start of %s failed", row.name)

    # --- stop ------------------------------------------------------------------------
    async def stop(
        self, hub: str, name: str, start_id: str | None, *, background: bool
    ) -> list[str]:
        """Stop one server; returns its last log lines (up to the request, when in the
        background)."""
        row = await self._row(hub, name, start_id)
        if background:
            self._background(self._stop_logged(row))
            return self.server_logs.lines(hub, name)
        await self._stop(row)
        lines = self.server_logs.lines(hub, name)
        self.server_logs.forget(hub, name)
        return lines

    async def _quiet(self, coro) -> None:
        """Run a background start; its failure is already logged and stored."""
        try:
            await coro
        except OutpostError:
            pass

    async def _stop_logged(self, row: Service) -> None:
        try:
            await self._stop(row)
            self.server_logs.forget(row.hub, row.name)
        except Exception:
            self.log.exception("Stopping %s of hub %s failed", row.name, row.hub)

    async def _stop(self, row: Service, *, remove: bool = True, reason: str | None = None):
        self._cancel_start(self._spawners.get(row.id))  # the hub gave up on a pending start
        async with self.coordination.server_lock(row.hub, row.name, cancel_start=True):
            await self._stop_locked(row, remove=remove, reason=reason)

    def _cancel_start(self, live: Live | None) -> None:
        if live is None:
            return
        live.stop_requested = True
        if live.start_future is not None and not live.start_future.done():
            live.start_future.cancel()

    async def _stop_locked(self, row: Service, *, remove: bool, reason: str | None):
        current = await self.store.get_by_id(row.id)
        if current is None:  # a concurrent stop finished first
            return
        live = self._live(current)  # built from the state stored now, unless it is ours
        if live.stale:  # changed by a sibling worker: the spawner of the state stored now
            live = self._rebuild(current, live)
        live.stop_requested = True
        async with live.lock:
            current = await self.store.get_by_id(row.id)
            if current is None:  # a concurrent stop of this worker finished first
                return
            try:
                await self.runner.stop(live.spawner, hub=row.hub, row_id=row.id)
            except Exception as e:
                self.log.exception("Stopping %s of hub %s failed", row.name, row.hub)
                message = self._masked(f"Stopping server {row.name!r} failed ({e})")
                raise OutpostError(
                    500,
                    f"{message}; it is still listed, try again or ask the Outpost administrator.",
                ) from None
            await self.store.end_billing(row)
            if remove:
                await self.store.remove(row.id)
            else:
                await self.store.update(row.id, state=live.spawner.get_state())
                await self.store.mark_ended(row.id, status=STOPPED, exit_status=0, error=reason)
            # only now: a poll that builds a new Live must find the row already ended
            self._forget(row.id)
        self.log.info("Stopped server %s of hub %s", row.name, row.hub)
        self._background(self.send_flavor_update(row.hub))

    # --- views -----------------------------------------------------------------------
    async def list(self, hub: str) -> list[dict]:
        return [row.summary() for row in await self.store.list_hub(hub)]

    async def shutdown(self) -> None:
        """Stop background work; servers keep running (a restart recovers them)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


RELAY_GRACE_SECONDS = 5.0


async def _finish_relay(task: asyncio.Task) -> None:
    """Let the last progress events reach the hub, but never hold the start answer long."""
    try:
        await asyncio.wait_for(asyncio.shield(task), RELAY_GRACE_SECONDS)
    except asyncio.TimeoutError:
        task.cancel()


class _StartCancelled(Exception):
    """A stop request cancelled a pending start."""


def _failure_message(name: str, error: Exception) -> str:
    """What the hub (and its user) are told. A SpawnException's message was written for the
    user by the spawner (quota, image, allocation): it is passed on as it is."""
    if isinstance(error, OutpostError):
        return error.message
    if isinstance(error, SpawnException):
        # JupyterHub 6: .message; JupyterHub <= 5: .jupyterhub_message (or only str())
        message = getattr(error, "message", "") or getattr(error, "jupyterhub_message", "")
        if message:
            return str(message)
    detail = str(error) or type(error).__name__
    return f"Start of server {name!r} failed: {detail}"
