"""``jupyterhub-outpost serve --workers N``: N worker processes on one PostgreSQL database.

The supervisor (the process started) checks the configuration, prepares the data directory
and the encryption key, upgrades the database, checks that the REST API's port is free and
makes the shared counters of coordination.py; then it forks the workers. Each worker runs
the whole Outpost with its own listening sockets for the REST API and the SSH endpoint on
the shared ports (SO_REUSEPORT: the kernel spreads new connections over the workers by
their addresses; a burst of connections does not all land on the worker that accepts
first, as it would on one inherited socket). The supervisor forwards SIGTERM and
SIGINT to every worker and waits for them; a worker that dies otherwise is started again
after a second. A worker whose supervisor dies gets SIGTERM (PR_SET_PDEATHSIG), so no
worker outlives a killed supervisor. Servers keep running through all of this: the next
leader recovers them (docs/decisions/workers.md).
"""

import asyncio
import ctypes
import multiprocessing
import os
import signal
import sys
import time

from traitlets import Bool, HasTraits, Integer

from .coordination import PostgresCoordination, SingleProcess
from .errors import StartupError

PR_SET_PDEATHSIG = 1
RESTART_DELAY = 1.0  # seconds before a crashed worker is started again


class WorkerSettings(HasTraits):
    """The application's ``workers`` option and what a worker coordinates with."""

    workers = Integer(
        1,
        help="""Number of worker processes serving the REST API and the SSH endpoint
        (--workers N). More than one needs PostgreSQL: every worker answers any hub about
        any server from the shared database, PostgreSQL advisory locks make sure no server
        is started or stopped by two workers at once (and flavor limits hold exactly), and
        one worker at a time (the leader) runs recovery and the runtime reaper. With SQLite
        the Outpost runs one process: an Outpost started with --workers > 1 on SQLite
        refuses to start. See docs/decisions/workers.md.""",
    ).tag(config=True)

    replicated = Bool(
        False,
        help="""Other Outposts share this PostgreSQL database (the chart's replicas: several
        pods of one Outpost behind one Service; --replicated). Every process then takes the
        per-server PostgreSQL advisory locks (no server started or stopped twice, flavor
        limits exact), one process of all of them (the leader) runs recovery and the
        runtime reaper, and a poll is answered from memory only after a notification
        this process sent after the poll arrived came back (every change another replica
        announced before it has then arrived; else the server's row is read). Needs
        PostgreSQL, the
        encryption keys in OUTPOST_CRYPT_KEYS and, with the SSH endpoint, an existing
        ssh_host_key_file (all replicas must share them), and a spawner whose servers run
        outside the Outpost's own host (KubeSpawner, a batch spawner; not
        LocalProcessSpawner). See docs/decisions/workers.md.""",
    ).tag(config=True)

    def check_workers(self, url) -> None:
        postgresql = url.get_backend_name() == "postgresql"
        if self.workers > 1 and not postgresql:
            raise StartupError(
                f"--workers {self.workers} needs PostgreSQL (db_url or SQL_TYPE=postgresql): "
                "with SQLite the Outpost runs as one process. Use --workers 1, or move the "
                "database to PostgreSQL (docs/decisions/workers.md)."
            )
        if self.replicated:
            self._check_replicated(postgresql)

    def _check_replicated(self, postgresql: bool) -> None:
        """What replicas must share, and what they cannot run (--replicated)."""
        from jupyterhub.spawner import LocalProcessSpawner

        from .crypto import ENV_NAME

        if not postgresql:
            raise StartupError(
                "--replicated needs PostgreSQL (db_url or SQL_TYPE=postgresql): replicas "
                "share one database. With SQLite run one Outpost process."
            )
        if issubclass(self.spawner_class, LocalProcessSpawner):
            raise StartupError(
                f"--replicated cannot run {self.spawner_class.__name__}: its servers are "
                "processes of the replica that started them, which no other replica can "
                "stop or watch. Use one replica (more cores: --workers N), or a spawner "
                "whose servers run outside the Outpost's host (KubeSpawner, a batch spawner)."
            )
        if not os.environ.get(ENV_NAME, "").strip():
            raise StartupError(
                f"--replicated needs the encryption keys in {ENV_NAME}, the same for every "
                "replica: a key generated in one replica's data directory could not be read "
                "by the others."
            )
        if self.ssh_enabled and not os.path.exists(self.ssh_host_key_file):
            raise StartupError(
                f"--replicated needs the SSH host key at {self.ssh_host_key_file}, the same "
                "for every replica (hubs pin it); it is not created per replica. Give every "
                "replica the same key file, or set ssh_enabled = False."
            )

    def _coordination(self, url, worker: int, published):
        if url.get_backend_name() != "postgresql" or (self.workers <= 1 and not self.replicated):
            return SingleProcess()  # the only process that changes this database
        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        return PostgresCoordination(
            dsn,
            self.log,
            published=published if published is not None else [0],
            index=worker,
            run=self._run_id,
            strict=self.replicated,
        )


def run_workers(app) -> int:
    """Run ``app`` (an initialized JupyterHubOutpost) in ``app.workers`` processes; the exit
    code of the supervisor."""
    from tornado.netutil import bind_sockets

    from . import logcontext

    try:
        url = app.prepare()
        asyncio.run(app.upgrade_database(url))
    except StartupError as e:
        app.log.critical("%s", e)
        return 1
    for probe in bind_sockets(app.port, app.ip, reuse_port=True):  # the port is ours
        probe.close()
    published = multiprocessing.RawArray("Q", app.workers)  # shared, made before the fork
    app._run_id = os.urandom(6).hex()
    parent = os.getpid()
    children: dict[int, int] = {}  # pid -> worker index
    stopping = False

    def spawn(index: int) -> None:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                libc = ctypes.CDLL(None, use_errno=True)
                libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
                if os.getppid() != parent:  # the supervisor died before the prctl
                    os._exit(0)
                logcontext.worker = str(index)
                app.log.info("Worker %d (pid %d) starts", index, os.getpid())
                asyncio.run(app.run(app.serve(url, worker=index, published=published)))
                code = 0
            except StartupError as e:
                app.log.critical("Worker %d: %s", index, e)
            except BaseException:
                app.log.exception("Worker %d failed", index)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children[pid] = index

    def forward(signum, _frame) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for index in range(app.workers):
        spawn(index)
    app.log.info("Supervising %d workers on %s:%s", app.workers, app.ip, app.port)
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        index = children.pop(pid, None)
        if index is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        if stopping:
            continue
        app.log.error(
            "Worker %d (pid %d) exited with %s; starting it again in %.0fs",
            index,
            pid,
            code,
            RESTART_DELAY,
        )
        time.sleep(RESTART_DELAY)
        if not stopping:
            spawn(index)
    return 0
