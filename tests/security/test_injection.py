"""Injection through every field a hub controls: rejected, or carried as data; nothing runs.

Each payload that a shell, a path join, a log line or a template could act on tries to
create a canary file. The Outpost runs a real server process (env_server.py, started by
SimpleLocalProcessSpawner) that reports its whole environment, so accepted values are
compared byte for byte with what the hub sent.
"""

import asyncio
import json
import logging
import sys
from pathlib import Path

import pytest
from jupyterhub.spawner import SimpleLocalProcessSpawner
from traitlets.config import Config

from tests.outpost.support import HUBS, fetch_or_none, start_body, wait_for

ENV_SERVER = str(Path(__file__).resolve().parent / "env_server.py")


def payloads(canary: Path) -> list[str]:
    c = str(canary)
    return [
        f"$(touch {c}/dollar)",
        f"`touch {c}/backtick`",
        f"; touch {c}/semicolon",
        f"| touch {c}/pipe",
        f"&& touch {c}/and",
        f"\ntouch {c}/newline\n",
        f"'; touch {c}/squote; '",
        f'"; touch {c}/dquote; "',
        f"${{IFS}}touch${{IFS}}{c}/ifs",
        "../../../../../../etc/passwd",
        "%s%n%x{0}{user}{{7*7}}${7*7}",
        "ünïcödé ☃ 𝄞 \u202eevil\u202c \u00a0 \u200b",
        "x" * 20000,
    ]


def env_server_config(tmp_path) -> Config:
    c = Config()
    c.JupyterHubOutpost.spawner_class = SimpleLocalProcessSpawner
    c.JupyterHubOutpost.hub_credentials = dict(HUBS)
    c.JupyterHubOutpost.ssh_enabled = False
    c.SimpleLocalProcessSpawner.cmd = [sys.executable, ENV_SERVER]
    c.SimpleLocalProcessSpawner.home_dir_template = str(tmp_path / "home" / "{username}")
    c.SimpleLocalProcessSpawner.interrupt_timeout = 2
    c.SimpleLocalProcessSpawner.term_timeout = 2
    c.SimpleLocalProcessSpawner.kill_timeout = 2
    return c


@pytest.fixture
def canary(tmp_path):
    path = tmp_path / "canary"
    path.mkdir()
    yield path
    assert sorted(p.name for p in path.iterdir()) == [], "an injected command ran"


@pytest.fixture
async def env_outpost(make_outpost, tmp_path):
    return await make_outpost(env_server_config(tmp_path))


async def test_shell_metacharacters_in_env_values_arrive_as_data_and_nothing_runs(
    env_outpost, canary
):
    values = payloads(canary)
    env = {f"OUTPOST_INJ_{i}": value for i, value in enumerate(values)}
    code, data = await env_outpost.api.call("POST", "/services", body=start_body("inj", env=env))
    assert code == 200, data
    info = await wait_for(lambda: fetch_or_none(data["service"]), "the server answers")
    seen = info["env"]
    for key, value in env.items():
        assert seen[key] == value  # byte for byte
    assert (await env_outpost.api.call("DELETE", "/services/inj"))[0] == 200


async def test_metacharacters_in_user_options_and_flavor_are_stored_as_data(env_outpost, canary):
    values = payloads(canary)
    user_options = {f"k{i}": v for i, v in enumerate(values)}
    user_options.update({v[:60]: "key" for v in values})  # as keys, too
    user_options["flavor"] = values[0][:63]
    code, data = await env_outpost.api.call(
        "POST", "/services", body=start_body("uo", user_options=user_options)
    )
    assert code == 200, data
    (row,) = await env_outpost.app.store.list_hub("hub1")
    assert row.user_options == user_options and row.flavor == values[0][:63]
    code, flavors = await env_outpost.api.call("GET", "/flavors")
    assert code == 200 and values[0][:63] not in flavors  # not a configured flavor
    assert (await env_outpost.api.call("DELETE", "/services/uo"))[0] == 200


@pytest.mark.parametrize(
    "name",
    [
        "$(touch x)",
        "a;b",
        "../etc",
        "a/b",
        "a b",
        "a\nb",
        "ä",
        "",
        "x" * 64,
        "%2e%2e",
    ],
)
async def test_malicious_server_names_are_rejected_and_nothing_is_stored(env_outpost, name):
    code, data = await env_outpost.api.call("POST", "/services", body=start_body(name))
    assert code == 400 and "server name" in data["error"].lower(), data
    assert await env_outpost.app.store.list_hub("hub1") == []


@pytest.mark.parametrize(
    "key",
    ["A;B", "$(touch x)", "A\nB", "A=B", "A B", "", "A\x00B", "`x`", "../x", "ä"],
)
async def test_env_keys_that_are_not_variable_names_are_rejected(env_outpost, key):
    """A key with a newline would become a line of a batch script (BatchSpawner writes the
    env's keys into #SBATCH --export=...); '=' or NUL make the exec fail later."""
    code, data = await env_outpost.api.call(
        "POST", "/services", body=start_body("k", env={key: "value"})
    )
    assert code == 400 and "env" in data["error"], data
    assert await env_outpost.app.store.list_hub("hub1") == []


async def test_nul_byte_in_an_env_value_is_rejected(env_outpost):
    code, data = await env_outpost.api.call(
        "POST", "/services", body=start_body("n", env={"X": "a\x00b"})
    )
    assert code == 400 and "env" in data["error"], data
    assert await env_outpost.app.store.list_hub("hub1") == []


@pytest.mark.parametrize(
    "user",
    ["../../escape", "a/b", "..", ".", " alice", "alice ", "a\nb", ""],
)
async def test_user_names_that_jupyterhub_would_refuse_are_rejected(env_outpost, tmp_path, user):
    """The user name selects home directories and system users: a hub may not name one
    that JupyterHub itself refuses (slash, only dots, surrounding space, control chars)."""
    code, data = await env_outpost.api.call("POST", "/services", body=start_body("u", user=user))
    assert code == 400 and "JUPYTERHUB_USER" in data["error"], data
    assert await env_outpost.app.store.list_hub("hub1") == []
    assert not (tmp_path / "escape").exists()


async def test_newlines_in_hub_controlled_values_cannot_forge_log_lines(env_outpost, caplog):
    forged = "\n[I 2026-11-22 00:00:00.000 JupyterHubOutpost] FORGED admin logged in"
    caplog.set_level(logging.DEBUG)
    env_outpost.app.log.addHandler(caplog.handler)  # the app's logger does not propagate
    try:
        body = start_body("logf", user_options={"flavor": "f" + forged[:60]})
        code, data = await env_outpost.api.call("POST", "/services", body=body)
        assert code == 200, data
        assert (await env_outpost.api.call("DELETE", "/services/logf"))[0] == 200
    finally:
        env_outpost.app.log.removeHandler(caplog.handler)
    messages = [record.getMessage() for record in caplog.records]
    assert any("Starting server logf" in m and "\\n[I 2026" in m for m in messages), messages
    for message in messages:
        assert "\n[I 2026" not in message


@pytest.mark.parametrize(
    "request_id", ["a b", "x;rm", "../x", "a" * 65, "id\\nforged", "$(id)", "é"]
)
async def test_unsafe_request_ids_are_replaced_not_echoed(env_outpost, request_id):
    port = int(env_outpost.url.rsplit(":", 1)[1])
    raw = (
        f"GET /ping HTTP/1.1\r\nHost: x\r\nX-Request-Id: {request_id}\r\nConnection: close\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    ids = [line for line in head.split(b"\r\n") if line.lower().startswith(b"x-request-id:")]
    assert len(ids) == 1
    echoed = ids[0].split(b":", 1)[1].strip().decode()
    assert echoed != request_id and echoed.isalnum()
    assert json.loads(body)["status"] == "ok"


async def test_huge_values_are_refused_or_carried_never_a_crash(env_outpost, canary):
    big = "y" * 300_000  # over Linux's 128 KiB limit of one environment string
    code, data = await env_outpost.api.call(
        "POST", "/services", body=start_body("huge", user_options={"big": big})
    )
    assert code == 200, data
    (row,) = await env_outpost.app.store.list_hub("hub1")
    assert row.user_options["big"] == big
    code, data = await env_outpost.api.call(
        "POST", "/services", body=start_body("hugeenv", env={"BIG": big})
    )
    # the exec fails (E2BIG): a clear failure, no traceback, nothing left of that start
    assert code in (400, 500), data
    assert "Traceback" not in data["error"]
    assert [r.name for r in await env_outpost.app.store.list_hub("hub1")] == ["huge"]
    assert (await env_outpost.api.call("DELETE", "/services/huge"))[0] == 200
