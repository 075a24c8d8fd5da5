"""minibatch: a small real batch scheduler, the stand-in for Slurm/PBS in the delayed-tunnel scenario.

One daemon runs on a compute host and owns a job queue; jobs really wait in the queue and
start later, as children of the daemon, on that host. Small commands talk to the daemon
over HTTP from the Outpost host, shaped for ``batchspawner`` (see ``minibatch_spawner``)::

    python -m outpost_scenarios.minibatch serve --ip 10.231.2.3 --port 6820 \\
        --state-dir DIR --token-file TOKEN [--slots 1] [--start-delay 2] [--address-timeout 120]
    ... submit  < script      prints the job id
    ... status  JOB_ID        prints "job=ID state=PENDING|RUNNING|COMPLETED|FAILED|CANCELLED host=IP address=HOST:PORT ..."
    ... cancel  JOB_ID        cancels (pending: dropped; running: SIGTERM, SIGKILL after grace)
    ... list

The client commands find the daemon in ``--server URL`` or ``$MINIBATCH_SERVER`` and the
token in ``--token-file`` / ``$MINIBATCH_TOKEN_FILE`` or ``$MINIBATCH_TOKEN``.

A job script is *not* a shell script: no shell ever runs. Lines starting with ``#MB`` are
directives (``#MB name=NAME``, ``#MB runtime=SECONDS``, ``#MB export=VAR,VAR|ALL|NONE``),
other ``#`` lines and blank lines are ignored, and every other line is one command, split
with ``shlex`` and run directly (it continues on the next line while a quote is open or
after a trailing backslash); the commands run one after another and the job fails at
the first that fails. The job's environment is the daemon's ``PATH``/``HOME``/``LANG`` plus
the site's ``--job-env`` variables, the submitter's exported variables (with every
``--job-env-replace OLD=NEW`` applied: a site that reaches the hub through a relay rewrites
the hub's URLs), and ``MINIBATCH_JOB_ID``, ``MINIBATCH_HOST`` (the
compute host's address), ``MINIBATCH_REPORT_URL`` and ``MINIBATCH_JOB_TOKEN`` (with which
``report_address`` tells the daemon where the job's server listens).

With ``--address-timeout S``, a running job that has not reported an address within S
seconds is cancelled (its processes are ended, its working directory removed), so a
server that never comes up leaves nothing behind. Job state lives in memory; the daemon
ends every job when it stops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import itertools
import json
import logging
import os
import secrets
import shlex
import shutil
import signal
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

log = logging.getLogger("minibatch")

PENDING, RUNNING, COMPLETED, FAILED, CANCELLED = (
    "PENDING",
    "RUNNING",
    "COMPLETED",
    "FAILED",
    "CANCELLED",
)
FINAL = (COMPLETED, FAILED, CANCELLED)
BASE_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "PYTHONPATH", "VIRTUAL_ENV")
KEEP_FINISHED = 1000


class ScriptError(ValueError):
    """The job script cannot be run; the message says which line."""


@dataclass
class Script:
    commands: list[list[str]]
    name: str = "job"
    runtime: float | None = None
    export: str = "ALL"


def parse_script(text: str) -> Script:
    """Parse a job script (see the module docstring).

    A command continues on the next line while a quote is open (so an argument may hold
    newlines) or when the line ends with a backslash.
    """
    script = Script(commands=[])
    pending = ""
    pending_from = 0
    for number, raw in enumerate(text.splitlines(), 1):
        if pending:
            pending += "\n" + raw
        else:
            line = raw.strip()
            if not line:
                continue
            if line.startswith("#MB"):
                _directive(script, line, number)
                continue
            if line.startswith("#"):
                continue
            pending, pending_from = line, number
        if pending.endswith("\\") and not pending.endswith("\\\\"):
            pending = pending[:-1]
            continue
        try:
            argv = shlex.split(pending)
        except ValueError as e:
            if "No closing quotation" in str(e):
                continue  # the quote closes on a later line
            raise ScriptError(f"line {pending_from}: {e}") from None
        pending = ""
        if argv:
            script.commands.append(argv)
    if pending:
        raise ScriptError(f"line {pending_from}: the command never ends (unclosed quote)")
    if not script.commands:
        raise ScriptError("the script has no command line")
    return script


def _directive(script: Script, line: str, number: int) -> None:
    for item in shlex.split(line[3:]):
        key, _, value = item.partition("=")
        key = key.lstrip("-")
        if key == "name":
            script.name = value or script.name
        elif key == "runtime":
            script.runtime = _parse_runtime(value, number)
        elif key == "export":
            script.export = value or "ALL"
        else:
            raise ScriptError(f"line {number}: unknown directive {key!r}")


def _parse_runtime(value: str, number: int) -> float | None:
    """SECONDS, or [HH:]MM:SS like batch systems; empty means no limit."""
    if not value:
        return None
    try:
        parts = [float(p) for p in value.split(":")]
    except ValueError:
        raise ScriptError(f"line {number}: runtime {value!r} is not SECONDS or HH:MM:SS") from None
    seconds = 0.0
    for p in parts:
        seconds = seconds * 60 + p
    return seconds


@dataclass
class Job:
    id: str
    script: Script
    env: dict[str, str]
    submitted: float
    state: str = PENDING
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    started: float | None = None
    ended: float | None = None
    exit_code: int | None = None
    address: str | None = None
    reason: str = ""
    workdir: str | None = None
    proc: asyncio.subprocess.Process | None = None
    task: asyncio.Task | None = None
    cancel_requested: bool = False

    def status_line(self, host: str) -> str:
        """One line a batchspawner regex can read: ``job=ID state=STATE host=IP ...``."""
        parts = [f"job={self.id}", f"state={self.state}", f"name={self.script.name}"]
        if self.state == RUNNING:
            parts.append(f"host={host}")
        if self.address:
            parts.append(f"address={self.address}")
        if self.exit_code is not None:
            parts.append(f"exit_code={self.exit_code}")
        if self.reason:
            parts.append(f"reason={shlex.quote(self.reason)}")
        return " ".join(parts)

    def as_dict(self, host: str) -> dict:
        return {
            "id": self.id,
            "name": self.script.name,
            "state": self.state,
            "host": host if self.state == RUNNING else None,
            "address": self.address,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "submitted": self.submitted,
            "started": self.started,
            "ended": self.ended,
            "status": self.status_line(host),
        }


class Scheduler:
    """The queue: FIFO, ``slots`` jobs at a time, each eligible ``start_delay`` after submit."""

    def __init__(
        self,
        *,
        host: str,
        state_dir: str,
        slots: int = 1,
        start_delay: float = 0.0,
        address_timeout: float = 0.0,
        cancel_grace: float = 5.0,
        report_url: str = "",
        job_env: dict[str, str] | None = None,
        job_env_replace: list[tuple[str, str]] | None = None,
        output=None,
    ):
        self.host = host
        self.state_dir = state_dir
        self.slots = slots
        self.start_delay = start_delay
        self.address_timeout = address_timeout
        self.cancel_grace = cancel_grace
        self.report_url = report_url
        self.job_env = job_env or {}
        self.job_env_replace = job_env_replace or []
        self.output = output or sys.stdout
        self.jobs: dict[str, Job] = {}
        self._ids = itertools.count(1)
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task | None = None
        os.makedirs(os.path.join(state_dir, "jobs"), exist_ok=True)

    # queue -----------------------------------------------------------------------------

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._schedule(), name="minibatch-scheduler")

    def submit(self, script_text: str, env: dict[str, str]) -> Job:
        script = parse_script(script_text)
        job = Job(id=str(next(self._ids)), script=script, env=env, submitted=time.monotonic())
        self.jobs[job.id] = job
        self._say(job, f"submitted ({script.name}; {len(script.commands)} command(s))")
        self._wake.set()
        return job

    def _running(self) -> list[Job]:
        return [j for j in self.jobs.values() if j.state == RUNNING]

    async def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            next_at = None
            for job in list(self.jobs.values()):
                if job.state != PENDING:
                    continue
                if len(self._running()) >= self.slots:
                    break
                eligible = job.submitted + self.start_delay
                if eligible <= time.monotonic():
                    self._launch(job)
                else:
                    next_at = eligible if next_at is None else min(next_at, eligible)
                    break  # FIFO: later jobs wait behind this one
            timer = None
            if next_at is not None:
                timer = loop.call_at(loop.time() + (next_at - time.monotonic()), self._wake.set)
            await self._wake.wait()
            if timer is not None:
                timer.cancel()
            self._forget_old()

    def _forget_old(self) -> None:
        finished = [j for j in self.jobs.values() if j.state in FINAL]
        for job in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self.jobs[job.id]

    # running ---------------------------------------------------------------------------

    def _launch(self, job: Job) -> None:
        job.state = RUNNING
        job.started = time.monotonic()
        job.workdir = os.path.join(self.state_dir, "jobs", job.id)
        os.makedirs(job.workdir, exist_ok=True)
        job.task = asyncio.create_task(self._run(job), name=f"job-{job.id}")

    def _job_env(self, job: Job) -> dict[str, str]:
        env = {k: os.environ[k] for k in BASE_ENV if k in os.environ}
        env.update(self.job_env)
        for key, value in job.env.items():
            for old, new in self.job_env_replace:
                value = value.replace(old, new)
            env[key] = value
        env.update(
            {
                "MINIBATCH_JOB_ID": job.id,
                "MINIBATCH_HOST": self.host,
                "MINIBATCH_JOB_TOKEN": job.token,
                "MINIBATCH_REPORT_URL": f"{self.report_url}/jobs/{job.id}/address",
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    async def _run(self, job: Job) -> None:
        self._say(job, f"started on {self.host}")
        timeout_handle = None
        if self.address_timeout:
            timeout_handle = asyncio.get_running_loop().call_later(
                self.address_timeout, self._address_deadline, job
            )
        rc = 0
        try:
            for argv in job.script.commands:
                if job.cancel_requested:
                    break
                try:
                    job.proc = await asyncio.create_subprocess_exec(
                        *argv,
                        cwd=job.workdir,
                        env=self._job_env(job),
                        stdin=asyncio.subprocess.DEVNULL,
                        stdout=asyncio.subprocess.PIPE,
                        stderr=asyncio.subprocess.STDOUT,
                        start_new_session=True,
                        limit=1 << 20,
                    )
                except OSError as e:
                    self._say(job, f"cannot run {argv[0]}: {e}")
                    rc = 127
                    break
                rc = await self._pump(job, job.proc)
                job.proc = None
                if rc != 0:
                    break
        finally:
            if timeout_handle is not None:
                timeout_handle.cancel()
            job.ended = time.monotonic()
            job.exit_code = rc
            if job.cancel_requested:
                job.state = CANCELLED
            else:
                job.state = COMPLETED if rc == 0 else FAILED
            if job.workdir:
                shutil.rmtree(job.workdir, ignore_errors=True)
            self._say(
                job,
                f"{job.state.lower()} (exit code {rc}{'; ' + job.reason if job.reason else ''})",
            )
            self._wake.set()

    async def _pump(self, job: Job, proc: asyncio.subprocess.Process) -> int:
        runtime_left = None
        if job.script.runtime:
            runtime_left = job.script.runtime - (time.monotonic() - job.started)
        reader = asyncio.create_task(self._copy_output(job, proc))
        try:
            await asyncio.wait_for(proc.wait(), runtime_left)
        except asyncio.TimeoutError:
            job.reason = f"runtime limit of {job.script.runtime:.0f}s reached"
            await self._end_group(proc)
            job.cancel_requested = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(reader, 5)
        # whatever the command left in its session goes too
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.returncode

    async def _copy_output(self, job: Job, proc: asyncio.subprocess.Process) -> None:
        while True:
            try:
                raw = await proc.stdout.readline()
            except ValueError:
                raw = await proc.stdout.read(1 << 16)
            if not raw:
                return
            self._say(job, raw.decode(errors="replace").rstrip("\n"), prefix="|")

    async def _end_group(self, proc: asyncio.subprocess.Process) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), self.cancel_grace)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()

    def _address_deadline(self, job: Job) -> None:
        if job.state == RUNNING and not job.address:
            job.reason = f"no address reported within {self.address_timeout:.0f}s"
            asyncio.ensure_future(self.cancel(job.id))

    async def cancel(self, job_id: str) -> Job:
        job = self.jobs[job_id]
        if job.state in FINAL:
            return job
        job.cancel_requested = True
        if not job.reason:
            job.reason = "cancelled"
        if job.state == PENDING:
            job.state = CANCELLED
            job.ended = time.monotonic()
            self._say(job, "cancelled while pending")
            self._wake.set()
            return job
        if job.proc is not None and job.proc.returncode is None:
            await self._end_group(job.proc)
        if job.task is not None:
            await asyncio.shield(job.task)
        return job

    def set_address(self, job_id: str, address: str) -> Job:
        job = self.jobs[job_id]
        job.address = address
        self._say(job, f"reported address {address}")
        return job

    async def shutdown(self) -> None:
        for job in list(self.jobs.values()):
            if job.state in (PENDING, RUNNING):
                job.reason = "scheduler stopped"
                await self.cancel(job.id)
        if self._loop_task:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task

    def _say(self, job: Job, text: str, prefix: str = ":") -> None:
        with contextlib.suppress(OSError, ValueError):
            self.output.write(f"job {job.id}{prefix} {text}\n")
            self.output.flush()


# ---------------------------------------------------------------------------------------
# the daemon's HTTP API


def make_app(scheduler: Scheduler, token: str):
    from tornado import web

    class Base(web.RequestHandler):
        def check_xsrf_cookie(self) -> None:
            pass

        def write_error(self, status_code: int, **kwargs) -> None:
            reason = self._reason
            exc = kwargs.get("exc_info")
            if exc and isinstance(exc[1], web.HTTPError) and exc[1].log_message:
                reason = exc[1].log_message
            self.finish({"error": reason})

        def authorized(self, job: Job | None = None) -> bool:
            header = self.request.headers.get("Authorization", "")
            given = header[len("token ") :] if header.startswith("token ") else ""
            if given and hmac.compare_digest(given, token):
                return True
            return bool(job and given and hmac.compare_digest(given, job.token))

        def job(self, job_id: str) -> Job:
            job = scheduler.jobs.get(job_id)
            if job is None:
                raise web.HTTPError(404, f"no job {job_id} (unknown, or forgotten)")
            return job

        def body(self) -> dict:
            try:
                data = json.loads(self.request.body or b"{}")
            except ValueError:
                raise web.HTTPError(400, "the body is not JSON") from None
            if not isinstance(data, dict):
                raise web.HTTPError(400, "the body must be a JSON object")
            return data

        def prepare(self) -> None:
            if self.request.path != "/ping" and not self.request.path.endswith("/address"):
                if not self.authorized():
                    raise web.HTTPError(403, "missing or wrong token")

    class Ping(Base):
        def get(self) -> None:
            self.finish({"status": "ok", "host": scheduler.host})

    class Jobs(Base):
        def get(self) -> None:
            self.finish({"jobs": [j.as_dict(scheduler.host) for j in scheduler.jobs.values()]})

        def post(self) -> None:
            data = self.body()
            env = data.get("env") or {}
            if not isinstance(data.get("script"), str) or not isinstance(env, dict):
                raise web.HTTPError(400, "give {'script': str, 'env': {name: value}}")
            try:
                job = scheduler.submit(data["script"], {str(k): str(v) for k, v in env.items()})
            except ScriptError as e:
                raise web.HTTPError(400, f"bad job script: {e}") from None
            self.set_status(201)
            self.finish(job.as_dict(scheduler.host))

    class OneJob(Base):
        def get(self, job_id: str) -> None:
            self.finish(self.job(job_id).as_dict(scheduler.host))

        async def delete(self, job_id: str) -> None:
            job = await scheduler.cancel(self.job(job_id).id)
            self.finish(job.as_dict(scheduler.host))

    class Address(Base):
        def post(self, job_id: str) -> None:
            job = self.job(job_id)
            if not self.authorized(job):
                raise web.HTTPError(403, "missing or wrong job token")
            service = self.body().get("service")
            if not isinstance(service, str) or ":" not in service:
                raise web.HTTPError(400, "give {'service': 'host:port'}")
            self.finish(scheduler.set_address(job.id, service).as_dict(scheduler.host))

    return web.Application(
        [
            (r"/ping", Ping),
            (r"/jobs", Jobs),
            (r"/jobs/([0-9]+)", OneJob),
            (r"/jobs/([0-9]+)/address", Address),
        ]
    )


async def serve(args: argparse.Namespace) -> None:
    token = read_token(args.token_file, required=True)
    os.makedirs(args.state_dir, exist_ok=True)
    scheduler = Scheduler(
        host=args.host or args.ip,
        state_dir=args.state_dir,
        slots=args.slots,
        start_delay=args.start_delay,
        address_timeout=args.address_timeout,
        cancel_grace=args.cancel_grace,
        report_url=f"http://{args.ip}:{args.port}",
        job_env=dict(item.split("=", 1) for item in args.job_env or []),
        job_env_replace=[tuple(item.split("=", 1)) for item in args.job_env_replace or []],
    )
    scheduler.start()
    app = make_app(scheduler, token)
    server = app.listen(args.port, address=args.ip)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(
        f"minibatch: scheduler on http://{args.ip}:{args.port} (host {scheduler.host}, "
        f"{args.slots} slot(s), start delay {args.start_delay}s, "
        f"address timeout {args.address_timeout or 'off'})",
        flush=True,
    )
    await stop.wait()
    server.stop()
    await scheduler.shutdown()
    print("minibatch: stopped; every job ended", flush=True)


# ---------------------------------------------------------------------------------------
# the client commands


def read_token(path: str | None, *, required: bool = False) -> str:
    path = path or os.environ.get("MINIBATCH_TOKEN_FILE")
    if path:
        with open(path) as f:
            return f.read().strip()
    token = os.environ.get("MINIBATCH_TOKEN", "")
    if required and not token:
        sys.exit("minibatch: give --token-file, or set MINIBATCH_TOKEN_FILE or MINIBATCH_TOKEN")
    return token


class ClientError(RuntimeError):
    pass


def request(server: str, token: str, method: str, path: str, body: dict | None = None) -> dict:
    """One blocking HTTP request to the daemon (the client commands are short-lived)."""
    if not server:
        raise ClientError("no scheduler address: give --server or set MINIBATCH_SERVER")
    data = json.dumps(body).encode() if body is not None else None
    if not str(server).startswith(("http://", "https://")):
        raise ClientError(f"only http(s) URLs are used, not {server!r}")
    req = urllib.request.Request(  # noqa: S310 - scheme checked above
        server.rstrip("/") + path,
        data=data,
        method=method,
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - scheme checked above
            return json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        try:
            message = json.loads(e.read()).get("error", e.reason)
        except ValueError:
            message = e.reason
        raise ClientError(f"{method} {path}: {e.code} {message}") from None
    except (urllib.error.URLError, OSError) as e:
        raise ClientError(f"cannot reach the scheduler at {server}: {e}") from None


def exported_env(spec: str) -> dict[str, str]:
    """The submitter's variables to pass on: ALL (default), NONE, or a comma list."""
    own = {k: v for k, v in os.environ.items() if not k.startswith("MINIBATCH_")}
    if spec.upper() == "ALL":
        return own
    if spec.upper() == "NONE":
        return {}
    names = [n.strip() for n in spec.split(",") if n.strip()]
    return {n: own[n] for n in names if n in own}


def client(args: argparse.Namespace) -> int:
    server = args.server or os.environ.get("MINIBATCH_SERVER", "")
    token = read_token(args.token_file)
    try:
        if args.command == "submit":
            text = sys.stdin.read()
            try:
                export = args.export or parse_script(text).export
            except ScriptError as e:
                raise ClientError(f"bad job script: {e}") from None
            job = request(
                server, token, "POST", "/jobs", {"script": text, "env": exported_env(export)}
            )
            print(job["id"])
        elif args.command == "status":
            print(request(server, token, "GET", f"/jobs/{args.job_id}")["status"])
        elif args.command == "cancel":
            print(request(server, token, "DELETE", f"/jobs/{args.job_id}")["status"])
        elif args.command == "list":
            for job in request(server, token, "GET", "/jobs")["jobs"]:
                print(job["status"])
    except ClientError as e:
        print(f"minibatch {args.command}: {e}", file=sys.stderr)
        return 1
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="minibatch", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the scheduler daemon on this (compute) host")
    s.add_argument("--ip", required=True, help="address to listen on (the compute host's)")
    s.add_argument("--port", type=int, default=6820)
    s.add_argument("--host", help="address jobs run at, shown as host= (default: --ip)")
    s.add_argument("--state-dir", required=True, help="jobs' working directories go here")
    s.add_argument("--token-file", help="file holding the API token (or $MINIBATCH_TOKEN)")
    s.add_argument("--slots", type=int, default=1, help="jobs that run at the same time")
    s.add_argument(
        "--start-delay", type=float, default=0.0, help="seconds a job stays queued at least"
    )
    s.add_argument(
        "--address-timeout",
        type=float,
        default=0.0,
        help="cancel a running job that reported no address within this many seconds (0: off)",
    )
    s.add_argument("--cancel-grace", type=float, default=5.0, help="SIGTERM to SIGKILL, seconds")
    s.add_argument(
        "--job-env",
        action="append",
        metavar="NAME=VALUE",
        help="site-wide variable every job gets (e.g. http_proxy=...); the submitter's win",
    )
    s.add_argument(
        "--job-env-replace",
        action="append",
        metavar="OLD=NEW",
        help="replace OLD by NEW in the submitter's variables (e.g. the hub's URL by a relay's)",
    )
    for name, text in (
        ("submit", "submit the job script read from stdin; prints the job id"),
        ("status", "print one status line for a job"),
        ("cancel", "cancel a job"),
        ("list", "print the status line of every job"),
    ):
        c = sub.add_parser(name, help=text)
        c.add_argument("--server", help="scheduler URL (or $MINIBATCH_SERVER)")
        c.add_argument("--token-file", help="file holding the token (or $MINIBATCH_TOKEN_FILE)")
        if name in ("status", "cancel"):
            c.add_argument("job_id")
        if name == "submit":
            c.add_argument(
                "--export", help="ALL, NONE or VAR,VAR (default: the script's #MB export, else ALL)"
            )
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.command == "serve":
        logging.basicConfig(level=logging.INFO)
        asyncio.run(serve(args))
        return
    sys.exit(client(args))


if __name__ == "__main__":
    main()
