"""The Outpost store: rows of ``models.Service`` behind an async SQLAlchemy engine.

Every method is a short transaction. ``reserve`` is the one place where a start is
admitted: it checks the name and the flavor's max and inserts the row in one transaction
that is serialised per hub (an asyncio lock in this process, plus a PostgreSQL advisory
lock so that several Outpost replicas on one database also hold the max exactly).
"""

import asyncio
import zlib
from collections import defaultdict
from datetime import datetime

from sqlalchemy import delete, event, func, select, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from .coordination import SingleProcess
from .crypto import Crypt
from .models import ACTIVE, FAILED, RUNNING, STOPPED, CreditRecord, Service, utcnow


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """WAL lets readers work while a start is admitted; NORMAL sync is safe with WAL."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class AlreadyRunning(Exception):
    """The hub already has a server of that name here."""


class FlavorFull(Exception):
    """Starting one more server would exceed a limit: the flavor's max for the hub
    (``per_user`` False), the flavor's maxPerUser or the global_max_per_user (``per_user``
    True; ``flavor`` None for the latter)."""

    def __init__(self, flavor: str | None, limit: int, per_user: bool = False):
        self.flavor = flavor
        self.limit = limit
        self.per_user = per_user
        super().__init__(flavor, limit, per_user)


class Store:
    def __init__(self, url: URL, crypt: Crypt):
        self.url = url
        self.crypt = crypt
        kwargs = {}
        if url.get_backend_name() == "sqlite":
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs.update(pool_pre_ping=True, pool_size=10, max_overflow=20)
        self.engine = create_async_engine(url, **kwargs)
        if url.get_backend_name() == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._hub_locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._is_postgres = url.get_backend_name() == "postgresql"
        # tells other workers which rows a transaction changed (coordination.py)
        self.coordination = SingleProcess()

    async def close(self) -> None:
        await self.engine.dispose()

    # --- admission -------------------------------------------------------------------
    async def reserve(
        self,
        *,
        hub: str,
        name: str,
        start_id: str,
        flavor: str | None,
        limit: int,
        user_name: str,
        user_options: dict,
        misc: dict,
        secrets: dict,
        runtime_deadline: datetime | None,
        user_limit: int = -1,
        global_user_limit: int = -1,
    ) -> Service:
        """Insert a STARTING row, or raise AlreadyRunning / FlavorFull leaving no trace.

        A STOPPED or FAILED row of the same name is replaced (the hub starts it again).
        ``limit`` is the hub's max of the flavor, ``user_limit`` the flavor's max for one
        user (``user_name``), ``global_user_limit`` that user's max over all flavors; < 0
        means unlimited.
        """
        async with self._hub_locks[hub], self.sessions() as session, session.begin():
            if self._is_postgres:
                key = zlib.crc32(f"outpost:{hub}".encode()) - 2**31
                await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
            existing = await session.scalar(
                select(Service).where(Service.hub == hub, Service.name == name)
            )
            replaced = []
            if existing is not None:
                if existing.status in ACTIVE:
                    raise AlreadyRunning(name)
                replaced.append(existing.id)
                await session.delete(existing)
                await session.flush()
            same_flavor = Service.flavor.is_(None) if flavor is None else Service.flavor == flavor
            same_user = Service.user_name == user_name
            for bound, where, full in (
                (limit, [same_flavor], FlavorFull(flavor, limit)),
                (user_limit, [same_flavor, same_user], FlavorFull(flavor, user_limit, True)),
                (global_user_limit, [same_user], FlavorFull(None, global_user_limit, True)),
            ):
                if bound < 0:
                    continue
                current = await session.scalar(
                    select(func.count(Service.id)).where(
                        Service.hub == hub, Service.status.in_(ACTIVE), *where
                    )
                )
                if current >= bound:
                    raise full
            row = Service(
                hub=hub,
                name=name,
                start_id=start_id,
                flavor=flavor,
                user_name=user_name,
                user_options=user_options,
                misc=misc,
                secrets_enc=self.crypt.encrypt(secrets),
                state_enc=self.crypt.encrypt({}),
                created_at=utcnow(),
                runtime_deadline=runtime_deadline,
                service_address="",
            )
            session.add(row)
            try:
                await session.flush()
            except IntegrityError:
                # another replica inserted the same name between our check and insert
                raise AlreadyRunning(name) from None
            await self.coordination.announce(session, [row.id, *replaced])
        self.coordination.committed()
        return row

    # --- reads -----------------------------------------------------------------------
    async def get(self, hub: str, name: str) -> Service | None:
        async with self.sessions() as session:
            return await session.scalar(
                select(Service).where(Service.hub == hub, Service.name == name)
            )

    async def get_by_id(self, row_id: int) -> Service | None:
        async with self.sessions() as session:
            return await session.get(Service, row_id)

    async def poll_view(self, row_id: int):
        """The columns a poll needs, in one indexed read without a session or ORM objects."""
        async with self.engine.connect() as connection:
            result = await connection.execute(
                select(
                    Service.id,
                    Service.hub,
                    Service.name,
                    Service.start_id,
                    Service.status,
                    Service.exit_status,
                    Service.error,
                    Service.state_enc,
                    Service.service_address,
                ).where(Service.id == row_id)
            )
            return result.first()

    async def list_hub(self, hub: str) -> list[Service]:
        async with self.sessions() as session:
            result = await session.scalars(
                select(Service).where(Service.hub == hub).order_by(Service.id)
            )
            return list(result)

    async def list_active(self) -> list[Service]:
        """Every STARTING or RUNNING row of every hub (recovery, reaper, forwards)."""
        async with self.sessions() as session:
            result = await session.scalars(
                select(Service).where(Service.status.in_(ACTIVE)).order_by(Service.id)
            )
            return list(result)

    async def usage(self, hub: str) -> dict[str | None, int]:
        """Active servers of a hub per flavor (None: no flavor)."""
        async with self.sessions() as session:
            result = await session.execute(
                select(Service.flavor, func.count(Service.id))
                .where(Service.hub == hub, Service.status.in_(ACTIVE))
                .group_by(Service.flavor)
            )
            return {flavor: count for flavor, count in result}

    async def running_at(self, addresses: set[str]) -> list[Service]:
        """RUNNING rows of any hub whose service address is one of ``addresses``."""
        async with self.sessions() as session:
            result = await session.scalars(
                select(Service).where(
                    Service.status == RUNNING, Service.service_address.in_(sorted(addresses))
                )
            )
            return list(result)

    # --- writes ----------------------------------------------------------------------
    async def update(self, row_id: int, **values) -> None:
        """Set columns of one row; ``state`` is encrypted into state_enc."""
        if "state" in values:
            values["state_enc"] = self.crypt.encrypt(values.pop("state") or {})
        async with self.sessions() as session, session.begin():
            row = await session.get(Service, row_id)
            if row is None:
                return
            for key, value in values.items():
                setattr(row, key, value)
            await self.coordination.announce(session, [row_id])
        self.coordination.committed()

    async def mark_ended(self, row_id: int, *, status: str, exit_status: int, error=None):
        assert status in (STOPPED, FAILED)
        await self.update(row_id, status=status, exit_status=exit_status, error=error)

    async def remove(self, row_id: int) -> None:
        async with self.sessions() as session, session.begin():
            await session.execute(delete(Service).where(Service.id == row_id))
            await self.coordination.announce(session, [row_id])
        self.coordination.committed()

    async def reencrypt_all(self) -> int:
        """Write the secrets and state of every row that holds a value encrypted with
        another key again with the first key (key rotation); returns how many."""
        count = 0
        async with self.sessions() as session, session.begin():
            for row in await session.scalars(select(Service)):
                if self.crypt.is_current(row.secrets_enc) and self.crypt.is_current(row.state_enc):
                    continue
                row.secrets_enc = self.crypt.encrypt(self.crypt.decrypt(row.secrets_enc) or {})
                row.state_enc = self.crypt.encrypt(self.crypt.decrypt(row.state_enc) or {})
                count += 1
        return count

    # --- credits ---------------------------------------------------------------------
    async def start_billing(self, row: Service, value: int, interval: int) -> None:
        async with self.sessions() as session, session.begin():
            session.add(
                CreditRecord(
                    hub=row.hub,
                    user_name=row.user_name,
                    name=row.name,
                    start_id=row.start_id,
                    flavor=row.flavor,
                    billing_value=value,
                    billing_interval=interval,
                    started_at=utcnow(),
                )
            )

    async def end_billing(self, row) -> None:
        """The server of ``row`` ended: its open credit record (if any) ends now."""
        async with self.sessions() as session, session.begin():
            for record in await session.scalars(
                select(CreditRecord).where(
                    CreditRecord.hub == row.hub,
                    CreditRecord.name == row.name,
                    CreditRecord.start_id == row.start_id,
                    CreditRecord.ended_at.is_(None),
                )
            ):
                record.ended_at = utcnow()

    async def credit_records(self, hub: str, user: str | None = None) -> list[CreditRecord]:
        query = select(CreditRecord).where(CreditRecord.hub == hub)
        if user is not None:
            query = query.where(CreditRecord.user_name == user)
        async with self.sessions() as session:
            return list(await session.scalars(query.order_by(CreditRecord.id)))

    # --- decrypted views -------------------------------------------------------------
    def secrets(self, row: Service) -> dict:
        return self.crypt.decrypt(row.secrets_enc) or {}

    def state(self, row: Service) -> dict:
        return self.crypt.decrypt(row.state_enc) or {}
