"""Alembic environment of the Outpost store: runs migrations over the async engine."""

import asyncio

from alembic import context
from jupyterhub_outpost.outpost.models import Base
from sqlalchemy.ext.asyncio import create_async_engine

config = context.config
target_metadata = Base.metadata


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


# migrations.upgrade() passes the URL object (a password never passes through the ini parser)
url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
if context.is_offline_mode():
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    # migrations.upgrade() runs alembic in a worker thread, which has no event loop
    asyncio.run(_run_async(url))
