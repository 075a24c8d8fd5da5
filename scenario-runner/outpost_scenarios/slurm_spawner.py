"""LabSlurmSpawner: batchspawner's SlurmSpawner as the delayed-tunnel scenario's Outpost runs it.

A real site runs ``batchspawner.SlurmSpawner`` with its own job script; this subclass
changes only what the lab needs and what a careful site would change too:

- commands run without a shell: ``run_command`` splits them with ``shlex`` and runs them
  directly (batchspawner's own goes through ``/bin/sh``);
- jobs run as the Outpost's user (root in the lab: the hub's users have no accounts on
  this machine), each user with a home directory under ``homes_dir`` (the site's shared
  home file system: the login host and the compute nodes see the same one);
- the job wraps the single-user server in ``report_address``, which reports the server's
  address to the hub itself (delayed tunneling), so ``start()`` returns ``""`` as soon as
  the job runs; batchspawner's own ``start()`` would wait for the job to call the hub's
  batchspawner API, which an Outpost does not have;
- ``user_options`` (which the hub's users choose) fill only the job script's free
  placeholders; they never replace the command or a ``req_*`` value (batchspawner merges
  them over those).

The Outpost's environment gives the Slurm client commands their cluster: ``SLURM_CONF``
(a site has /etc/slurm/slurm.conf instead).
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys

from batchspawner import JobStatus, SlurmSpawner
from traitlets import Unicode, default

# a job needs only what the single-user server needs; SLURM_CONF comes from slurmd
JOB_SCRIPT = """#!/bin/bash
#SBATCH --job-name=jupyterhub-{{username}}
#SBATCH --output="{{homedir}}/jupyterhub-%j.log"
#SBATCH --chdir="{{homedir}}"
#SBATCH --export={{keepvars}}
{% if runtime %}#SBATCH --time={{runtime}}
{% endif %}{% if nprocs %}#SBATCH --cpus-per-task={{nprocs}}
{% endif %}{% if partition %}#SBATCH --partition={{partition}}
{% endif %}
set -euo pipefail
{{prologue}}
{% if srun %}{{srun}} {% endif %}{{cmd}}
{{epilogue}}
"""


class LabSlurmSpawner(SlurmSpawner):
    """Spawn single-user servers as Slurm jobs (see the module docstring)."""

    homes_dir = Unicode(
        help="Directory holding one home directory per user (the site's shared homes).",
    ).tag(config=True)

    @default("homes_dir")
    def _default_homes_dir(self) -> str:
        return os.path.join(os.getcwd(), "homes")

    report_command = Unicode(
        help="""Command that wraps the single-user command in the job and reports its
        address (default: report_address run by this Python).""",
    ).tag(config=True)

    @default("report_command")
    def _default_report_command(self) -> str:
        return f"{shlex.quote(sys.executable)} -m outpost_scenarios.report_address"

    exec_prefix = Unicode("").tag(config=True)
    batch_script = Unicode(JOB_SCRIPT).tag(config=True)

    @default("req_username")
    def _default_username(self) -> str:
        return self.user.name

    @default("req_homedir")
    def _default_homedir(self) -> str:
        return os.path.join(self.homes_dir, self.user.name)

    def user_env(self, env: dict) -> dict:
        """USER and HOME of the job (no account lookup: the hub's users have none here)."""
        env["USER"] = self.user.name
        env["HOME"] = self.req_homedir
        return env

    def cmd_formatted_for_batch(self) -> str:
        """The job's command line: report_address wrapping the single-user command."""
        return shlex.join([*shlex.split(self.report_command), "--", *self.cmd, *self.get_args()])

    async def _get_batch_script(self, **subvars) -> str:
        # batchspawner merged user_options over the script's values: put the site's back
        subvars.update(self.get_req_subvars())
        subvars["cmd"] = self.cmd_formatted_for_batch()
        return await super()._get_batch_script(**subvars)

    async def run_command(self, cmd, input=None, env=None):
        """Run ``cmd`` split with shlex (no shell); return stdout, raise with stderr."""
        env = dict(os.environ if env is None else env)
        if "SLURM_CONF" in os.environ:
            env.setdefault("SLURM_CONF", os.environ["SLURM_CONF"])
        proc = await asyncio.create_subprocess_exec(
            *shlex.split(cmd),
            env=env,
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
        would run scancel without a job id and fail the cleanup)."""
        if self.job_id:
            await super().cancel_batch_job()

    async def start(self):
        """Submit the job and return ``""`` once it runs: the server reports its address
        to the hub itself. A job that ends while pending fails the start with its state."""
        os.makedirs(self.req_homedir, exist_ok=True)
        self.port = 0
        await self.submit_batch_script()
        if not self.job_id:
            raise RuntimeError("sbatch gave no job id")
        while True:
            status = await self.query_job_status()
            if status == JobStatus.RUNNING:
                break
            if status not in (JobStatus.PENDING, JobStatus.UNKNOWN):
                job = self.job_id
                self.clear_state()
                raise RuntimeError(f"Slurm job {job} ended before it ran")
            await asyncio.sleep(self.startup_poll_interval)  # polling squeue, as batchspawner
        self.ip = self.state_gethost() or ""
        return ""
