"""The run directory: per-run secrets, SSH keys, rendered files, service data and logs.

Layout (everything a run writes lives here)::

    RUN_DIR/
      topology.json          state of the running topology (prefix, runner pid, hosts, pids)
      secrets/NAME           one generated secret per file (0600)
      ssh/NAME, ssh/NAME.pub an ed25519 key pair per entry of ssh_keys (0600 / 0644)
      files/PATH             files rendered from the scenario's templates
      data/SERVICE/          each service's working directory ({data_dir})
      logs/SERVICE.log       each service's output, as streamed
"""

from __future__ import annotations

import base64
import json
import os
import secrets as pysecrets
import shutil

import asyncssh

from .spec import Context, SecretSpec, TopologySpec, render

STATE_FILE = "topology.json"
SUBDIRS = ("secrets", "ssh", "files", "data", "logs")


def default_run_dir(spec: TopologySpec) -> str:
    """``./run/<scenario name>`` below the current directory (``run/`` is git-ignored)."""
    return os.path.abspath(os.path.join("run", spec.name))


def make_secret(s: SecretSpec) -> str:
    raw = pysecrets.token_bytes(s.bytes)
    if s.kind == "hex":
        return raw.hex()
    if s.kind == "urlsafe":
        return pysecrets.token_urlsafe(s.bytes)
    if s.kind == "fernet":
        return base64.urlsafe_b64encode(pysecrets.token_bytes(32)).decode()
    if s.kind == "password":
        return pysecrets.token_urlsafe(max(12, s.bytes // 2))
    raise ValueError(f"unknown secret kind {s.kind}")


def _write(path: str, text: str, mode: int) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, mode)


def prepare(run_dir: str) -> None:
    """Empty the generated parts of ``run_dir`` (a previous run's logs go too)."""
    os.makedirs(run_dir, exist_ok=True)
    for sub in SUBDIRS:
        shutil.rmtree(os.path.join(run_dir, sub), ignore_errors=True)
        os.makedirs(os.path.join(run_dir, sub))
    os.chmod(os.path.join(run_dir, "secrets"), 0o700)
    os.chmod(os.path.join(run_dir, "ssh"), 0o700)


def generate_secrets(spec: TopologySpec, ctx: Context) -> None:
    """Make every secret and SSH key of the spec and record them in ``ctx``."""
    for s in spec.secrets.values():
        value = make_secret(s)
        path = os.path.join(ctx.run_dir, "secrets", s.name)
        _write(path, value, 0o600)
        ctx.secrets[s.name] = value
        ctx.secret_files[s.name] = path
    for name in spec.ssh_keys:
        key = asyncssh.generate_private_key("ssh-ed25519", comment=f"{spec.name}-{name}")
        path = os.path.join(ctx.run_dir, "ssh", name)
        _write(path, key.export_private_key("openssh").decode(), 0o600)
        pub = key.export_public_key("openssh").decode().strip()
        _write(path + ".pub", pub + "\n", 0o644)
        ctx.ssh_keys[name] = path
        ctx.ssh_pubs[name] = pub


def file_paths(spec: TopologySpec, run_dir: str) -> dict[str, str]:
    return {f.path: os.path.join(run_dir, "files", f.path) for f in spec.files}


def render_files(spec: TopologySpec, ctx: Context) -> None:
    """Render each entry of ``files`` (template from the scenario folder, or inline content)."""
    for f in spec.files:
        if f.template is not None:
            with open(os.path.join(spec.scenario_dir, f.template)) as fh:
                text = fh.read()
        else:
            text = f.content or ""
        _write(ctx.files[f.path], render(text, ctx, where=f"files[{f.path}]"), f.mode)


def write_state(run_dir: str, state: dict) -> None:
    path = os.path.join(run_dir, STATE_FILE)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f, indent=2)
    os.replace(tmp, path)


def read_state(run_dir: str) -> dict | None:
    try:
        with open(os.path.join(run_dir, STATE_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def remove_state(run_dir: str) -> None:
    for name in (STATE_FILE, STATE_FILE + ".tmp"):
        try:
            os.unlink(os.path.join(run_dir, name))
        except FileNotFoundError:
            pass
