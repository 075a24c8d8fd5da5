"""The wheel a site installs holds the product only: no scenario tooling.

The wheel is built offline from a copy of the product's sources (pyproject.toml, README.md,
core/) with the venv's setuptools, the way ``pip install .`` builds it.
"""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def product_wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(
        REPO / "core", src / "core", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__")
    )
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(out),
            str(src),
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = out.glob("jupyterhub_outpost-*.whl")
    return wheel


def test_product_wheel_holds_no_scenario_tooling(product_wheel):
    names = zipfile.ZipFile(product_wheel).namelist()
    packages = {name.split("/")[0] for name in names if not name.endswith(".dist-info/")}
    assert "jupyterhub_outpost" in packages
    assert not [n for n in names if "outpost_scenarios" in n or "/topology/" in n], names
    assert not [n for n in names if "minibatch" in n or "report_address" in n], names
    assert packages <= {"jupyterhub_outpost"} | {n for n in packages if n.endswith(".dist-info")}


def test_topology_without_the_runner_says_how_to_install_it(product_wheel, tmp_path):
    """Only the product installed (the unpacked wheel, no site-packages): the subcommand
    exits non-zero naming the distribution and how to install it."""
    zipfile.ZipFile(product_wheel).extractall(tmp_path)
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from jupyterhub_outpost.cli import main; main(['topology', 'up', 'scenarios/one-remote'])"
    )
    proc = subprocess.run(
        [sys.executable, "-S", "-c", code, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc
    assert "(distribution jupyterhub-outpost-scenarios) is not installed" in proc.stderr
    assert "pip install -e ./scenario-runner" in proc.stderr
