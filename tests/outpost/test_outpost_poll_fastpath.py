"""Polls of running servers answered in front of the Tornado application
(outpost/poll_fastpath.py): the same bytes as the application's answer, the same
credentials and hub separation, and everything else handed to the application."""

import asyncio
import io
import logging

from jupyterhub_outpost.outpost import handlers

from tests.helpers.outpost_process import basic_auth

from .support import fetch_or_none, start_body, wait_for


async def _start(outpost, name):
    code, data = await outpost.api.call("POST", "/services", body=start_body(name))
    assert code == 200, data
    await wait_for(lambda: fetch_or_none(data["service"]), f"{name} answers")


def _count_application_polls(monkeypatch) -> list:
    """ServiceHandler.get's calls (the application's poll handler), recorded."""
    calls = []
    get = handlers.ServiceHandler.get

    async def counted(self, *args):
        calls.append(self.request.path)
        return await get(self, *args)

    monkeypatch.setattr(handlers.ServiceHandler, "get", counted)
    return calls


class Connection:
    """One keep-alive HTTP/1.1 connection, answers read as (status line, headers, body)."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, outpost):
        return cls(*await asyncio.open_connection("127.0.0.1", outpost.app.port))

    async def get(self, path: str, headers: dict) -> tuple[str, list, bytes]:
        lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        status, *fields = head.strip().split("\r\n")
        pairs = [tuple(field.split(": ", 1)) for field in fields]
        length = int(dict(pairs)["Content-Length"])
        return status, pairs, await self.reader.readexactly(length)

    def close(self):
        self.writer.close()


def _requests(outpost, code: int) -> float:
    labels = {"route": "/services/{name}", "method": "GET", "code": str(code)}
    value = outpost.app.metrics.registry.get_sample_value("outpost_http_requests_total", labels)
    return value or 0.0


async def test_a_running_servers_poll_is_answered_byte_for_byte_as_the_application_does(
    outpost, monkeypatch
):
    await _start(outpost, "a")
    calls = _count_application_polls(monkeypatch)
    auth = basic_auth("hub1", outpost.api.hubs["hub1"])
    connection = await Connection.open(outpost)
    try:
        fast = await connection.get("/services/a", {**auth, "X-Request-Id": "poll-1"})
        assert calls == []  # answered in front of the application
        # If-None-Match is one of the requests the fast path leaves to the application
        slow = await connection.get(
            "/services/a", {**auth, "X-Request-Id": "poll-1", "If-None-Match": '"other"'}
        )
        assert calls == ["/services/a"]
        again = await connection.get("/services/a", {**auth, "X-Request-Id": "poll-1"})
    finally:
        connection.close()
    assert fast[0] == slow[0] == "HTTP/1.1 200 OK"
    assert fast[2] == slow[2] == b'{"status": null}'

    def without_date(pairs):
        return [pair for pair in pairs if pair[0] != "Date"]

    assert without_date(fast[1]) == without_date(slow[1]) == without_date(again[1])
    assert [name for name, _ in fast[1]] == [name for name, _ in slow[1]]
    assert ("X-Request-Id", "poll-1") in fast[1]
    assert calls == ["/services/a"] and _requests(outpost, 200) == 3


async def test_polls_it_does_not_answer_get_the_applications_answer(outpost, monkeypatch):
    await _start(outpost, "a")
    calls = _count_application_polls(monkeypatch)
    api = outpost.api
    # another hub's poll of hub1's running server: never found
    assert (await api.call("GET", "/services/a", hub="hub2"))[0] == 404
    assert (await api.call("GET", "/services/a", secret="wrong"))[0] == 401
    assert (await api.call("GET", "/services/a", hub=None))[0] == 401
    code, data = await api.call("GET", "/services/a?collect_logs=true")
    assert code == 200 and data["status"] is None and data["logs"]
    assert await api.call("GET", "/services/%61") == (200, {"status": None})  # "a", escaped
    assert calls == ["/services/a", "/services/a", "/services/%61"]  # hub2, logs, escaped
    assert (await api.call("GET", "/services/no-such"))[0] == 404
    # an indexed server under another start id: the poll fails, the application answers
    code, data = await api.call("GET", "/services/a/other-start")
    assert code == 404 and data == {
        "error": "No server 'a' with start id 'other-start' on this Outpost."
    }
    assert calls[-1] == "/services/a/other-start"


async def test_a_failing_poll_is_answered_and_logged_by_the_application_with_its_request_id(
    outpost,
):
    await _start(outpost, "a")
    manager = outpost.app.manager
    spawner = manager._spawners[manager._running[("hub1", "a")]].spawner

    async def broken_poll():
        raise RuntimeError("the spawner's poll broke")

    spawner.poll = broken_poll
    written = io.StringIO()
    handler = logging.StreamHandler(written)
    outpost.app.log.addHandler(handler)
    try:
        code, data = await outpost.api.call(
            "GET", "/services/a", headers={"X-Request-Id": "failing-poll"}
        )
    finally:
        outpost.app.log.removeHandler(handler)
        del spawner.poll
    assert code == 500
    assert "request id failing-poll" in data["error"] and "broke" not in data["error"]
    log = written.getvalue()
    assert "[req=failing-poll hub=hub1 server=a] Unexpected error in GET /services/a" in log
    assert "RuntimeError: the spawner's poll broke" in log
    assert "500 GET /services/a " in log
    assert _requests(outpost, 500) == 1
    assert await outpost.api.call("GET", "/services/a") == (200, {"status": None})


async def test_polls_under_the_base_path_are_answered_in_front_too(make_outpost, monkeypatch):
    outpost = await make_outpost(base_path="/outpost/")
    await _start(outpost, "a")
    calls = _count_application_polls(monkeypatch)
    for path in ("/outpost/services/a", "/services/a/", "/outpost/services/a/"):
        assert await outpost.api.call("GET", path) == (200, {"status": None}), path
    assert calls == []
    assert (await outpost.api.call("GET", "/other/services/a"))[0] == 404


async def test_a_client_gone_during_a_slow_poll_leaves_no_error(outpost, caplog):
    await _start(outpost, "a")
    manager = outpost.app.manager
    spawner = manager._spawners[manager._running[("hub1", "a")]].spawner
    polled = asyncio.Event()

    async def slow_poll():
        await polled.wait()  # answers once the client is gone
        return None

    spawner.poll = slow_poll
    written = io.StringIO()
    handler = logging.StreamHandler(written)
    outpost.app.log.addHandler(handler)
    try:
        connection = await Connection.open(outpost)
        auth = basic_auth("hub1", outpost.api.hubs["hub1"])
        head = "".join(f"{k}: {v}\r\n" for k, v in auth.items())
        connection.writer.write(f"GET /services/a HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode())
        await connection.writer.drain()
        answering = outpost.app.http_server.request_callback.answering  # FastPolls
        await wait_for(lambda: answering, "the poll is under way")
        connection.close()
        await wait_for(lambda: connection.writer.is_closing(), "the client is gone")
        polled.set()
        await wait_for(lambda: not answering, "the poll answered the closed connection")
    finally:
        outpost.app.log.removeHandler(handler)
        del spawner.poll
    assert "Traceback" not in written.getvalue()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert await outpost.api.call("GET", "/services/a") == (200, {"status": None})
