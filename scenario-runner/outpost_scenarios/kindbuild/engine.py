"""The project's Docker engine: Debian's dockerd, started and stopped by the scenario runner.

One engine per machine, shared by everyone who builds kind images or runs kind clusters
on it (``make docker-engine`` installs Debian's ``docker.io``; ``start()`` runs it).
It stays up after the runner exits: stopping it would kill the others' clusters, so only
``jupyterhub-outpost kind engine stop`` stops it.

How it runs, and why:

- in the host's network namespace, with its own socket, data root and exec root
  (``/run/docker-outpost.sock``, ``/var/lib/docker-outpost``, ``/run/docker-outpost``),
  so that it never meets a distribution's own docker.service;
- ``--iptables=false --ip-forward=false --ip-masq=false``: it leaves the host's firewall
  and sysctls alone. A dockerd with its defaults sets the FORWARD policy to DROP, which
  drops the traffic between the network namespaces that ``make test`` and the local
  scenarios build. Kind needs none of those rules here: every image is built on this
  machine and preloaded (no container reaches the internet), the API servers are
  published on 127.0.0.1 through docker-proxy, and the nodes, the host and the
  LoadBalancer addresses (MetalLB, L2) all sit on the one kind bridge;
- ``runc_wrapper.py`` as the default runtime, because kind's privileged nodes ask for
  capabilities this VM's bounding set lacks (see that file).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .commands import BuildError
from .waiting import wait_until

WRAPPER = Path(__file__).resolve().with_name("runc_wrapper.py")
RUNTIME = "outpost-runc"
REAL_RUNC = "/usr/sbin/runc"
INSTALL_HINT = "run `make docker-engine` as root (installs Debian's docker.io)"


class EngineError(BuildError):
    """The Docker engine cannot be used or started; the message says why."""


@dataclass(frozen=True)
class Engine:
    """Where the project's dockerd keeps its socket, state and log."""

    socket: Path = Path("/run/docker-outpost.sock")
    data_root: Path = Path("/var/lib/docker-outpost")
    exec_root: Path = Path("/run/docker-outpost")
    log: Path = Path("/var/log/docker-outpost.log")
    wrapper: Path = WRAPPER
    # the dockerd program (default: the one on PATH, else /usr/sbin/dockerd)
    dockerd: str | None = None
    # ``--bridge``: an existing bridge for the default network instead of docker0 (not
    # "none": dockerd then deletes docker0, which another engine may be using)
    bridge: str | None = None
    start_timeout: float = 120

    @property
    def host(self) -> str:
        """DOCKER_HOST for docker, kind and kubectl clients of this engine."""
        return f"unix://{self.socket}"

    @property
    def pidfile(self) -> Path:
        return self.exec_root / "dockerd.pid"

    def env(self) -> dict[str, str]:
        """This process's environment with DOCKER_HOST pointing at this engine."""
        return {**os.environ, "DOCKER_HOST": self.host}

    def argv(self, dockerd: str) -> list[str]:
        bridge = [f"--bridge={self.bridge}"] if self.bridge else []
        return [
            dockerd,
            "--host",
            self.host,
            "--data-root",
            str(self.data_root),
            "--exec-root",
            str(self.exec_root),
            "--pidfile",
            str(self.pidfile),
            "--iptables=false",
            "--ip-forward=false",
            "--ip-masq=false",
            "--add-runtime",
            f"{RUNTIME}={self.wrapper}",
            "--default-runtime",
            RUNTIME,
            *bridge,
        ]

    # --- state -------------------------------------------------------------------------

    def request(self, path: str, timeout: float = 5) -> tuple[int, bytes]:
        """GET ``path`` of the engine API over its socket: (status, body)."""
        connection = _UnixHTTPConnection(str(self.socket), timeout)
        try:
            connection.request("GET", path, headers={"Host": "docker"})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def answers(self) -> bool:
        """True when dockerd answers on the socket (GET /_ping)."""
        try:
            return self.request("/_ping") == (200, b"OK")
        except OSError:
            return False

    def info(self) -> dict:
        status, body = self.request("/info", timeout=30)
        if status != 200:
            raise EngineError(f"the Docker engine at {self.socket} answered /info with {status}")
        return json.loads(body)

    def running_pid(self) -> int | None:
        """The pid in our pidfile if that process is a dockerd, else None."""
        try:
            pid = int(self.pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        return pid if cmdline and Path(cmdline[0].decode()).name == "dockerd" else None

    def problem(self) -> str | None:
        """None when this engine answers and runs containers with the wrapper, else why not."""
        if not self.answers():
            return f"no Docker engine answers on {self.socket} (start it: jupyterhub-outpost kind engine start)"
        runtimes = self.info().get("Runtimes", {})
        if RUNTIME not in runtimes:
            return (
                f"the Docker engine at {self.socket} has no {RUNTIME} runtime: it was not "
                "started by the scenario runner (stop it and run: jupyterhub-outpost kind engine start)"
            )
        return None

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> bool:
        """Start dockerd unless it answers already; True if this call started it.

        EngineError says what is missing or why dockerd did not come up (with the end of
        its log)."""
        if self.answers():
            return False
        if os.geteuid() != 0:
            raise EngineError(
                "the Docker engine needs root (dockerd manages bridges, mounts and cgroups); "
                f"nothing answers on {self.socket}"
            )
        dockerd = (
            self.dockerd or shutil.which("dockerd") or shutil.which("dockerd", path="/usr/sbin")
        )
        if dockerd is None or not os.access(dockerd, os.X_OK):
            raise EngineError(f"dockerd is not installed: {INSTALL_HINT}")
        if not os.access(REAL_RUNC, os.X_OK):
            raise EngineError(f"{REAL_RUNC} is missing (the runc wrapper runs it): {INSTALL_HINT}")
        if not os.access(self.wrapper, os.X_OK):
            raise EngineError(f"the runc wrapper {self.wrapper} is not executable")
        pid = self.running_pid()
        if pid is not None:
            raise EngineError(
                f"dockerd (pid {pid}) runs but does not answer on {self.socket}; "
                f"see {self.log}, or stop it: jupyterhub-outpost kind engine stop"
            )
        for path in (self.exec_root, self.log.parent):
            path.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            process = subprocess.Popen(
                self.argv(dockerd),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # the engine outlives the runner
            )

        def up() -> bool:
            if process.poll() is not None:
                raise EngineError(
                    f"dockerd exited with code {process.returncode} while starting:\n"
                    + self.log_tail()
                )
            return self.answers()

        try:
            wait_until(up, f"dockerd to answer on {self.socket}", self.start_timeout)
        except TimeoutError as e:
            raise EngineError(f"{e}; end of {self.log}:\n{self.log_tail()}") from e
        return True

    def stop(self, timeout: float = 60) -> bool:
        """Stop the dockerd of our pidfile (SIGTERM, then wait); True if one was running.

        Its containers stop with it (kind clusters come back with ``docker start``)."""
        pid = self.running_pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)

        def gone() -> bool:
            try:
                os.waitpid(pid, os.WNOHANG)  # reap it if this process started it
            except ChildProcessError:
                pass
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                return True
            return stat.rsplit(")", 1)[1].split()[0] == "Z"  # a zombie has exited

        try:
            wait_until(gone, f"dockerd (pid {pid}) to exit", timeout)
        except TimeoutError as e:
            raise EngineError(f"{e}; see {self.log}") from e
        return True

    def log_tail(self, size: int = 3000) -> str:
        try:
            with open(self.log, "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - size))
                return f.read().decode(errors="replace")
        except OSError:
            return f"(no log at {self.log})"


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("docker", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock
