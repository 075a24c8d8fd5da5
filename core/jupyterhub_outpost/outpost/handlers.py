"""REST handlers of the Outpost wire contract (see ``openapi.json``).

Every answer is JSON; errors are ``{"error": message}`` with a message a person can act
on, never a traceback. Order of checks on POST /services: credentials (401), size (413),
JSON and schema (400), override policy (403), name and flavor (409/403), start.
"""

import json
import logging
import os
import re

from tornado import web

from . import logcontext
from .errors import OutpostError
from .schema import check_env_names, is_name, openapi_document, parse_json_body, validate

REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")  # used with fullmatch
_DATABASE_MODULES = ("sqlalchemy", "asyncpg", "aiosqlite")


def database_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` says the store's database cannot be reached (not a bug of ours).

    SQLAlchemy's connection errors, or an OSError/driver error raised from inside the
    database libraries (asyncpg lets ConnectionRefusedError through on connect).
    """
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)):
        return True
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, OSError) or type(exc).__module__.startswith("asyncpg"):
        tb = exc.__traceback__
        while tb is not None:
            if tb.tb_frame.f_globals.get("__name__", "").startswith(_DATABASE_MODULES):
                return True
            tb = tb.tb_next
    return False


def request_id_of(headers) -> str:
    """The request's id: the client's X-Request-Id when it is a plain token, else new."""
    incoming = headers.get("X-Request-Id", "")
    return incoming if REQUEST_ID_RE.fullmatch(incoming) else os.urandom(6).hex()


class BaseHandler(web.RequestHandler):
    hub: str | None = None
    server_name: str | None = None
    auth_challenge = 'Basic realm="jupyterhub-outpost"'  # WWW-Authenticate of a 401

    @property
    def outpost(self):
        return self.settings["outpost"]

    @property
    def manager(self):
        return self.outpost.manager

    def set_default_headers(self):
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")

    def initialize(self, request_id: str | None = None):
        """``request_id``: the id already given to this request (poll_fastpath.py)."""
        self.request_id = request_id or request_id_of(self.request.headers)
        self.set_header("X-Request-Id", self.request_id)
        self.log_context = logcontext.set_context(request_id=self.request_id)
        self.log = self.outpost.log  # lines get the context prefix (logcontext.ContextFilter)

    def write_json(self, value, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(value))

    def authenticate(self) -> str:
        hub = self.outpost.credentials.check_basic(self.request.headers.get("Authorization"))
        if hub is None:
            raise OutpostError(
                401,
                "Missing or wrong credentials: use HTTP Basic auth with your hub's name "
                "and the secret the Outpost administrator gave you.",
            )
        self.hub = hub
        self.log_context["hub"] = hub
        return hub

    def user_body(self) -> dict:
        """The JSON object a hub sent about one of its users (POST /userflavors, /usercredits)."""
        if len(self.request.body) > self.outpost.max_body_size:
            raise OutpostError(413, "The request body is larger than this Outpost accepts.")
        return parse_json_body(self.request.body)

    def is_async(self) -> bool:
        return self.request.headers.get("execution-type", "").strip().lower() == "async"

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, OutpostError):
            message = exc.message
        elif isinstance(exc, web.HTTPError) and status_code < 500:
            message = exc.log_message or self._reason
        elif status_code == 405:
            message = f"Method {self.request.method} is not allowed on {self.request.path}."
        elif status_code < 500:
            message = self._reason
        else:
            message = (
                f"Internal error of the Outpost (request id {self.request_id}); its "
                "administrator finds the details in the Outpost's log."
            )
        # send_error cleared the headers set before the error: set ours again
        self.set_header("X-Request-Id", self.request_id)
        if status_code == 401:
            self.set_header("WWW-Authenticate", self.auth_challenge)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps({"error": message}))

    def log_exception(self, typ, value, tb):
        if isinstance(value, OutpostError):
            level = logging.ERROR if value.status_code >= 500 else logging.INFO
            self.log.log(
                level,
                "%s %s -> %s: %s",
                self.request.method,
                self.request.path,
                value.status_code,
                value.message,
            )
            return
        if isinstance(value, web.HTTPError) and value.status_code < 500:
            return
        self.log.error(
            "Unexpected error in %s %s",
            self.request.method,
            self.request.path,
            exc_info=(typ, value, tb),
        )

    def _handle_request_exception(self, e):
        if isinstance(e, OutpostError):
            self.log_exception(type(e), e, e.__traceback__)
            if self._finished:
                return
            self.send_error(e.status_code, exc_info=(type(e), e, e.__traceback__))
            return
        if database_unavailable(e):
            self.log.error(
                "%s %s -> 503: the database is not reachable (%s: %s)",
                self.request.method,
                self.request.path,
                type(e).__name__,
                (str(e).splitlines() or [""])[0][:200],  # never the SQL parameters
            )
            if not self._finished:
                unavailable = OutpostError(
                    503,
                    "The Outpost's database is not reachable; nothing was changed. Try again "
                    "later (the Outpost reconnects by itself).",
                )
                self.send_error(503, exc_info=(OutpostError, unavailable, None))
            return
        super()._handle_request_exception(e)


class PingHandler(BaseHandler):
    def get(self):
        from jupyterhub_outpost import __version__

        self.write_json({"status": "ok", "version": __version__})


class OpenAPIHandler(BaseHandler):
    def get(self):
        self.write_json(openapi_document())


@web.stream_request_body
class ServicesHandler(BaseHandler):
    """GET /services (list) and POST /services (start)."""

    def prepare(self):
        self._chunks: list[bytes] = []
        self._size = 0
        self.authenticate()
        limit = self.outpost.max_body_size
        if self.request.method == "POST":
            # read (and drop) up to 16x the limit so the 413 reaches the client intact
            self.request.connection.set_max_body_size(max(limit * 16, 1 << 20))
            declared = self.request.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > limit * 16:
                self._too_large()

    def _too_large(self):
        raise OutpostError(
            413,
            f"The request body is larger than this Outpost accepts "
            f"({self.outpost.max_body_size} bytes, c.JupyterHubOutpost.max_body_size).",
        )

    def data_received(self, chunk: bytes):
        self._size += len(chunk)
        if self._size <= self.outpost.max_body_size:
            self._chunks.append(chunk)

    async def get(self):
        self.write_json(await self.manager.list(self.hub))

    async def post(self):
        try:
            if self._size > self.outpost.max_body_size:
                self._too_large()
            body = parse_json_body(b"".join(self._chunks))
            validate("StartRequest", body)
            check_env_names(body.get("env") or {})
            self.server_name = self.log_context["server"] = body["name"]
            background = self.is_async()
            result = await self.manager.start(self.hub, body, background=background)
        except OutpostError as e:
            if self.outpost.metrics is not None:
                self.outpost.metrics.start_failed(self.hub, e)
            raise
        except Exception as e:
            if self.outpost.metrics is not None and database_unavailable(e):
                self.outpost.metrics.start_failed(self.hub, OutpostError(503, ""))
            raise
        self.write_json(result, 202 if background else 200)


class ServiceHandler(BaseHandler):
    """GET (poll) and DELETE (stop) /services/{name}[/{start_id}]."""

    def initialize(self, request_id: str | None = None, poll_error: Exception | None = None):
        """``poll_error``: this poll already failed in poll_fastpath.py; GET raises it."""
        super().initialize(request_id)
        self.poll_error = poll_error

    def prepare(self):
        self.authenticate()

    def _check(self, name: str, start_id: str | None):
        self.server_name = self.log_context["server"] = name
        if not is_name(name) or (start_id is not None and not is_name(start_id)):
            raise OutpostError(404, f"No server {name!r} on this Outpost.")

    def collect_logs(self) -> bool:
        """``?collect_logs=true``: the answer carries the server's last log lines."""
        return self.get_query_argument("collect_logs", "").lower() in ("true", "1", "yes")

    async def get(self, name: str, start_id: str | None = None):
        self._check(name, start_id)
        if self.poll_error is not None:
            raise self.poll_error
        result = await self.manager.poll(self.hub, name, start_id)
        if self.collect_logs():
            result = dict(result, logs=self.manager.server_logs.lines(self.hub, name))
        self.write_json(result)

    async def delete(self, name: str, start_id: str | None = None):
        self._check(name, start_id)
        background = self.is_async()
        lines = await self.manager.stop(self.hub, name, start_id, background=background)
        self.write_json({"logs": lines} if self.collect_logs() else {}, 202 if background else 200)


class FlavorsHandler(BaseHandler):
    def prepare(self):
        self.authenticate()

    async def get(self):
        self.write_json(await self.manager.flavors(self.hub))


class UserFlavorsHandler(BaseHandler):
    """POST /userflavors: the flavors of one user of this hub (body: what the hub knows of
    the user, e.g. {"name", "groups"}), as the original Outpost answers it."""

    def prepare(self):
        self.authenticate()

    async def post(self):
        self.write_json(await self.manager.user_flavors(self.hub, self.user_body()))


class CreditsHandler(BaseHandler):
    """GET /credits/: this hub's flavor credit values and billed server starts."""

    def prepare(self):
        self.authenticate()

    async def get(self):
        self.write_json(await self.manager.credits(self.hub))


class UserCreditsHandler(BaseHandler):
    """POST /usercredits: the same for one user (body as for /userflavors; the user is its
    "name")."""

    def prepare(self):
        self.authenticate()

    async def post(self):
        self.write_json(await self.manager.credits(self.hub, self.user_body()))


class NotFoundHandler(BaseHandler):
    def prepare(self):
        raise OutpostError(
            404, f"No such endpoint: {self.request.path} (see /openapi.json for the API)."
        )


def routes() -> list:
    return [
        (r"/ping/?", PingHandler),
        (r"/openapi\.json", OpenAPIHandler),
        (r"/services/?", ServicesHandler),
        (r"/services/([^/]+)/?", ServiceHandler),
        (r"/services/([^/]+)/([^/]+)/?", ServiceHandler),
        (r"/flavors/?", FlavorsHandler),
        (r"/userflavors/?", UserFlavorsHandler),
        (r"/credits/?", CreditsHandler),
        (r"/usercredits/?", UserCreditsHandler),
    ]
