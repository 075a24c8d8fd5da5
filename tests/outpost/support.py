"""Helpers of the Outpost tests: config, start bodies, a REST client, an in-process Outpost."""

import json
import os
import sys
from datetime import timedelta

from jupyterhub.spawner import SimpleLocalProcessSpawner
from jupyterhub.utils import exponential_backoff
from jupyterhub_outpost.outpost.app import JupyterHubOutpost
from jupyterhub_outpost.outpost.models import utcnow
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from traitlets.config import Config

from tests.helpers.outpost_process import basic_auth, free_port

HERE = os.path.dirname(os.path.abspath(__file__))
MINI_SINGLEUSER = os.path.join(HERE, "mini_singleuser.py")
HUBS = {"hub1": "secret-of-hub1", "hub2": "secret-of-hub2"}


def local_spawner_config(tmp_path) -> Config:
    """A config whose spawner starts mini_singleuser.py as a real local process."""
    c = Config()
    c.JupyterHubOutpost.spawner_class = SimpleLocalProcessSpawner
    c.JupyterHubOutpost.hub_credentials = dict(HUBS)
    c.JupyterHubOutpost.ssh_enabled = False
    c.SimpleLocalProcessSpawner.cmd = [sys.executable, MINI_SINGLEUSER]
    c.SimpleLocalProcessSpawner.home_dir_template = str(tmp_path / "home" / "{username}")
    c.SimpleLocalProcessSpawner.interrupt_timeout = 3
    c.SimpleLocalProcessSpawner.term_timeout = 2
    c.SimpleLocalProcessSpawner.kill_timeout = 2
    return c


def start_body(name="srv1", user="alice", **extra) -> dict:
    """A start request as a hub's OutpostSpawner sends it."""
    body = {
        "name": name,
        "env": {
            "JUPYTERHUB_API_TOKEN": f"token-{name}",
            "JUPYTERHUB_USER": user,
            "JUPYTERHUB_SERVER_NAME": name,
            "JUPYTERHUB_SERVICE_PREFIX": f"/user/{user}/{name}/",
            "JUPYTERHUB_API_URL": "http://127.0.0.1:1/hub/api",
            "JUPYTERHUB_BASE_URL": "/",
        },
        "user_options": {},
        "misc": {},
        "certs": {},
        "internal_trust_bundles": {},
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(body.get(key), dict):
            body[key].update(value)
        else:
            body[key] = value
    return body


class Api:
    """A tiny REST client: ``await api.call("GET", "/services", hub="hub1")`` -> (code, json)."""

    def __init__(self, url: str, hubs: dict):
        self.url = url
        self.hubs = hubs

    async def call(self, method, path, **kwargs):
        """(status, JSON body or text) of one request (see ``fetch``)."""
        response = await self.fetch(method, path, **kwargs)
        text = response.body.decode() if response.body else ""
        try:
            data = json.loads(text) if text else None
        except json.JSONDecodeError:
            data = text
        return response.code, data

    async def fetch(
        self,
        method,
        path,
        *,
        hub="hub1",
        secret=None,
        body=None,
        headers=None,
        raw_body=None,
        timeout=60,
    ):
        """The whole answer (status, headers, body) to one request as ``hub``."""
        all_headers = {}
        if hub is not None:
            all_headers.update(
                basic_auth(hub, self.hubs.get(hub, "") if secret is None else secret)
            )
        all_headers.update(headers or {})
        if raw_body is None and body is not None:
            raw_body = json.dumps(body)
        if raw_body is None and method in ("POST", "PUT"):
            raw_body = ""
        request = HTTPRequest(
            self.url + path,
            method=method,
            headers=all_headers,
            body=raw_body,
            request_timeout=timeout,
            allow_nonstandard_methods=True,
        )
        response = await AsyncHTTPClient().fetch(request, raise_error=False)
        if response.code == 599:
            raise response.error
        return response


class InProcessOutpost:
    """A JupyterHubOutpost running on the test's event loop."""

    def __init__(self, config: Config, data_dir):
        self.app = JupyterHubOutpost(config=config)
        self.app.data_dir = str(data_dir)
        self.app.ip = "127.0.0.1"
        self.app.port = free_port()
        self.url = f"http://127.0.0.1:{self.app.port}"
        self.api = Api(
            self.url,
            self.app.hub_credentials if isinstance(self.app.hub_credentials, dict) else HUBS,
        )

    async def start(self):
        await self.app.start_outpost()
        return self

    async def stop_all_servers(self):
        manager = self.app.manager
        if manager is None:
            return
        for row in await self.app.store.list_active():
            try:
                await manager._stop(row)
            except Exception as e:  # keep cleaning up
                print(f"cleanup of {row.name} failed: {e}")

    async def close(self):
        await self.stop_all_servers()
        await self.app.stop_outpost()


async def wait_for(condition, message: str, timeout: float = 20):
    """Await ``condition()`` (sync or async) until truthy, with exponential backoff."""

    async def check():
        result = condition()
        if hasattr(result, "__await__"):
            result = await result
        return result

    return await exponential_backoff(check, message, start_wait=0.02, max_wait=0.5, timeout=timeout)


async def pass_runtime_deadline(outpost, name: str, hub: str = "hub1") -> None:
    """Let the clock pass server ``name``'s runtime deadline: its stored deadline moves one
    second into the past, so the reaper's next round finds it expired. (A flavor runtime of
    a second would race the test under load: the reaper stopped the server before the test
    saw it run.)"""
    row = await outpost.app.store.get(hub, name)
    assert row is not None and row.runtime_deadline is not None, row
    await outpost.app.store.update(row.id, runtime_deadline=utcnow() - timedelta(seconds=1))


async def fetch_server(address: str, path: str = "/"):
    """GET a started server at ``host:port`` (raises when it does not answer)."""
    response = await AsyncHTTPClient().fetch(f"http://{address}{path}", request_timeout=5)
    return json.loads(response.body)


async def fetch_or_none(address: str, path: str = "/"):
    """What the server at ``host:port`` answers, or None while it does not answer."""
    try:
        return await fetch_server(address, path)
    except Exception:
        return None


async def server_answers(address: str) -> bool:
    try:
        await fetch_server(address)
        return True
    except Exception:
        return False


class Receiver:
    """A small real HTTP server standing in for the hub's API: records every POST.

    ``receiver.url("/events/x")`` -> URL; ``receiver.posts`` -> [(path, headers, json)].
    ``fail_paths``: paths answered 500 (to prove failures do not break starts).
    """

    def __init__(self, ssl_context=None):
        from tornado import web
        from tornado.httpserver import HTTPServer

        self.posts: list[tuple[str, dict, object]] = []
        self.fail_paths: set[str] = set()
        receiver = self

        class Record(web.RequestHandler):
            def post(self, path):
                body = json.loads(self.request.body or b"null")
                receiver.posts.append(("/" + path, dict(self.request.headers), body))
                if "/" + path in receiver.fail_paths:
                    self.set_status(500)
                self.finish("{}")

        self.port = free_port()
        self.server = HTTPServer(web.Application([(r"/(.*)", Record)]), ssl_options=ssl_context)
        self.server.listen(self.port, "127.0.0.1")
        self.scheme = "https" if ssl_context else "http"
        self.host = "localhost" if ssl_context else "127.0.0.1"  # the cert names localhost

    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{path}"

    def hub_api(self, hub: str = "hub1", **extra) -> dict:
        """A ``c.JupyterHubOutpost.hub_api`` naming this receiver as ``hub``'s API
        (``/hub/api``; the Outpost is "site" there)."""
        return {hub: {"url": self.url("/hub/api"), "outpost_name": "site", **extra}}

    def posts_to(self, path: str) -> list:
        return [(headers, body) for p, headers, body in self.posts if p == path]

    def close(self):
        self.server.stop()
