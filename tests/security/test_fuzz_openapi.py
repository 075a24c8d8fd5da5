"""Fuzzing: schemathesis generates requests from the Outpost's own OpenAPI document
(served at /openapi.json) and sends them to a live Outpost process. No answer may be a
5xx, and every answer must match the document (status code, content type, body schema).

Bounded and deterministic: ``derandomize=True`` (a fixed seed derived from each test) and
MAX_EXAMPLES examples per operation, so it runs in make test in well under a minute.
The Outpost runs a stand-in spawner that starts no process (fuzzed starts are many).
"""

import base64

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.outpost.support import HUBS

MAX_EXAMPLES = 40
METRICS_TOKEN = "fuzz-metrics-token"

CONFIG = '''
from jupyterhub.spawner import Spawner


class NoProcessSpawner(Spawner):
    """Starts nothing: answers an address at once, runs until stopped."""

    async def start(self):
        self._running = True
        return ("127.0.0.1", 9)

    async def poll(self):
        return None if getattr(self, "_running", True) else 0

    async def stop(self, now=False):
        self._running = False


c.JupyterHubOutpost.spawner_class = NoProcessSpawner
c.JupyterHubOutpost.flavors = {"small": {"max": 3, "weight": 1}}
c.JupyterHubOutpost.metrics_token = %r
'''


@pytest.fixture(scope="module")
def fuzz_outpost(tmp_path_factory):
    from tests.helpers.outpost_process import OutpostProcess

    tmp = tmp_path_factory.mktemp("fuzz")
    config = tmp / "outpost_config.py"
    config.write_text(CONFIG % METRICS_TOKEN)
    outpost = OutpostProcess(config, tmp / "data", hub_credentials=dict(HUBS))
    try:
        outpost.start()
        yield outpost
    finally:
        outpost.close()


def operations(outpost):
    schema = schemathesis.openapi.from_url(outpost.url + "/openapi.json")
    found = []
    for result in schema.get_all_operations():
        found.append(result.ok())
    return found


def fuzz(op, base_url: str, headers: dict):
    """A hypothesis test that sends MAX_EXAMPLES generated requests of one operation."""

    @hypothesis.given(case=op.as_strategy())
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    )
    def run(case):
        case.call_and_validate(base_url=base_url, headers=headers, timeout=30)

    return run


def test_fuzzed_requests_never_get_a_5xx_and_every_answer_matches_the_document(fuzz_outpost):
    token = base64.b64encode(f"hub1:{HUBS['hub1']}".encode()).decode()
    headers = {"Authorization": f"Basic {token}"}
    ops = operations(fuzz_outpost)
    assert {op.path for op in ops} >= {"/services", "/services/{name}", "/flavors"}
    failures = []
    for op in ops:
        op_headers = dict(headers)
        if op.path == "/metrics":
            op_headers = {"Authorization": f"token {METRICS_TOKEN}"}

        run = fuzz(op, fuzz_outpost.url, op_headers)
        try:
            run()
        except Exception as e:  # collect every operation's failure, then report all
            failures.append(f"{op.method.upper()} {op.path}: {e}")
    assert not failures, "\n\n".join(failures)
    assert "Unexpected error" not in fuzz_outpost.log_text()


# every string a hub controls in a start request, as a path into the body
STRING_FIELDS = [
    ("name",),
    ("env", "KEY"),
    ("env", "<key>"),
    ("env", "JUPYTERHUB_USER"),
    ("env", "JUPYTERHUB_SERVER_NAME"),
    ("env", "JUPYTERHUB_API_TOKEN"),
    ("user_options", "start_id"),
    ("user_options", "flavor"),
    ("user_options", "anything"),
    ("user_options", "<key>"),
    ("certs", "keyfile"),
    ("internal_trust_bundles", "<key>"),
    ("internal_trust_bundles", "bundle"),
]
HOSTILE = ["\n", "\r", "\x00", "\u2028", "\u2029", "\x85"]


def hostile_values(base: str) -> list[str]:
    out = []
    for ch in HOSTILE:
        out += [base + ch, ch + base, base[:1] + ch + base[1:]]
    return out + [base * 20_000, "\u2028" * 70]


def body_with(path: tuple, value: str, index: int) -> dict:
    body = {
        "name": f"edge{index}",
        "env": {"JUPYTERHUB_USER": "alice", "JUPYTERHUB_SERVER_NAME": "", "KEY": "v"},
        "user_options": {"start_id": "s1", "flavor": "small"},
        "certs": {},
        "internal_trust_bundles": {},
    }
    if path[-1] == "<key>":
        body[path[0]][value] = "v"
    elif path == ("certs", "keyfile"):
        body["certs"] = {"keyfile": value, "certfile": "CERT", "cafile": "CA"}
    elif len(path) == 1:
        body[path[0]] = value
    else:
        body[path[0]][path[1]] = value
    return body


async def test_every_string_field_with_line_breaks_nul_separators_or_huge_values_is_refused_or_carried(
    fuzz_outpost,
):
    """The explicit part of the fuzz: each string field a hub controls, with "\\n", "\\r",
    NUL, U+2028, U+2029, U+0085 before, inside or after a valid value, 20 000 times a value
    and 70 separators. Never a 5xx; a refusal stores nothing; an accepted start can always be
    polled and stopped by its name (no orphan)."""
    from urllib.parse import quote

    from tests.outpost.support import Api

    api = Api(fuzz_outpost.url, HUBS)
    index = 0
    for path in STRING_FIELDS:
        for value in hostile_values("abc"):
            index += 1
            body = body_with(path, value, index)
            code, data = await api.call("POST", "/services", body=body)
            assert code < 500, (path, value[:20], data)
            name = body["name"]
            if code == 200:
                url = f"/services/{quote(name, safe='')}"
                assert (await api.call("GET", url))[0] == 200, (path, value[:20])
                assert (await api.call("DELETE", url))[0] == 200, (path, value[:20])
            else:
                assert code in (400, 403, 413), (path, value[:20], code, data)
            code, listing = await api.call("GET", "/services")
            active = [s for s in listing if s["status"] in ("starting", "running")]
            assert not [s for s in active if s["name"].startswith("edge")], (path, value[:20])
    assert "Unexpected error" not in fuzz_outpost.log_text()
