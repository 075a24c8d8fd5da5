"""Namespace hosts that Ansible reaches over SSH: one sshd per host, pinned host keys.

Every file lives under the test's temp dir: sshd configs, host keys, the client key,
known_hosts, the SSH control sockets, and the roles' install paths of each host.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from outpost_scenarios import netns

from tests.helpers.hub_process import wait_until

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = REPO / "ansible"
BIN = Path(sys.executable).parent
SSHD = "/usr/sbin/sshd"
CHP = REPO / ".venv" / "node" / "node_modules" / ".bin" / "configurable-http-proxy"
MINI_SINGLEUSER = REPO / "tests" / "outpost" / "mini_singleuser.py"


def ssh_keygen(path: Path, comment: str) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
    )
    return Path(str(path) + ".pub").read_text().strip()


def port_open(ip: str, port: int) -> bool:
    """Can this (root) namespace connect to ip:port? (hosts are on a host_access network)"""
    try:
        with socket.create_connection((ip, port), timeout=1):
            return True
    except OSError:
        return False


@dataclass
class SSHHost:
    name: str
    host: netns.Host
    root: Path
    host_key_pub: str = ""
    proc: subprocess.Popen | None = None

    @property
    def ip(self) -> str:
        return self.host.ip


@dataclass
class AnsibleLab:
    """A Lab plus sshd per host, a client key and a pinned known_hosts file."""

    tmp: Path
    lab: netns.Lab
    hosts: dict[str, SSHHost] = field(default_factory=dict)

    def __post_init__(self):
        self.ssh_dir = self.tmp / "ssh"
        self.ssh_dir.mkdir(parents=True, exist_ok=True)
        self.client_key = self.ssh_dir / "ansible_ed25519"
        self.client_pub = ssh_keygen(self.client_key, "ansible-test")
        self.authorized_keys = self.ssh_dir / "authorized_keys"
        self.authorized_keys.write_text(self.client_pub + "\n")
        self.known_hosts = self.ssh_dir / "known_hosts"
        self.known_hosts.write_text("")
        # ssh control sockets: a short path (unix sockets are limited to 108 bytes)
        self.control_dir = Path(tempfile.mkdtemp(prefix="jotcp", dir="/tmp"))
        self.net = self.lab.add_network("public", host_access=True)

    def add_host(self, name: str) -> SSHHost:
        host = self.lab.add_host(name, ["public"])
        root = self.tmp / "hosts" / name
        sshd_dir = root / "sshd"
        sshd_dir.mkdir(parents=True)
        key = sshd_dir / "ssh_host_ed25519_key"
        pub = ssh_keygen(key, f"sshd@{name}")
        config = sshd_dir / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    f"ListenAddress {host.ip}:22",
                    f"HostKey {key}",
                    f"PidFile {sshd_dir / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.authorized_keys}",
                    "PermitRootLogin prohibit-password",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "StrictModes no",
                    "X11Forwarding no",
                    "AllowAgentForwarding no",
                    "PrintMotd no",
                    "Subsystem sftp internal-sftp",
                    "",
                ]
            )
        )
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege separation directory
        log = open(sshd_dir / "sshd.log", "wb")  # noqa: SIM115 - lives as long as sshd
        proc = host.popen([SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=log)
        ssh_host = SSHHost(name, host, root, pub, proc)
        wait_until(
            lambda: proc.poll() is not None or port_open(host.ip, 22),
            20,
            f"sshd of {name}",
        )
        if proc.poll() is not None:
            raise RuntimeError(f"sshd of {name} exited: {(sshd_dir / 'sshd.log').read_text()}")
        with self.known_hosts.open("a") as f:
            f.write(f"{host.ip} {' '.join(pub.split()[:2])}\n")
        self.hosts[name] = ssh_host
        return ssh_host

    # ------------------------------------------------------------------ ansible
    def ssh_args(self) -> str:
        return " ".join(
            [
                f"-o UserKnownHostsFile={self.known_hosts}",
                "-o StrictHostKeyChecking=yes",
                "-o IdentitiesOnly=yes",
                "-o ControlMaster=auto",
                "-o ControlPersist=120s",
                f"-o ControlPath={self.control_dir}/%C",
            ]
        )

    def close_control_masters(self) -> None:
        for h in self.hosts.values():
            subprocess.run(
                [
                    "ssh",
                    "-O",
                    "exit",
                    "-o",
                    f"ControlPath={self.control_dir}/%C",
                    "-o",
                    f"UserKnownHostsFile={self.known_hosts}",
                    f"root@{h.ip}",
                ],
                capture_output=True,
                timeout=10,
            )
        shutil.rmtree(self.control_dir, ignore_errors=True)


RECAP = re.compile(
    r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M
)


@dataclass
class PlaybookRun:
    returncode: int
    output: str
    seconds: float

    def recap(self) -> dict[str, dict[str, int]]:
        return {
            m.group(1): {
                "ok": int(m.group(2)),
                "changed": int(m.group(3)),
                "unreachable": int(m.group(4)),
                "failed": int(m.group(5)),
            }
            for m in RECAP.finditer(self.output)
        }

    def changed_tasks(self) -> list[str]:
        """Task headers followed by a 'changed:' line (for readable failures)."""
        out, task = [], ""
        for line in self.output.splitlines():
            if line.startswith("TASK ["):
                task = line
            elif line.startswith("changed:"):
                out.append(f"{task} {line}")
        return out


def run_playbook(
    inventory: Path | str, *args: str, timeout: float = 600, env_extra=None, tmp: Path | None = None
) -> PlaybookRun:
    import time

    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(ANSIBLE_DIR / "ansible.cfg"),
        ANSIBLE_ROLES_PATH=str(ANSIBLE_DIR / "roles"),
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_LOCAL_TEMP=str((tmp or Path(inventory).parent) / ".ansible-tmp"),
        PATH=f"{BIN}:{env.get('PATH', '')}",
        ANSIBLE_CALLBACKS_ENABLED="ansible.posix.profile_tasks",
    )
    env.update(env_extra or {})
    started = time.monotonic()
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(inventory), *args],
        cwd=ANSIBLE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return PlaybookRun(proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started)


def write_yaml(path: Path, data) -> None:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
