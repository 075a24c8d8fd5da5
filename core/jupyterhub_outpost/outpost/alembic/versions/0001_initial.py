"""initial schema: outpost_services

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outpost_services",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("hub", sa.String(63), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("start_id", sa.String(63), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("flavor", sa.String(63), nullable=True),
        sa.Column("user_name", sa.String(255), nullable=False),
        sa.Column("service_address", sa.String(255), nullable=False),
        sa.Column("exit_status", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("user_options", sa.JSON(), nullable=False),
        sa.Column("misc", sa.JSON(), nullable=False),
        sa.Column("secrets_enc", sa.Text(), nullable=False),
        sa.Column("state_enc", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("runtime_deadline", sa.DateTime(), nullable=True),
        sa.UniqueConstraint("hub", "name", name="uq_outpost_services_hub_name"),
    )
    op.create_index("ix_outpost_services_hub", "outpost_services", ["hub"])


def downgrade() -> None:
    op.drop_index("ix_outpost_services_hub", table_name="outpost_services")
    op.drop_table("outpost_services")
