"""The Outposts a hub talks to: their settings and an async client of their REST API.

``c.OutpostSpawner.outposts`` is a dict ``name -> settings``; :func:`parse_outposts`
checks it once and turns every entry into an :class:`Outpost`. :class:`OutpostAPI` sends
the wire-contract requests (``/services``, ``/flavors``) with the hub's HTTP Basic
credentials, TLS verification on by default, and turns every failure into an
:class:`OutpostError` whose message can be shown to a user (it never carries the secret).
"""

from __future__ import annotations

import base64
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from .. import strict_json

log = logging.getLogger("jupyterhub_outpost.hub.outposts")

OUTPOST_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,63}")  # used with fullmatch

_KNOWN_KEYS = {
    "url",
    "hub_name",
    "secret",
    "secret_file",
    "ca_certs",
    "ssh",
    "direct",
    "display_name",
    "description",
    "hub_api_url",
    "setuptunnel_targets",
    "flavors_update_token",
    "flavors_update_token_file",
}
_SSH_KEYS = {"host", "port", "user", "host_key"}


class OutpostConfigError(ValueError):
    """``c.OutpostSpawner.outposts`` is malformed; the message names the entry and key."""


class OutpostError(Exception):
    """A request to an Outpost failed.

    ``message`` is safe to show to a user (the Outpost's own JSON message, or a short
    description of the transport error); ``status`` is the HTTP status or 0 when no
    answer arrived.
    """

    def __init__(self, message: str, *, status: int = 0):
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class SSHEndpoint:
    """Where the tunnel daemon connects for this Outpost's forwards."""

    host: str
    port: int
    user: str
    host_key: str

    def as_dict(self) -> dict:
        return {"host": self.host, "port": self.port, "user": self.user, "host_key": self.host_key}


@dataclass(frozen=True)
class Outpost:
    """One entry of ``c.OutpostSpawner.outposts`` after validation."""

    name: str
    url: str
    hub_name: str
    secret: str = field(repr=False)
    ca_certs: str | None = None
    ssh: SSHEndpoint | None = None
    direct: bool = False
    display_name: str = ""
    description: str = ""
    hub_api_url: str | None = None
    setuptunnel_targets: tuple[str, ...] | None = None
    # the token with which this Outpost (and only it) reports its flavor usage; "": none
    flavors_update_token: str = field(default="", repr=False)

    @property
    def label(self) -> str:
        return self.display_name or self.name

    def auth_header(self) -> str:
        raw = f"{self.hub_name}:{self.secret}".encode()
        return "Basic " + base64.b64encode(raw).decode()


def _require(cond: bool, msg: str) -> None:
    if not cond:
        raise OutpostConfigError(msg)


def _secret(settings: dict, key: str, where: str) -> str | None:
    """``settings[key]``, or the stripped content of the file ``settings[key + "_file"]``;
    None when neither is given."""
    value, path = settings.get(key), settings.get(f"{key}_file")
    _require(value is None or path is None, f"{where}: give '{key}' or '{key}_file', not both")
    if path is not None:
        try:
            value = Path(path).read_text().strip()
        except (OSError, TypeError) as e:
            reason = getattr(e, "strerror", None) or str(e)
            raise OutpostConfigError(
                f"{where}['{key}_file']: cannot read {path}: {reason}"
            ) from None
    _require(value is None or isinstance(value, str), f"{where}['{key}']: must be a string")
    return value


def parse_outpost(name: str, settings: dict) -> Outpost:
    """Validate one entry of ``c.OutpostSpawner.outposts`` (see docs/hub.md)."""
    where = f"c.OutpostSpawner.outposts[{name!r}]"
    _require(
        isinstance(name, str) and bool(OUTPOST_NAME_RE.fullmatch(name)),
        f"{where}: an Outpost name must match [A-Za-z0-9_-]{{1,63}}",
    )
    _require(isinstance(settings, dict), f"{where}: must be a dict")
    unknown = set(settings) - _KNOWN_KEYS
    _require(not unknown, f"{where}: unknown keys {sorted(unknown)}; known: {sorted(_KNOWN_KEYS)}")
    url = settings.get("url", "")
    parsed = urlparse(url) if isinstance(url, str) else None
    _require(
        bool(parsed) and parsed.scheme in ("http", "https") and bool(parsed.netloc),
        f"{where}['url']: an http(s) URL of the Outpost REST API is required",
    )
    hub_name = settings.get("hub_name", "")
    _require(
        isinstance(hub_name, str) and bool(hub_name),
        f"{where}['hub_name']: the hub's user name at this Outpost is required",
    )
    _require(
        (settings.get("secret") is None) != (settings.get("secret_file") is None),
        f"{where}: give exactly one of 'secret' and 'secret_file'",
    )
    secret = _secret(settings, "secret", where)
    _require(bool(secret), f"{where}: the secret is empty")
    direct = settings.get("direct", False)
    _require(isinstance(direct, bool), f"{where}['direct']: must be true or false")
    ssh = None
    if settings.get("ssh") is not None:
        s = settings["ssh"]
        _require(isinstance(s, dict), f"{where}['ssh']: must be a dict")
        unknown = set(s) - _SSH_KEYS
        _require(not unknown, f"{where}['ssh']: unknown keys {sorted(unknown)}")
        _require(
            all(s.get(k) for k in ("host", "user", "host_key")),
            f"{where}['ssh']: host, user and host_key (the pinned public key line) are required",
        )
        port = s.get("port", 8022)
        _require(
            isinstance(port, int) and 0 < port < 65536, f"{where}['ssh']['port']: invalid port"
        )
        _require(
            str(s["host_key"]).startswith(("ssh-", "ecdsa-", "sk-")),
            f"{where}['ssh']['host_key']: expected an OpenSSH public key line ('ssh-ed25519 AAAA...')",
        )
        ssh = SSHEndpoint(
            host=str(s["host"]), port=port, user=str(s["user"]), host_key=str(s["host_key"]).strip()
        )
    _require(
        direct or ssh is not None,
        f"{where}: an Outpost that is not 'direct' needs 'ssh' settings for its tunnels",
    )
    targets = settings.get("setuptunnel_targets")
    if targets is not None:
        _require(
            isinstance(targets, (list, tuple)) and all(isinstance(t, str) for t in targets),
            f"{where}['setuptunnel_targets']: must be a list of 'host-glob-or-CIDR:port-or-range'",
        )
        targets = tuple(targets)
    hub_api_url = settings.get("hub_api_url")
    if hub_api_url is not None:
        _require(
            isinstance(hub_api_url, str) and urlparse(hub_api_url).scheme in ("http", "https"),
            f"{where}['hub_api_url']: must be an http(s) URL",
        )
    return Outpost(
        name=name,
        url=url.rstrip("/"),
        hub_name=hub_name,
        secret=secret,
        ca_certs=settings.get("ca_certs"),
        ssh=ssh,
        direct=direct,
        display_name=str(settings.get("display_name") or ""),
        description=str(settings.get("description") or ""),
        hub_api_url=hub_api_url.rstrip("/") if hub_api_url else None,
        setuptunnel_targets=targets,
        flavors_update_token=_secret(settings, "flavors_update_token", where) or "",
    )


def parse_outposts(settings: dict, *, on_error=None) -> dict[str, Outpost]:
    """Validate all of ``c.OutpostSpawner.outposts``; keeps the configured order.

    Without ``on_error`` the first malformed entry raises OutpostConfigError. With it,
    ``on_error(message)`` is called for each malformed entry, which is left out, so that
    one misconfigured Outpost does not take the others down.
    """
    if not isinstance(settings, dict):
        raise OutpostConfigError("c.OutpostSpawner.outposts must be a dict: name -> settings")
    out = {}
    for name, value in settings.items():
        try:
            out[name] = parse_outpost(name, value)
        except OutpostConfigError as e:
            if on_error is None:
                raise
            on_error(f"{e} (this Outpost is not offered)")
    return out


def _error_message(body: bytes, status: int, what: str) -> str:
    """The Outpost's own message from a JSON error body, or a short fallback."""
    try:
        data = strict_json.loads(body or b"")
    except ValueError:
        data = None
    if isinstance(data, dict):
        for key in ("message", "error", "detail", "reason"):
            if isinstance(data.get(key), str) and data[key]:
                return data[key][:2000]
    return f"{what} failed with HTTP {status}"


# HTTPRequest options c.OutpostSpawner.request_kwargs may not set: TLS verification stays
# on (give the Outpost's "ca_certs" for a private CA), and the API's own arguments
_FIXED_REQUEST_KWARGS = {"validate_cert", "url", "method", "headers", "body"}


def checked_request_kwargs(kwargs: dict | None) -> dict:
    """``request_kwargs`` without the options this client keeps to itself."""
    kwargs = dict(kwargs or {})
    refused = sorted(set(kwargs) & _FIXED_REQUEST_KWARGS)
    if refused:
        log.warning(
            "c.OutpostSpawner.request_kwargs: ignoring %s (TLS verification stays on; set the "
            "Outpost's ca_certs for a private CA)",
            ", ".join(refused),
        )
    return {k: v for k, v in kwargs.items() if k not in _FIXED_REQUEST_KWARGS}


class OutpostAPI:
    """Async client of one Outpost's REST API (the wire contract in ARCHITECTURE.md)."""

    def __init__(
        self,
        outpost: Outpost,
        *,
        timeout: float = 30,
        extra_headers: dict | None = None,
        services_url: str | None = None,
        request_kwargs: dict | None = None,
    ):
        self.outpost = outpost
        self.timeout = timeout
        self.extra_headers = dict(extra_headers or {})
        self.request_kwargs = checked_request_kwargs(request_kwargs)
        self.services_url = (services_url or f"{outpost.url}/services").rstrip("/")

    async def request(
        self,
        method: str,
        url: str,
        body: Any = None,
        *,
        timeout: float | None = None,
        what: str = "",
        headers: dict | None = None,
    ) -> tuple[int, Any]:
        """Send one request; returns (status, decoded JSON or None). Raises OutpostError."""
        hdrs = {"Accept": "application/json", "Authorization": self.outpost.auth_header()}
        if body is not None:
            hdrs["Content-Type"] = "application/json"
        hdrs.update(self.extra_headers)
        hdrs.update(headers or {})
        t = timeout or self.timeout
        options = {
            "connect_timeout": min(t, 20),
            "request_timeout": t,
            "ca_certs": self.outpost.ca_certs,
            "follow_redirects": False,
        }
        options.update(self.request_kwargs)
        if timeout:  # a per-call timeout (start, flavors) wins over request_kwargs
            options["request_timeout"] = t
        req = HTTPRequest(
            url,
            method=method,
            headers=hdrs,
            body=json.dumps(body) if body is not None else None,
            validate_cert=True,
            **options,
        )
        what = what or f"{method} {urlparse(url).path}"
        try:
            resp = await AsyncHTTPClient().fetch(req)
        except HTTPClientError as e:
            if e.response is None:
                raise OutpostError(
                    f"Outpost {self.outpost.name!r} did not answer {what}: {e.message}",
                    status=e.code,
                ) from None
            raise OutpostError(
                _error_message(e.response.body, e.code, what), status=e.code
            ) from None
        except OSError as e:
            raise OutpostError(
                f"Outpost {self.outpost.name!r} is not reachable for {what}: {e.strerror or e}"
            ) from None
        if not resp.body:
            return resp.code, None
        try:
            return resp.code, strict_json.loads(resp.body)
        except ValueError:
            raise OutpostError(
                f"Outpost {self.outpost.name!r} answered {what} with invalid JSON", status=resp.code
            ) from None

    def service_url(self, name: str, start_id: str = "") -> str:
        url = f"{self.services_url}/{quote(name, safe='')}"
        if start_id:
            url += f"/{quote(start_id, safe='')}"
        return url

    async def start(
        self, body: dict, *, timeout: float | None = None, asynchronous: bool = False
    ) -> dict:
        """POST /services. Returns ``{"service": "host:port" or ""}``; with ``asynchronous``
        (header ``execution-type: async``) an Outpost may answer 202 instead, returned as
        ``{"accepted": True}``: the start goes on and :meth:`find` tells how it ends."""
        headers = {"execution-type": "async"} if asynchronous else None
        status, data = await self.request(
            "POST",
            self.services_url,
            body,
            timeout=timeout,
            what="the start request",
            headers=headers,
        )
        if status == 202:
            return {"accepted": True}
        if not isinstance(data, dict) or not isinstance(data.get("service", ""), str):
            raise OutpostError(
                f"Outpost {self.outpost.name!r} answered the start request without a service address"
            )
        return data

    async def list(self) -> list[dict]:
        """GET /services: this hub's servers at the Outpost (name, start_id, status, ...)."""
        _, data = await self.request("GET", self.services_url, what="the list request")
        items = data.get("services") if isinstance(data, dict) else data
        return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []

    async def find(self, name: str, start_id: str = "") -> dict | None:
        """This hub's entry of ``name`` in GET /services (status, service, error), or None."""
        for item in await self.list():
            if item.get("name") == name and (
                not start_id or not item.get("start_id") or item.get("start_id") == start_id
            ):
                return item
        return None

    async def status(self, name: str, start_id: str) -> Any:
        """The ``status`` of a server: None while running, an exit code when it ended.

        Raises OutpostError with status 404 when the Outpost does not know the server.
        """
        _, data = await self.request(
            "GET", self.service_url(name, start_id), what="the status request"
        )
        if not isinstance(data, dict):
            raise OutpostError(
                f"Outpost {self.outpost.name!r} answered the status request without JSON"
            )
        return data.get("status")

    async def stop(self, name: str, start_id: str) -> bool:
        """Stop a server; False when the Outpost did not know it (404)."""
        try:
            await self.request("DELETE", self.service_url(name, start_id), what="the stop request")
        except OutpostError as e:
            if e.status == 404:
                return False
            raise
        return True

    async def user_flavors(self, authentication: dict) -> dict:
        """POST /userflavors: the flavors of one user (the Outpost's per-user rules)."""
        _, data = await self.request(
            "POST",
            f"{self.outpost.url}/userflavors",
            authentication,
            what="the user flavors request",
            timeout=min(self.timeout, 10),
        )
        if not isinstance(data, dict):
            raise OutpostError(
                f"Outpost {self.outpost.name!r} answered the user flavors request without a "
                "JSON object"
            )
        return data

    async def flavors(self) -> dict:
        _, data = await self.request(
            "GET",
            f"{self.outpost.url}/flavors",
            what="the flavors request",
            timeout=min(self.timeout, 10),
        )
        if not isinstance(data, dict):
            raise OutpostError(
                f"Outpost {self.outpost.name!r} answered the flavors request without a JSON object"
            )
        return data
