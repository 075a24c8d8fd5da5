"""Fixtures of the security tests: the Outpost fixtures of tests/outpost, reused."""

from tests.helpers.outpost_process import outpost_process_factory  # noqa: F401
from tests.helpers.postgres import postgres_server  # noqa: F401
from tests.outpost.conftest import make_outpost, outpost, receiver  # noqa: F401
