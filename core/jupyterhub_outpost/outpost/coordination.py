"""What the workers of one Outpost agree on: which changes each has seen, who starts or stops
a server, and who runs the once-only jobs (recovery, the runtime reaper, tunnel
re-creation). See docs/decisions/workers.md.

- :class:`SingleProcess`: this process is the only one that writes (SQLite, or one
  process on PostgreSQL): always fresh, no locks needed beyond the manager's own, always
  leader.
- :class:`PostgresCoordination`: the processes of ``serve --workers N`` share one
  PostgreSQL database. One asyncpg connection per worker carries

  * LISTEN/NOTIFY: every transaction that changes servers sends one notification
    ``<run>:<worker>:<row ids>``; the other workers mark what they hold of those rows
    stale (``on_change``), so their next poll reads the row again;
  * session advisory locks: one per server (hub, name), held by the worker that starts
    or stops it, so no server is started or stopped by two workers at once (PostgreSQL
    frees them when a worker dies); and the leader lock.

  Strictness on one host: the workers of one ``serve --workers N`` share a counter per
  worker (``published``, in shared memory made before the fork) of the notifying
  transactions it committed. ``fresh()`` is true when this worker received at least as
  many notifications from each sibling as that sibling committed: a poll answered from
  memory then reflects every change a sibling finished before the poll arrived.

  Replicas (``--replicated``: several ``serve``s, e.g. pods, on one database) share no
  memory: their coordination is ``strict``, never ``fresh()``. Instead ``synced()`` sends a
  notification to this worker's own channel and waits for it to come back
  (notify_barrier.py): PostgreSQL delivers notifications in commit order, so every change
  announced before the poll arrived has then been received. A barrier that does not come
  back in time means: read the row. The locks, the leader and the notifications work
  across replicas as across workers.
"""

import asyncio
import contextlib
import os
import time
import zlib

from .errors import OutpostError
from .notify_barrier import NotifyBarrier

LEADER_KEY = 0x4A48_4F75_7470_6F73  # "JHOutpos": outside the crc32 range of per-hub keys
CHANNEL = "outpost_servers"


def _key(text: str) -> int:
    return zlib.crc32(text.encode()) - 2**31  # an int4


class SingleProcess:
    """Every change of the store goes through this process."""

    is_leader = True
    shared = False  # no other process starts or stops servers of this database

    def fresh(self) -> bool:
        return True

    async def synced(self) -> bool:
        return True

    @contextlib.asynccontextmanager
    async def server_lock(self, hub: str, name: str, *, wait: bool = True, cancel_start=False):
        yield True

    async def announce(self, session, row_ids) -> None:
        pass

    def committed(self) -> None:
        pass

    async def start(self, on_leader) -> None:
        await on_leader()

    async def close(self) -> None:
        pass


class PostgresCoordination:
    """One worker's view; ``published`` is the shared per-worker counter array, ``index``
    this worker's place in it, ``run`` the id of the ``serve``."""

    RESYNC_AFTER = 2.0  # seconds a sibling's count may stay ahead before a full resync
    LEADER_RETRY = 5.0  # seconds between two tries of a non-leader to become leader
    shared = True

    def __init__(
        self, dsn: str, log, *, published, index: int = 0, run: str = "", strict: bool = False
    ):
        self.dsn = dsn
        # replicas (other `serve`s, on other hosts) change rows too: never fresh(), polls
        # wait for synced(). Also set when a change of an unknown `serve` arrives.
        self.strict = strict
        self.log = log
        self.published = published
        self.index = index
        self.run = run or os.urandom(6).hex()
        self._sync_channel = f"{CHANNEL}_sync_{self.run}_{index}"  # only this worker listens
        self.barrier = NotifyBarrier(
            lambda payload: self._execute("SELECT pg_notify($1, $2)", self._sync_channel, payload),
            log,
        )
        self.received = [0] * len(published)
        self.is_leader = False
        self.on_change = lambda row_id: None  # the manager's: drop what it holds of a row
        self.on_resync = lambda: None  # the manager's: drop everything (missed changes)
        self.on_stop_request = lambda hub, name: None  # cancel a start of ours
        self._conn = None
        self._lock = asyncio.Lock()  # one statement at a time on the connection
        self._behind_since: float | None = None
        self._tasks: list[asyncio.Task] = []
        self._listening = False
        self._on_leader = None
        self._follower: asyncio.Task | None = None
        # per server key: this worker's own lock and how many of its tasks use it (advisory
        # locks are per connection, and every task of a worker shares the connection)
        self._local: dict[tuple[int, int], asyncio.Lock] = {}
        self._users: dict[tuple[int, int], int] = {}

    # --- connection ------------------------------------------------------------------
    async def _connect(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(
            self.dsn,
            timeout=10,
            server_settings={"application_name": "jupyterhub-outpost coordination"},
        )
        await conn.add_listener(CHANNEL, self._notified)
        await conn.add_listener(CHANNEL + "_stop", self._stop_requested)
        await conn.add_listener(self._sync_channel, self._synced)
        conn.add_termination_listener(self._lost)
        self._conn, self._listening = conn, True
        self.barrier.reset()
        self._resync()
        self.log.info(
            "Coordination connection to PostgreSQL (backend pid %d)", conn.get_server_pid()
        )

    def _lost(self, _conn) -> None:
        self._listening = False
        self.is_leader = False
        self.barrier.reset()
        self.log.error(
            "Lost the coordination connection to PostgreSQL: polls read the store, "
            "starts and stops wait until it is back"
        )
        self._tasks.append(asyncio.ensure_future(self._reconnect()))

    async def _reconnect(self) -> None:
        """In the background, with backoff, until connected (a statement may connect first)."""
        delay = 0.5
        while True:
            async with self._lock:
                if self._listening:
                    return
                try:
                    await self._reconnect_now()
                    return
                except Exception as e:
                    self.log.warning("Coordination connection: %s; trying again in %.0fs", e, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10)

    async def _reconnect_now(self) -> None:
        """Connect again (caller holds ``self._lock``); this worker may lead again."""
        await self._connect()
        self.log.info("Coordination connection to PostgreSQL is back")
        self._follow_leader()

    async def _execute(self, query: str, *args):
        async with self._lock:
            if not self._listening:
                try:
                    await self._reconnect_now()
                except Exception:
                    raise OutpostError(
                        503,
                        "This Outpost worker lost its connection to the database; nothing "
                        "was changed. Try again later (it reconnects by itself).",
                    ) from None
            return await self._conn.fetchval(query, *args)

    # --- freshness -------------------------------------------------------------------
    def _notified(self, _conn, _pid, _channel, payload: str) -> None:
        run, _, rest = payload.partition(":")
        worker, _, ids = rest.partition(":")
        if run == self.run:
            if worker == str(self.index):
                return  # our own change
            if worker.isdigit() and int(worker) < len(self.received):
                self.received[int(worker)] += 1
        elif not self.strict:
            self.strict = True
            self.log.error(
                "Another Outpost (run %s) changes servers in this database, but this one was "
                "not started as a replica (--replicated): from now on it answers polls as a "
                "replica does. Two Outposts must not share one database unless every one of them "
                "runs with --replicated (docs/decisions/workers.md).",
                run,
            )
        for row_id in ids.split(","):
            if row_id.isdigit():
                self.on_change(int(row_id))

    def _synced(self, _conn, _pid, _channel, payload: str) -> None:
        self.barrier.received(payload)

    async def synced(self) -> bool:
        """A replica's freshness (``strict``): has this worker received every change
        announced before now? False when the barrier did not come back in time."""
        if not self.strict or not self._listening:
            return False
        return await self.barrier.passed()

    def _resync(self) -> None:
        """Forget everything held of other workers' rows; count their changes from now."""
        self.received = list(self.published)
        self._behind_since = None
        self.on_resync()

    def fresh(self) -> bool:
        if self.strict or not self._listening:
            return False
        for worker, count in enumerate(self.published):
            if worker != self.index and self.received[worker] < count:
                break
        else:
            self._behind_since = None
            return True
        now = time.monotonic()
        if self._behind_since is None:
            self._behind_since = now
        elif now - self._behind_since > self.RESYNC_AFTER:  # a notification was lost
            self.log.warning("A sibling worker's changes did not all arrive: resynchronizing")
            self._resync()
        return False

    async def announce(self, session, row_ids) -> None:
        """In a writing transaction (``session``): tell the others which rows it changes."""
        from sqlalchemy import func, select

        payload = f"{self.run}:{self.index}:{','.join(str(i) for i in row_ids)}"
        await session.execute(select(func.pg_notify(CHANNEL, payload)))

    def committed(self) -> None:
        """A transaction with ``announce`` committed."""
        self.published[self.index] += 1

    # --- server locks ----------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def server_lock(self, hub: str, name: str, *, wait: bool = True, cancel_start=False):
        """Hold the lock of server (hub, name) across workers; yields False when ``wait``
        is False and another task or worker holds it. ``cancel_start``: ask the holder to
        cancel a start of it (a stop request; the caller cancels a start of its own
        worker itself)."""
        keys = (_key(hub), _key(name))
        local = self._local.setdefault(keys, asyncio.Lock())
        if not wait and local.locked():
            yield False
            return
        self._users[keys] = self._users.get(keys, 0) + 1
        try:
            async with local:
                if await self._advisory_lock(keys, hub, name, wait, cancel_start):
                    try:
                        yield True
                    finally:
                        try:
                            await self._execute("SELECT pg_advisory_unlock($1, $2)", *keys)
                        except Exception as e:  # connection gone: PostgreSQL freed the lock
                            self.log.debug("Releasing the lock of %s failed: %s", name, e)
                else:
                    yield False
        finally:
            self._users[keys] -= 1
            if not self._users[keys]:
                del self._users[keys], self._local[keys]

    async def _advisory_lock(self, keys, hub: str, name: str, wait: bool, cancel_start) -> bool:
        delay = 0.01
        asked = False
        while not await self._execute("SELECT pg_try_advisory_lock($1, $2)", *keys):
            if not wait:
                return False
            if cancel_start and not asked:
                await self._execute("SELECT pg_notify($1, $2)", CHANNEL + "_stop", f"{hub}\n{name}")
                asked = True
            await asyncio.sleep(delay)  # another worker starts or stops it: wait for it
            delay = min(delay * 2, 0.5)
        return True

    def _stop_requested(self, _conn, _pid, _channel, payload: str) -> None:
        hub, _, name = payload.partition("\n")
        self.on_stop_request(hub, name)

    # --- leader ----------------------------------------------------------------------
    async def start(self, on_leader) -> None:
        """Connect; become leader now if nobody is (``on_leader`` runs then), else keep
        trying in the background (a leader that dies frees the lock)."""
        self._on_leader = on_leader
        await self._connect()
        if not await self._try_lead():
            self._follow_leader()

    async def _try_lead(self) -> bool:
        if self.is_leader:
            return True
        if await self._execute("SELECT pg_try_advisory_lock($1)", LEADER_KEY):
            self.is_leader = True
            self.log.info("This worker (%d) leads: recovery, runtime reaper", self.index)
            await self._on_leader()
            return True
        return False

    def _follow_leader(self) -> None:
        """Try to lead every LEADER_RETRY seconds (one such task at a time)."""
        if self._follower is None or self._follower.done():
            self._follower = asyncio.ensure_future(self._follow())
            self._tasks.append(self._follower)

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self.LEADER_RETRY)
            try:
                if await self._try_lead():
                    return
            except Exception as e:
                self.log.debug("Leader check failed: %s", e)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._conn is not None:
            self._listening = False
            self._conn.remove_termination_listener(self._lost)
            await self._conn.close()
