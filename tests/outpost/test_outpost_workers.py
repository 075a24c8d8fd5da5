"""``jupyterhub-outpost serve --workers 2`` on one PostgreSQL database: any worker answers
about any server, a server is never stopped by two workers, flavor limits hold exactly
across workers, a stop at one worker is seen at once by the other, and a restart recovers
everything. The spawner is bench.cheap_spawner.CheapSpawner: its poll answers from memory,
so a worker that answered from a stale index would say "running" for a stopped server.

Each request here opens a new connection: the kernel hands connections to either worker
(both accept on the shared socket), and every access line names its worker."""

import asyncio
import os
import re
import signal
import time

import pytest

from tests.helpers.outpost_process import OutpostProcess

from .shared_database import (
    HUBS,
    ROOT,
    STARTS_FILE,
    STOPS_FILE,
    call,
    config,
    parallel,
    refused_start_log,
    users_in,
)
from .support import fetch_or_none, start_body, wait_for

pytestmark = pytest.mark.postgres


def workers_of(outpost, pattern: str) -> set[str]:
    """The workers whose access lines match ``pattern`` (e.g. 'GET /services/a ')."""
    found = set()
    for line in outpost.log_text().splitlines():
        if pattern in line:
            match = re.search(r"worker=(\d+)\]", line)
            if match:
                found.add(match.group(1))
    return found


def worker_pids(outpost) -> dict[str, int]:
    """Worker index -> pid of its latest start."""
    return dict(re.findall(r"Worker (\d+) \(pid (\d+)\) starts", outpost.log_text()))


@pytest.fixture
def two_workers(tmp_path, postgres_server, outpost_process_factory):
    def make(extra: str = "", data="data"):
        db = postgres_server.create_database()
        return outpost_process_factory(
            config(tmp_path, extra + f"\nc.JupyterHubOutpost.db_url = {db.url!r}\n"),
            tmp_path / data,
            hub_credentials=dict(HUBS),
            extra_args=["--workers", "2"],
        )

    return make


def test_more_than_one_worker_on_sqlite_refuses_to_start(tmp_path):
    outpost = OutpostProcess(
        config(tmp_path),
        tmp_path / "data",
        hub_credentials=dict(HUBS),
        extra_args=["--workers", "2"],
    )
    assert "--workers 2 needs PostgreSQL" in refused_start_log(outpost)


def test_both_workers_answer_any_hub_about_any_server(two_workers):
    outpost = two_workers()
    results = parallel([(outpost, "POST", "/services", start_body(f"s{i}")) for i in range(8)])
    assert [code for code, _ in results] == [200] * 8, results
    other = call(outpost, "POST", "/services", start_body("theirs"), "hub2")
    assert other[0] == 200
    polls = parallel([(outpost, "GET", f"/services/s{i % 8}") for i in range(40)])
    assert all(answer == (200, {"status": None}) for answer in polls), polls
    # both workers answered polls, also of servers the other one started
    assert workers_of(outpost, "GET /services/s") == {"0", "1"}
    # a hub sees only its own, whichever worker answers
    for _ in range(6):
        code, listed = call(outpost, "GET", "/services", hub="hub2")
        assert code == 200 and [s["name"] for s in listed] == ["theirs"]
        assert call(outpost, "GET", "/services/s1", hub="hub2")[0] == 404


def test_a_server_stopped_at_one_worker_is_ended_at_the_other_at_once(two_workers, tmp_path):
    outpost = two_workers()
    for round_ in range(5):
        name = f"x{round_}"
        assert call(outpost, "POST", "/services", start_body(name))[0] == 200
        # until both workers hold the server in their index (each answered a poll of it)
        for _ in range(200):
            assert call(outpost, "GET", f"/services/{name}") == (200, {"status": None})
            if workers_of(outpost, f"GET /services/{name} ") == {"0", "1"}:
                break
        assert workers_of(outpost, f"GET /services/{name} ") == {"0", "1"}
        assert call(outpost, "DELETE", f"/services/{name}")[0] == 200
        # no worker answers "running" after the stop was answered
        polls = parallel([(outpost, "GET", f"/services/{name}") for _ in range(16)])
        assert {code for code, _ in polls} == {404}, polls


def test_concurrent_starts_of_one_server_at_both_workers_start_it_once(two_workers, tmp_path):
    outpost = two_workers()
    results = parallel([(outpost, "POST", "/services", start_body("once")) for _ in range(24)])
    assert sorted(code for code, _ in results) == [200] + [409] * 23, results
    assert workers_of(outpost, "POST /services") == {"0", "1"}
    assert users_in(tmp_path / STARTS_FILE) == ["alice@hub1"]
    assert [s["name"] for s in call(outpost, "GET", "/services")[1]] == ["once"]


def test_concurrent_stops_at_both_workers_stop_the_server_once(two_workers, tmp_path):
    outpost = two_workers()
    for i in range(4):
        assert call(outpost, "POST", "/services", start_body(f"d{i}", user=f"user{i}"))[0] == 200
    stops = parallel([(outpost, "DELETE", f"/services/d{i % 4}") for i in range(24)])
    codes = [code for code, _ in stops]
    assert set(codes) <= {200, 404} and codes.count(200) >= 4, stops
    assert workers_of(outpost, "DELETE /services/d") == {"0", "1"}
    assert users_in(tmp_path / STOPS_FILE) == [f"user{i}@hub1" for i in range(4)]  # each once
    assert call(outpost, "GET", "/services")[1] == []


def test_flavor_limits_hold_exactly_across_two_workers(two_workers):
    flavors = {"small": {"max": 5, "maxPerUser": 2}}
    outpost = two_workers(
        f"c.JupyterHubOutpost.flavors = {flavors!r}\nc.JupyterHubOutpost.global_max_per_user = 3"
    )
    bodies = [
        start_body(f"f{i}", user=f"u{i % 4}", user_options={"flavor": "small"}) for i in range(24)
    ]
    results = parallel([(outpost, "POST", "/services", body) for body in bodies])
    assert sorted(code for code, _ in results) == [200] * 5 + [403] * 19, results
    assert workers_of(outpost, "POST /services") == {"0", "1"}
    _, listed = call(outpost, "GET", "/services")
    per_user = {}
    for server in listed:
        per_user[server["user"]] = per_user.get(server["user"], 0) + 1
    assert len(listed) == 5 and max(per_user.values()) <= 2
    assert call(outpost, "GET", "/flavors")[1]["small"]["current"] == 5


def test_a_restart_of_all_workers_recovers_every_server(two_workers):
    outpost = two_workers()
    results = parallel([(outpost, "POST", "/services", start_body(f"r{i}")) for i in range(6)])
    assert [code for code, _ in results] == [200] * 6
    outpost.kill()  # SIGKILL of the supervisor: its workers get SIGTERM and end
    outpost.start(timeout=60)
    polls = parallel([(outpost, "GET", f"/services/r{i % 6}") for i in range(24)])
    assert all(answer == (200, {"status": None}) for answer in polls), polls
    log = outpost.log_text()
    assert log.count("leads: recovery") >= 2  # one leader per start
    assert "Recovering 6 server(s)" in log
    stops = parallel([(outpost, "DELETE", f"/services/r{i}") for i in range(6)])
    assert [code for code, _ in stops] == [200] * 6
    assert call(outpost, "GET", "/services")[1] == []


async def test_a_worker_killed_is_started_again_and_nothing_is_lost(two_workers):
    outpost = two_workers()
    assert call(outpost, "POST", "/services", start_body("k"))[0] == 200
    pids = worker_pids(outpost)
    assert len(pids) == 2
    os.kill(int(pids["0"]), signal.SIGKILL)
    await wait_for(
        lambda: len(re.findall(r"Worker \d \(pid \d+\) starts", outpost.log_text())) == 3,
        "the killed worker was started again",
    )
    polls = parallel([(outpost, "GET", "/services/k") for _ in range(12)])
    assert all(answer == (200, {"status": None}) for answer in polls), polls
    assert call(outpost, "DELETE", "/services/k")[0] == 200


async def test_a_start_left_by_a_killed_worker_is_ended_and_cleaned_up(two_workers, tmp_path):
    """A worker killed while its spawner starts a server: the leading worker (another one,
    or the worker started again if the killed one led) finds the row STARTING with nobody
    holding its lock, stops what the start launched and marks the start failed."""
    outpost = two_workers("c.JupyterHubOutpost.runtime_check_interval = 0.2")
    body = start_body("held", user="holder", user_options={"hold": True})
    code, _ = call(outpost, "POST", "/services", body, headers={"execution-type": "async"})
    assert code == 202
    await wait_for(lambda: users_in(tmp_path / STARTS_FILE) == ["holder@hub1"], "the start began")
    starter = re.search(r"worker=(\d+)\] Starting server held", outpost.log_text()).group(1)
    assert call(outpost, "GET", "/services/held") == (200, {"status": None})  # starting
    os.kill(int(worker_pids(outpost)[starter]), signal.SIGKILL)

    async def ended():
        try:
            answer = await asyncio.to_thread(call, outpost, "GET", "/services/held")
        except ConnectionError:  # queued at the killed worker's socket as it closed
            return None
        return answer if answer[1] != {"status": None} else None

    code, answer = await wait_for(ended, "the orphaned start ended", timeout=30)
    assert code == 200 and answer["status"] == 1, answer
    assert "restarted while this server was starting" in answer["error"]
    assert users_in(tmp_path / STOPS_FILE) == ["holder@hub1"]  # what the start launched is stopped
    assert call(outpost, "POST", "/services", start_body("held", user="holder"))[0] == 200


def process_state(pid: int) -> str:
    """'R', 'S', 'Z' (ended, not collected by its parent) ... or '' when gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return ""


async def test_a_server_process_one_worker_started_is_stopped_at_once_by_the_other(
    two_workers, tmp_path
):
    """A LocalProcessSpawner's server is a child of the worker that started it. A stop at
    the other worker ends it; its parent must collect it at once (SIGCHLD), or the process
    stays a zombie that answers kill(pid, 0) and the stopping worker waits for it in vain
    (interrupt_timeout, then term_timeout, then 500)."""
    mini = ROOT / "tests" / "outpost" / "mini_singleuser.py"
    outpost = two_workers(
        "from jupyterhub.spawner import SimpleLocalProcessSpawner\n"
        "c.JupyterHubOutpost.spawner_class = SimpleLocalProcessSpawner\n"
        f"c.SimpleLocalProcessSpawner.cmd = [sys.executable, {str(mini)!r}]\n"
        "c.SimpleLocalProcessSpawner.home_dir_template = "
        f"{str(tmp_path / 'home' / '{username}')!r}\n"
    )
    for i in range(30):  # until a stop lands at the other worker (each time 1 in 2)
        name = f"p{i}"
        code, answer = call(outpost, "POST", "/services", start_body(name))
        assert code == 200, answer
        served = await wait_for(lambda a=answer: fetch_or_none(a["service"]), f"{name} answers")
        started = time.monotonic()
        assert call(outpost, "DELETE", f"/services/{name}")[0] == 200
        took = time.monotonic() - started
        assert process_state(served["pid"]) in ("", "Z")
        await wait_for(lambda p=served["pid"]: process_state(p) == "", "the process collected")
        pattern = rf"server={name} worker=(\d+)\] 200 (POST|DELETE)"
        # the access line is written just after the answer
        await wait_for(
            lambda p=pattern: len(re.findall(p, outpost.log_text())) == 2, "access lines"
        )
        (starter, _), (stopper, _) = re.findall(pattern, outpost.log_text())
        if starter != stopper:
            assert took < 5, f"the stop at the other worker took {took:.1f}s"
            return
    pytest.fail("no stop landed at the other worker in 30 tries")
