"""The import contracts (pyproject.toml, [tool.importlinter]) hold, and they would catch
the layering faults they are written for: an import circle inside a package, the tunnel
daemon importing the hub side, the product importing the scenario runner.

Each fault is put into a copy of the product package, which ``lint-imports`` then checks
in place of the real one (the copy comes first on PYTHONPATH)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(REPO / "pyproject.toml")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=REPO,
    )


def test_the_product_keeps_its_import_contracts():
    result = lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        # the circles this package had: orphans <-> handlers, migrations <-> app
        (
            "hub/api_handler.py",
            "from . import orphans",
            "No cycles are allowed in jupyterhub_outpost.hub",
        ),
        (
            "outpost/migrations.py",
            "from . import app",
            "No cycles are allowed in jupyterhub_outpost.outpost",
        ),
        (
            "tunnels/daemon.py",
            "from jupyterhub_outpost.hub import spawner",
            "The tunnel daemon does not import",
        ),
        (
            "outpost/runner.py",
            "from jupyterhub_outpost.hub import addresses",
            "The Outpost does not import",
        ),
        (
            "hub/spawner.py",
            "import outpost_scenarios.netns",
            "The product does not import the scenario",
        ),
    ],
)
def test_a_layering_fault_breaks_a_contract(tmp_path, module, line, broken):
    shutil.copytree(
        REPO / "core" / "jupyterhub_outpost",
        tmp_path / "jupyterhub_outpost",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    path = tmp_path / "jupyterhub_outpost" / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    result = lint_imports(pythonpath=tmp_path)
    assert result.returncode != 0, result.stdout
    assert broken in result.stdout, result.stdout
    assert "1 broken" in result.stdout, result.stdout
