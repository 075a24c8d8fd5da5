"""``jupyterhub-outpost keygen``: SSH key pairs, host key fingerprints, encryption keys.

jupyterhub-outpost keygen ssh --out PATH [--comment TEXT] [--force]
    ed25519 key pair: PATH (private, 0600) and PATH.pub; prints the public key line
    and its SHA256 fingerprint.
jupyterhub-outpost keygen fingerprint PATH
    SHA256 fingerprint of a private or public key file (or of a public key line read
    from PATH), e.g. to compare an Outpost's host key with the one a hub pins.
jupyterhub-outpost keygen crypt-key
    a new Fernet key for OUTPOST_CRYPT_KEYS.
"""

from __future__ import annotations

import argparse
import os
import sys

import asyncssh
from cryptography.fernet import Fernet


def write_private_key(path: str, key: asyncssh.SSHKey, *, force: bool = False) -> None:
    """Write ``key`` in OpenSSH format to ``path`` (mode 0600) and its public line to ``path.pub``."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    fd = os.open(path, flags, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.export_private_key())
    pub_flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    pub_fd = os.open(path + ".pub", pub_flags, 0o644)
    with os.fdopen(pub_fd, "wb") as f:
        f.write(key.export_public_key())


def generate_ssh_key(path: str, *, comment: str = "jupyterhub-outpost", force: bool = False):
    """Create an ed25519 key pair at ``path``; return the key."""
    key = asyncssh.generate_private_key("ssh-ed25519", comment=comment)
    write_private_key(path, key, force=force)
    return key


def public_key_line(key: asyncssh.SSHKey) -> str:
    return key.export_public_key().decode().strip()


def read_any_key(path: str) -> asyncssh.SSHKey:
    """A private or public key from ``path``."""
    try:
        return asyncssh.read_private_key(path)
    except (asyncssh.KeyImportError, ValueError):
        return asyncssh.read_public_key(path)


def new_crypt_key() -> str:
    return Fernet.generate_key().decode()


def run(argv: list[str] | None = None) -> int:
    """Run the keygen command; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="jupyterhub-outpost keygen", description="Generate SSH keys and encryption keys."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_ssh = sub.add_parser("ssh", help="create an ed25519 SSH key pair")
    p_ssh.add_argument(
        "--out", required=True, help="private key file; PATH.pub gets the public key"
    )
    p_ssh.add_argument("--comment", default="jupyterhub-outpost")
    p_ssh.add_argument("--force", action="store_true", help="overwrite an existing file")
    p_fp = sub.add_parser("fingerprint", help="SHA256 fingerprint of a key file")
    p_fp.add_argument("path")
    sub.add_parser("crypt-key", help="print a new Fernet key for OUTPOST_CRYPT_KEYS")
    args = parser.parse_args(argv)

    if args.command == "ssh":
        try:
            key = generate_ssh_key(args.out, comment=args.comment, force=args.force)
        except FileExistsError:
            print(f"{args.out} exists; pass --force to overwrite it", file=sys.stderr)
            return 1
        print(public_key_line(key))
        print(key.get_fingerprint("sha256"))
    elif args.command == "fingerprint":
        try:
            key = read_any_key(args.path)
        except (OSError, asyncssh.KeyImportError, ValueError) as e:
            print(f"cannot read a key from {args.path}: {e}", file=sys.stderr)
            return 1
        print(key.get_fingerprint("sha256"))
    elif args.command == "crypt-key":
        print(new_crypt_key())
    return 0


def main(argv: list[str] | None = None) -> None:
    status = run(argv)
    if status:
        sys.exit(status)


if __name__ == "__main__":
    main()
