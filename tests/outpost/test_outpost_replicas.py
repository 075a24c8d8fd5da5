"""Two independent ``jupyterhub-outpost serve --replicated`` processes on one PostgreSQL
database, as the chart's replicas run (separate hosts: no shared memory, each its own port):
any replica answers any hub about any server, a replica never answers a poll from what it
holds in memory, a server is started and stopped once, flavor limits hold exactly across
replicas, and a killed leader is followed by the other replica (recovery, orphaned starts).
What a replica refuses to run with is checked at start-up. The spawner is
bench.cheap_spawner.CheapSpawner: its poll answers from its state, so a replica that
answered from memory would say "running" for a server stopped elsewhere."""

import asyncio
import os
import re
import signal

import pytest
from cryptography.fernet import Fernet

from tests.helpers.outpost_process import OutpostProcess

from .shared_database import (
    HUBS,
    STARTS_FILE,
    STOPS_FILE,
    call,
    config,
    parallel,
    refused_start_log,
    users_in,
)
from .support import start_body, wait_for

pytestmark = pytest.mark.postgres


@pytest.fixture
def two_replicas(tmp_path, postgres_server, outpost_process_factory):
    """(replica a, replica b, database): both started, same keys, one database."""

    def make(extra: str = ""):
        db = postgres_server.create_database()
        keys = {"OUTPOST_CRYPT_KEYS": Fernet.generate_key().decode()}
        path = config(tmp_path, extra + f"\nc.JupyterHubOutpost.db_url = {db.url!r}\n")
        a, b = (
            outpost_process_factory(
                path,
                tmp_path / f"data-{name}",
                hub_credentials=dict(HUBS),
                env=keys,
                extra_args=["--replicated"],
            )
            for name in "ab"
        )
        return a, b, db

    return make


def test_any_replica_answers_any_hub_about_servers_the_other_started(two_replicas):
    a, b, _ = two_replicas()
    results = parallel([(a, "POST", "/services", start_body(f"s{i}")) for i in range(6)])
    assert [code for code, _ in results] == [200] * 6, results
    assert call(b, "POST", "/services", start_body("theirs"), "hub2")[0] == 200
    for replica in (a, b):
        polls = parallel([(replica, "GET", f"/services/s{i}") for i in range(6)])
        assert all(answer == (200, {"status": None}) for answer in polls), polls
        code, listed = call(replica, "GET", "/services", hub="hub2")
        assert code == 200 and [s["name"] for s in listed] == ["theirs"]
        assert call(replica, "GET", "/services/s1", hub="hub2")[0] == 404
        assert call(replica, "GET", "/services/theirs")[0] == 404


def test_a_replica_whose_notifications_stall_answers_from_the_row_not_from_memory(
    two_replicas, postgres_server
):
    """A replica answers a poll from memory only once its own notification, sent after the
    poll arrived, came back (every change announced before it has then arrived). Its
    database session is stopped (SIGSTOP: nothing is delivered, nothing comes back) and the
    row is changed: the replica must answer what the row says, not the "running" it holds."""
    a, b, db = two_replicas()
    assert call(a, "POST", "/services", start_body("quiet"))[0] == 200
    for _ in range(3):  # b indexes it (a poll that found it running) and answers from there
        assert call(b, "GET", "/services/quiet") == (200, {"status": None})
    [backend] = re.findall(
        r"Coordination connection to PostgreSQL \(backend pid (\d+)\)", b.log_text()
    )
    os.kill(int(backend), signal.SIGSTOP)
    try:
        postgres_server.psql(
            "UPDATE outpost_services SET status = 'stopped', exit_status = 7 WHERE name = 'quiet'",
            database=db.name,
        )
        assert call(b, "GET", "/services/quiet") == (200, {"status": 7})
    finally:
        os.kill(int(backend), signal.SIGCONT)


def test_a_server_stopped_at_one_replica_is_ended_at_the_other_at_once(two_replicas):
    a, b, _ = two_replicas()
    for round_ in range(3):
        name = f"x{round_}"
        assert call(a, "POST", "/services", start_body(name))[0] == 200
        assert call(b, "GET", f"/services/{name}") == (200, {"status": None})
        assert call(a, "DELETE", f"/services/{name}")[0] == 200
        polls = parallel([(b, "GET", f"/services/{name}") for _ in range(8)])
        assert {code for code, _ in polls} == {404}, polls


def test_concurrent_starts_of_one_server_at_both_replicas_start_it_once(two_replicas, tmp_path):
    a, b, _ = two_replicas()
    results = parallel(
        [(a if i % 2 else b, "POST", "/services", start_body("once")) for i in range(16)]
    )
    assert sorted(code for code, _ in results) == [200] + [409] * 15, results
    assert users_in(tmp_path / STARTS_FILE) == ["alice@hub1"]
    for replica in (a, b):
        assert [s["name"] for s in call(replica, "GET", "/services")[1]] == ["once"]


def test_concurrent_stops_at_both_replicas_stop_the_server_once(two_replicas, tmp_path):
    a, b, _ = two_replicas()
    for i in range(4):
        assert call(a, "POST", "/services", start_body(f"d{i}", user=f"user{i}"))[0] == 200
    stops = parallel([(a if i % 2 else b, "DELETE", f"/services/d{i % 4}") for i in range(16)])
    codes = [code for code, _ in stops]
    assert set(codes) <= {200, 404} and codes.count(200) >= 4, stops
    assert users_in(tmp_path / STOPS_FILE) == [f"user{i}@hub1" for i in range(4)]  # each once
    assert call(b, "GET", "/services")[1] == []


def test_flavor_limits_hold_exactly_across_two_replicas(two_replicas):
    flavors = {"small": {"max": 5, "maxPerUser": 2}}
    a, b, _ = two_replicas(
        f"c.JupyterHubOutpost.flavors = {flavors!r}\nc.JupyterHubOutpost.global_max_per_user = 3"
    )
    bodies = [
        start_body(f"f{i}", user=f"u{i % 4}", user_options={"flavor": "small"}) for i in range(20)
    ]
    results = parallel(
        [(a if i % 2 else b, "POST", "/services", body) for i, body in enumerate(bodies)]
    )
    assert sorted(code for code, _ in results) == [200] * 5 + [403] * 15, results
    for replica in (a, b):
        assert len(call(replica, "GET", "/services")[1]) == 5
        assert call(replica, "GET", "/flavors")[1]["small"]["current"] == 5


def leader_and_follower(a, b):
    leaders = [r for r in (a, b) if "leads: recovery" in r.log_text()]
    assert len(leaders) == 1, "exactly one replica leads"
    return leaders[0], (b if leaders[0] is a else a)


async def test_a_killed_leader_is_followed_by_the_other_replica_and_its_start_cleaned_up(
    two_replicas, tmp_path
):
    """The leader replica is SIGKILLed while it starts a server (the pod's node died): the
    other replica takes the lead, answers about every server, ends the orphaned start and
    stops what it launched; the killed replica, started again, leads no more."""
    a, b, _ = two_replicas("c.JupyterHubOutpost.runtime_check_interval = 0.2")
    leader, follower = leader_and_follower(a, b)
    assert call(leader, "POST", "/services", start_body("kept"))[0] == 200
    body = start_body("held", user="holder", user_options={"hold": True})
    code, _ = call(leader, "POST", "/services", body, headers={"execution-type": "async"})
    assert code == 202
    await wait_for(
        lambda: users_in(tmp_path / STARTS_FILE) == ["alice@hub1", "holder@hub1"],
        "held start began",
    )
    leader.kill()
    await wait_for(
        lambda: "leads: recovery" in follower.log_text(), "the follower leads", timeout=30
    )

    async def ended():
        answer = await asyncio.to_thread(call, follower, "GET", "/services/held")
        return answer if answer[1] != {"status": None} else None

    code, answer = await wait_for(ended, "the orphaned start ended", timeout=30)
    assert code == 200 and answer["status"] == 1, answer
    assert "restarted while this server was starting" in answer["error"]
    assert users_in(tmp_path / STOPS_FILE) == ["holder@hub1"]
    assert call(follower, "GET", "/services/kept") == (200, {"status": None})
    leader.start(timeout=60)  # the pod comes back: it serves, the other still leads
    assert call(leader, "GET", "/services/kept") == (200, {"status": None})
    assert leader.log_text().count("leads: recovery") == 1


@pytest.mark.parametrize(
    "extra, env, ssh, message",
    [
        (
            "",
            {"OUTPOST_CRYPT_KEYS": ""},
            False,
            "--replicated needs the encryption keys in OUTPOST_CRYPT_KEYS",
        ),
        (
            "from jupyterhub.spawner import LocalProcessSpawner\n"
            "c.JupyterHubOutpost.spawner_class = LocalProcessSpawner",
            {},
            False,
            "--replicated cannot run LocalProcessSpawner",
        ),
        ("", {}, True, "--replicated needs the SSH host key at"),
    ],
    ids=["without-shared-keys", "local-process-spawner", "ssh-host-key-not-given"],
)
def test_a_replica_refuses_what_replicas_cannot_share(
    tmp_path, postgres_server, extra, env, ssh, message
):
    db = postgres_server.create_database()
    outpost = OutpostProcess(
        config(tmp_path, f"c.JupyterHubOutpost.db_url = {db.url!r}\n{extra}"),
        tmp_path / "data",
        hub_credentials=dict(HUBS),
        env=env,
        ssh=ssh,
        extra_args=["--replicated"],
    )
    assert message in refused_start_log(outpost)
    assert not (tmp_path / "data" / "ssh_host_ed25519_key").exists()  # none made per replica


def test_a_replica_on_sqlite_refuses_to_start(tmp_path):
    outpost = OutpostProcess(
        config(tmp_path), tmp_path / "data", hub_credentials=dict(HUBS), extra_args=["--replicated"]
    )
    assert "--replicated needs PostgreSQL" in refused_start_log(outpost)


async def test_an_outpost_not_started_as_replica_says_so_when_another_changes_its_database(
    tmp_path, postgres_server, outpost_process_factory
):
    """A misconfiguration: a ``--workers 2`` Outpost (no replica) and a replica on one
    database. The non-replica hears the other's change, logs why that is wrong, and from
    then on answers polls as a replica does (a server stopped at the replica is ended there)."""
    db = postgres_server.create_database()
    keys = {"OUTPOST_CRYPT_KEYS": Fernet.generate_key().decode()}
    path = config(tmp_path, f"c.JupyterHubOutpost.db_url = {db.url!r}\n")
    workers, replica = (
        outpost_process_factory(
            path, tmp_path / name, hub_credentials=dict(HUBS), env=keys, extra_args=args
        )
        for name, args in (("workers", ["--workers", "2"]), ("replica", ["--replicated"]))
    )
    assert call(workers, "POST", "/services", start_body("mixed"))[0] == 200
    for _ in range(4):  # both workers index it
        assert call(workers, "GET", "/services/mixed") == (200, {"status": None})
    assert call(replica, "DELETE", "/services/mixed")[0] == 200
    await wait_for(
        lambda: workers.log_text().count("was not started as a replica") == 2,
        "both workers to notice the other Outpost",
    )
    polls = parallel([(workers, "GET", "/services/mixed") for _ in range(8)])
    assert {code for code, _ in polls} == {404}, polls
