"""Prometheus metrics at GET /metrics, protected by ``metrics_token``, and the access log.

Each app has its own registry (several apps may live in one test process). Metrics never
carry secrets; labels are hub, route pattern, method and status code.
"""

import hmac
import logging
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from tornado import web

from .errors import OutpostError
from .handlers import BaseHandler


class Metrics:
    def __init__(self, app):
        self.app = app
        self.registry = CollectorRegistry()
        self._children: dict[tuple, tuple] = {}  # (route, method, status) -> metrics
        self.requests = Counter(
            "outpost_http_requests_total",
            "HTTP requests by route, method and status code",
            ["route", "method", "code"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "outpost_http_request_duration_seconds",
            "HTTP request duration by route and method",
            ["route", "method"],
            registry=self.registry,
        )
        self.starts = Counter(
            "outpost_starts_total",
            "Server starts by hub and outcome (started, failed)",
            ["hub", "outcome"],
            registry=self.registry,
        )
        self.start_seconds = Histogram(
            "outpost_start_duration_seconds",
            "Time from an admitted start request to the server's address (or failure)",
            ["hub"],
            buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
            registry=self.registry,
        )
        self.active = Gauge(
            "outpost_active_servers",
            "Servers starting or running, by hub (refreshed at each scrape)",
            ["hub"],
            registry=self.registry,
        )
        self.servers = Gauge(
            "outpost_servers",
            "Servers starting or running, by hub, flavor ('' for none) and state "
            "(refreshed at each scrape)",
            ["hub", "flavor", "state"],
            registry=self.registry,
        )
        self.start_failures = Counter(
            "outpost_start_failures_total",
            "Start requests that did not end in a running server, by hub and reason "
            "(invalid_request, flavor_full, flavor_forbidden, "
            "conflict, cancelled, too_large, spawner_error, timeout, database_unavailable)",
            ["hub", "reason"],
            registry=self.registry,
        )

    def start_failed(self, hub: str, error) -> None:
        """Count a refused or failed start (an OutpostError) once."""
        if not getattr(error, "counted", False):
            error.counted = True
            self.start_failures.labels(hub, getattr(error, "reason", "error")).inc()

    def observe_start(self, hub: str, outcome: str, seconds: float) -> None:
        self.starts.labels(hub, outcome).inc()
        self.start_seconds.labels(hub).observe(seconds)

    def routes(self) -> list:
        return [(r"/metrics", MetricsHandler)]

    def log_request(self, handler: web.RequestHandler) -> None:
        """Tornado's log_function: one access line per request (never credentials)."""
        self.record(
            _route_of(handler),
            handler.request.method,
            handler.get_status(),
            handler.request.request_time(),
            handler.request.path,
        )

    def record(self, route: str, method: str, status: int, duration: float, path: str) -> None:
        """Count one answered request and write its access line (a poll answered by
        poll_fastpath.py comes here directly)."""
        children = self._children.get((route, method, status))
        if children is None:  # labels() costs a lock and a conversion of every label
            children = self._children[route, method, status] = (
                self.requests.labels(route, method, str(status)),
                self.request_seconds.labels(route, method),
            )
        children[0].inc()
        children[1].observe(duration)
        if status < 400:
            # probes, scrapes and answered polls (a hub polls each server every 30 s by
            # default) are routine: DEBUG; every other request is an INFO line
            routine = route in ("/ping", "/metrics") or (
                route == "/services/{name}" and method == "GET"
            )
            if routine and not self._debug_written():
                return  # no LogRecord for a line nobody writes: a fifth of a poll's CPU
            level = self.app.log.debug if routine else self.app.log.info
        elif status < 500:
            level = self.app.log.warning
        else:
            level = self.app.log.error
        # the [req=... hub=... server=...] prefix comes from logcontext.ContextFilter
        level(
            "%s %s %s %.1fms",
            status,
            method,
            path,
            duration * 1000,
            extra={"outpost_access_log": True},  # not a line of the server (server_logs)
        )

    def _debug_written(self) -> bool:
        """Does any handler of the Outpost's logger write DEBUG lines? (traitlets keeps the
        logger itself at DEBUG and sets ``log_level`` on its handlers; the per-server line
        buffer never keeps access lines.)"""
        log = self.app.log
        return log.isEnabledFor(logging.DEBUG) and any(
            handler.level <= logging.DEBUG
            for handler in log.handlers
            if getattr(handler, "keeps_access_lines", True)
        )

    async def render(self) -> bytes:
        self.active.clear()
        self.servers.clear()
        for row in await self.app.store.list_active():
            self.active.labels(row.hub).inc()
            self.servers.labels(row.hub, row.flavor or "", row.status).inc()
        return generate_latest(self.registry)


def _route_of(handler) -> str:
    name = type(handler).__name__
    return {
        "PingHandler": "/ping",
        "OpenAPIHandler": "/openapi.json",
        "ServicesHandler": "/services",
        "ServiceHandler": "/services/{name}",
        "FlavorsHandler": "/flavors",
        "UserFlavorsHandler": "/userflavors",
        "CreditsHandler": "/credits",
        "UserCreditsHandler": "/usercredits",
        "MetricsHandler": "/metrics",
    }.get(name, "other")


class MetricsHandler(BaseHandler):
    auth_challenge = 'Bearer realm="jupyterhub-outpost-metrics"'

    def prepare(self):
        token = self.outpost.metrics_token
        if not token:
            raise OutpostError(404, "Metrics are off: set c.JupyterHubOutpost.metrics_token.")
        scheme, _, value = self.request.headers.get("Authorization", "").partition(" ")
        given = value.strip() if scheme.lower() in ("token", "bearer") else ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise OutpostError(
                401, "Missing or wrong metrics token (Authorization: token ... or Bearer ...)."
            )

    async def get(self):
        start = time.monotonic()
        body = await self.app_metrics.render()
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.set_header("X-Render-Seconds", f"{time.monotonic() - start:.3f}")
        self.finish(body)

    @property
    def app_metrics(self) -> Metrics:
        return self.outpost.metrics
