"""Schema migrations of the Outpost store (alembic).

The Outpost upgrades its schema at start-up; ``jupyterhub-outpost db-upgrade``
(db_upgrade.py) does the same and exits. Both are idempotent. Alembic runs in a worker
thread so the event loop never blocks on it.
"""

import asyncio
import os

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import URL

HERE = os.path.dirname(os.path.abspath(__file__))


def alembic_config(url: URL) -> Config:
    config = Config(os.path.join(HERE, "alembic.ini"))
    config.set_main_option("script_location", os.path.join(HERE, "alembic"))
    config.attributes["url"] = url.render_as_string(hide_password=False)
    return config


def upgrade(url: URL, revision: str = "head") -> None:
    """Upgrade the schema at ``url`` to ``revision`` (blocking; see upgrade_async)."""
    command.upgrade(alembic_config(url), revision)


async def upgrade_async(url: URL, revision: str = "head") -> None:
    await asyncio.to_thread(upgrade, url, revision)
