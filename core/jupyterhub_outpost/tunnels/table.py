"""The forward table: what one forward is, how a request body becomes one, and the state file.

The state file is JSON, written atomically (temporary file in the same directory, fsync,
rename; mode 0600) on every change of the table, so that the daemon's restart (even after
SIGKILL) brings every forward back on the same local port.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass

import asyncssh

STATE_VERSION = 1
# used with fullmatch: "$" would let a trailing newline through
KEY_RE = re.compile(r"[A-Za-z0-9._-]{1,128}")
_HOST_RE = re.compile(r"[A-Za-z0-9_.:\[\]-]{1,253}")
_USER_RE = re.compile(r"[A-Za-z0-9_.@-]{1,128}")
_KEY_LINE_RE = re.compile(r"[a-z0-9@.-]{3,64} [A-Za-z0-9+/]+={0,3}( [^\r\n]*)?")


class ForwardRequestError(ValueError):
    """A forward request (API body or state file entry) is invalid; the message says why."""


@dataclass(frozen=True)
class SSHTarget:
    """Where the SSH connection goes. One connection per distinct SSHTarget."""

    host: str
    port: int
    user: str
    host_key: str  # pinned OpenSSH public key line, "type base64" (no comment)

    def describe(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


@dataclass(frozen=True)
class ForwardSpec:
    """One forward as stored: local_host:local_port -> (SSH) -> target_host:target_port."""

    key: str
    ssh: SSHTarget
    target_host: str
    target_port: int
    local_host: str
    local_port: int

    def to_dict(self) -> dict:
        return asdict(self)


def _port(value, what: str, *, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ForwardRequestError(f"{what} must be an integer, got {value!r}")
    low = 0 if allow_zero else 1
    if not low <= value <= 65535:
        raise ForwardRequestError(f"{what} must be between {low} and 65535, got {value}")
    return value


def _host(value, what: str) -> str:
    if not isinstance(value, str) or not _HOST_RE.fullmatch(value):
        raise ForwardRequestError(f"{what} must be a hostname or IP address, got {value!r}")
    return value


def normalize_host_key(line) -> str:
    """Parse a pinned OpenSSH public key line; return ``"type base64"`` without comment."""
    if not isinstance(line, str) or not _KEY_LINE_RE.fullmatch(line.strip()):
        raise ForwardRequestError(
            "ssh.host_key must be one OpenSSH public key line ('ssh-ed25519 AAAA...')"
        )
    try:
        key = asyncssh.import_public_key(line.strip())
    except (asyncssh.KeyImportError, ValueError) as e:
        raise ForwardRequestError(
            f"ssh.host_key is not a readable OpenSSH public key line ({e})"
        ) from None
    return " ".join(key.export_public_key("openssh").decode().split()[:2])


def check_key(key: str) -> str:
    if not isinstance(key, str) or not KEY_RE.fullmatch(key):
        raise ForwardRequestError(
            f"forward key {key!r} must match [A-Za-z0-9._-]{{1,128}} (e.g. '<outpost>.<server>')"
        )
    return key


def parse_ssh(value) -> SSHTarget:
    if not isinstance(value, dict):
        raise ForwardRequestError('"ssh" must be an object {host, port, user, host_key}')
    unknown = set(value) - {"host", "port", "user", "host_key"}
    if unknown:
        raise ForwardRequestError(f'"ssh" has unknown fields: {", ".join(sorted(unknown))}')
    for field in ("host", "port", "user", "host_key"):
        if field not in value:
            raise ForwardRequestError(f'"ssh.{field}" is missing')
    user = value["user"]
    if not isinstance(user, str) or not _USER_RE.fullmatch(user):
        raise ForwardRequestError(f"ssh.user must be a user name, got {user!r}")
    return SSHTarget(
        host=_host(value["host"], "ssh.host"),
        port=_port(value["port"], "ssh.port"),
        user=user,
        host_key=normalize_host_key(value["host_key"]),
    )


def parse_request(body) -> tuple[SSHTarget, str, int, int | None]:
    """Validate a PUT /forwards/{key} body: (ssh, target_host, target_port, local_port)."""
    if not isinstance(body, dict):
        raise ForwardRequestError("the body must be a JSON object")
    unknown = set(body) - {"ssh", "target_host", "target_port", "local_port"}
    if unknown:
        raise ForwardRequestError(f"unknown fields: {', '.join(sorted(unknown))}")
    for field in ("ssh", "target_host", "target_port"):
        if field not in body:
            raise ForwardRequestError(f'"{field}" is missing')
    ssh = parse_ssh(body["ssh"])
    target_host = _host(body["target_host"], "target_host")
    target_port = _port(body["target_port"], "target_port")
    local_port = body.get("local_port")
    if local_port is not None:
        local_port = _port(local_port, "local_port")
    return ssh, target_host, target_port, local_port


def spec_from_dict(data) -> ForwardSpec:
    """Read one state-file entry (validated like an API request)."""
    if not isinstance(data, dict):
        raise ForwardRequestError("state entry is not an object")
    key = check_key(data.get("key"))
    ssh = parse_ssh(data.get("ssh"))
    return ForwardSpec(
        key=key,
        ssh=ssh,
        target_host=_host(data.get("target_host"), "target_host"),
        target_port=_port(data.get("target_port"), "target_port"),
        local_host=_host(data.get("local_host"), "local_host"),
        local_port=_port(data.get("local_port"), "local_port"),
    )


def load_state(path: str) -> list[ForwardSpec]:
    """The forwards stored in ``path`` ([] when the file does not exist).

    Raises ``ForwardRequestError`` when the file cannot be read, so that the daemon refuses to
    start instead of silently forgetting forwards (move the file away to start empty).
    """
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as e:
        raise ForwardRequestError(f"cannot read the state file {path}: {e}") from None
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        raise ForwardRequestError(
            f"state file {path} has an unknown format (expected version {STATE_VERSION})"
        )
    specs = []
    for i, entry in enumerate(data.get("forwards", [])):
        try:
            specs.append(spec_from_dict(entry))
        except ForwardRequestError as e:
            raise ForwardRequestError(f"state file {path}, forward #{i + 1}: {e}") from None
    return specs


def save_state(path: str, specs: list[ForwardSpec]) -> None:
    """Write ``specs`` to ``path`` atomically (temp file + fsync + rename), mode 0600."""
    data = {"version": STATE_VERSION, "forwards": [s.to_dict() for s in specs]}
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
