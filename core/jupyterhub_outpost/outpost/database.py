"""Where the Outpost store lives: the database URL from options and environment.

Order: the ``db_url`` option; else ``SQL_TYPE=postgresql`` with ``SQL_USER``,
``SQL_PASSWORD``, ``SQL_HOST``, ``SQL_PORT``, ``SQL_DATABASE``; else an SQLite file
``outpost.sqlite`` in the data directory. Drivers are the async ones (aiosqlite,
asyncpg); plain ``sqlite://`` and ``postgresql://`` URLs are upgraded to them.
"""

import os

from sqlalchemy.engine import URL, make_url

SQLITE_FILE_NAME = "outpost.sqlite"


class DatabaseConfigError(ValueError):
    """The database settings are incomplete or name an unsupported database."""


def _async_driver(url: URL) -> URL:
    backend = url.get_backend_name()
    if backend == "sqlite":
        return url.set(drivername="sqlite+aiosqlite")
    if backend == "postgresql":
        return url.set(drivername="postgresql+asyncpg")
    raise DatabaseConfigError(
        f"Unsupported database {backend!r} in db_url: use sqlite or postgresql."
    )


def resolve_db_url(db_url: str, data_dir: str, environ=None) -> URL:
    environ = os.environ if environ is None else environ
    if db_url:
        return _async_driver(make_url(db_url))
    sql_type = environ.get("SQL_TYPE", "").strip().lower()
    if sql_type in ("postgresql", "postgres"):
        missing = [
            name
            for name in ("SQL_USER", "SQL_PASSWORD", "SQL_HOST", "SQL_DATABASE")
            if not environ.get(name)
        ]
        if missing:
            raise DatabaseConfigError(
                f"SQL_TYPE=postgresql needs {', '.join(missing)} in the environment "
                "(and optionally SQL_PORT, default 5432)."
            )
        port = environ.get("SQL_PORT", "5432")
        try:
            port_number = int(port)
        except ValueError:
            raise DatabaseConfigError(f"SQL_PORT must be a number, not {port!r}.") from None
        return URL.create(
            "postgresql+asyncpg",
            username=environ["SQL_USER"],
            password=environ["SQL_PASSWORD"],
            host=environ["SQL_HOST"],
            port=port_number,
            database=environ["SQL_DATABASE"],
        )
    if sql_type not in ("", "sqlite"):
        raise DatabaseConfigError(
            f"SQL_TYPE={sql_type!r} is not supported: use 'postgresql', or leave it unset "
            "for an SQLite file in the data directory."
        )
    path = os.path.abspath(os.path.join(data_dir, SQLITE_FILE_NAME))
    return URL.create("sqlite+aiosqlite", database=path)


def describe(url: URL) -> str:
    """The URL for logs: never the password."""
    return url.render_as_string(hide_password=True)
