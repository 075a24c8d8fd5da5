"""The job line LabSlurmSpawner writes into the job script (run by bash) keeps every path
whole: the checkout, and so the venv's python and scripts, may live on a path with spaces."""

import shlex
import sys
from types import SimpleNamespace

from jupyterhub.objects import Hub
from outpost_scenarios.slurm_spawner import LabSlurmSpawner


def test_job_line_keeps_paths_with_spaces_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "executable", "/home/a user/.venv/bin/python")
    spawner = LabSlurmSpawner(
        user=SimpleNamespace(name="alice", escaped_name="alice", url="/user/alice/", id=1),
        hub=Hub(),
        homes_dir=str(tmp_path),
        cmd=["/opt/my venv/bin/jupyterhub-singleuser"],
    )
    assert shlex.split(spawner.cmd_formatted_for_batch()) == [
        "/home/a user/.venv/bin/python",
        "-m",
        "outpost_scenarios.report_address",
        "--",
        "/opt/my venv/bin/jupyterhub-singleuser",
        *spawner.get_args(),
    ]
