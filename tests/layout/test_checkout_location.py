"""Tests do not depend on where the checkout lives.

A new user clones into a directory that only they can enter (``/root``, any ``mktemp -d``:
mode 0700). Tests that run something as another system user (a server as ``nobody``,
PostgreSQL as ``postgres``) must not hand that user a file or a working directory inside
the checkout. This test copies the working tree (what git tracks, plus new files it does
not ignore) into a 0700 directory, on a path with a space, and runs the tests marked
``other_user`` there with this virtualenv: they must pass, with the same outcome as from
this checkout (nothing skipped there that runs here).
"""

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def working_tree_files() -> list[str]:
    out = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=True,
    ).stdout
    return [name for name in out.decode().split("\0") if name and (REPO / name).is_file()]


def marked_files() -> list[str]:
    """The test files with an ``other_user`` test (collecting only these is fast)."""
    return sorted(
        str(path.relative_to(REPO))
        for path in (REPO / "tests").rglob("test_*.py")
        if "pytest.mark.other_user" in path.read_text()
    )


def summary(output: str) -> str:
    return output.strip().splitlines()[-1]


def run_selection(checkout: Path, basetemp: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs"]
        + ["--basetemp", str(basetemp), "-m", "other_user", *marked_files()],
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="only root starts processes as other users")
@pytest.mark.skipif(shutil.which("git") is None, reason="copies the working tree with git")
def test_tests_that_run_as_other_users_pass_from_a_checkout_in_a_private_directory(tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    checkout = private / "check out"  # and on a path with a space
    for name in working_tree_files():
        (checkout / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, checkout / name)
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    here = run_selection(REPO, tmp_path / "here")
    there = run_selection(checkout, tmp_path / "there")
    assert there.returncode == 0, there.stdout[-4000:] + there.stderr[-2000:]
    assert "passed" in summary(there.stdout)
    # the same outcome as from this checkout: nothing skipped there that runs here
    assert summary(there.stdout).split(" in ")[0] == summary(here.stdout).split(" in ")[0]
