"""The topology runner: up/down through the Python API and the CLI, faults, fallbacks."""

import asyncio
import os
import signal
import subprocess
import sys

import pytest
from outpost_scenarios import netns, rundir
from outpost_scenarios.runner import Topology, down_run_dir
from outpost_scenarios.services import http_status
from outpost_scenarios.spec import load

from .conftest import NOTHING, leftovers

EXAMPLE = os.path.join(os.path.dirname(__file__), "example")


def quiet(name, line):
    pass


def alive(pid):
    return netns._proc_start_time(pid) is not None and not netns._is_zombie(pid)


async def fetch(host, url):
    return await http_status(host, url)


@pytest.mark.netns
async def test_up_serves_and_down_leaves_no_process_namespace_veth_bridge(tmp_path):
    async with Topology.up(EXAMPLE, run_dir=str(tmp_path), sink=quiet) as topo:
        prefix = topo.lab.prefix
        pids = [s.pid for s in topo.services.values()]
        assert all(alive(p) for p in pids)
        assert sorted(leftovers(prefix)["netns"]) == [f"{prefix}-back", f"{prefix}-front"]
        # the open URL is reachable from the root namespace (this process)
        reader, writer = await asyncio.open_connection(
            topo.host("front").address("public"), topo.port("front", "http")
        )
        writer.close()
        # the rendered template carries real addresses and keys; other braces are untouched
        index = open(topo.path("files/front/index.html")).read()
        assert topo.host("back").ip in index and "ssh-ed25519 " in index
        assert '{"a": 1}' in index
        assert oct(os.stat(topo.path("files/back/hello.txt")).st_mode & 0o777) == "0o600"
        assert rundir.read_state(str(tmp_path))["prefix"] == prefix
        assert topo.reachability_problem(topo.open_url) is None
        assert "cannot reach" in topo.reachability_problem(topo.url("back"))
    assert not any(alive(p) for p in pids)
    assert leftovers(prefix) == NOTHING
    assert rundir.read_state(str(tmp_path)) is None
    assert not os.path.exists(netns._registry_path(prefix))


@pytest.mark.netns
async def test_hosts_reach_each_other_only_where_topology_says(tmp_path):
    async with Topology.up(EXAMPLE, run_dir=str(tmp_path), sink=quiet) as topo:
        front, back = topo.host("front"), topo.host("back")
        assert await fetch(front, topo.url("back")) == 200
        # back is only on the private network: the public address of front is unreachable
        assert not await back.can_connect(front.address("public"), topo.port("front", "http"))
        assert front.address("private") != front.address("public")


@pytest.mark.netns
async def test_killed_service_is_restarted_by_its_policy(tmp_path):
    async with Topology.up(EXAMPLE, run_dir=str(tmp_path), sink=quiet) as topo:
        front = topo.service("front")  # restart: always
        old = front.pid
        topo.kill_service("front", signal.SIGKILL)
        await front.wait_for(lambda s: s.starts == 2 and s.running, timeout=30)
        await front.wait_ready()
        assert front.pid != old and not alive(old)
        assert front.restarts == 1


@pytest.mark.netns
async def test_stopped_service_stays_down_until_started_again(tmp_path):
    async with Topology.up(EXAMPLE, run_dir=str(tmp_path), sink=quiet) as topo:
        front = topo.host("front")
        url = topo.url("back")
        await topo.stop_service("back")
        assert not topo.service("back").running
        assert not await front.can_connect(topo.host("back").ip, topo.port("back", "http"))
        await topo.start_service("back")
        assert await fetch(front, url) == 200
        assert topo.service("back").restarts == 0


@pytest.mark.netns
async def test_service_that_exits_before_ready_fails_up_and_tears_down(tmp_path):
    scenario = tmp_path / "broken"
    scenario.mkdir()
    (scenario / "topology.yaml").write_text(
        "networks: {n: {}}\n"
        "hosts: {a: {networks: [n]}}\n"
        "services:\n"
        "  bad:\n"
        "    host: a\n"
        "    argv: ['{python}', '-c', 'import sys; print(\"boom\"); sys.exit(3)']\n"
        "    ready: {tcp: '{host:a.ip}:9'}\n"
    )
    topo = Topology(load(str(scenario)), run_dir=str(tmp_path / "run"), sink=quiet)
    with pytest.raises(Exception, match=r"exited with code 3 before it was ready(.|\n)*boom"):
        await topo.start()
    assert leftovers(topo.lab.prefix) == NOTHING


RUNNERS = []


@pytest.fixture(autouse=True)
def end_runners_left_by_a_failed_test():
    yield
    while RUNNERS:
        proc = RUNNERS.pop()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=60)


def start_cli(run_dir, *extra, env=None):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterhub_outpost",
            "topology",
            "up",
            EXAMPLE,
            "--run-dir",
            str(run_dir),
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    RUNNERS.append(proc)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "Ctrl-C" in line:
            break
    else:
        raise AssertionError("topology up ended early:\n" + "".join(lines))
    return proc, "".join(lines)


@pytest.mark.netns
def test_ctrl_c_tears_everything_down(tmp_path):
    proc, out = start_cli(tmp_path)
    assert "open http://10.231." in out and "login: none" in out
    assert "back    | Serving HTTP" in out  # prefixed service log
    state = rundir.read_state(str(tmp_path))
    pids = [p for p, _ in state["pids"]]
    assert pids and all(alive(p) for p in pids)
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, rest
    assert "example is down" in rest
    assert not any(alive(p) for p in pids)
    assert leftovers(state["prefix"]) == NOTHING


@pytest.mark.netns
def test_topology_down_stops_the_runner_of_another_process(tmp_path):
    proc, _ = start_cli(tmp_path)
    state = rundir.read_state(str(tmp_path))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "jupyterhub_outpost",
            "topology",
            "down",
            "--run-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stderr
    assert "is down" in result.stdout
    proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert leftovers(state["prefix"]) == NOTHING


@pytest.mark.netns
def test_down_cleans_up_after_a_runner_killed_with_sigkill(tmp_path):
    proc, _ = start_cli(tmp_path)
    state = rundir.read_state(str(tmp_path))
    pids = [p for p, _ in state["pids"]]
    proc.kill()
    proc.communicate(timeout=30)
    assert all(alive(p) for p in pids)  # orphans: the runner could not clean up
    message = down_run_dir(str(tmp_path))
    assert "removed leftovers" in message
    assert not any(alive(p) for p in pids)
    assert leftovers(state["prefix"]) == NOTHING


@pytest.mark.netns
def test_up_refuses_a_run_dir_in_use(tmp_path):
    proc, _ = start_cli(tmp_path)
    try:
        second = subprocess.run(
            [sys.executable, "-m", "jupyterhub_outpost", "topology", "up", EXAMPLE]
            + ["--run-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode != 0
        assert "in use by a running topology" in second.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)


def test_kind_mode_says_why_the_docker_engine_cannot_run(monkeypatch):
    from outpost_scenarios import cli
    from outpost_scenarios.kindbuild.engine import Engine

    monkeypatch.setattr(Engine, "answers", lambda self: False)
    monkeypatch.setattr(cli.os, "geteuid", lambda: 1000)
    assert cli.kind_engine_problem() == "starting the project's Docker engine (dockerd) needs root"
    monkeypatch.setattr(cli.os, "geteuid", lambda: 0)
    monkeypatch.setattr(cli.shutil, "which", lambda name, path=None: None)
    assert "dockerd is not installed: run `make docker-engine` as root" in cli.kind_engine_problem()


async def test_loopback_fallback_brings_the_example_up_without_isolation(tmp_path, monkeypatch):
    monkeypatch.setenv(netns.ISOLATION_ENV, "off")
    lines = []
    async with Topology.up(
        EXAMPLE, run_dir=str(tmp_path), sink=lambda name, line: lines.append(line)
    ) as topo:
        assert not topo.lab.isolated
        assert topo.host("front").ip.startswith("127.231.")
        assert await fetch(topo.host("front"), topo.url("back")) == 200
        pids = [s.pid for s in topo.services.values()]
    assert not any(alive(p) for p in pids)


@pytest.mark.netns
def test_status_and_exec_find_the_running_topology(tmp_path):
    proc, _ = start_cli(tmp_path)
    try:
        base = [sys.executable, "-m", "jupyterhub_outpost", "topology"]
        status = subprocess.run(
            [*base, "status", "--run-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert status.returncode == 0, status.stderr
        assert "host back" in status.stdout and "service front" in status.stdout
        state = rundir.read_state(str(tmp_path))
        back_ip = state["hosts"]["back"]["addresses"]["private"]
        inside = subprocess.run(
            [*base, "exec", "back", "--run-dir", str(tmp_path), "--", "ip", "-o", "-4", "addr"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert inside.returncode == 0, inside.stderr
        assert back_ip in inside.stdout and "eth1" not in inside.stdout
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)


@pytest.mark.netns
def test_ctrl_c_while_a_service_is_still_starting_tears_down(tmp_path):
    scenario = tmp_path / "slow"
    scenario.mkdir()
    (scenario / "topology.yaml").write_text(
        "networks: {n: {}}\n"
        "hosts: {a: {networks: [n]}}\n"
        "services:\n"
        "  never-ready:\n"
        "    host: a\n"
        "    argv: ['{python}', '-u', '-c', 'print(\"up but never ready\"); import time; time.sleep(600)']\n"
        "    ready: {tcp: '{host:a.ip}:9', timeout: 300}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterhub_outpost", "topology", "up", str(scenario)]
        + ["--run-dir", str(tmp_path / "run")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    RUNNERS.append(proc)
    for line in proc.stdout:
        if line.rstrip().endswith("| up but never ready"):
            break
    state = rundir.read_state(str(tmp_path / "run"))
    pids = [p for p, _ in state["pids"]]
    assert pids and all(alive(p) for p in pids)
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130, rest
    assert "stop requested while starting" in rest
    assert not any(alive(p) for p in pids)
    assert leftovers(state["prefix"]) == NOTHING


@pytest.mark.netns
async def test_two_runs_of_one_scenario_side_by_side_do_not_collide(tmp_path):
    async with Topology.up(EXAMPLE, run_dir=str(tmp_path / "one"), sink=quiet) as one:
        async with Topology.up(EXAMPLE, run_dir=str(tmp_path / "two"), sink=quiet) as two:
            assert one.lab.prefix != two.lab.prefix
            subnets = {str(t.lab.networks["public"].subnet) for t in (one, two)}
            assert len(subnets) == 2  # both reachable from this machine, so they must differ
            for topo in (one, two):
                _, writer = await asyncio.open_connection(
                    topo.host("front").address("public"), topo.port("front", "http")
                )
                writer.close()
        assert one.service("front").running


@pytest.mark.netns
def test_second_ctrl_c_ends_a_slow_teardown_at_once(tmp_path):
    scenario = tmp_path / "stubborn"
    scenario.mkdir()
    (scenario / "topology.yaml").write_text(
        "networks: {n: {}}\n"
        "hosts: {a: {networks: [n]}}\n"
        "services:\n"
        "  stubborn:\n"
        "    host: a\n"
        "    argv: ['{python}', '-u', '-c', 'import signal, time; "
        'signal.signal(signal.SIGTERM, signal.SIG_IGN); print("ignoring"); time.sleep(600)\']\n'
        "    ready: {log: '^ignoring$'}\n"
        "    stop_timeout: 300\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterhub_outpost", "topology", "up", str(scenario)]
        + ["--run-dir", str(tmp_path / "run")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    RUNNERS.append(proc)
    for line in proc.stdout:
        if "Ctrl-C" in line:
            break
    state = rundir.read_state(str(tmp_path / "run"))
    pids = [p for p, _ in state["pids"]]
    proc.send_signal(signal.SIGINT)
    for line in proc.stdout:
        if "tearing down" in line:
            break
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=30)[0]
    assert proc.returncode == 130, rest
    assert "ending every process" in rest
    assert pids and not any(alive(p) for p in pids)
    assert leftovers(state["prefix"]) == NOTHING


@pytest.mark.netns
async def test_services_that_do_not_depend_on_each_other_start_together(tmp_path):
    # "first" is only ready once "second" listens: started one after the other, it never would be
    scenario = tmp_path / "together"
    scenario.mkdir()
    server = "['{python}', '-m', 'http.server', '--bind', '{host:b.ip}', '{port:http}']"
    (scenario / "topology.yaml").write_text(
        "networks: {n: {}}\n"
        "hosts: {a: {networks: [n]}, b: {networks: [n]}}\n"
        "services:\n"
        "  first:\n"
        "    host: a\n"
        "    argv: ['sleep', '600']\n"
        "    ready: {tcp: '{host:b.ip}:{port:second.http}', timeout: 30}\n"
        "  second:\n"
        "    host: b\n"
        f"    argv: {server}\n"
        "    ports: {http: 8000}\n"
        "    ready: {tcp: '{host:b.ip}:{port:http}'}\n"
        "  last:\n"
        "    host: a\n"
        "    argv: ['sleep', '600']\n"
        "    depends_on: [first, second]\n"
    )
    async with Topology.up(str(scenario), run_dir=str(tmp_path / "run"), sink=quiet) as topo:
        assert all(s.running for s in topo.services.values())
