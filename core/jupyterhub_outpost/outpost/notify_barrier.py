"""A barrier through PostgreSQL's notification queue: "has this process received every
change notification committed before now?", without reading the rows.

PostgreSQL delivers notifications to a listening session in the order their transactions
committed, across channels (one queue for the database). So a process that sends a
notification to a channel only it listens to, after a moment T, and receives it back has
by then received every notification committed before T: every change another replica
announced (coordination.py) before a poll arrived has marked its row stale before the poll
is answered. That is what a replica needs to answer a poll from memory, and a round trip
costs far less than reading the polled row with every poll.

One barrier is in flight at a time. A caller that arrives while one is in flight cannot
use it (it may have committed before the caller arrived) and waits for the next, which is
sent when the one in flight returns; every caller that arrived meanwhile shares it. So
under load one round trip serves many polls, and a poll waits at most two round trips. A
barrier that does not come back in ``timeout`` seconds (the connection stalled or lost)
answers False: the caller reads the row instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class NotifyBarrier:
    """``send(payload)`` commits ``NOTIFY <own channel>, payload``; ``received(payload)`` is
    called with what comes back on that channel."""

    TIMEOUT = 0.5  # seconds before a barrier counts as lost

    def __init__(self, send: Callable[[str], Awaitable[object]], log):
        self._send = send
        self.log = log
        self.sent = 0  # number of the last barrier sent
        self.seen = 0  # number of the last barrier received back
        self._waiters: dict[int, asyncio.Future] = {}  # barrier number -> its callers' future
        self._in_flight = False
        self._task: asyncio.Task | None = None

    async def passed(self, timeout: float | None = None) -> bool:
        """True once every notification committed before this call was received."""
        needed = self.sent + 1  # one sent after now; the one in flight may be older
        waiter = self._waiters.get(needed)
        if waiter is None:
            waiter = self._waiters[needed] = asyncio.get_running_loop().create_future()
        if not self._in_flight:
            self._start()
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), timeout or self.TIMEOUT)
        except asyncio.TimeoutError:
            return False

    def _start(self) -> None:
        self.sent += 1
        self._in_flight = True
        self._task = asyncio.ensure_future(self._send_one(self.sent))

    async def _send_one(self, number: int) -> None:
        try:
            await self._send(str(number))
        except Exception as e:  # the connection is gone: the callers read the rows
            self.log.debug("Notification barrier %d not sent: %s", number, e)
            self.reset()

    def received(self, payload: str) -> None:
        """Barrier ``payload`` came back: its callers (and earlier ones) passed."""
        if not payload.isdigit() or int(payload) <= self.seen:
            return
        self.seen = number = int(payload)
        for key in [k for k in self._waiters if k <= number]:
            waiter = self._waiters.pop(key)
            if not waiter.done():
                waiter.set_result(True)
        self._in_flight = number < self.sent
        if self._waiters and not self._in_flight:
            self._start()

    def reset(self) -> None:
        """The connection was lost or replaced: every pending caller fails (reads the row)
        and barriers already sent no longer count."""
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_result(False)
        self._waiters.clear()
        self._in_flight = False
        self.seen = self.sent
