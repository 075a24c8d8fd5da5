"""Run a Lab on a stand-in for a machine where dockerd runs; print what was observed as JSON.

``unshare --net python -m tests.topology.dockerd_host CASE``, from the checkout's top:
this process is then alone in a fresh network namespace, which plays the machine's root
namespace (the Lab's bridges, the iptables tables and the bridge-netfilter sysctls there
are its own). It first puts that namespace in the state dockerd leaves, then builds a Lab
in it and reports, for test_host_firewall.py to check. Why a private namespace: the rules
and sysctls dockerd sets would break every namespace test running on this machine at the
same time if they were set in the real root namespace.

Cases:
  docker          dockerd's rules first, then a Lab: who reaches whom, the rules before,
                  during and after
  docker-later    a Lab first, then dockerd starts (its FORWARD rules go above the Lab's)
  forward-only    a firewall with FORWARD policy DROP and no DOCKER-USER chain
  stale           dockerd's rules, a Lab whose owner is SIGKILLed, then cleanup_stale
"""

import asyncio
import json
import socket
import subprocess
import sys

from outpost_scenarios import netns

from tests.topology.conftest import start_http_server, start_lab_owner

PORT = 8000

#: The filter and nat tables exactly as dockerd 20.10 (Debian 12's docker.io) leaves them
#: after it starts (`iptables -S` of a real dockerd started in a private namespace).
DOCKERD_RULES = """*filter
:FORWARD DROP [0:0]
:DOCKER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A FORWARD -i docker0 -o docker0 -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
-A DOCKER-USER -j RETURN
COMMIT
*nat
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
COMMIT
"""

FORWARD_DROP_ONLY = "*filter\n:FORWARD DROP [0:0]\nCOMMIT\n"


def inserted_on_top(rules: str) -> str:
    """``rules`` with FORWARD's rules inserted above what is there, as a starting dockerd does."""
    lines, position = [], 0
    for line in rules.splitlines():
        if line.startswith("-A FORWARD "):
            position += 1
            line = f"-I FORWARD {position} {line[len('-A FORWARD ') :]}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def like_dockerd(rules: str) -> None:
    """What dockerd does to a machine's network: forwarding on, bridged frames through
    iptables, its rules (policy DROP)."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    write("/proc/sys/net/ipv4/ip_forward", "1")
    write("/proc/sys/net/bridge/bridge-nf-call-iptables", "1")
    subprocess.run(["iptables-restore", "--noflush"], input=rules, text=True, check=True)


def rules() -> list[str]:
    out = subprocess.run(["iptables", "-S"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if not line.startswith("#")]


def root_can_connect(ip: str) -> bool:
    try:
        socket.create_connection((ip, PORT), timeout=2).close()
    except OSError:
        return False
    return True


async def docker_case() -> dict:
    like_dockerd(DOCKERD_RULES)
    report = {
        "sysctls": {
            "ip_forward": read("/proc/sys/net/ipv4/ip_forward"),
            "bridge_nf_call_iptables": read("/proc/sys/net/bridge/bridge-nf-call-iptables"),
        },
        "before": rules(),
    }
    async with netns.Lab(isolation=True) as lab:
        public = lab.add_network("public", host_access=True)
        site = lab.add_network("site", host_access=True)
        a, b = lab.add_host("a", ["public"]), lab.add_host("b", ["public"])
        c = lab.add_host("c", ["site"])
        await start_http_server(b)
        await start_http_server(c)
        report["prefix"] = lab.prefix
        report["bridges"] = [public.bridge, site.bridge]
        report["during"] = rules()
        report["same_network"] = await a.can_connect(b.ip, PORT)
        report["root_to_host"] = await asyncio.to_thread(root_can_connect, b.ip)
        report["other_network_without_route"] = await a.can_connect(c.ip, PORT)
        # a host that routes through this machine (which forwards, as dockerd made it) and
        # a firewall that accepts forwarded traffic (dockerd 28 leaves FORWARD at ACCEPT
        # when forwarding was on before it started): still nothing crosses networks
        a.run(["ip", "route", "add", str(site.subnet), "via", public.gateway], check=True)
        c.run(["ip", "route", "add", str(public.subnet), "via", site.gateway], check=True)
        subprocess.run(["iptables", "-P", "FORWARD", "ACCEPT"], check=True)
        report["other_network_routed"] = await a.can_connect(c.ip, PORT)
        subprocess.run(["iptables", "-P", "FORWARD", "DROP"], check=True)
    report["after"] = rules()
    return report


async def docker_later_case() -> dict:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    async with netns.Lab(isolation=True) as lab:
        lab.add_network("n")
        a, b = lab.add_host("a", ["n"]), lab.add_host("b", ["n"])
        await start_http_server(b)
        like_dockerd(inserted_on_top(DOCKERD_RULES))
        report = {"prefix": lab.prefix, "during": rules()}
        report["same_network"] = await a.can_connect(b.ip, PORT)
    report["after"] = rules()
    return report


async def forward_only_case() -> dict:
    like_dockerd(FORWARD_DROP_ONLY)
    async with netns.Lab(isolation=True) as lab:
        lab.add_network("n")
        a, b = lab.add_host("a", ["n"]), lab.add_host("b", ["n"])
        await start_http_server(b)
        report = {"prefix": lab.prefix, "during": rules()}
        report["same_network"] = await a.can_connect(b.ip, PORT)
    report["after"] = rules()
    return report


def stale_case() -> dict:
    like_dockerd(DOCKERD_RULES)
    report = {"before": rules()}
    owner, report["prefix"] = start_lab_owner()
    report["during"] = rules()
    owner.kill()
    owner.wait()
    report["cleaned"] = netns.cleanup_stale()
    report["after"] = rules()
    return report


def main() -> None:
    case = sys.argv[1]
    if case == "docker":
        report = asyncio.run(docker_case())
    elif case == "docker-later":
        report = asyncio.run(docker_later_case())
    elif case == "forward-only":
        report = asyncio.run(forward_only_case())
    elif case == "stale":
        report = stale_case()
    else:
        raise SystemExit(f"unknown case {case!r}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
