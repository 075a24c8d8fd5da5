"""Credentials: wrong, missing, or right hub with a wrong password are refused alike, and
the time a check takes does not tell an attacker which hubs exist or how close a guess is.
"""

import base64
import random
import statistics
import time

import pytest
from jupyterhub_outpost.outpost.credentials import HubCredentials

from tests.outpost.support import HUBS


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def paired_spread(cases: dict, call, rounds: int) -> tuple[float, dict]:
    """How much slower than the others each case is, relative to the median duration.

    Every round times each case once, in random order; the differences are taken within
    a round (paired), so load changes on the machine, which hit a whole round alike,
    cancel out. Returns (largest |median paired difference| / median duration, medians).
    """
    names = list(cases)
    rng = random.Random(8)
    rows = []
    for _ in range(rounds):
        rng.shuffle(names)
        row = {}
        for name in names:
            started = time.perf_counter_ns()
            call(cases[name])
            row[name] = time.perf_counter_ns() - started
        rows.append(row)
    typical = statistics.median(v for row in rows for v in row.values())
    first = list(cases)[0]
    diffs = {name: statistics.median(row[name] - row[first] for row in rows) for name in cases}
    return max(abs(d) for d in diffs.values()) / typical, diffs


def test_check_time_does_not_reveal_hub_names_or_where_a_password_differs():
    """A 64 KiB secret makes every length-dependent step large: before this check hashed
    both sides, an unknown hub was compared against a 32-byte dummy while a known hub's
    secret was compared in full, and the unknown hub answered ~15% faster (measured at
    256 KiB: 2.45 against 2.83 ms); a plain ``==`` would answer a mismatch in the first
    byte faster than one in the last. Every wrong password here has the secret's length,
    so only the check itself could differ. The bound, 6% of the median duration, is well
    under that leak and above the paired median differences of 600 rounds seen on a
    2-core machine at load average 5 (1-3%)."""
    size = 64 * 1024
    secret = "s" * size
    credentials = HubCredentials({"hub1": secret})
    cases = {
        "unknown hub": basic("nohub", "s" * size),
        "wrong first byte": basic("hub1", "x" + "s" * (size - 1)),
        "wrong last byte": basic("hub1", "s" * (size - 1) + "x"),
    }
    for header in cases.values():
        assert credentials.check_basic(header) is None
    assert credentials.check_basic(basic("hub1", secret)) == "hub1"
    spread, diffs = paired_spread(cases, credentials.check_basic, rounds=600)
    assert spread < 0.06, diffs


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Basic",
        "Basic !!!notbase64",
        basic("hub1", ""),
        basic("hub1", HUBS["hub2"]),  # another hub's secret
        basic("hub2", HUBS["hub1"]),
        basic("HUB1", HUBS["hub1"]),  # names are case-sensitive
        basic("hub1", HUBS["hub1"] + " "),
        basic("hub1", HUBS["hub1"].upper()),
        "Bearer " + HUBS["hub1"],
        "Basic " + base64.b64encode(HUBS["hub1"].encode()).decode(),  # no "hub:"
        basic("nohub", HUBS["hub1"]),
    ],
)
def test_wrong_missing_or_malformed_credentials_are_refused(header):
    assert HubCredentials(dict(HUBS)).check_basic(header) is None


async def test_refusals_over_http_take_the_same_time_whatever_was_wrong(outpost):
    """200 requests each, interleaved: missing credentials, an unknown hub, a known hub with
    a wrong password. Each is a 401 with the same body; their medians differ by less than
    30% (or 1 ms): large differences (a database lookup or a slow hash only for known hubs)
    would show, while the request's own noise (~1-3 ms here) does not."""
    api = outpost.api
    cases = {
        "missing": {"hub": None},
        "unknown hub": {"hub": "nohub", "secret": HUBS["hub1"]},
        "wrong password": {"hub": "hub1", "secret": "x" * len(HUBS["hub1"])},
    }
    answers = {}
    samples = {name: [] for name in cases}
    names = list(cases)
    rng = random.Random(8)
    for _ in range(200):
        rng.shuffle(names)
        for name in names:
            started = time.perf_counter_ns()
            code, data = await api.call("GET", "/flavors", **cases[name])
            samples[name].append(time.perf_counter_ns() - started)
            answers.setdefault(name, (code, data))
    assert {code for code, _ in answers.values()} == {401}
    assert len({data["error"] for _, data in answers.values()}) == 1
    found = {name: statistics.median(values) for name, values in samples.items()}
    spread = max(found.values()) - min(found.values())
    assert spread < max(0.3 * max(found.values()), 1_000_000), found
