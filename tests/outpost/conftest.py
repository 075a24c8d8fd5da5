"""Fixtures for the Outpost tests (helpers live in support.py)."""

import asyncio

import pytest
from traitlets.config import Config

from tests.helpers.outpost_process import outpost_process_factory  # noqa: F401
from tests.helpers.postgres import postgres_server  # noqa: F401

from .support import InProcessOutpost, local_spawner_config


@pytest.fixture
async def make_outpost(tmp_path):
    """Factory: ``await make_outpost(config=None, **options)`` -> started InProcessOutpost.

    Servers still running at teardown are stopped, then the Outpost is closed.
    """
    made = []

    async def factory(config: Config | None = None, data_dir=None, **options):
        c = config or local_spawner_config(tmp_path)
        for key, value in options.items():
            setattr(c.JupyterHubOutpost, key, value)
        outpost = InProcessOutpost(c, data_dir or tmp_path / f"data{len(made)}")
        made.append(outpost)
        return await outpost.start()

    yield factory
    for outpost in made:
        try:  # teardown is outside pytest-timeout (timeout_func_only): bound it here
            await asyncio.wait_for(outpost.close(), 60)
        except asyncio.TimeoutError:
            print(f"closing the Outpost at {outpost.url} took over 60s")
            raise


@pytest.fixture
async def outpost(make_outpost):
    return await make_outpost()


@pytest.fixture
async def receiver():
    """A real HTTP server that records what the Outpost POSTs to 'the hub'."""
    from .support import Receiver

    r = Receiver()
    yield r
    r.close()
