"""Labs keep working, and keep their promises, on a machine where dockerd runs.

dockerd sets the iptables FORWARD policy to DROP, makes bridged frames pass iptables
(``net.bridge.bridge-nf-call-iptables=1``) and turns on ``net.ipv4.ip_forward``. Each test
runs ``dockerd_host.py`` in a fresh network namespace that plays this machine's root
namespace, because these rules and sysctls, set in the real root namespace, would break
every namespace test that other runs on this machine do at the same time (the
bridge-netfilter sysctls are per network namespace on this kernel: a test below checks
that the real one is untouched). ``DOCKERD_RULES`` there are the tables a real dockerd
20.10 left in such a namespace.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from outpost_scenarios import host_firewall

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(
        not (shutil.which("iptables") and shutil.which("unshare")),
        reason="needs iptables and unshare (Debian packages iptables, util-linux; make deps)",
    ),
]


def as_docker_host(case: str) -> dict:
    """Run one case of dockerd_host.py in its own network namespace and return its report."""
    proc = subprocess.run(
        ["unshare", "--net", sys.executable, "-m", "tests.topology.dockerd_host", case],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def docker() -> dict:
    return as_docker_host("docker")


def lab_rules(report: dict, key: str) -> list[str]:
    return [r for r in report[key] if host_firewall.chain(report["prefix"]) in r]


def test_the_stand_in_host_has_dockers_settings_and_the_real_one_is_untouched(docker):
    assert docker["sysctls"] == {"ip_forward": "1", "bridge_nf_call_iptables": "1"}
    assert "-P FORWARD DROP" in docker["before"]
    assert "-A DOCKER-USER -j RETURN" in docker["before"]
    real = subprocess.run(["iptables", "-S", "FORWARD"], capture_output=True, text=True)
    assert "-P FORWARD DROP" not in real.stdout


def test_hosts_on_one_network_reach_each_other_where_dockerd_drops_forwarded_traffic(docker):
    assert docker["same_network"]
    assert docker["root_to_host"]


def test_lab_rules_sit_first_in_docker_user_and_accept_only_within_each_bridge(docker):
    name = host_firewall.chain(docker["prefix"])
    user = [r for r in docker["during"] if r.startswith("-A DOCKER-USER ")]
    assert user[0] == f"-A DOCKER-USER -j {name}"
    assert user[-1] == "-A DOCKER-USER -j RETURN"
    expected = [f"-N {name}", f"-A DOCKER-USER -j {name}"]
    for bridge in docker["bridges"]:
        expected += [
            f"-A {name} -i {bridge} -o {bridge} -j ACCEPT",
            f"-A {name} -i {bridge} -j DROP",
            f"-A {name} -o {bridge} -j DROP",
        ]
    assert lab_rules(docker, "during") == expected


def test_nothing_is_routed_between_lab_networks_even_when_the_machine_forwards(docker):
    assert not docker["other_network_without_route"]
    # routes via the machine's .1 addresses, forwarding on, FORWARD policy ACCEPT
    assert not docker["other_network_routed"]


def test_lab_teardown_leaves_dockers_rules_exactly_as_they_were(docker):
    assert lab_rules(docker, "after") == []
    assert docker["after"] == docker["before"]


def test_a_lab_made_before_dockerd_starts_keeps_working_and_leaves_dockers_rules():
    report = as_docker_host("docker-later")
    assert report["same_network"]
    forward = [r for r in report["during"] if r.startswith("-A FORWARD ")]
    assert forward[0] == "-A FORWARD -j DOCKER-USER"
    assert forward[-1] == f"-A FORWARD -j {host_firewall.chain(report['prefix'])}"
    assert lab_rules(report, "after") == []
    assert "-A FORWARD -j DOCKER-USER" in report["after"]


def test_without_docker_user_the_lab_jumps_from_the_top_of_forward():
    report = as_docker_host("forward-only")
    assert report["same_network"]
    forward = [r for r in report["during"] if r.startswith("-A FORWARD ")]
    assert forward == [f"-A FORWARD -j {host_firewall.chain(report['prefix'])}"]
    assert report["after"] == ["-P INPUT ACCEPT", "-P FORWARD DROP", "-P OUTPUT ACCEPT"]


def test_stale_cleanup_removes_the_firewall_rules_of_a_killed_run():
    report = as_docker_host("stale")
    assert lab_rules(report, "during")
    assert report["prefix"] in report["cleaned"]
    assert report["after"] == report["before"]
