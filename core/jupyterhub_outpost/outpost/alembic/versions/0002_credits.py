"""credits: outpost_credits, one row per billed server start

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outpost_credits",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("hub", sa.String(63), nullable=False),
        sa.Column("user_name", sa.String(255), nullable=False),
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("start_id", sa.String(63), nullable=False),
        sa.Column("flavor", sa.String(63), nullable=True),
        sa.Column("billing_value", sa.Integer(), nullable=False),
        sa.Column("billing_interval", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_outpost_credits_hub_user", "outpost_credits", ["hub", "user_name"])


def downgrade() -> None:
    op.drop_index("ix_outpost_credits_hub_user", table_name="outpost_credits")
    op.drop_table("outpost_credits")
