"""Builds the configured Spawner outside a hub and drives it as JupyterHub does.

JupyterHub constructs a Spawner with its ``User``, ``Hub``, ORM spawner and database
(``jupyterhub/user.py: User._new_spawner``). The Outpost has none of these, so it passes
small stand-ins that carry what the hub sent: the user's name and id, the server name,
URLs, and the server's API token (all from the start request's env). The spawner is then
driven in the hub's order: ``apply_group_overrides``, ``apply_user_options``,
``run_pre_spawn_hook``, ``move_certs`` (when certs were sent), ``start()`` under
``start_timeout``; later ``poll()``, ``stop()``, ``run_post_stop_hook``, and
``get_state()``/``load_state()`` around every step that may change state.

Environment of the server: the spawner's own ``get_env()`` is merged with the env the hub
sent. The hub's values win (token, URLs, OAuth settings), except what only this system
knows: the bind URL (``JUPYTERHUB_SERVICE_URL``, from the spawner's ip/port), ``USER``,
``HOME``, ``SHELL``, cert paths, resource limits set here, ``Spawner.env_keep`` (e.g.
``PATH``) and ``Spawner.environment`` (the admin of this Outpost has the last word).
Keys meant for the Outpost alone (``OUTPOST_ONLY_ENV_KEYS``: the flavors update token)
never reach the server.
"""

import asyncio
import inspect
import os
import shutil
from types import SimpleNamespace
from urllib.parse import quote, urlsplit

from jupyterhub import orm
from jupyterhub.objects import Server
from jupyterhub.utils import maybe_future, url_path_join

from .redaction import SecretRedactor, secret_values

# env keys whose local value (computed on this system) wins over the hub's
LOCAL_ENV_KEYS = frozenset(
    {
        "JUPYTERHUB_SERVICE_URL",
        "USER",
        "HOME",
        "SHELL",
        "JUPYTERHUB_SSL_KEYFILE",
        "JUPYTERHUB_SSL_CERTFILE",
        "JUPYTERHUB_SSL_CLIENT_CA",
        "MEM_LIMIT",
        "MEM_GUARANTEE",
        "CPU_LIMIT",
        "CPU_GUARANTEE",
    }
)

# env keys meant for the Outpost only: never passed on to the server (a user could read them)
OUTPOST_ONLY_ENV_KEYS = frozenset({"JUPYTERHUB_FLAVORS_UPDATE_TOKEN"})


class StandInDB:
    """Spawners call ``self.db.commit()`` after changing the server (BatchSpawner,
    KubeSpawner); the Outpost persists state itself, so these are no-ops."""

    def commit(self):
        pass

    def rollback(self):
        pass


class StandInHub:
    """What ``Spawner.get_env()`` and friends read from ``jupyterhub.objects.Hub``."""

    def __init__(self, env: dict):
        self.api_url = env.get("JUPYTERHUB_API_URL", "http://127.0.0.1:8081/hub/api")
        base = env.get("JUPYTERHUB_BASE_URL", "/")
        self.base_url = url_path_join(base, "hub/")
        self.public_host = env.get("JUPYTERHUB_HOST", "")
        self.url = self.api_url.rsplit("/api", 1)[0] + "/"
        self.host = ""


class StandInUser:
    """What spawners read from ``jupyterhub.user.User``: name, id, URLs, groups.

    ``name`` is the local user name (``local_user_name``: hub-qualified by default, so
    that two hubs' users of the same name share no directory, pod, volume or account);
    the URLs stay the hub's, built from the hub's own user name ``hub_user``.
    """

    def __init__(self, name: str, user_id: int, env: dict, hub_name: str, hub_user: str = ""):
        self.name = name
        self.id = user_id
        self.hub_user = hub_user or name
        self.escaped_name = quote(self.hub_user, safe="@~")
        base = env.get("JUPYTERHUB_BASE_URL", "/")
        self.base_url = url_path_join(base, "user", self.escaped_name) + "/"
        self.url = self.base_url
        self.groups = []
        self.admin = False
        self.hub_name = hub_name  # which hub this server belongs to (Outpost addition)
        self.settings = {}
        self.spawners = {}

    def progress_url(self, server_name: str = "") -> str:
        return url_path_join(self.url, quote(server_name), "api/progress")

    def __repr__(self):
        return f"<StandInUser {self.name} of hub {self.hub_name}>"


_wrapped_classes: dict[type, type] = {}


def outpost_spawner_class(base: type) -> type:
    """A subclass of ``base`` whose get_env merges the hub's env (cached per class).

    Config for ``c.<BaseClass>.*`` still applies: traitlets reads config by MRO.
    """
    if base in _wrapped_classes:
        return _wrapped_classes[base]

    class _OutpostWrapped(base):
        _outpost_hub_env: dict = {}

        def get_env(self):
            local = super().get_env()
            env = dict(self._outpost_hub_env)
            keep = LOCAL_ENV_KEYS | set(self.env_keep) | set(self.environment)
            env.update({k: v for k, v in local.items() if k in keep or k not in env})
            return env

    _OutpostWrapped.__name__ = base.__name__
    _OutpostWrapped.__qualname__ = base.__qualname__
    _OutpostWrapped.__module__ = base.__module__
    _wrapped_classes[base] = _OutpostWrapped
    return _OutpostWrapped


class Runner:
    """Builds and drives spawners of one class with one config."""

    def __init__(self, spawner_class: type, config, certs_dir: str, log, redactor=None):
        self.spawner_class = spawner_class
        self.config = config
        self.certs_dir = certs_dir
        self.log = log
        # masks each spawner's secrets in the logger's records (app.py attaches it)
        self.redactor = redactor or SecretRedactor()

    def build(
        self,
        *,
        hub: str,
        row_id: int,
        env: dict,
        user_options: dict,
        misc: dict,
        state: dict | None = None,
        local_user: str | None = None,
    ):
        """A spawner for one server, with stand-ins; ``state`` is loaded when given.
        ``local_user`` is the name the spawner sees (default: the hub's user name)."""
        user_name = env.get("JUPYTERHUB_USER") or f"{hub}-{row_id}"
        server_name = env.get("JUPYTERHUB_SERVER_NAME", "")
        try:
            user_id = int(env.get("JUPYTERHUB_USER_ID", row_id))
        except ValueError:
            user_id = row_id
        user = StandInUser(local_user or user_name, user_id, env, hub, hub_user=user_name)
        base_url = env.get("JUPYTERHUB_SERVICE_PREFIX") or url_path_join(
            user.base_url, quote(server_name), "/"
        )
        orm_server = orm.Server(ip="", port=0, base_url=base_url, proto="http", cookie_name="")
        orm_spawner = SimpleNamespace(
            name=server_name,
            display_name=server_name,
            server=orm_server,
            user_options=user_options,
            state=state or {},
            last_activity=None,
            started=None,
        )
        client_id = f"jupyterhub-user-{quote(user_name)}"
        if server_name:
            client_id = f"{client_id}-{quote(server_name)}"
        cls = outpost_spawner_class(self.spawner_class)
        spawner = cls(
            user=user,
            orm_spawner=orm_spawner,
            hub=StandInHub(env),
            config=self.config,
            _deprecated_db_session=StandInDB(),
            oauth_client_id=env.get("JUPYTERHUB_CLIENT_ID", client_id),
            user_options=user_options,
            api_token=env.get("JUPYTERHUB_API_TOKEN", ""),
            log=self.log,  # the Outpost's logger: request context, secrets masked
        )
        spawner._outpost_hub_env = {k: v for k, v in env.items() if k not in OUTPOST_ONLY_ENV_KEYS}
        self.redactor.track(spawner, secret_values(env))
        spawner.server = Server(orm_server=orm_server)
        for key, value in misc.items():
            setattr(spawner, key, value)
        if state:
            spawner.load_state(state)
        return spawner

    def _cert_dir(self, hub: str, row_id: int) -> str:
        return os.path.join(self.certs_dir, hub, str(row_id))

    def _write_certs(self, hub: str, row_id: int, certs: dict, bundles: dict) -> tuple:
        directory = self._cert_dir(hub, row_id)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        paths = {}
        for key in ("keyfile", "certfile", "cafile"):
            if certs.get(key):
                path = os.path.join(directory, key.replace("file", ".pem"))
                _write_private(path, certs[key])
                paths[key] = path
        bundle_paths = {}
        for name, content in (bundles or {}).items():
            path = os.path.join(directory, f"bundle-{name}.crt")
            _write_private(path, content)
            bundle_paths[name] = path
        return paths, bundle_paths

    async def prepare(self, spawner, *, hub: str, row_id: int, certs: dict, bundles: dict):
        """Everything the hub does before ``start()``."""
        # both exist since JupyterHub 5; guarded so a spawner that predates them still runs
        if hasattr(spawner, "apply_group_overrides"):
            await spawner.apply_group_overrides()
        if hasattr(spawner, "_run_apply_user_options"):
            await spawner._run_apply_user_options(spawner.user_options)
        await maybe_future(spawner.run_pre_spawn_hook())
        if certs.get("keyfile"):  # the schema makes keyfile, certfile and cafile come together
            paths, bundle_paths = await asyncio.to_thread(
                self._write_certs, hub, row_id, certs, bundles
            )
            spawner.internal_ssl = True
            spawner.internal_trust_bundles = bundle_paths
            spawner.cert_paths = await maybe_future(spawner.move_certs(paths))

    @staticmethod
    def set_address(spawner, address: str) -> None:
        """What the hub does with ``start()``'s answer: the server's ip and port (spawners
        such as KubeSpawner compare them with where the server really is at every poll)."""
        parsed = urlsplit(f"//{address}")
        spawner.server.ip = parsed.hostname or ""
        spawner.server.port = parsed.port or 0

    def start(self, spawner) -> asyncio.Future:
        """Begin ``start()`` and return its future (kept so progress() knows when to stop)."""
        spawner._spawn_pending = True
        spawner._start_pending = True
        future = asyncio.ensure_future(
            asyncio.wait_for(maybe_future(spawner.start()), timeout=spawner.start_timeout)
        )
        spawner._spawn_future = future

        def _done(done):
            spawner._spawn_pending = False
            spawner._start_pending = False
            if done.cancelled() or done.exception() is None:
                # as JupyterHub clears it (a failure stays): a running server holds no task
                spawner._spawn_future = None

        future.add_done_callback(_done)
        return future

    async def poll(self, spawner):
        status = spawner.poll()
        if inspect.isawaitable(status):  # the usual coroutine: awaited here, not in a task
            return await status
        return await maybe_future(status)  # a value or a concurrent.futures.Future

    async def stop(self, spawner, *, hub: str, row_id: int, now: bool = False) -> None:
        """``stop()`` then ``run_post_stop_hook()``; removes the certs written for it."""
        spawner._stop_pending = True
        try:
            await maybe_future(spawner.stop(now=now))
        finally:
            spawner._stop_pending = False
            await maybe_future(spawner.run_post_stop_hook())
            await asyncio.to_thread(shutil.rmtree, self._cert_dir(hub, row_id), True)


def _write_private(path: str, content: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(content)
