"""Durable records of peer misbehaviour (refused data), bounded per peer.

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "peer_misbehaviour",
        sa.Column("peer", sa.String(64), nullable=False),
        sa.Column("serial", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("lab", sa.String(64), nullable=True),
        sa.Column("seq", sa.BigInteger(), nullable=True),
        sa.Column("entry_id", sa.String(64), nullable=True),
        sa.Column("url", sa.String(512), nullable=False),
        sa.PrimaryKeyConstraint("peer", "serial", name="pk_peer_misbehaviour"),
    )


def downgrade() -> None:
    op.drop_table("peer_misbehaviour")
