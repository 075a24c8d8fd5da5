"""Requests from the Outpost to a hub: progress events, flavor usage, tunnel re-creation.

Every call authenticates with ``Authorization: token <token>``, verifies TLS (optionally
against ``ca_file``), has a timeout, and never raises: the result is True on a 2xx answer,
and a failure is logged with the URL (never the token).
"""

import json

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest


class HubClient:
    def __init__(self, log, *, ca_file: str = "", timeout: float = 10.0):
        self.log = log
        self.ca_file = ca_file or None
        self.timeout = timeout

    async def post_json(self, url: str, body, token: str, *, what: str) -> bool:
        request = HTTPRequest(
            url,
            method="POST",
            body=json.dumps(body),
            headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
            request_timeout=self.timeout,
            connect_timeout=self.timeout,
            ca_certs=self.ca_file,
            validate_cert=True,
        )
        try:
            await AsyncHTTPClient().fetch(request)
            return True
        except HTTPClientError as e:
            self.log.warning("Sending %s to %s failed: HTTP %s", what, url, e.code)
        except Exception as e:
            self.log.warning("Sending %s to %s failed: %s", what, url, e)
        return False
