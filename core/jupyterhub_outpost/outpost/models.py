"""SQLAlchemy models of the Outpost store.

One row per server that a hub started here. What the hub entrusted (env with the API
token, certs) and the spawner's state are stored encrypted (see ``crypto.py``); the rest
is plain so that an operator can inspect it with SQL. Times are naive UTC.

A schema change needs a new alembic revision in ``alembic/versions/``.
"""

from datetime import datetime, timezone

from sqlalchemy import JSON, DateTime, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# row status values
STARTING = "starting"  # start request accepted, Spawner.start() not finished
RUNNING = "running"  # Spawner.start() returned; poll() decides from here
STOPPED = "stopped"  # the server ended on its own, or was reaped past its runtime
FAILED = "failed"  # Spawner.start() failed (async starts keep the row for the hub's poll)
ACTIVE = (STARTING, RUNNING)  # rows that count against a flavor's max


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Service(Base):
    __tablename__ = "outpost_services"
    __table_args__ = (UniqueConstraint("hub", "name", name="uq_outpost_services_hub_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    hub: Mapped[str] = mapped_column(String(63), index=True)
    name: Mapped[str] = mapped_column(String(63))
    start_id: Mapped[str] = mapped_column(String(63), default="")
    status: Mapped[str] = mapped_column(String(16), default=STARTING)
    flavor: Mapped[str | None] = mapped_column(String(63), nullable=True)
    user_name: Mapped[str] = mapped_column(String(255), default="")
    service_address: Mapped[str] = mapped_column(String(255), default="")
    exit_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    user_options: Mapped[dict] = mapped_column(JSON, default=dict)
    misc: Mapped[dict] = mapped_column(JSON, default=dict)
    secrets_enc: Mapped[str] = mapped_column(Text, default="")
    state_enc: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    runtime_deadline: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)

    def summary(self) -> dict:
        """The public view of a row (GET /services); never secrets."""
        return {
            "name": self.name,
            "start_id": self.start_id,
            "status": self.status,
            "service": self.service_address,
            "flavor": self.flavor,
            "user": self.user_name,
            "exit_status": self.exit_status,
            "error": self.error,
            "created": _iso(self.created_at),
            "started": _iso(self.started_at),
            "runtime_deadline": _iso(self.runtime_deadline),
        }


class CreditRecord(Base):
    """One billed server start: the flavor's credit values when it started, and when it
    ran (kept after the server is gone, so that a user's consumption can be read back)."""

    __tablename__ = "outpost_credits"
    __table_args__ = (Index("ix_outpost_credits_hub_user", "hub", "user_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    hub: Mapped[str] = mapped_column(String(63))
    user_name: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(63))
    start_id: Mapped[str] = mapped_column(String(63))
    flavor: Mapped[str | None] = mapped_column(String(63), nullable=True)
    billing_value: Mapped[int] = mapped_column(Integer)
    billing_interval: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(DateTime)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)

    def credits_used(self, now: datetime) -> int:
        """billing_value for every started billing_interval of its run time."""
        seconds = ((self.ended_at or now) - self.started_at).total_seconds()
        intervals = -(-int(max(seconds, 0)) // max(self.billing_interval, 1))  # ceil
        return self.billing_value * max(intervals, 1)

    def summary(self, now: datetime) -> dict:
        return {
            "user": self.user_name,
            "name": self.name,
            "start_id": self.start_id,
            "flavor": self.flavor,
            "billing_value": self.billing_value,
            "billing_interval": self.billing_interval,
            "started": _iso(self.started_at),
            "ended": _iso(self.ended_at),
            "credits": self.credits_used(now),
        }


def _iso(value: datetime | None) -> str | None:
    return value.replace(tzinfo=timezone.utc).isoformat() if value else None
