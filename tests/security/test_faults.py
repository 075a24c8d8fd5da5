"""Faults: the database goes away under a running Outpost.

Other faults are proved elsewhere (see docs/security.md): the Outpost SIGKILLed during a
start (tests/outpost/test_outpost_recovery.py), the SSH endpoint and the tunnel daemon
restarted (tests/tunnels/test_recovery.py, tests/hub/test_integration.py), the hub
restarted (tests/hub/test_integration.py).
"""

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.helpers.hub_process import wait_until
from tests.helpers.outpost_process import process_alive
from tests.helpers.postgres import PostgresServer
from tests.outpost.support import HUBS, MINI_SINGLEUSER

pytestmark = pytest.mark.postgres


def call(outpost, method, path, body=None, hub="hub1", timeout=30):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        outpost.url + path, data=data, method=method, headers=outpost.auth(hub)
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw.decode(errors="replace")


def body(name):
    return {
        "name": name,
        "env": {"JUPYTERHUB_API_TOKEN": f"token-{name}", "JUPYTERHUB_USER": "alice"},
        "user_options": {},
        "misc": {},
    }


class PausablePostgres(PostgresServer):
    """A PostgreSQL server of its own that a test may stop and start again (same port)."""

    def pause(self):
        self._run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")

    def resume(self):
        self._run(
            "pg_ctl",
            "-D",
            self.data,
            "-l",
            str(Path(self.tmp) / "log"),
            "-w",
            "-t",
            "60",
            "-o",
            f"-h {self.host} -p {self.port} -k {self.sockets} -c fsync=off",
            "start",
        )


@pytest.fixture
def own_postgres():
    reason = PostgresServer.unavailable_reason()
    if reason:
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    server = PausablePostgres().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("workers", [1, 2])
def test_database_outage_is_503_and_the_outpost_recovers_without_restart(
    own_postgres, outpost_process_factory, tmp_path, workers
):
    """Also with ``serve --workers 2``: each worker's coordination connection (LISTEN,
    advisory locks) is cut with the database and comes back by itself."""
    db = own_postgres.create_database()
    config = tmp_path / "outpost_config.py"
    config.write_text(
        "import sys\n"
        "from jupyterhub.spawner import SimpleLocalProcessSpawner\n"
        "c.JupyterHubOutpost.spawner_class = SimpleLocalProcessSpawner\n"
        f"c.SimpleLocalProcessSpawner.cmd = [sys.executable, {MINI_SINGLEUSER!r}]\n"
        f"c.SimpleLocalProcessSpawner.home_dir_template = {str(tmp_path / 'home' / '{username}')!r}\n"
        f"c.JupyterHubOutpost.db_url = {db.url!r}\n"
    )
    outpost = outpost_process_factory(
        config,
        tmp_path / "data",
        hub_credentials=dict(HUBS),
        extra_args=["--workers", str(workers)],
    )
    assert call(outpost, "POST", "/services", body("before"))[0] == 200
    pid = outpost.pid

    own_postgres.pause()
    # a poll of a server this Outpost runs is answered from its index and the spawner,
    # without the database (the poll path of issue 19); what needs the store is refused.
    # With 2 workers, the one that never polled it must read the store: 503
    polled = call(outpost, "GET", "/services/before")
    assert polled == (200, {"status": None}) or (workers == 2 and polled[0] == 503), polled
    for method, path, payload in (
        ("GET", "/services", None),
        ("GET", "/services/unknown", None),
        ("POST", "/services", body("during")),
        ("DELETE", "/services/before", None),
        ("GET", "/flavors", None),
    ):
        code, answer = call(outpost, method, path, payload)
        assert code == 503, (method, path, code, answer)
        assert "database" in answer["error"].lower(), answer
        assert "Traceback" not in answer["error"]
    assert outpost.running and outpost.pid == pid

    own_postgres.resume()
    # the same process answers again: nothing was lost, the refused start left nothing
    code, services = wait_until(
        lambda: (r := call(outpost, "GET", "/services"))[0] == 200 and r, 30, "the database back"
    )
    assert [s["name"] for s in services] == ["before"]
    assert call(outpost, "GET", "/services/before")[1] == {"status": None}
    assert call(outpost, "POST", "/services", body("after"))[0] == 200
    assert call(outpost, "DELETE", "/services/before")[0] == 200
    assert call(outpost, "DELETE", "/services/after")[0] == 200
    assert call(outpost, "GET", "/services")[1] == []
    assert outpost.pid == pid and process_alive(pid)
    log = outpost.log_text()
    assert "the database is not reachable" in log
    assert "Unexpected error" not in log  # an outage is not logged as a bug
