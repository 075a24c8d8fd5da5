"""The runc wrapper of the project's Docker engine, run as dockerd runs it (a program with
runc's arguments) in front of the real runc.

``setpriv --bounding-set -net_raw`` starts it without CAP_NET_RAW in its bounding set, so
the drop is shown on any host, not only on VMs that lack CAP_SYS_RESOURCE.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from outpost_scenarios.kindbuild import runc_wrapper

WRAPPER = Path(runc_wrapper.__file__)
RUNC = Path(runc_wrapper.RUNC)

pytestmark = pytest.mark.skipif(
    not RUNC.exists() or shutil.which("setpriv") is None,
    reason=f"needs {RUNC} (Debian's runc) and setpriv (util-linux)",
)


def own_bounding_set() -> int:
    return runc_wrapper.bounding_set(Path("/proc/self/status").read_text())


def privileged_spec(bundle: Path) -> Path:
    """runc's default spec with every capability in every set, as Docker's --privileged."""
    subprocess.run([str(RUNC), "spec", "--bundle", str(bundle)], check=True)
    path = bundle / "config.json"
    spec = json.loads(path.read_text())
    spec["process"]["capabilities"] = {
        kind: list(runc_wrapper.CAPABILITIES) for kind in ("bounding", "effective", "permitted")
    }
    path.write_text(json.dumps(spec))
    return path


def run_wrapper(*args: str, drop_net_raw: bool = True) -> subprocess.CompletedProcess:
    prefix = ["setpriv", "--bounding-set", "-net_raw"] if drop_net_raw else []
    return subprocess.run(
        [*prefix, str(WRAPPER), *args], capture_output=True, text=True, timeout=60
    )


def expected_without(unavailable: set[str]) -> list[str]:
    return [c for c in runc_wrapper.CAPABILITIES if c not in unavailable]


def test_create_drops_capabilities_outside_the_bounding_set_from_the_bundle(tmp_path):
    spec_path = privileged_spec(tmp_path)
    unavailable = runc_wrapper.unavailable(own_bounding_set()) | {"CAP_NET_RAW"}

    # no rootfs in the bundle: runc itself fails after the wrapper has done its part
    run_wrapper("--root", str(tmp_path / "state"), "create", "--bundle", str(tmp_path), "c1")

    capabilities = json.loads(spec_path.read_text())["process"]["capabilities"]
    assert capabilities == {
        kind: expected_without(unavailable) for kind in ("bounding", "effective", "permitted")
    }


def test_exec_drops_capabilities_from_the_process_file(tmp_path):
    process_file = tmp_path / "process.json"
    process_file.write_text(
        json.dumps(
            {
                "args": ["true"],
                "cwd": "/",
                "capabilities": {"bounding": ["CAP_NET_RAW", "CAP_KILL"]},
            }
        )
    )

    result = run_wrapper("--root", str(tmp_path / "state"), "exec", "-p", str(process_file), "nope")

    assert result.returncode != 0  # the container does not exist: runc's own error
    document = json.loads(process_file.read_text())
    assert document["capabilities"]["bounding"] == ["CAP_KILL"]


def test_a_spec_with_only_available_capabilities_is_not_rewritten(tmp_path):
    spec_path = privileged_spec(tmp_path)
    available = expected_without(runc_wrapper.unavailable(own_bounding_set()))
    spec = json.loads(spec_path.read_text())
    spec["process"]["capabilities"] = {"bounding": available}
    spec_path.write_text(json.dumps(spec, indent=1))
    before = spec_path.read_bytes()

    run_wrapper(
        "--root", str(tmp_path / "state"), "run", "-b", str(tmp_path), "c2", drop_net_raw=False
    )

    assert spec_path.read_bytes() == before


def test_other_commands_reach_runc_unchanged():
    ours = run_wrapper("--version", drop_net_raw=False)
    real = subprocess.run([str(RUNC), "--version"], capture_output=True, text=True)
    assert (ours.returncode, ours.stdout) == (0, real.stdout)


@pytest.mark.parametrize(
    "args, command",
    [
        (["--root", "/r", "--log", "/l", "--systemd-cgroup", "create", "x"], "create"),
        (["--log-format=json", "exec", "-p", "f", "x"], "exec"),
        (["--rootless", "auto", "run", "x"], "run"),
        (["--debug"], None),
    ],
)
def test_the_subcommand_is_found_after_runcs_global_options(args, command):
    assert runc_wrapper.subcommand(args)[0] == command


def test_the_bundle_defaults_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert runc_wrapper.spec_file(["create", "id"]) == str(tmp_path / "config.json")
    assert runc_wrapper.spec_file(["create", "--bundle=/b", "id"]) == "/b/config.json"
    assert runc_wrapper.spec_file(["state", "id"]) is None


def test_this_vms_missing_capability_is_named_from_its_mask():
    assert runc_wrapper.unavailable(0x000001FFFEFFFFFF) == {"CAP_SYS_RESOURCE"}
    assert runc_wrapper.unavailable(0x000001FFFFFFFFFF) == set()
