"""Nonces of accepted signed requests, so the replay window survives a restart.

Revision ID: 0003
Revises: 0002
Create Date: 2025-03-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "request_nonces",
        sa.Column("keyid", sa.String(64), nullable=False),
        sa.Column("nonce", sa.String(128), nullable=False),
        sa.Column("expires", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("keyid", "nonce", name="pk_request_nonces"),
    )
    op.create_index("ix_request_nonces_expires", "request_nonces", ["expires"])


def downgrade() -> None:
    op.drop_index("ix_request_nonces_expires", table_name="request_nonces")
    op.drop_table("request_nonces")
