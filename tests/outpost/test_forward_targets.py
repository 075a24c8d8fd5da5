"""Parsing and matching of allowed_forward_targets entries (pure functions)."""

import pytest
from jupyterhub_outpost.outpost.forward_targets import (
    ForwardTargetError,
    is_allowed,
    parse_target,
    parse_targets,
)


@pytest.mark.parametrize(
    "entry,network,glob,ports",
    [
        ("10.20.0.0/16:8000-9000", "10.20.0.0/16", None, (8000, 9000)),
        ("10.0.0.7:8888", "10.0.0.7/32", None, (8888, 8888)),
        ("*.cluster.local:8888", None, "*.cluster.local", (8888, 8888)),
        ("jwc*:1-65535", None, "jwc*", (1, 65535)),
        ("JWC*.Example.ORG:443", None, "jwc*.example.org", (443, 443)),
        ("[fd00::/64]:8000-8100", "fd00::/64", None, (8000, 8100)),
        ("[::1]:8888", "::1/128", None, (8888, 8888)),
        ("  node-?.hpc:22  ", None, "node-?.hpc", (22, 22)),
    ],
)
def test_valid_entries_parse(entry, network, glob, ports):
    t = parse_target(entry)
    assert (str(t.network) if t.network else None) == network
    assert t.host_glob == glob
    assert (t.port_min, t.port_max) == ports


@pytest.mark.parametrize(
    "entry,message",
    [
        ("", "empty"),
        ("10.0.0.0/8", "expected 'HOST:PORTS'"),
        ("10.0.0.0/8:", "is not a number"),
        ("10.0.0.0/8:0", "port 0 is outside 1-65535"),
        ("10.0.0.0/8:65536", "port 65536 is outside 1-65535"),
        ("10.0.0.0/8:9000-8000", "reversed"),
        ("10.0.0.0/8:80-90-100", "is not a number"),
        ("10.0.0.0/8:http", "is not a number"),
        ("10.0.0.0/8:-1", "is not a number"),
        ("10.0.0.1/8:80", "not a valid IP address or CIDR"),  # host bits set
        ("300.0.0.0/8:80", "not a valid IP address or CIDR"),
        ("010.0.0.1:80", "not a valid IP address or CIDR"),
        ("fd00::/64:80", "brackets"),
        ("[10.0.0.0/8]:80", "brackets are for IPv6 only"),
        ("[fd00::/64]80", "expected '[IPv6-CIDR]:PORTS'"),
        ("host name:80", "whitespace"),
        ("evil/host:80", "not a valid IP address or CIDR"),
        ("a..b:80", "not a hostname glob"),
        ("a[b-z]*.local:80", "not a hostname glob"),
        ("[a-z]*.local:80", "expected '[IPv6-CIDR]:PORTS'"),
        ("user@host:22", "not a hostname glob"),
        (":80", "the host is empty"),
        ("10.0.0.0/8:８０", "is not a number"),  # full-width digits
    ],
)
def test_malformed_entries_are_rejected_with_message(entry, message):
    with pytest.raises(ForwardTargetError) as e:
        parse_target(entry)
    assert message in str(e.value)
    assert "allowed_forward_targets" in str(e.value)


def test_parse_targets_reports_every_bad_entry():
    with pytest.raises(ForwardTargetError) as e:
        parse_targets(["10.0.0.0/8:80", "bad", "x:0"])
    assert "'bad'" in str(e.value) and "'x:0'" in str(e.value)


def test_parse_targets_rejects_a_single_string():
    with pytest.raises(ForwardTargetError, match="list"):
        parse_targets("10.0.0.0/8:80")


TARGETS = parse_targets(
    [
        "10.20.0.0/16:8000-9000",
        "*.cluster.local:8888",
        "jwc*:1-65535",
        "[fd00::/64]:8888",
    ]
)


@pytest.mark.parametrize(
    "host,port",
    [
        ("10.20.3.4", 8000),
        ("10.20.255.255", 9000),
        ("jupyter-alice.ns.svc.cluster.local", 8888),
        ("JUPYTER.CLUSTER.LOCAL", 8888),
        ("jupyter.cluster.local.", 8888),
        ("jwc01", 1),
        ("jwc01.fz-juelich.de", 65535),
        ("fd00::1234", 8888),
        ("[fd00::1]", 8888),
        ("::ffff:10.20.0.1", 8500),  # IPv4-mapped IPv6 is matched as the IPv4 address
    ],
)
def test_allowed_targets_match(host, port):
    assert is_allowed(TARGETS, host, port)


@pytest.mark.parametrize(
    "host,port",
    [
        ("10.20.3.4", 7999),
        ("10.20.3.4", 9001),
        ("10.21.0.1", 8000),
        ("10.0.0.1.evil.com", 8000),  # a hostname, not an address in the CIDR
        ("10.20.0.1.cluster.local.evil.com", 8888),
        ("evil.com", 8888),
        ("cluster.local", 8888),  # "*." needs a label before the suffix
        ("evilcluster.local", 8888),
        ("jupyter.cluster.local", 8889),
        ("xjwc01", 22),
        ("fd01::1", 8888),
        ("fd00::1", 8000),
        ("0x0a140001", 8000),  # hex spelling of 10.20.0.1
        ("168034305", 8000),  # decimal spelling of 10.20.0.1
        ("010.020.000.001", 8000),  # octal-looking spelling
        ("10.20.1", 8000),  # short form that inet_aton accepts
        ("jwc01 ", 22),
        ("jwc01/../x", 22),
        ("", 8888),
        ("jwc01", 0),
        ("jwc01", 65536),
        ("jwc01", True),
        ("jwc01", "22"),
    ],
)
def test_other_targets_do_not_match(host, port):
    assert not is_allowed(TARGETS, host, port)


def test_no_targets_allow_nothing():
    assert not is_allowed([], "10.20.0.1", 8000)


def test_star_glob_matches_hostnames_but_never_ip_addresses():
    targets = parse_targets(["*:8888"])
    assert is_allowed(targets, "anything.example", 8888)
    assert not is_allowed(targets, "127.0.0.1", 8888)
    assert not is_allowed(targets, "::1", 8888)
