"""NotifyBarrier's rules (notify_barrier.py), with the notifications delivered by the test:
a caller passes only on a barrier sent after it arrived, callers that arrive meanwhile share
the next one, and a lost or stalled barrier answers False (the caller reads the row). The
barrier on a real PostgreSQL is in test_outpost_replicas.py."""

import asyncio
import logging

from jupyterhub_outpost.outpost.notify_barrier import NotifyBarrier


class Channel:
    """What the barrier sent, delivered back when the test says so."""

    def __init__(self):
        self.sent: list[str] = []
        self.fail = False

    async def send(self, payload: str) -> None:
        if self.fail:
            raise ConnectionError("connection lost")
        self.sent.append(payload)


def barrier(channel: Channel) -> NotifyBarrier:
    return NotifyBarrier(channel.send, logging.getLogger("test"))


async def settle():
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_caller_passes_only_on_a_barrier_sent_after_it_arrived():
    channel = Channel()
    b = barrier(channel)
    first = asyncio.ensure_future(b.passed())
    await settle()
    assert channel.sent == ["1"]
    late = asyncio.ensure_future(b.passed())  # arrives while barrier 1 is in flight
    another = asyncio.ensure_future(b.passed())
    await settle()
    assert channel.sent == ["1"], "one barrier in flight at a time"
    b.received("1")
    await settle()
    assert first.done() and first.result() is True
    assert not late.done() and not another.done(), "barrier 1 may predate them"
    assert channel.sent == ["1", "2"], "the next barrier goes out when 1 came back"
    b.received("2")
    await settle()
    assert late.result() is True and another.result() is True  # one round trip for both


async def test_a_barrier_that_does_not_come_back_in_time_answers_false():
    channel = Channel()
    b = barrier(channel)
    assert await b.passed(timeout=0.05) is False
    b.received("1")  # late: the next caller still needs a barrier of its own
    waiting = asyncio.ensure_future(b.passed(timeout=5))
    await settle()
    assert channel.sent == ["1", "2"] and not waiting.done()
    b.received("2")
    assert await waiting is True


async def test_a_lost_connection_fails_every_waiting_caller_and_old_barriers_no_longer_count():
    channel = Channel()
    b = barrier(channel)
    waiting = asyncio.ensure_future(b.passed(timeout=5))
    await settle()
    b.reset()  # the connection was lost
    assert await waiting is False
    b.received("1")  # delivered after the reset: ignored
    channel.fail = True
    assert await b.passed(timeout=5) is False  # the send fails at once: read the row
    channel.fail = False
    waiting = asyncio.ensure_future(b.passed(timeout=5))
    await settle()
    b.received(channel.sent[-1])
    assert await waiting is True
