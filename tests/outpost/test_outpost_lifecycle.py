"""Start, poll and stop a real server (a process answering HTTP) through the REST API."""

import sqlite3

import pytest
from sqlalchemy import text

from tests.helpers.outpost_process import process_alive

from .support import (
    fetch_or_none,
    fetch_server,
    local_spawner_config,
    server_answers,
    start_body,
    wait_for,
)


async def _start_poll_stop(outpost):
    api = outpost.api
    code, data = await api.call("POST", "/services", body=start_body("lab-1", user="alice"))
    assert code == 200, data
    address = data["service"]
    assert address.startswith("127.0.0.1:")
    await wait_for(lambda: server_answers(address), f"server at {address} answers")
    info = await fetch_server(address)
    # the server got what the hub sent: user, server name, prefix, its API token
    assert info["user"] == "alice"
    assert info["server_name"] == "lab-1"
    assert info["prefix"] == "/user/alice/lab-1/"
    assert info["has_token"] is True
    pid = info["pid"]

    code, data = await api.call("GET", "/services/lab-1")
    assert (code, data) == (200, {"status": None})
    code, listing = await api.call("GET", "/services")
    assert code == 200
    assert [(s["name"], s["status"], s["service"]) for s in listing] == [
        ("lab-1", "running", address)
    ]

    code, data = await api.call("DELETE", "/services/lab-1")
    assert (code, data) == (200, {})
    assert not process_alive(pid)
    code, data = await api.call("GET", "/services/lab-1")
    assert code == 404 and "lab-1" in data["error"]
    code, listing = await api.call("GET", "/services")
    assert listing == []


async def test_real_server_started_polled_stopped_on_sqlite(outpost):
    await _start_poll_stop(outpost)


@pytest.mark.postgres
@pytest.mark.other_user  # the fixture runs PostgreSQL as the postgres user
async def test_real_server_started_polled_stopped_on_postgresql(
    make_outpost, postgres_server, tmp_path
):
    db = postgres_server.create_database()
    outpost = await make_outpost(db_url=db.url)
    assert outpost.app.store.url.get_backend_name() == "postgresql"
    await _start_poll_stop(outpost)


@pytest.mark.postgres
async def test_postgresql_from_sql_env_variables(make_outpost, postgres_server, monkeypatch):
    db = postgres_server.create_database()
    for key, value in db.env.items():
        monkeypatch.setenv(key, value)
    outpost = await make_outpost()
    assert outpost.app.store.url.database == db.name
    code, data = await outpost.api.call("POST", "/services", body=start_body("pg-env"))
    assert code == 200, data
    async with outpost.app.store.engine.connect() as conn:
        names = (await conn.execute(text("SELECT name FROM outpost_services"))).scalars().all()
    assert names == ["pg-env"]


async def test_async_start_and_stop_answer_202_and_finish_in_background(outpost):
    api = outpost.api
    code, data = await api.call(
        "POST", "/services", body=start_body("bg"), headers={"execution-type": "async"}
    )
    assert (code, data) == (202, {"service": ""})

    async def running_address():
        _, listing = await api.call("GET", "/services")
        return listing and listing[0]["status"] == "running" and listing[0]["service"]

    address = await wait_for(running_address, "async start finished")
    await wait_for(lambda: server_answers(address), "server answers")
    code, data = await api.call("GET", "/services/bg")
    assert (code, data) == (200, {"status": None})
    code, _ = await api.call("DELETE", "/services/bg", headers={"execution-type": "async"})
    assert code == 202

    async def gone():
        code, _ = await api.call("GET", "/services/bg")
        return code == 404

    await wait_for(gone, "async stop finished")


async def test_start_id_selects_the_start_and_other_ids_are_404(outpost):
    api = outpost.api
    body = start_body("sid", user_options={"start_id": "abc123"})
    code, _ = await api.call("POST", "/services", body=body)
    assert code == 200
    assert (await api.call("GET", "/services/sid/abc123")) == (200, {"status": None})
    code, data = await api.call("GET", "/services/sid/other")
    assert code == 404 and "other" in data["error"]
    code, _ = await api.call("DELETE", "/services/sid/other")
    assert code == 404
    code, _ = await api.call("DELETE", "/services/sid/abc123")
    assert code == 200


async def test_server_that_exits_reports_its_exit_code_then_stop_forgets_it(make_outpost, tmp_path):
    import sys

    c = local_spawner_config(tmp_path)
    c.SimpleLocalProcessSpawner.cmd = [sys.executable, "-c", "import sys; sys.exit(3)"]
    outpost = await make_outpost(c)
    api = outpost.api
    code, _ = await api.call("POST", "/services", body=start_body("short"))
    assert code == 200

    async def ended():
        _, data = await api.call("GET", "/services/short")
        return data["status"] is not None and data

    data = await wait_for(ended, "server exit noticed")
    assert data["status"] == 3
    assert (await api.call("DELETE", "/services/short"))[0] == 200
    assert (await api.call("GET", "/services/short"))[0] == 404


async def test_tokens_env_and_state_are_encrypted_at_rest(outpost):
    code, _ = await outpost.api.call("POST", "/services", body=start_body("enc"))
    assert code == 200
    path = outpost.app.store.url.database
    raw = sqlite3.connect(path).execute("SELECT secrets_enc, state_enc FROM outpost_services")
    secrets_enc, state_enc = raw.fetchone()
    assert "token-enc" not in secrets_enc and "JUPYTERHUB" not in secrets_enc
    assert secrets_enc.startswith("gAAAA") and state_enc.startswith("gAAAA")
    with open(path, "rb") as f:
        assert b"token-enc" not in f.read()


async def test_certs_sent_by_the_hub_are_written_privately_moved_and_removed_at_stop(outpost):
    import os
    import stat

    certs = {"keyfile": "KEY PEM", "certfile": "CERT PEM", "cafile": "CA PEM"}
    body = start_body("tls", certs=certs, internal_trust_bundles={"notebooks-ca": "BUNDLE"})
    code, data = await outpost.api.call("POST", "/services", body=body)
    assert code == 200, data
    row = (await outpost.app.store.list_hub("hub1"))[0]
    spawner = outpost.app.manager._spawners[row.id].spawner
    assert spawner.internal_ssl is True
    paths = spawner.cert_paths
    assert set(paths) == {"keyfile", "certfile", "cafile"}
    for key, path in paths.items():
        assert open(path).read() == certs[key]
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    env = spawner.get_env()
    assert env["JUPYTERHUB_SSL_KEYFILE"] == paths["keyfile"]
    assert (await outpost.api.call("DELETE", "/services/tls"))[0] == 200
    assert not any(os.path.exists(p) for p in paths.values())


def _local_user_reason():
    import os
    import pwd

    if os.geteuid() != 0:
        return "LocalProcessSpawner switches to the hub user's account: needs root"
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        return "no 'nobody' system user to start a server as"
    if not os.access("/usr/bin/python3", os.X_OK):
        return "no /usr/bin/python3 that the 'nobody' user can run"
    return None


@pytest.fixture
def mini_singleuser_for_nobody():
    """mini_singleuser.py where ``nobody`` can read it: the checkout, and pytest's tmp_path
    (under /tmp/pytest-of-root, mode 0700), may be private to root."""
    from tests.helpers.other_users import shared_copy

    from .support import MINI_SINGLEUSER

    with shared_copy(MINI_SINGLEUSER) as copy:
        yield str(copy)


@pytest.mark.other_user
async def test_local_process_spawner_runs_the_server_as_the_existing_system_user(
    make_outpost, tmp_path, mini_singleuser_for_nobody
):
    from tests.helpers.outpost_process import process_alive

    reason = _local_user_reason()
    if reason:
        print(f"SKIP: {reason}")
        pytest.skip(reason)
    c = local_spawner_config(tmp_path)
    c.JupyterHubOutpost.spawner_class = "jupyterhub.spawner.LocalProcessSpawner"
    c.LocalProcessSpawner.cmd = ["/usr/bin/python3", mini_singleuser_for_nobody]
    c.LocalProcessSpawner.interrupt_timeout = 3
    c.JupyterHubOutpost.local_user_name = "{user}"  # a trusted hub names this system's accounts
    outpost = await make_outpost(c)
    code, data = await outpost.api.call("POST", "/services", body=start_body("sys", user="nobody"))
    assert code == 200, data
    info = await wait_for(lambda: fetch_or_none(data["service"]), "server answers")
    assert info["user"] == "nobody"
    with open(f"/proc/{info['pid']}/status") as f:
        uid_line = next(line for line in f if line.startswith("Uid:"))
    assert uid_line.split()[1] == "65534"  # runs as nobody, not as the Outpost's root
    assert await outpost.api.call("GET", "/services/sys") == (200, {"status": None})
    assert (await outpost.api.call("DELETE", "/services/sys"))[0] == 200
    assert not process_alive(info["pid"])
