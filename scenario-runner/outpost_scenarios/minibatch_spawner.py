"""MiniBatchSpawner: batchspawner driving the minibatch scheduler, without any shell.

For the delayed-tunnel scenario the Outpost runs::

    c.JupyterHubOutpost.spawner_class = "outpost_scenarios.minibatch_spawner.MiniBatchSpawner"
    c.MiniBatchSpawner.minibatch_server = "http://10.231.2.3:6820"
    c.MiniBatchSpawner.minibatch_token_file = "/path/to/token"
    c.MiniBatchSpawner.delayed_address = True     # start() returns "" once the job runs

The job runs ``report_address -- jupyterhub-singleuser`` on the compute host, which POSTs
the server's ``host:port`` to ``JUPYTERHUB_SETUPTUNNEL_URL`` once it listens (and tells
minibatch too). With ``delayed_address = False``, ``start()`` instead waits until the job
has reported its address to minibatch and returns ``(host, port)``.

batchspawner runs its commands through a shell; this class overrides ``run_command`` to
split the command with ``shlex`` and run it directly.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys

from batchspawner import BatchSpawnerRegexStates, JobStatus
from traitlets import Bool, Unicode, default

MINIBATCH = f"{shlex.quote(sys.executable)} -m outpost_scenarios.minibatch"
REPORT = f"{sys.executable} -m outpost_scenarios.report_address"


class MiniBatchSpawner(BatchSpawnerRegexStates):
    """Spawn single-user servers as minibatch jobs (see the module docstring)."""

    minibatch_server = Unicode(
        "", help="URL of the minibatch daemon, e.g. http://10.231.2.3:6820."
    ).tag(config=True)
    minibatch_token_file = Unicode(
        "", help="File holding the minibatch API token (read by the client commands)."
    ).tag(config=True)
    delayed_address = Bool(
        True,
        help="""True: start() returns "" as soon as the job runs; the server reports its
        address to JUPYTERHUB_SETUPTUNNEL_URL itself (delayed tunneling). False: start()
        waits until the job reported its address to minibatch and returns (host, port).""",
    ).tag(config=True)
    report_command = Unicode(
        REPORT,
        help="Command that wraps the single-user command in the job and reports its address.",
    ).tag(config=True)

    exec_prefix = Unicode("").tag(config=True)
    batch_submit_cmd = Unicode(f"{MINIBATCH} submit").tag(config=True)
    batch_query_cmd = Unicode(f"{MINIBATCH} status {{job_id}}").tag(config=True)
    batch_cancel_cmd = Unicode(f"{MINIBATCH} cancel {{job_id}}").tag(config=True)
    batch_script = Unicode(
        "#!minibatch\n"
        "#MB name=jupyterhub-singleuser\n"
        "#MB runtime={runtime}\n"
        "{prologue}\n"
        "{cmd}\n"
        "{epilogue}\n"
    ).tag(config=True)
    state_pending_re = Unicode(r"state=PENDING").tag(config=True)
    state_running_re = Unicode(r"state=RUNNING").tag(config=True)
    state_exechost_re = Unicode(r"host=(\S+)").tag(config=True)
    state_unknown_re = Unicode(r"cannot reach the scheduler").tag(config=True)
    startup_poll_interval = 0.5

    @default("req_username")
    def _default_username(self) -> str:
        # the Outpost's stand-in users are hub users, not accounts on this machine
        return self.user.name

    @default("req_homedir")
    def _default_homedir(self) -> str:
        return ""

    def cmd_formatted_for_batch(self) -> str:
        """The job's command line: report_address wrapping the single-user command."""
        return " ".join(
            [*shlex.split(self.report_command), "--", *map(shlex.quote, self.cmd + self.get_args())]
        )

    def _client_env(self, env: dict | None) -> dict:
        merged = dict(os.environ if env is None else env)
        if self.minibatch_server:
            merged["MINIBATCH_SERVER"] = self.minibatch_server
        if self.minibatch_token_file:
            merged["MINIBATCH_TOKEN_FILE"] = self.minibatch_token_file
        return merged

    async def run_command(self, cmd, input=None, env=None):
        """Run ``cmd`` split with shlex (no shell); return stdout, raise with stderr."""
        proc = await asyncio.create_subprocess_exec(
            *shlex.split(cmd),
            env=self._client_env(env),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate(input.encode() if input else None)
        if proc.returncode != 0:
            raise RuntimeError(
                err.decode(errors="replace").strip() or f"{cmd}: exit {proc.returncode}"
            )
        return out.decode(errors="replace").strip()

    async def cancel_batch_job(self):
        """Cancel the job; a submission that failed left no job to cancel (batchspawner
        would run the cancel command without a job id and fail the cleanup)."""
        if self.job_id:
            await super().cancel_batch_job()

    def address(self) -> tuple[str, int] | None:
        """(host, port) the job reported to minibatch, parsed from the last status."""
        for part in (self.job_status or "").split():
            if part.startswith("address="):
                host, _, port = part[len("address=") :].rpartition(":")
                return host, int(port)
        return None

    async def start(self):
        self.port = 0
        await self.submit_batch_script()
        if not self.job_id:
            raise RuntimeError("minibatch submission failed (no job id in its output)")
        while True:
            status = await self.query_job_status()
            if status == JobStatus.RUNNING and (self.delayed_address or self.address()):
                break
            if status not in (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.UNKNOWN):
                reason = self.job_status
                self.clear_state()
                raise RuntimeError(f"the batch job ended before its server started: {reason}")
            await asyncio.sleep(self.startup_poll_interval)  # polling the scheduler
        if self.delayed_address:
            self.ip = self.state_gethost() or ""
            return ""
        self.ip, self.port = self.address()
        return self.ip, self.port
