"""``jupyterhub-outpost db-upgrade``: upgrade the Outpost database schema and exit.

For operators who run migrations as a separate step (e.g. a Helm pre-upgrade hook); the
Outpost also upgrades at start-up. Idempotent.
"""

import os
import sys

from . import migrations
from .app import JupyterHubOutpost, StartupError
from .database import describe


def main(argv: list[str] | None = None) -> None:
    """``jupyterhub-outpost db-upgrade [--config FILE] [--data-dir DIR]``: upgrade and exit.

    Reads the database settings exactly as ``serve`` does (config file, SQL_* env).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    app = JupyterHubOutpost()
    try:
        app.initialize(argv)
        url = app.resolved_db_url()
        if url.get_backend_name() == "sqlite":
            os.makedirs(app.data_dir, mode=0o700, exist_ok=True)
        app.log.info("Upgrading the Outpost database schema at %s", describe(url))
        migrations.upgrade(url)
    except StartupError as e:
        app.log.critical("%s", e)
        sys.exit(1)
    except Exception as e:
        app.log.critical("Database upgrade failed: %s: %s", type(e).__name__, e)
        sys.exit(1)
    app.log.info("Database schema is up to date.")
