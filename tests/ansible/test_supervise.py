"""supervise.py, the roles' fallback for hosts without systemd: start is idempotent, a
program that dies is started again, stop ends both, restart gives a new process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.hub_process import wait_until

from .lab import ANSIBLE_DIR

SUPERVISE = ANSIBLE_DIR / "roles" / "process_supervisor" / "files" / "supervise.py"
PROGRAM = "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); time.sleep(3600)"


def sv(tmp: Path, action: str, *extra: str) -> str:
    argv = [
        sys.executable,
        str(SUPERVISE),
        action,
        "--pidfile",
        str(tmp / "p.pid"),
        "--logfile",
        str(tmp / "p.log"),
        "--stop-timeout",
        "5",
        *extra,
    ]
    if action in ("start", "restart"):
        argv += ["--env-file", str(tmp / "env"), "--", sys.executable, "-c", PROGRAM]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert proc.returncode in (0, 3), proc.stderr
    return proc.stdout.strip()


def children(tmp: Path) -> list[int]:
    text = (tmp / "p.log").read_text() if (tmp / "p.log").exists() else ""
    return [int(p) for p in re.findall(r"as pid (\d+)", text)]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def tmp(tmp_path):
    (tmp_path / "env").write_text("# comment\nSOME_VAR=value\n")
    yield tmp_path
    sv(tmp_path, "stop")
    for pid in children(tmp_path):
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_start_is_idempotent_and_reports_whether_it_started(tmp):
    first = sv(tmp, "start")
    assert first.startswith("started ")
    supervisor = int(first.split()[1])
    assert sv(tmp, "start") == f"running {supervisor}"
    assert sv(tmp, "status") == f"running {supervisor}"
    child = wait_until(lambda: children(tmp), 10, "the program to start")[0]
    with open(f"/proc/{child}/environ", "rb") as f:
        assert b"SOME_VAR=value" in f.read().split(b"\0")


def test_program_that_dies_is_started_again(tmp):
    sv(tmp, "start")
    first = wait_until(lambda: children(tmp), 10, "the program to start")[0]
    os.kill(first, signal.SIGKILL)
    second = wait_until(lambda: children(tmp)[1:], 15, "the program to be restarted")[0]
    assert second != first and alive(second)


def test_stop_ends_supervisor_and_program_and_removes_pidfile(tmp):
    supervisor = int(sv(tmp, "start").split()[1])
    child = wait_until(lambda: children(tmp), 10, "the program to start")[0]
    assert sv(tmp, "stop") == f"stopped {supervisor}"
    assert not (tmp / "p.pid").exists()
    wait_until(lambda: not alive(child) and not alive(supervisor), 10, "both to end")
    assert sv(tmp, "status") == "stopped"


def test_restart_replaces_the_program(tmp):
    sv(tmp, "start")
    first = wait_until(lambda: children(tmp), 10, "the program to start")[0]
    out = sv(tmp, "restart")
    assert "stopped" in out and "started" in out
    second = wait_until(lambda: children(tmp)[1:], 10, "the new program")[0]
    assert not alive(first) and alive(second)
