"""Test doubles for the spawner's unit tests: a stand-in Outpost REST API (the wire
contract of ARCHITECTURE.md, served by Tornado on 127.0.0.1) and a stand-in tunnel
daemon client. The integration tests in this directory use the real components."""

from __future__ import annotations

import asyncio
import base64
import json
import socket

from tornado import web
from tornado.httpserver import HTTPServer


class FakeOutpost:
    """Records every request; answers as configured.

    ``start_answer``: the JSON answer of POST /services; ``start_error``: (status, message)
    to fail it instead; ``start_gate``: an asyncio.Event the start waits for;
    ``status``: what GET /services/{name}/{start_id} answers (``"404"`` for unknown).
    """

    def __init__(self, hub_name="hub", secret="s3cret"):
        self.hub_name = hub_name
        self.secret = secret
        self.requests: list[dict] = []
        self.start_answer = {"service": "10.0.0.5:8888"}
        self.start_error: tuple[int, str] | None = None
        self.start_gate: asyncio.Event | None = None
        self.on_start = None  # async callable(body) run while the start is in flight
        self.status: object = None
        self.delete_error: tuple[int, str] | None = None
        self.flavors = {
            "small": {"max": 5, "current": 1, "weight": 10, "display_name": "Small"},
            "big": {"max": 1, "current": 1, "weight": 5, "display_name": "Big"},
        }
        self.user_flavors: dict | None = None  # POST /userflavors (None: as GET /flavors)
        self.running: dict[str, str] = {}
        self.rows: dict[str, dict] = {}  # GET /services entries of asynchronous starts
        self.server: HTTPServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests_of(self, method: str, path: str = "/services") -> list[dict]:
        """The requests of ``method`` to ``path`` or below it."""
        return [r for r in self.requests if r["method"] == method and r["path"].startswith(path)]

    def app(self) -> web.Application:
        fake = self

        class Base(web.RequestHandler):
            def prepare(self):
                raw = self.request.headers.get("Authorization", "")
                expected = (
                    "Basic " + base64.b64encode(f"{fake.hub_name}:{fake.secret}".encode()).decode()
                )
                body = json.loads(self.request.body) if self.request.body else None
                fake.requests.append(
                    {
                        "method": self.request.method,
                        "path": self.request.path,
                        "body": body,
                        "headers": dict(self.request.headers),
                    }
                )
                if raw != expected:
                    self.set_status(401)
                    self.finish({"message": "wrong credentials"})

        class Services(Base):
            def get(self):
                self.finish(json.dumps(list(fake.rows.values())))

            async def post(self):
                body = json.loads(self.request.body)
                if self.request.headers.get("execution-type") == "async":
                    start_id = body["user_options"]["start_id"]
                    fake.running[body["name"]] = start_id
                    fake.rows[body["name"]] = {
                        "name": body["name"],
                        "start_id": start_id,
                        "status": "starting",
                        "service": "",
                        "error": None,
                    }
                    self.set_status(202)
                    self.finish({})
                    return
                if fake.on_start is not None:
                    await fake.on_start(body)
                if fake.start_gate is not None:
                    await fake.start_gate.wait()
                if fake.start_error:
                    status, message = fake.start_error
                    self.set_status(status)
                    self.finish({"message": message})
                    return
                fake.running[body["name"]] = body["user_options"]["start_id"]
                self.finish(fake.start_answer)

        class Service(Base):
            def get(self, name, start_id):
                if fake.status == "404" or name not in fake.running:
                    self.set_status(404)
                    self.finish({"message": "unknown server"})
                    return
                self.finish({"status": fake.status})

            def delete(self, name, start_id):
                if fake.delete_error:
                    self.set_status(fake.delete_error[0])
                    self.finish({"message": fake.delete_error[1]})
                    return
                if fake.running.pop(name, None) is None:
                    self.set_status(404)
                    self.finish({"message": "unknown server"})
                    return
                self.finish({})

        class Flavors(Base):
            def get(self):
                self.finish(fake.flavors)

        class UserFlavors(Base):
            def post(self):
                if fake.user_flavors == "404":  # an Outpost without per-user flavors
                    self.set_status(404)
                    self.finish({"message": "no such endpoint"})
                    return
                self.finish(fake.flavors if fake.user_flavors is None else fake.user_flavors)

        return web.Application(
            [
                (r"/services", Services),
                (r"/services/([^/]+)/([^/]+)", Service),
                (r"/flavors", Flavors),
                (r"/userflavors", UserFlavors),
            ]
        )

    async def start(self):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self.server = HTTPServer(self.app())
        self.server.add_sockets([sock])

    async def stop(self):
        if self.server is not None:
            self.server.stop()
            await self.server.close_all_connections()


class FakeTunnelClient:
    """In-memory stand-in for TunnelClient (same methods, same Forward dicts)."""

    def __init__(self):
        self.forwards: dict[str, dict] = {}
        self.calls: list[tuple] = []
        self.next_port = 40000
        self.fail_state: str | None = None  # e.g. "error" to simulate a refused host key
        # forwards report a passing error ("permanent": false) for this many answers first,
        # as while the SSH endpoint restarts
        self.passing_errors = 0

    async def put_forward(self, key, *, ssh, target_host, target_port, local_port=None):
        self.calls.append(("put", key, target_host, target_port, local_port))
        if local_port is None:
            existing = self.forwards.get(key)
            if existing:
                local_port = existing["local_port"]
            else:
                self.next_port += 1
                local_port = self.next_port
        fwd = {
            "key": key,
            "ssh": ssh,
            "target_host": target_host,
            "target_port": target_port,
            "local_host": "127.0.0.1",
            "local_port": local_port,
            "state": self.fail_state or "up",
        }
        if self.fail_state == "error":
            fwd["error"] = "host key mismatch"
            fwd["permanent"] = True
        if self.passing_errors:
            fwd.update(state="error", error="SSH connection timed out", permanent=False)
        self.forwards[key] = fwd
        return dict(fwd)

    async def delete_forward(self, key):
        self.calls.append(("delete", key))
        return self.forwards.pop(key, None) is not None

    async def list_forwards(self):
        self.calls.append(("list",))
        if self.passing_errors:
            self.passing_errors -= 1
            if not self.passing_errors:
                for f in self.forwards.values():
                    f["state"] = "up"
                    f.pop("error", None)
                    f.pop("permanent", None)
        return [dict(f) for f in self.forwards.values()]

    async def ping(self):
        return True
