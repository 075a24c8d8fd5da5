"""The Outpost application: options, start-up and shutdown of ``jupyterhub-outpost serve``.

The SSH endpoint's options and its start live in ssh_settings.py (a mixin of the
application; its options are ``c.JupyterHubOutpost.*`` too).

Start-up order: data directory, encryption keys, database schema (alembic), recovery of
every server the store holds as active, the REST API, the SSH endpoint, then in the
background the tunnel re-creation requests and the runtime reaper. A shutdown (SIGTERM,
SIGINT) stops listening and leaves every server running: the next start recovers them.
"""

import asyncio
import logging
import os
import re
import signal
import ssl
import sys

from jupyterhub.spawner import LocalProcessSpawner, Spawner
from jupyterhub.traitlets import Callable, EntryPointType
from tornado import web
from tornado.httpserver import HTTPServer
from tornado.log import LogFormatter
from traitlets import (
    Bool,
    Dict,
    Enum,
    Float,
    Instance,
    Integer,
    List,
    Unicode,
    Union,
    default,
    observe,
)
from traitlets.config import Application, Config, catch_config_error

from jupyterhub_outpost import __version__

from . import flavor_rules, handlers, migrations
from .credentials import CredentialsError, FileBackedMapping, HubCredentials
from .crypto import Crypt, CryptError
from .database import DatabaseConfigError, describe, resolve_db_url
from .errors import StartupError
from .flavors import validate_flavors
from .hooks import default_allow_override, default_sanitize_start_response
from .http_settings import HTTPSettings
from .hub_api import HubAPISettings
from .hub_client import HubClient
from .logcontext import ContextFilter
from .manager import ServiceManager
from .metrics import Metrics
from .poll_fastpath import FastPolls
from .redaction import SecretRedactor
from .runner import Runner
from .server_logs import ServerLogs
from .ssh_settings import SSHEndpointSettings
from .store import Store
from .workers import WorkerSettings, run_workers

aliases = {
    "config": "JupyterHubOutpost.config_file",
    "ip": "JupyterHubOutpost.ip",
    "port": "JupyterHubOutpost.port",
    "data-dir": "JupyterHubOutpost.data_dir",
    "log-level": "JupyterHubOutpost.log_level",
    "workers": "JupyterHubOutpost.workers",
}


class JupyterHubOutpost(
    SSHEndpointSettings, HubAPISettings, HTTPSettings, WorkerSettings, Application
):
    """Runs a JupyterHub Spawner on this system on behalf of remote hubs."""

    name = "jupyterhub-outpost"
    version = __version__
    description = (
        "The JupyterHub Outpost: a REST service that runs any JupyterHub Spawner on this "
        "system on behalf of one or more hubs."
    )
    aliases = aliases
    flags = {
        "replicated": (
            {"JupyterHubOutpost": {"replicated": True}},
            "Other Outposts (replicas) share this PostgreSQL database: set replicated.",
        )
    }
    _log_formatter_cls = LogFormatter

    # --- command line ----------------------------------------------------------------
    config_file = Unicode(
        "outpost_config.py",
        help="""The Outpost's configuration file (Python, like jupyterhub_config.py).

        Command line: --config FILE. A missing file is an error unless it is the default
        name, in which case the defaults apply.
        """,
    ).tag(config=True)

    ip = Unicode(
        "127.0.0.1",
        help="""Address the REST API listens on (--ip). Use 0.0.0.0 in a container or
        when hubs on other hosts connect directly.""",
    ).tag(config=True)

    port = Integer(8080, help="Port of the REST API (--port).").tag(config=True)

    data_dir = Unicode(
        "./outpost-data",
        help="""Directory for the Outpost's own files (--data-dir): the SQLite database
        (unless PostgreSQL is configured), the generated encryption key (when
        OUTPOST_CRYPT_KEYS is unset), the SSH host key, and certificates sent by hubs.
        Created with mode 0700. Keep it on persistent storage, not /tmp.""",
    ).tag(config=True)

    # --- logging ---------------------------------------------------------------------
    log_level = Enum(
        (0, 10, 20, 30, 40, 50, "DEBUG", "INFO", "WARN", "ERROR", "CRITICAL"),
        default_value=logging.INFO,
        help="Log level, by value or name (--log-level DEBUG).",
    ).tag(config=True)

    log_format = Unicode(
        "%(color)s[%(levelname)1.1s %(asctime)s.%(msecs).03d %(name)s "
        "%(module)s:%(lineno)d]%(end_color)s %(message)s",
        help="""Log line format (Python logging, plus %(color)s/%(end_color)s as in
        JupyterHub). Request log lines carry req=<request id> hub=<hub> server=<name>.""",
    ).tag(config=True)

    log_datefmt = Unicode(
        "%Y-%m-%d %H:%M:%S", help="Date format of log lines (logging's datefmt)."
    ).tag(config=True)

    log_datafmt = Unicode(
        help="""Deprecated spelling of log_datefmt (kept because older Outpost
        documentation used it); setting it sets log_datefmt.""",
    ).tag(config=True)

    @observe("log_datafmt")
    def _log_datafmt_changed(self, change):
        if change["new"]:
            self.log_datefmt = change["new"]

    extra_log_handlers = List(
        Instance(logging.Handler),
        help="""Extra logging handlers of the Outpost's logger (e.g. a SysLogHandler or a
        handler of a log service). A handler without a formatter gets the log_format. The
        Outpost's secret masking applies to them too.""",
    ).tag(config=True)

    server_log_lines = Integer(
        100,
        help="""How many of a server's most recent log lines (the Outpost's and its
        spawner's, secrets masked, each cut at 1000 characters) the Outpost keeps in memory
        for the "logs" of poll and stop answers, which a hub asks for with
        ?collect_logs=true (the stock OutpostSpawner's collect_logs options). 0: none.""",
    ).tag(config=True)

    # --- hubs ------------------------------------------------------------------------
    hub_credentials = Union(
        [Dict(), Unicode()],
        default_value={},
        help="""The hubs that may use this Outpost: {hub name: secret}, or the path of a
        YAML or JSON file holding that mapping (e.g. a mounted Kubernetes Secret; it is
        read again when it changes). Hubs authenticate with HTTP Basic auth, user name =
        hub name. Each hub sees and controls only its own servers. Secrets are never
        logged. The Outpost refuses to start without at least one hub.""",
    ).tag(config=True)

    # --- spawner ---------------------------------------------------------------------
    spawner_class = EntryPointType(
        default_value=LocalProcessSpawner,
        klass=Spawner,
        entry_point_group="jupyterhub.spawners",
        help="""The Spawner class that starts servers on this system, e.g. KubeSpawner,
        a BatchSpawner subclass (SlurmSpawner, ...), or LocalProcessSpawner (the
        default; needs a system user per hub user). A class, an import string, or an
        entry point name ("kubespawner", "simple", ...). Its own options are set as
        c.<SpawnerClass>.<option> in the same file.""",
    ).tag(config=True)

    sanitize_start_response = Callable(
        default_value=default_sanitize_start_response,
        help="""Hook (spawner, response) -> "host:port": turns what Spawner.start()
        returned into the address the hub tunnels to. May be a coroutine. The default
        turns a URL or an (ip, port) tuple into "host:port". Return "" when the address
        is not known yet (delayed tunneling: the server then POSTs its address to
        $JUPYTERHUB_SETUPTUNNEL_URL itself).""",
    ).tag(config=True)

    local_user_name = Union(
        [Callable(), Unicode()],
        default_value="{user}@{hub}",
        help="""The user name the spawner sees (Spawner.user.name: KubeSpawner's pod and
        volume names, home_dir_template's {username}, the system account of
        LocalProcessSpawner and BatchSpawner): a template with {user} (the hub's
        JUPYTERHUB_USER) and {hub} (the hub's name here), or a hook (hub_name, user) ->
        name (may be a coroutine; raising refuses the start with 403). The default
        "{user}@{hub}" keeps the users of different hubs apart (no shared directory, pod,
        volume or account; a hub cannot pick a local account such as root). Set "{user}"
        when this Outpost serves one trusted hub whose user names are this system's
        accounts. Decided once per start and kept for the server's life; the server's
        JUPYTERHUB_USER and its URLs stay the hub's.""",
    ).tag(config=True)

    allow_override = Union(
        [Callable(), Bool()],
        default_value=default_allow_override,
        help="""Which spawner overrides (misc of a start request) a hub may set: False (the
        default: none), True (all), or a hook (hub_name, misc) -> True, False or the
        collection of keys it allows; it may be a coroutine and is called only when misc is
        not empty. Of the allowed keys only configurable options of spawner_class apply.
        What is not applied is dropped, not refused: the start goes on with this Outpost's
        configuration, the dropped keys are logged and reported to the hub in the start's
        progress events (as the original Outpost, which ignores what it does not apply).""",
    ).tag(config=True)

    # --- flavors ---------------------------------------------------------------------
    flavors = Union(
        [Callable(), Dict(), Unicode()],
        help="""Flavors: {name: {"max": int, "maxPerUser": int, "weight": int,
        "display_name": str, "description": str, "runtime": {timedelta keywords, e.g.
        "hours": 2}}} for every hub; or the original Outpost's flavor document
        {"flavors": {...}, "hubs": {...}, "users": {...}} with flavor sets per hub and per
        user (docs/migrating.md); or the path of a YAML or JSON file holding either (read
        again when it changes); or a hook (hub_name) -> either (may be a coroutine).
        "max" is how many servers of the flavor one hub may run at the same time (-1:
        unlimited), "maxPerUser" how many one user may; both hold exactly, also under
        concurrent starts. A server past its "runtime" is stopped by the Outpost. The hub
        selects a flavor with user_options["flavor"]. Default: $OUTPOST_FLAVORS_PATH (the
        original's variable) when set, else no flavors.""",
    ).tag(config=True)

    @default("flavors")
    def _flavors_default(self):
        return os.environ.get("OUTPOST_FLAVORS_PATH", "") or {}

    global_max_per_user = Integer(
        -1,
        help="""How many servers one user of a hub may run on this Outpost at the same time,
        whatever their flavors (-1: unlimited). Users are told apart by the hub's
        JUPYTERHUB_USER.""",
    ).tag(config=True)

    update_user_authentication = Callable(
        default_value=None,
        allow_none=True,
        help="""Hook (authentication) -> dict (may be a coroutine): changes what a hub sent
        about a user (the "authentication" of a start request or of POST /userflavors, e.g.
        {"name", "groups"}) before it is matched against the users: sets of the flavor
        document, e.g. to lower-case names. It gets a copy.""",
    ).tag(config=True)

    flavors_undefined_max = Integer(
        -1,
        help="""Max servers per hub for a start without a flavor or with a flavor that
        hub does not have. -1: unlimited; 0: only configured flavors may start.""",
    ).tag(config=True)

    flavors_update_token = Union(
        [Callable(), Unicode()],
        default_value="",
        help="""Token with which the Outpost POSTs a hub's flavor usage to that hub's
        flavors update URL (built from its hub_api entry) after every start and stop: a
        string, or a hook (hub_name) -> token (may be a coroutine). Used when the hub's
        hub_api entry has no flavors_update_token; when both are empty, the token the hub
        sent with its latest start ($JUPYTERHUB_FLAVORS_UPDATE_TOKEN) is used, and only
        against that hub's own URL. An empty token or an exception means no update is
        sent; a failing update never affects a start. A string goes to every hub: with
        several hubs give each its own token (hub_api or a hook).""",
    ).tag(config=True)

    send_events = Union(
        [Callable(), Bool()],
        default_value=True,
        help="""Relay the progress events of starting servers to their hub's events URL
        (built from the hub's hub_api entry): True (the default), False, or a hook
        (hub_name) -> bool (may be a coroutine).""",
    ).tag(config=True)

    poll_requires_state = Bool(
        False,
        help="""True: a poll of a server whose spawner stored no state answers "running"
        without asking the spawner, as the original Outpost answers polls before a start
        stored its state (a spawner that keeps nothing in its state cannot tell after a
        restart whether its server still runs). False (the default): the spawner is asked.
        Starting servers always answer "running".""",
    ).tag(config=True)

    runtime_check_interval = Float(
        60.0,
        help="""Seconds between two checks for servers past their flavor's runtime (and,
        under --workers N, for starts left behind by a worker that died).""",
    ).tag(config=True)

    # --- database --------------------------------------------------------------------
    db_url = Unicode(
        "",
        help="""SQLAlchemy URL of the database (sqlite:///... or postgresql://...; the
        async drivers aiosqlite and asyncpg are used). Default: SQL_TYPE=postgresql with
        SQL_USER, SQL_PASSWORD, SQL_HOST, SQL_PORT, SQL_DATABASE from the environment,
        else an SQLite file outpost.sqlite in data_dir. The schema is upgraded at
        start-up (or with jupyterhub-outpost db-upgrade).""",
    ).tag(config=True)

    # --- runtime objects -------------------------------------------------------------
    store = None
    manager = None
    credentials = None
    metrics = None
    redactor = None
    server_logs = None
    http_server = None
    ssh_endpoint = None
    parsed_forward_targets: list = []
    _crypt = None
    _reaper = None
    _run_id = ""  # one id per `serve`, shared by its workers (coordination.py)

    def _load_config(self, cfg, section_names=None, traits=None):
        """traitlets deep-copies config values, and logging handlers (they hold a lock)
        cannot be copied: extra_log_handlers is set as given."""
        section = cfg.get(type(self).__name__) if isinstance(cfg, dict) else None
        handlers = section.get("extra_log_handlers") if isinstance(section, dict) else None
        if isinstance(handlers, (list, tuple)):
            cfg = Config(cfg)
            cfg[type(self).__name__] = Config(section)
            del cfg[type(self).__name__]["extra_log_handlers"]
        super()._load_config(cfg, section_names=section_names, traits=traits)
        if isinstance(handlers, (list, tuple)):
            self.extra_log_handlers = list(handlers)

    @catch_config_error
    def initialize(self, argv=None):
        super().initialize(argv)
        if self.subapp:
            return
        self._load_config_file()
        self.init_logging()

    def _load_config_file(self):
        path = self.config_file
        if not os.path.exists(path):
            if path == self.__class__.config_file.default_value:
                self.log.warning("No config file %s: using defaults", path)
                return
            raise StartupError(f"The config file {path} does not exist (--config).")
        directory, name = os.path.split(os.path.abspath(path))
        self.load_config_file(name, path=directory)

    def init_logging(self):
        # the config file may have changed log_* options: re-apply them
        self._configure_logging()
        self.log.propagate = False
        for name in ("tornado.access", "tornado.application", "tornado.general"):
            logger = logging.getLogger(name)
            logger.propagate = True
            logger.parent = self.log
            logger.setLevel(self.log_level)

    def resolved_db_url(self):
        try:
            return resolve_db_url(self.db_url, self.data_dir)
        except DatabaseConfigError as e:
            raise StartupError(str(e)) from None

    # --- start-up --------------------------------------------------------------------
    def _check_hooks(self):
        for name in ("hub_credentials", "ssh_authorized_keys"):
            value = getattr(self, name)
            if isinstance(value, str) and value and not os.path.exists(value):
                raise StartupError(f"c.JupyterHubOutpost.{name}: file {value} does not exist.")
        self.credentials = HubCredentials(self.hub_credentials)
        try:
            hubs = self.credentials.hubs()
        except CredentialsError as e:
            raise StartupError(str(e)) from None
        if not hubs:
            raise StartupError(
                "No hub may use this Outpost: set c.JupyterHubOutpost.hub_credentials to "
                "{hub_name: secret} or to the path of a YAML/JSON file with that mapping."
            )
        self.authorized_keys = FileBackedMapping(self.ssh_authorized_keys, "ssh_authorized_keys")
        from .forward_targets import ForwardTargetError, parse_targets

        try:
            self.parsed_forward_targets = parse_targets(self.allowed_forward_targets)
        except ForwardTargetError as e:
            raise StartupError(f"c.JupyterHubOutpost.allowed_forward_targets: {e}") from None
        if isinstance(self.flavors, str) and self.flavors and not os.path.exists(self.flavors):
            raise StartupError(f"c.JupyterHubOutpost.flavors: file {self.flavors} does not exist.")
        if isinstance(self.flavors, dict) and not flavor_rules.is_document(self.flavors):
            try:
                validate_flavors(self.flavors, "(every hub)")
            except ValueError as e:
                raise StartupError(f"c.JupyterHubOutpost.flavors: {e}") from None
        if bool(self.certfile) != bool(self.keyfile):
            raise StartupError("Set both certfile and keyfile for HTTPS, or neither.")
        self._check_hub_api(hubs)

    def make_tornado_app(self) -> web.Application:
        routes = handlers.routes() + self.metrics.routes()
        prefix = self.base_path.strip("/")
        if prefix:
            routes += [(f"/{re.escape(prefix)}{path}", handler) for path, handler in routes]
        return web.Application(
            routes,
            outpost=self,
            default_handler_class=handlers.NotFoundHandler,
            log_function=self.metrics.log_request,
            compress_response=False,
            xsrf_cookies=False,
        )

    async def start_outpost(self) -> None:
        """Everything up to serving; raises StartupError on an operator mistake."""
        url = self.prepare()
        await self.upgrade_database(url)
        await self.serve(url)

    def prepare(self):
        """Checks, logging, data directory and encryption key (before any worker forks);
        returns the database URL."""
        self._check_hooks()
        if not any(isinstance(f, ContextFilter) for f in self.log.filters):
            self.log.addFilter(ContextFilter())
        self.redactor = self.redactor or SecretRedactor()
        for handler in self.extra_log_handlers:
            if handler.formatter is None:
                handler.setFormatter(
                    self._log_formatter_cls(fmt=self.log_format, datefmt=self.log_datefmt)
                )
            if handler not in self.log.handlers:
                self.log.addHandler(handler)
        if self.server_logs is None:
            self.server_logs = ServerLogs(self.server_log_lines)
            self.log.addHandler(self.server_logs)
        # on the logger and on its handlers: records of tornado's loggers, which propagate
        # to this one, pass only the handlers' filters
        for owner in (self.log, *self.log.handlers):
            owner.addFilter(self.redactor)
        url = self.resolved_db_url()
        self.check_workers(url)
        os.makedirs(self.data_dir, mode=0o700, exist_ok=True)
        try:
            self._crypt = Crypt.from_environment(self.data_dir, self.log)
        except CryptError as e:
            raise StartupError(str(e)) from None
        return url

    async def upgrade_database(self, url) -> None:
        self.log.info("Database: %s", describe(url))
        try:
            await migrations.upgrade_async(url)
        except Exception as e:
            raise StartupError(
                f"Cannot prepare the database {describe(url)}: {type(e).__name__}: {e}"
            ) from None

    async def serve(self, url, *, worker: int = 0, published=None) -> None:
        """Store, manager, REST API and SSH endpoint of one worker (under ``--workers N``
        each binds its own sockets on the shared ports, SO_REUSEPORT)."""
        self.store = Store(url, self._crypt)
        coordination = self._coordination(url, worker, published)
        self.store.coordination = coordination
        runner = Runner(
            self.spawner_class,
            self.config,
            os.path.join(self.data_dir, "certs"),
            self.log,
            redactor=self.redactor,
        )
        hub_client = HubClient(self.log, ca_file=self.hub_ca_file, timeout=self.hub_request_timeout)
        self.manager = ServiceManager(
            settings=self,
            store=self.store,
            runner=runner,
            hub_client=hub_client,
            log=self.log,
            server_logs=self.server_logs,
            coordination=coordination,
        )
        self.metrics = Metrics(self)
        self.log.info(
            "Spawner class: %s.%s", self.spawner_class.__module__, self.spawner_class.__name__
        )
        led_at_start = False

        async def lead():  # at the start, or when this worker takes over from a dead leader
            nonlocal led_at_start
            led_at_start = not self.http_server
            await self.manager.recover()
            if self._reaper is None or self._reaper.done():
                self._reaper = asyncio.ensure_future(self._reap_loop())

        await coordination.start(lead)

        ssl_context = None
        if self.certfile:
            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_context.load_cert_chain(self.certfile, self.keyfile)
        self.http_server = HTTPServer(
            FastPolls(self.make_tornado_app(), self, self.base_path),
            ssl_options=ssl_context,
            max_body_size=self.max_body_size * 16,
            idle_connection_timeout=self.idle_connection_timeout,
            body_timeout=self.body_timeout,
            xheaders=False,
        )
        self.http_server.listen(self.port, self.ip, reuse_port=self.workers > 1)
        scheme = "https" if ssl_context else "http"
        self.log.info("Outpost API at %s://%s:%s", scheme, self.ip, self.port)

        if self.workers > 1:  # server processes a sibling stopped (manager.py)
            asyncio.get_running_loop().add_signal_handler(
                signal.SIGCHLD, self.manager.collect_exited_children
            )
        if self.ssh_enabled:
            await self.start_ssh_endpoint(reuse_port=self.workers > 1)
        if led_at_start:
            self.manager._background(self.manager.recreate_tunnels())

    async def _reap_loop(self) -> None:
        while True:
            await asyncio.sleep(self.runtime_check_interval)
            if not self.manager.coordination.is_leader:
                continue  # lost the coordination connection: another worker may lead
            try:
                await self.manager.reap_expired()
                await self.manager.recover_orphans()
            except Exception:
                self.log.exception(
                    "Checking flavor runtimes and orphaned starts failed; trying again later"
                )

    async def stop_outpost(self) -> None:
        """Stop serving; every server keeps running."""
        if self.http_server is not None:
            self.http_server.stop()
        reaper = getattr(self, "_reaper", None)
        if reaper is not None:
            reaper.cancel()
            await asyncio.gather(reaper, return_exceptions=True)
        if self.ssh_endpoint is not None:
            await self.ssh_endpoint.stop()
        if self.manager is not None:
            await self.manager.shutdown()
        if self.http_server is not None:
            try:
                await asyncio.wait_for(self.http_server.close_all_connections(), 10)
            except asyncio.TimeoutError:
                self.log.warning("Some HTTP connections did not close within 10s")
        if self.manager is not None:
            await self.manager.coordination.close()
        if self.store is not None:
            await self.store.close()
        if self.server_logs is not None:
            self.log.removeHandler(self.server_logs)

    async def run(self, serving=None) -> None:
        """Serve until SIGTERM/SIGINT; ``serving``: a worker's serve() call (default: the
        whole single-process start)."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await (serving or self.start_outpost())
        await stop.wait()
        self.log.info(
            "Shutting down; the servers keep running and are recovered at the next start."
        )
        await self.stop_outpost()


def main(argv: list[str] | None = None) -> None:
    """``jupyterhub-outpost [serve] --config FILE --ip IP --port PORT --data-dir DIR``."""
    app = JupyterHubOutpost.instance()
    try:
        app.initialize(argv)
        if app.subapp:
            return
        if app.workers > 1:
            sys.exit(run_workers(app))
        asyncio.run(app.run())
    except StartupError as e:
        app.log.critical("%s", e)
        sys.exit(1)
    except KeyboardInterrupt:
        pass
