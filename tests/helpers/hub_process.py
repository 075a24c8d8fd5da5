"""A real JupyterHub (with configurable-http-proxy from npm) in a subprocess, for tests,
scenarios and benchmarks.

::

    from tests.helpers.hub_process import HubProcess

    config = '''
    c.JupyterHub.spawner_class = "outpost"
    c.OutpostSpawner.outposts = {...}
    from jupyterhub_outpost.hub import outpost_handlers
    c.JupyterHub.extra_handlers = outpost_handlers()
    '''
    with HubProcess(tmp_path / "hub", config) as hub:          # started, API answering
        hub.create_user("alice")
        events = hub.start_server("alice", "lab", {"outpost": "remote"})  # progress events seen
        status, body = hub.proxy_request("GET", "/user/alice/lab/api/status")
        hub.api("GET", "/users/alice")                          # hub REST API, admin token
        get = hub.browser("alice"); get("/hub/spawn/alice/x")   # pages, with a login cookie
        hub.child_pids("tunnels")                               # e.g. the managed tunnel daemon
        hub.stop_server("alice", "lab")
        hub.restart()                                           # SIGTERM, start again (same db, same ports)
        hub.restart(kill=True)                                  # SIGKILL hub + proxy + services (a crash)

What it sets up (``config`` is appended after it, so it may override anything; to add
services or roles use ``c.JupyterHub.services.append(...)`` / ``load_roles.append``):

- DummyAuthenticator that allows every user; sqlite database, cookie secret and the
  proxy's pid file in ``workdir``; hub, proxy and proxy API on free ports of ``ip``.
- A service ``test-admin`` whose token (:attr:`HubProcess.admin_token`) may manage users
  and servers and access every server; :meth:`api` and :meth:`proxy_request` use it.
- ``c.JupyterHub.cleanup_servers = False`` so that a hub restart keeps servers running
  (as production hubs are configured); :meth:`stop` stops the servers first unless told not to.

``host`` (a :class:`outpost_scenarios.netns.Host`) runs the hub inside that
network namespace; ``ip`` must then be one of the host's addresses that the test
process can reach (a network made with ``host_access=True``).

Every process the hub started (proxy, managed services such as the tunnel daemon) is
found by walking /proc for the hub's descendants and ended by :meth:`close`, also after
:meth:`kill` and when the test failed. :func:`wait_until` (backoff on a condition) and
:func:`process_alive` are exported for tests.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
NODE_BIN = REPO / ".venv" / "node" / "node_modules" / ".bin"
CHP = NODE_BIN / "configurable-http-proxy"


class HubError(RuntimeError):
    """The hub did not start, or an expected state was not reached; carries the log tail."""


def free_port(ip: str = "127.0.0.1") -> int:
    return free_ports(1, ip)[0]


def free_ports(count: int, ip: str = "127.0.0.1") -> list[int]:
    """``count`` distinct free ports: all are held open while picking, so the kernel cannot
    hand the same one out twice (picking one at a time can)."""
    held = []
    try:
        for _ in range(count):
            s = socket.socket()
            held.append(s)
            s.bind((ip, 0))
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()


def wait_until(
    predicate,
    timeout: float,
    what: str,
    *,
    start: float = 0.05,
    cap: float = 1.0,
    errors: tuple[type[BaseException], ...] = (),
):
    """Call ``predicate()`` with exponential backoff until it returns a truthy value.

    An exception of one of ``errors`` (say OSError, for a request to something that is
    coming back) counts as "not yet"; the last one is named if the time runs out."""
    deadline = time.monotonic() + timeout
    delay = start
    last_error = None
    while True:
        try:
            value = predicate()
        except errors as e:
            value, last_error = None, e
        if value:
            return value
        if time.monotonic() >= deadline:
            why = f" (last error: {last_error!r})" if last_error is not None else ""
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{why}")
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, cap)


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (children first found, grandchildren after)."""
    tree = _children_map()
    out, todo = [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


process_alive = _alive


def terminate(pids, timeout: float = 10) -> None:
    """SIGTERM the given pids, SIGKILL what is left after ``timeout``."""
    pids = [p for p in pids if _alive(p)]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        wait_until(lambda: not any(_alive(p) for p in pids), timeout, "processes to end")
    except TimeoutError:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class HubProcess:
    def __init__(
        self,
        workdir,
        config: str = "",
        *,
        ip: str = "127.0.0.1",
        host=None,
        env: dict | None = None,
        start: bool = True,
        start_timeout: float = 60,
        log_level: str = "DEBUG",
    ):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ip = ip
        self.host = host
        self.extra_env = dict(env or {})
        self.start_timeout = start_timeout
        self.log_level = log_level
        self.admin_token = secrets.token_hex(16)
        self.proxy_token = secrets.token_hex(16)
        if host is not None:
            self.port, self.hub_port, self.proxy_api_port = host.free_ports(3, ip)
        else:
            self.port, self.hub_port, self.proxy_api_port = free_ports(3, ip)
        self.config_file = self.workdir / "jupyterhub_config.py"
        self.config_file.write_text(
            self._base_config() + "\n# --- test config ---\n" + textwrap.dedent(config)
        )
        self.log_file = self.workdir / "jupyterhub.log"
        self.proc: subprocess.Popen | None = None
        self._known_children: set[int] = set()
        if start:
            self.start()

    # ------------------------------------------------------------------ config
    @property
    def url(self) -> str:
        return f"http://{self.ip}:{self.port}"

    @property
    def api_url(self) -> str:
        """The hub API as the proxy's public side serves it."""
        return f"{self.url}/hub/api"

    @property
    def hub_api_url(self) -> str:
        """The hub API on the hub's own port (what servers and Outposts use)."""
        return f"http://{self.ip}:{self.hub_port}/hub/api"

    def _base_config(self) -> str:
        w = self.workdir
        return textwrap.dedent(f"""\
            # written by tests/helpers/hub_process.py
            c = get_config()  # noqa
            c.JupyterHub.ip = {self.ip!r}
            c.JupyterHub.port = {self.port}
            c.JupyterHub.hub_ip = {self.ip!r}
            c.JupyterHub.hub_port = {self.hub_port}
            c.JupyterHub.db_url = {f"sqlite:///{w / 'jupyterhub.sqlite'}"!r}
            c.JupyterHub.cookie_secret_file = {str(w / "jupyterhub_cookie_secret")!r}
            c.JupyterHub.cleanup_servers = False
            c.JupyterHub.allow_named_servers = True
            c.JupyterHub.authenticator_class = "dummy"
            c.Authenticator.allow_all = True
            c.ConfigurableHTTPProxy.command = [{str(CHP)!r}]
            c.ConfigurableHTTPProxy.api_url = "http://{self.ip}:{self.proxy_api_port}"
            c.ConfigurableHTTPProxy.auth_token = {self.proxy_token!r}
            c.ConfigurableHTTPProxy.pid_file = {str(w / "proxy.pid")!r}
            c.JupyterHub.services = [{{"name": "test-admin", "api_token": {self.admin_token!r}}}]
            c.JupyterHub.load_roles = [{{
                "name": "test-admin",
                "scopes": ["admin:users", "admin:servers", "access:servers", "tokens", "read:users"],
                "services": ["test-admin"],
            }}]
            c.JupyterHub.log_level = {self.log_level!r}
            """)

    def _env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTERHUB_")}
        env["PATH"] = os.pathsep.join(
            [str(VENV_BIN), str(NODE_BIN), env.get("PATH", "/usr/bin:/bin")]
        )
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.extra_env)
        return env

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if not CHP.exists():
            raise HubError(f"configurable-http-proxy not found at {CHP} (run `make node`)")
        argv = [sys.executable, "-m", "jupyterhub", "-f", str(self.config_file)]
        log = open(self.log_file, "ab")  # noqa: SIM115 - handed to the child
        try:
            if self.host is not None:
                self.proc = self.host.popen(
                    argv, cwd=self.workdir, env=self._env(), stdout=log, stderr=subprocess.STDOUT
                )
            else:
                self.proc = subprocess.Popen(
                    argv,
                    cwd=self.workdir,
                    env=self._env(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        finally:
            log.close()
        try:
            wait_until(self._ready, self.start_timeout, "the hub API")
        except (TimeoutError, HubError) as e:
            tail = self.log_tail()
            self.kill()  # with the proxy it may have started: a failed start leaves nothing
            raise HubError(f"{e}\n{tail}") from None
        self._remember_children()

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise HubError(f"jupyterhub exited with {self.proc.returncode}\n{self.log_tail()}")
        try:
            status, _ = self.api("GET", "/", timeout=2)
        except OSError:
            return False
        return status == 200

    def _remember_children(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self._known_children.update(descendants(self.proc.pid))

    def stop(self, *, stop_servers: bool = True, timeout: float = 30) -> None:
        """Stop servers (unless told not to), then SIGTERM the hub and wait for it."""
        if self.proc is None:
            return
        if stop_servers and self.proc.poll() is None:
            self.stop_all_servers()
        self._remember_children()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self, *, children: bool = True) -> None:
        """SIGKILL the hub, as a crash would.

        ``children=True`` (default) also SIGKILLs everything it started (proxy, managed
        services), as the crash of a container or a systemd unit does; with ``False``
        they keep running as orphans (``close`` still ends them).
        """
        if self.proc is None:
            return
        self._remember_children()
        doomed = descendants(self.proc.pid) if children else []
        self.proc.kill()
        for pid in doomed:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        self.proc = None

    def restart(self, *, kill: bool = False) -> None:
        """Stop (SIGTERM, servers kept running) or kill the hub, then start it again."""
        if kill:
            self.kill()
        else:
            self.stop(stop_servers=False)
        self.start()

    def close(self) -> None:
        """Stop everything this hub started, whatever state it is in."""
        try:
            self.stop(stop_servers=True)
        except Exception:
            if self.proc is not None:
                self.proc.kill()
                self.proc = None
        terminate(sorted(self._known_children))
        self._known_children.clear()

    def __enter__(self) -> HubProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def child_pids(self, contains: str) -> list[int]:
        """Live descendants of the hub whose command line contains ``contains``
        (e.g. ``"tunnels"`` for a managed tunnel daemon)."""
        if self.proc is None:
            return []
        found = []
        for pid in descendants(self.proc.pid):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if contains in cmdline and _alive(pid):
                found.append(pid)
        return found

    def log_tail(self, lines: int = 80) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return "(no hub log)"
        return "--- hub log (tail) ---\n" + "\n".join(text.splitlines()[-lines:])

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    # ------------------------------------------------------------------ HTTP
    def _request(
        self,
        method: str,
        url: str,
        body=None,
        *,
        token: str | None = None,
        timeout: float = 30,
        headers: dict | None = None,
    ):
        data = None
        hdrs = {"Authorization": f"token {token or self.admin_token}"}
        if token == "":
            hdrs.pop("Authorization")
        if body is not None:
            data = (
                json.dumps(body).encode()
                if not isinstance(body, (bytes, str))
                else (body.encode() if isinstance(body, str) else body)
            )
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - test helper
                raw, status = resp.read(), resp.status
        except urllib.error.HTTPError as e:
            raw, status = e.read(), e.code
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")

    def api(
        self, method: str, path: str, body=None, *, token: str | None = None, timeout: float = 30
    ):
        """Call the hub REST API (``path`` below /hub/api); returns (status, JSON or text)."""
        return self._request(method, self.api_url + path, body, token=token, timeout=timeout)

    def proxy_request(
        self, method: str, path: str, body=None, *, token: str | None = None, timeout: float = 30
    ):
        """A request through the proxy, e.g. ``GET /user/alice/lab/api/status``."""
        return self._request(method, self.url + path, body, token=token, timeout=timeout)

    # ------------------------------------------------------------------ users and servers
    def create_user(self, name: str) -> None:
        status, body = self.api("POST", f"/users/{name}")
        if status not in (201, 409):
            raise HubError(f"creating user {name} failed: {status} {body}")

    def server_model(self, user: str, server: str = "") -> dict | None:
        status, body = self.api("GET", f"/users/{user}")
        if status != 200:
            raise HubError(f"GET /users/{user}: {status} {body}")
        return (body.get("servers") or {}).get(server)

    def user_token(self, user: str, scopes: list[str] | None = None) -> str:
        body = {"note": "test", "expires_in": 3600}
        if scopes is not None:
            body["scopes"] = scopes
        status, data = self.api("POST", f"/users/{user}/tokens", body)
        if status != 201:
            raise HubError(f"creating a token for {user} failed: {status} {data}")
        return data["token"]

    def browser(self, user: str):
        """A logged-in browser session (cookies) for hub pages, e.g. the spawn page.

        Returns ``get(path) -> (status, text)``. DummyAuthenticator accepts any password.
        """
        import http.cookiejar

        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        opener.open(f"{self.url}/hub/login", timeout=30).read()
        xsrf = next((c.value for c in jar if c.name == "_xsrf"), "")
        form = urllib.parse.urlencode({"username": user, "password": "x", "_xsrf": xsrf}).encode()
        opener.open(f"{self.url}/hub/login?next=", data=form, timeout=30).read()

        def get(path: str):
            try:
                with opener.open(self.url + path, timeout=60) as resp:
                    return resp.status, resp.read().decode(errors="replace")
            except urllib.error.HTTPError as e:
                return e.code, e.read().decode(errors="replace")

        return get

    def progress_events(
        self,
        user: str,
        server: str = "",
        *,
        timeout: float = 120,
        until=None,
        into: list | None = None,
    ) -> list[dict]:
        """Read the server's progress event stream until it says ready or failed (or an
        event for which ``until(event)`` is true).

        ``into`` (a list) receives each event as it arrives, for a caller that watches the
        stream from another thread; it is also the list returned."""
        parsed = urllib.parse.urlparse(self.api_url)
        if server:
            path = f"{parsed.path}/users/{user}/servers/{urllib.parse.quote(server)}/progress"
        else:
            path = f"{parsed.path}/users/{user}/server/progress"
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=timeout)
        events: list[dict] = [] if into is None else into
        try:
            conn.request(
                "GET",
                path,
                headers={
                    "Authorization": f"token {self.admin_token}",
                    "Accept": "text/event-stream",
                },
            )
            resp = conn.getresponse()
            if resp.status != 200:
                raise HubError(f"progress API answered {resp.status}: {resp.read()[:500]!r}")
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                line = resp.readline()
                if not line:
                    break
                line = line.strip()
                if not line.startswith(b"data:"):
                    continue
                event = json.loads(line[5:])
                events.append(event)
                if event.get("ready") or event.get("failed") or (until and until(event)):
                    break
        finally:
            conn.close()
        return events

    def follow_start(
        self,
        request,
        user: str,
        server: str = "",
        *,
        timeout: float = 150,
        into: list | None = None,
    ) -> tuple[object, list[dict]]:
        """Run ``request()`` (the start: a REST POST, a form submission) in a thread and
        follow the start's progress as the hub's spawn-pending page does: the stream is
        opened as soon as the server is pending, and replays the events sent before.
        Returns ``request()``'s answer and the events (only the final one when the start
        ended before the stream was opened; none when it failed and the server is gone). ``into`` receives each event as it arrives (see
        :meth:`progress_events`).

        The answer cannot be awaited first: the hub answers a start only after it ended
        when it ends within ``slow_spawn_timeout``, and the stream then has only the
        final event.
        """
        import threading

        result: dict = {}

        def run():
            try:
                result["answer"] = request()
            except Exception as e:  # reported below
                result["error"] = e

        thread = threading.Thread(target=run, daemon=True)
        thread.start()

        def pending_or_done():
            if not thread.is_alive():
                return True
            model = self.server_model(user, server)
            return bool(model and model.get("pending") == "spawn")

        wait_until(pending_or_done, timeout, f"{user}/{server} to be pending")
        events = [] if into is None else into
        if "error" not in result:
            # also when the request has answered: a form submission answers at once with a
            # redirect to the pending page (found on kind: the old check skipped the stream
            # and the events were empty); an ended start's stream gives its final event
            try:
                self.progress_events(user, server, timeout=timeout, into=events)
            except HubError:
                pass  # the start failed and its server is gone
        thread.join(timeout)
        if "error" in result:
            raise result["error"]
        if thread.is_alive():
            raise HubError(f"the start of {user}/{server} did not answer in {timeout:.0f}s")
        return result["answer"], events

    def start_server(
        self, user: str, server: str = "", options: dict | None = None, *, timeout: float = 150
    ) -> list[dict]:
        """Start a server through the REST API and return its progress events, seen as they
        happen (:meth:`follow_start`). Raises HubError when the start fails (its events are
        in the message); returns once it is ready.
        """
        path = (
            f"/users/{user}/servers/{urllib.parse.quote(server)}"
            if server
            else f"/users/{user}/server"
        )

        def post():
            try:
                return self.api("POST", path, options or {}, timeout=timeout)
            except Exception as e:  # reported below, with the hub's log
                return 0, repr(e)

        (status, body), events = self.follow_start(post, user, server, timeout=timeout)
        if status not in (201, 202) or (events and events[-1].get("failed")):
            raise HubError(
                f"start of {user}/{server} failed: {status} {body} events={events}\n{self.log_tail()}"
            )
        self.wait_for_server(user, server, timeout=timeout)
        return events

    def wait_for_server(self, user: str, server: str = "", *, timeout: float = 120) -> dict:
        """Wait until the server is ready; raise HubError (with the log tail) when it is not."""

        def ready():
            model = self.server_model(user, server)
            if model is None:
                raise HubError(f"server {user}/{server} is gone (start failed?)\n{self.log_tail()}")
            return model if model.get("ready") else None

        try:
            return wait_until(ready, timeout, f"server {user}/{server}")
        except TimeoutError as e:
            raise HubError(f"{e}\n{self.log_tail()}") from None

    def stop_server(self, user: str, server: str = "", *, timeout: float = 60) -> None:
        path = f"/users/{user}/servers/{server}" if server else f"/users/{user}/server"
        status, body = self.api("DELETE", path)
        if status not in (202, 204, 400, 404):
            raise HubError(f"stopping {user}/{server}: {status} {body}")
        wait_until(
            lambda: self.server_model(user, server) is None, timeout, f"{user}/{server} to stop"
        )

    def stop_all_servers(self, timeout: float = 60) -> None:
        status, users = self.api("GET", "/users")
        if status != 200:
            return
        for user in users:
            for name in list(user.get("servers") or {}):
                try:
                    self.stop_server(user["name"], name, timeout=timeout)
                except Exception:
                    pass
