"""`jupyterhub-outpost keygen`: key pairs for hubs, fingerprints, encryption keys."""

import os
import stat
import subprocess
import sys

import asyncssh
from cryptography.fernet import Fernet


def keygen(*args):
    argv = [sys.executable, "-m", "jupyterhub_outpost", "keygen", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def test_keygen_ssh_writes_private_key_0600_and_prints_public_key_and_fingerprint(tmp_path):
    path = tmp_path / "hub_key"
    out = keygen("ssh", "--out", str(path))
    assert out.returncode == 0, out.stderr
    public_line, fingerprint = out.stdout.splitlines()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    key = asyncssh.read_private_key(str(path))
    assert key.get_algorithm() == "ssh-ed25519"
    assert public_line.split()[:2] == key.export_public_key().decode().split()[:2]
    assert (tmp_path / "hub_key.pub").read_text().strip() == public_line
    assert fingerprint == key.get_fingerprint("sha256") and fingerprint.startswith("SHA256:")


def test_keygen_ssh_does_not_overwrite_without_force(tmp_path):
    path = tmp_path / "hub_key"
    assert keygen("ssh", "--out", str(path)).returncode == 0
    before = path.read_bytes()
    out = keygen("ssh", "--out", str(path))
    assert out.returncode == 1 and "--force" in out.stderr
    assert path.read_bytes() == before
    assert keygen("ssh", "--out", str(path), "--force").returncode == 0
    assert path.read_bytes() != before


def test_keygen_fingerprint_of_private_and_public_key_agree(tmp_path):
    path = tmp_path / "k"
    fingerprint = keygen("ssh", "--out", str(path)).stdout.splitlines()[1]
    assert keygen("fingerprint", str(path)).stdout.strip() == fingerprint
    assert keygen("fingerprint", str(path) + ".pub").stdout.strip() == fingerprint
    bad = keygen("fingerprint", str(tmp_path / "missing"))
    assert bad.returncode == 1 and "cannot read a key" in bad.stderr


def test_keygen_crypt_key_is_a_fernet_key():
    out = keygen("crypt-key")
    assert out.returncode == 0
    Fernet(out.stdout.strip().encode())  # raises if malformed
