"""Start a real ``jupyterhub-outpost`` process for a test, and kill it on purpose.

Usage::

    from tests.helpers.outpost_process import OutpostProcess, outpost_process_factory

    def test_x(tmp_path, outpost_process_factory):
        outpost = outpost_process_factory(
            config_file=tmp_path / "outpost_config.py",   # your c.JupyterHubOutpost.* etc.
            data_dir=tmp_path / "data",
            hub_credentials={"hub1": "secret1"},           # written to a JSON file
        )                                                  # started; /ping answered
        outpost.url                        # "http://127.0.0.1:PORT"
        outpost.auth("hub1")               # {"Authorization": "Basic ..."}
        outpost.kill()                     # SIGKILL: servers it started survive
        outpost.start()                    # same data dir, keys, port: a restart
        outpost.terminate()                # SIGTERM, graceful

``OutpostProcess`` runs ``jupyterhub-outpost serve --config GENERATED
--ip 127.0.0.1 --port PORT --data-dir DATA_DIR --log-level DEBUG``. The generated config
loads your config file and then sets ``hub_credentials`` to a JSON file, and (unless
you pass ``ssh=True``) ``ssh_enabled = False``. ``OUTPOST_CRYPT_KEYS`` is a fresh key per
instance (kept across restarts) unless ``env`` sets it. Output goes to
``DATA_DIR/outpost.log`` (``log_text()``), printed when a wait fails.

The Outpost runs under a tiny init process (a child subreaper, like tini in a container):
servers orphaned by a SIGKILLed Outpost are re-parented to it and reaped when they exit,
as PID 1 does on a real host. ``close()`` (called by the fixture at teardown, also when
the test failed) stops the Outpost and SIGKILLs every process still left under that init,
so no server outlives the test.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

# A child subreaper: starts argv, prints its pid, reaps every descendant that exits.
# SIGTERM/SIGINT go to the Outpost; SIGUSR1 SIGKILLs every remaining child and exits.
_INIT_CODE = r"""
import ctypes, os, signal, subprocess, sys
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
child = subprocess.Popen(sys.argv[1:], stdout=sys.stderr, stderr=sys.stderr)
sys.stdout.write(f"{child.pid}\n"); sys.stdout.flush()
def children():
    me = str(os.getpid())
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[1] == me:
                        found.append(int(entry))
            except (OSError, IndexError):
                pass
    return found
def forward(signum, frame):
    try:
        os.kill(child.pid, signum)
    except ProcessLookupError:
        pass
def kill_all(signum, frame):
    for pid in children():
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
signal.signal(signal.SIGTERM, forward)
signal.signal(signal.SIGINT, forward)
signal.signal(signal.SIGUSR1, kill_all)
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
    except InterruptedError:
        continue
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def basic_auth(hub: str, secret: str) -> dict[str, str]:
    token = base64.b64encode(f"{hub}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


class OutpostProcess:
    def __init__(
        self,
        config_file: str | os.PathLike,
        data_dir: str | os.PathLike,
        *,
        hub_credentials: dict[str, str] | None = None,
        env: dict[str, str] | None = None,
        port: int | None = None,
        ssh: bool = False,
        extra_args: list[str] | None = None,
        cwd: str | os.PathLike | None = None,
    ):
        self.config_file = Path(config_file).resolve()
        self.data_dir = Path(data_dir).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.hub_credentials = dict(hub_credentials or {})
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ)
        self.env.setdefault("OUTPOST_CRYPT_KEYS", Fernet.generate_key().decode())
        self.env.update(env or {})
        self.env["PYTHONUNBUFFERED"] = "1"
        self.ssh = ssh
        self.extra_args = list(extra_args or [])
        self.cwd = str(cwd) if cwd else os.getcwd()
        self.log_path = self.data_dir / "outpost.log"
        self.init: subprocess.Popen | None = None
        self.pid: int | None = None  # the Outpost's own pid
        self._inits: list[subprocess.Popen] = []  # every init started (each keeps its orphans)

    # --- files -----------------------------------------------------------------------
    def _write_config(self) -> Path:
        credentials = self.data_dir.parent / f"{self.data_dir.name}-hub-credentials.json"
        credentials.write_text(json.dumps(self.hub_credentials))
        os.chmod(credentials, 0o600)
        generated = self.data_dir.parent / f"{self.data_dir.name}-generated-config.py"
        lines = [
            f"load_subconfig({str(self.config_file)!r})",
            f"c.JupyterHubOutpost.hub_credentials = {str(credentials)!r}",
        ]
        if not self.ssh:
            lines.append("c.JupyterHubOutpost.ssh_enabled = False")
        generated.write_text("\n".join(lines) + "\n")
        return generated

    def argv(self) -> list[str]:
        """The real console script next to this Python (``python -m`` as a fallback)."""
        script = Path(sys.executable).parent / "jupyterhub-outpost"
        command = [str(script)] if script.exists() else [sys.executable, "-m", "jupyterhub_outpost"]
        return [
            *command,
            "serve",
            "--config",
            str(self._write_config()),
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            "--log-level",
            "DEBUG",
            *self.extra_args,
        ]

    def auth(self, hub: str, secret: str | None = None) -> dict[str, str]:
        """HTTP Basic header for ``hub`` (its secret from hub_credentials by default)."""
        return basic_auth(hub, self.hub_credentials[hub] if secret is None else secret)

    def call(
        self, method: str, path: str, body=None, *, hub: str, headers=None, timeout: float = 60
    ) -> tuple[int, object]:
        """One request as ``hub`` on a new connection: (status, JSON answer)."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={**self.auth(hub), **(headers or {})},
        )
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # --- life ------------------------------------------------------------------------
    def start(self, timeout: float = 30) -> OutpostProcess:
        """Start (or start again after kill/terminate) and wait until /ping answers."""
        if self.running:
            raise RuntimeError("this Outpost is still running")
        log = open(self.log_path, "ab")
        self.init = subprocess.Popen(
            [sys.executable, "-c", _INIT_CODE, *self.argv()],
            stdout=subprocess.PIPE,
            stderr=log,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
        )
        log.close()
        self._inits.append(self.init)
        line = self.init.stdout.readline().strip()
        if not line.isdigit():
            raise RuntimeError(f"the Outpost did not start: {self.log_text()[-3000:]}")
        self.pid = int(line)
        self.wait_ready(timeout)
        return self

    async def astart(self, timeout: float = 30) -> OutpostProcess:
        """``start()`` in a thread, for async tests whose loop must keep running."""
        import asyncio

        return await asyncio.to_thread(self.start, timeout)

    @property
    def running(self) -> bool:
        return self.pid is not None and _alive(self.pid)

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        wait = 0.05
        while True:
            if not self.running:
                raise RuntimeError(
                    f"the Outpost exited during start-up:\n{self.log_text()[-4000:]}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/ping", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"/ping did not answer in {timeout}s:\n{self.log_text()[-4000:]}"
                )
            time.sleep(wait)
            wait = min(wait * 2, 1.0)

    def kill(self) -> None:
        """SIGKILL the Outpost (not its servers) and wait until it is gone."""
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _wait_gone(self.pid, 10)
        self.pid = None

    def terminate(self, timeout: float = 15) -> None:
        """SIGTERM (graceful shutdown; servers keep running), SIGKILL after ``timeout``."""
        if self.pid is not None and _alive(self.pid):
            os.kill(self.pid, signal.SIGTERM)
            if not _wait_gone(self.pid, timeout):
                os.kill(self.pid, signal.SIGKILL)
                _wait_gone(self.pid, 5)
        self.pid = None

    def close(self) -> None:
        """Stop the Outpost and kill every process left under its init(s)."""
        self.terminate()
        for init in self._inits:
            if init.poll() is None:
                init.send_signal(signal.SIGUSR1)
                try:
                    init.wait(10)
                except subprocess.TimeoutExpired:
                    init.kill()
                    init.wait()
            if init.stdout:
                init.stdout.close()
        self._inits.clear()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    wait = 0.02
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(wait)
        wait = min(wait * 2, 0.5)
    return True


process_alive = _alive


@pytest.fixture
def outpost_process_factory():
    """Factory fixture: ``factory(config_file, data_dir, **kwargs)`` -> started OutpostProcess.

    Every process made is closed at teardown, also when the test failed.
    """
    made: list[OutpostProcess] = []

    def factory(config_file, data_dir, *, start: bool = True, **kwargs) -> OutpostProcess:
        process = OutpostProcess(config_file, data_dir, **kwargs)
        made.append(process)
        if start:
            process.start()
        return process

    yield factory
    for process in made:
        process.close()


class NetnsOutpost(OutpostProcess):
    """An OutpostProcess run inside a topology host and bound to one of its addresses."""

    def __init__(self, host, ip, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.host = host
        self.ip = ip
        self.port = host.free_port(ip)
        self.url = f"http://{ip}:{self.port}"

    def argv(self):
        argv = super().argv()
        argv[argv.index("--ip") + 1] = self.ip
        return self.host.argv(argv)


def keygen(path: Path) -> str:
    """An ed25519 key pair at ``path`` (``jupyterhub-outpost keygen ssh``); returns the
    public key line."""
    subprocess.run(
        [sys.executable, "-m", "jupyterhub_outpost", "keygen", "ssh", "--out", str(path)],
        check=True,
        capture_output=True,
    )
    return Path(str(path) + ".pub").read_text().strip()
