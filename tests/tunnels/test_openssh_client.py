"""A stock OpenSSH client (what existing hubs use with `ssh -L`) works against our endpoint."""

import shutil
import subprocess

import pytest
from conftest import Proc, free_port, http_get, port_open, wait_until

pytestmark = pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the OpenSSH client")


def ssh_argv(tmp_path, hub_key, endpoint, *extra, command=()):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{endpoint.port} {endpoint.public_host_key}\n")
    return [
        "ssh",
        "-F",
        "/dev/null",
        "-i",
        hub_key.path,
        "-p",
        str(endpoint.port),
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        *extra,
        "hub@127.0.0.1",
        *command,
    ]


async def test_openssh_local_forward_through_endpoint(procs, tmp_path, hub_key, endpoint, target):
    local = free_port()
    argv = ssh_argv(
        tmp_path,
        hub_key,
        endpoint,
        "-N",
        "-o",
        "ExitOnForwardFailure=yes",
        "-L",
        f"127.0.0.1:{local}:127.0.0.1:{target.port}",
    )
    ssh = Proc("ssh", argv, tmp_path / "ssh.log")
    procs.append(ssh)
    ssh.start()
    await wait_until(lambda: port_open(local), "ssh -L did not listen")
    assert await http_get(local) == (200, b"hello from target")
    n = 5 * 1024 * 1024
    status, body = await http_get(local, f"/bytes/{n}", timeout=60)
    assert status == 200 and len(body) == n


def test_openssh_command_is_refused(tmp_path, hub_key, endpoint):
    out = subprocess.run(
        ssh_argv(tmp_path, hub_key, endpoint, command=["id"]),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode != 0
    assert "uid=" not in out.stdout
    assert "open failed" in out.stderr, out.stderr  # the session channel was refused
