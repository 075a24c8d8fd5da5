"""The tunnel daemon's HTTP API (docs/internals.md, "Tunnel daemon API").

``Authorization: token <token>`` on everything but ``GET /ping``; the token is compared
in constant time. ``GET /metrics`` also takes the metrics token (``Bearer`` too, as
Prometheus sends it), which opens nothing else, so a scraper never holds the API token.
Errors are JSON ``{"message": ...}``.
"""

from __future__ import annotations

import hmac
import json

from tornado import web

from .. import strict_json
from .manager import ForwardConflict, ForwardManager
from .table import ForwardRequestError, check_key, parse_request


class APIHandler(web.RequestHandler):
    manager: ForwardManager

    def initialize(self, manager: ForwardManager, token: str, metrics_token: str = ""):
        self.manager = manager
        self.token = token
        self.metrics_token = metrics_token

    def set_default_headers(self):
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")

    def check_token(self) -> bool:
        return _token_matches(self.request, self.token, ("token",))

    def prepare(self):
        if not self.check_token():
            raise web.HTTPError(401, reason="missing or wrong API token")

    def write_error(self, status_code, **kwargs):
        message = self._reason
        exc_info = kwargs.get("exc_info")
        if exc_info:
            exc = exc_info[1]
            if isinstance(exc, web.HTTPError) and exc.log_message:
                message = exc.log_message
            elif not isinstance(exc, web.HTTPError):
                message = "internal error; see the tunnel daemon's log"
        self.finish(json.dumps({"message": message}))

    def fail(self, status: int, message: str):
        self.set_status(status)
        self.finish(json.dumps({"message": message}))


class PingHandler(APIHandler):
    def prepare(self):
        pass  # no auth

    def get(self):
        self.finish(json.dumps({"status": "ok"}))


class ForwardsHandler(APIHandler):
    def get(self):
        self.finish(json.dumps({"forwards": self.manager.list()}))


class ForwardHandler(APIHandler):
    async def put(self, key: str):
        try:
            check_key(key)
            try:
                body = strict_json.loads(self.request.body or b"")
            except ValueError as e:
                raise ForwardRequestError(f"the body is not JSON: {e}") from None
            ssh, target_host, target_port, local_port = parse_request(body)
        except ForwardRequestError as e:
            return self.fail(400, str(e))
        try:
            forward = await self.manager.put(
                key,
                ssh=ssh,
                target_host=target_host,
                target_port=target_port,
                local_port=local_port,
            )
        except ForwardConflict as e:
            return self.fail(409, str(e))
        self.finish(json.dumps(forward))

    def get(self, key: str):
        if key not in self.manager.specs:
            return self.fail(404, f"no forward {key!r}")
        self.finish(json.dumps(self.manager.describe(key)))

    async def delete(self, key: str):
        if not await self.manager.delete(key):
            return self.fail(404, f"no forward {key!r}")
        self.set_status(204)
        self.clear_header("Content-Type")
        self.finish()


class MetricsHandler(APIHandler):
    """Prometheus text format: the API token or the metrics token."""

    def check_token(self) -> bool:
        return super().check_token() or (
            bool(self.metrics_token)
            and _token_matches(self.request, self.metrics_token, ("token", "bearer"))
        )

    def get(self):
        exposition = getattr(self.manager.metrics, "exposition", None)
        if exposition is None:
            return self.fail(404, "metrics are not enabled in this daemon")
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish(exposition())


def _token_matches(request, expected: str, schemes: tuple[str, ...]) -> bool:
    """``Authorization: <scheme> <expected>``, compared in constant time."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() not in schemes or not value.strip():
        return False
    return hmac.compare_digest(value.strip().encode(), expected.encode())


def make_app(manager: ForwardManager, token: str, metrics_token: str = "") -> web.Application:
    args = {"manager": manager, "token": token, "metrics_token": metrics_token}
    return web.Application(
        [
            (r"/ping", PingHandler, args),
            (r"/metrics", MetricsHandler, args),
            (r"/forwards/?", ForwardsHandler, args),
            (r"/forwards/([^/]+)", ForwardHandler, args),
        ],
        xsrf_cookies=False,
    )
