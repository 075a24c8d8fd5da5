"""Schema migrations of the Outpost store (alembic), and ``jupyterhub-outpost db-upgrade``.

The Outpost upgrades its schema at start-up; ``db-upgrade`` does the same and exits, for
operators who run migrations as a separate step (e.g. a Helm pre-upgrade hook). Both are
idempotent. Alembic runs in a worker thread so the event loop never blocks on it.
"""

import asyncio
import os
import sys

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


def main(argv: list[str] | None = None) -> None:
    """``jupyterhub-outpost db-upgrade [--config FILE] [--data-dir DIR]``: upgrade and exit.

    Reads the database settings exactly as ``serve`` does (config file, SQL_* env).
    """
    from jupyterhub_outpost.outpost.app import JupyterHubOutpost, StartupError
    from jupyterhub_outpost.outpost.database import describe

    argv = list(sys.argv[1:] if argv is None else argv)
    app = JupyterHubOutpost()
    try:
        app.initialize(argv)
        url = app.resolved_db_url()
        if url.get_backend_name() == "sqlite":
            os.makedirs(app.data_dir, mode=0o700, exist_ok=True)
        app.log.info("Upgrading the Outpost database schema at %s", describe(url))
        upgrade(url)
    except StartupError as e:
        app.log.critical("%s", e)
        sys.exit(1)
    except Exception as e:
        app.log.critical("Database upgrade failed: %s: %s", type(e).__name__, e)
        sys.exit(1)
    app.log.info("Database schema is up to date.")
