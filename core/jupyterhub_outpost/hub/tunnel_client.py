"""Async client of the tunnel daemon API (``jupyterhub-outpost tunnels``).

The OutpostSpawner uses it to ask the daemon for a forward to a server and to remove it
again. Every failure is a :class:`TunnelDaemonError` that carries the daemon's message
(or says that the daemon could not be reached).
"""

from __future__ import annotations

import json
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest


class TunnelDaemonError(Exception):
    """A call to the tunnel daemon failed.

    ``status`` is the HTTP status (``None`` when the daemon could not be reached) and
    ``message`` the daemon's explanation, fit to show an operator.
    """

    def __init__(self, message: str, *, status: int | None = None, method: str = "", url: str = ""):
        self.message = message
        self.status = status
        self.method = method
        self.url = url
        where = f"{method} {url}".strip()
        prefix = f"tunnel daemon {where}" if where else "tunnel daemon"
        suffix = f" (HTTP {status})" if status else ""
        super().__init__(f"{prefix}: {message}{suffix}")


class TunnelClient:
    """Talks to one tunnel daemon at ``url`` with ``Authorization: token <token>``."""

    def __init__(self, url: str, token: str, *, timeout: float = 10):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    async def _request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        url = self.url + path
        headers = {"Authorization": f"token {self.token}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        request = HTTPRequest(
            url,
            method=method,
            headers=headers,
            body=json.dumps(body) if body is not None else None,
            connect_timeout=self.timeout,
            request_timeout=self.timeout,
        )
        try:
            response = await AsyncHTTPClient().fetch(request, raise_error=False)
        except (OSError, HTTPClientError) as e:
            raise TunnelDaemonError(
                f"cannot reach the tunnel daemon: {e}", method=method, url=url
            ) from e
        if response.code == 599:
            raise TunnelDaemonError(
                f"cannot reach the tunnel daemon: {response.error}", method=method, url=url
            )
        data: dict = {}
        if response.body:
            try:
                data = json.loads(response.body)
            except ValueError:
                data = {"message": response.body.decode("utf-8", "replace")[:500]}
        if response.code >= 400 and response.code != 404:
            message = data.get("message") or response.reason or "request failed"
            raise TunnelDaemonError(message, status=response.code, method=method, url=url)
        return response.code, data

    async def ping(self) -> bool:
        """True when the daemon answers ``GET /ping``."""
        try:
            code, _ = await self._request("GET", "/ping")
        except TunnelDaemonError:
            return False
        return code == 200

    async def list_forwards(self) -> list[dict]:
        """Every forward the daemon holds (see ``Forward`` in docs/internals.md)."""
        _, data = await self._request("GET", "/forwards")
        return data.get("forwards", [])

    async def put_forward(
        self,
        key: str,
        *,
        ssh: dict,
        target_host: str,
        target_port: int,
        local_port: int | None = None,
    ) -> dict:
        """Create or re-point the forward ``key``; return the daemon's Forward."""
        body: dict = {"ssh": ssh, "target_host": target_host, "target_port": target_port}
        if local_port is not None:
            body["local_port"] = local_port
        path = "/forwards/" + quote(key, safe="")
        code, data = await self._request("PUT", path, body)
        if code == 404:
            raise TunnelDaemonError(
                data.get("message", "not found"), status=404, method="PUT", url=self.url + path
            )
        return data

    async def delete_forward(self, key: str) -> bool:
        """Remove the forward ``key``; False when the daemon did not know it."""
        code, _ = await self._request("DELETE", "/forwards/" + quote(key, safe=""))
        return code != 404
