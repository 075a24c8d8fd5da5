"""Polls of running servers answered in front of the Tornado application.

A hub polls each of its servers every 30 s by default, so polls are nearly all of an
Outpost's requests. For the common one, ``GET /services/{name}[/{start_id}]`` of a server
that the manager indexes as running (polls.py), Tornado's ``RequestHandler`` machinery
(routing, handler construction, header bookkeeping, ETag, flush) cost more than half of
the Outpost's CPU per poll. :class:`FastPolls` sits between ``HTTPServer`` and the
``web.Application``: it answers such a request itself, with the same credential check, the
same ``ServiceManager.poll``, the same answer (status, headers and JSON body as
``ServiceHandler`` writes them), the same metrics and the same access-log line. Every
other request goes to the application unchanged, decided before anything is done for it:
another method or path, a query string, percent-escapes, a body, ``If-None-Match``,
missing or wrong credentials, a name that is no server name, a server that is not indexed
as running. An exception of the poll itself (the spawner's poll, the database) is raised
again by the application's ``ServiceHandler`` for this request, which answers and logs it
as on the normal path.
"""

import asyncio
import hashlib
import json
import re
import time

import tornado
from tornado import httputil, web

from . import logcontext
from .handlers import ServiceHandler, request_id_of
from .schema import is_name

_OK = httputil.ResponseStartLine("HTTP/1.1", 200, "OK")
_SERVER = f"TornadoServer/{tornado.version}"
_HANDED_ON_HEADERS = ("Content-Length", "Transfer-Encoding", "If-None-Match")


class FastPolls(httputil.HTTPServerConnectionDelegate):
    """``HTTPServer``'s delegate: polls of running servers here, the rest to ``app``."""

    def __init__(self, app: web.Application, outpost, base_path: str = ""):
        self.app = app
        self.outpost = outpost
        prefix = base_path.strip("/")
        optional = f"(?:/{re.escape(prefix)})?" if prefix else ""  # as handlers' routes
        self.path_re = re.compile(optional + r"/services/([^/?%]+)(?:/([^/?%]+))?/?")
        self._date = (0, "")
        self.answering: set[asyncio.Task] = set()

    def start_request(self, server_conn, request_conn) -> httputil.HTTPMessageDelegate:
        return _PollDelegate(self, server_conn, request_conn)

    def on_close(self, server_conn) -> None:
        self.app.on_close(server_conn)

    def date(self) -> str:
        """The Date header (formatted once a second, as Tornado formats it)."""
        now = int(time.time())
        if self._date[0] != now:
            self._date = (now, httputil.format_timestamp(now))
        return self._date[1]

    def poll_of(self, start_line, headers) -> tuple[str, str, str | None] | None:
        """(hub, name, start id) when this request is a poll answered here, else None."""
        if start_line.method != "GET" or any(h in headers for h in _HANDED_ON_HEADERS):
            return None
        match = self.path_re.fullmatch(start_line.path)
        if match is None:
            return None
        name, start_id = match.groups()
        if not is_name(name) or (start_id is not None and not is_name(start_id)):
            return None
        hub = self.outpost.credentials.check_basic(headers.get("Authorization"))
        if hub is None or not self.outpost.manager.indexed(hub, name):
            return None
        return hub, name, start_id


class _PollDelegate(httputil.HTTPMessageDelegate):
    """One request: a poll is answered once Tornado read all of it (``finish``; answering
    earlier makes Tornado close the keep-alive connection), anything else is passed on to
    the application's delegate."""

    def __init__(self, fast: FastPolls, server_conn, request_conn):
        self.fast = fast
        self.server_conn = server_conn
        self.request_conn = request_conn
        self.delegate: httputil.HTTPMessageDelegate | None = None
        self.poll = None

    def headers_received(self, start_line, headers):
        self.poll = self.fast.poll_of(start_line, headers)
        if self.poll is None:
            self.delegate = self.fast.app.start_request(self.server_conn, self.request_conn)
            return self.delegate.headers_received(start_line, headers)
        self.start_line, self.headers, self.started = start_line, headers, time.time()
        return None

    def data_received(self, chunk):
        if self.delegate is not None:
            return self.delegate.data_received(chunk)
        return None

    def finish(self) -> None:
        if self.delegate is not None:
            self.delegate.finish()
            return
        task = asyncio.ensure_future(self._answer(*self.poll))
        self.fast.answering.add(task)  # the loop keeps only a weak reference
        task.add_done_callback(self.fast.answering.discard)

    def on_connection_close(self) -> None:
        if self.delegate is not None:
            self.delegate.on_connection_close()

    async def _answer(self, hub: str, name: str, start_id) -> None:
        request_id = request_id_of(self.headers)
        logcontext.set_context(request_id=request_id, hub=hub, server=name)
        outpost = self.fast.outpost
        try:
            result = await outpost.manager.poll(hub, name, start_id)
        except Exception as e:
            self._answer_error(e, request_id)
            return
        body = json.dumps(result).encode()
        # ServiceHandler's headers, in the order and spelling Tornado writes them
        answer = httputil.HTTPHeaders()
        answer["Server"] = _SERVER
        answer["Content-Type"] = "application/json; charset=utf-8"
        answer["Date"] = self.fast.date()
        answer["Cache-Control"] = "no-store"
        answer["X-Request-Id"] = request_id
        # Tornado's ETag of a 200 GET (a checksum, not a secret)
        answer["Etag"] = f'"{hashlib.sha1(body, usedforsecurity=False).hexdigest()}"'
        answer["Content-Length"] = str(len(body))
        self.request_conn.write_headers(_OK, answer, body)
        self.request_conn.finish()
        outpost.metrics.record(
            "/services/{name}", "GET", 200, time.time() - self.started, self.start_line.path
        )

    def _answer_error(self, error: Exception, request_id: str) -> None:
        """The poll failed: the application's ServiceHandler answers and logs ``error``
        as its own (``poll_error``), with this request's id."""
        request = httputil.HTTPServerRequest(
            connection=self.request_conn,
            server_connection=self.server_conn,
            start_line=self.start_line,
            headers=self.headers,
        )
        request._start_time = self.started  # the access line's duration covers the poll
        delegate = self.fast.app.get_handler_delegate(
            request,
            ServiceHandler,
            target_kwargs={"request_id": request_id, "poll_error": error},
            path_args=[arg.encode() for arg in self.poll[1:] if arg is not None],
        )
        delegate.headers_received(self.start_line, self.headers)
        delegate.finish()
