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
