"""Initial node schema: rosters, entries with the node log, feeds, hold, equivocations.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rosters",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("roster_id", sa.String(64), nullable=False),
        sa.Column("envelope", sa.Text(), nullable=False),
        sa.Column("expires", sa.String(40), nullable=False),
        sa.Column("installed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("version", name="pk_rosters"),
        sa.UniqueConstraint("roster_id", name="uq_rosters_roster_id"),
    )
    op.create_table(
        "entries",
        sa.Column("log_index", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("entry_id", sa.String(64), nullable=False),
        sa.Column("lab", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("prev", sa.String(64), nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("subject", sa.String(64), nullable=True),
        sa.Column("issued_at", sa.String(40), nullable=False),
        sa.Column("roster_version", sa.Integer(), nullable=False),
        sa.Column("signers", sa.Text(), nullable=False),
        sa.Column("envelope", sa.Text(), nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(256), nullable=True),
        sa.PrimaryKeyConstraint("log_index", name="pk_entries"),
        sa.UniqueConstraint("entry_id", name="uq_entries_entry_id"),
        sa.UniqueConstraint("lab", "seq", name="uq_entries_lab_seq"),
    )
    op.create_index("ix_entries_kind", "entries", ["kind"])
    op.create_index("ix_entries_subject", "entries", ["subject"])
    op.create_table(
        "feeds",
        sa.Column("lab", sa.String(64), nullable=False),
        sa.Column("head_seq", sa.BigInteger(), nullable=False),
        sa.Column("head_id", sa.String(64), nullable=True),
        sa.Column("frozen", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("lab", name="pk_feeds"),
    )
    op.create_table(
        "held",
        sa.Column("entry_id", sa.String(64), nullable=False),
        sa.Column("lab", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("envelope", sa.Text(), nullable=False),
        sa.Column("roster_version", sa.Integer(), nullable=False),
        sa.Column("signers", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(256), nullable=True),
        sa.PrimaryKeyConstraint("entry_id", name="pk_held"),
        sa.UniqueConstraint("lab", "seq", name="uq_held_lab_seq"),
    )
    op.create_table(
        "equivocations",
        sa.Column("proof_id", sa.String(64), nullable=False),
        sa.Column("lab", sa.String(64), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("proof", sa.Text(), nullable=False),
        sa.Column("found_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("proof_id", name="pk_equivocations"),
    )
    op.create_index("ix_equivocations_lab", "equivocations", ["lab"])
    op.create_table(
        "log_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_log_state"),
    )
    # The single lock row: writers take it first, so log indexes are assigned in commit order.
    op.execute("INSERT INTO log_state (id, size) VALUES (1, 0)")


def downgrade() -> None:
    for table in ("log_state", "equivocations", "held", "feeds", "entries", "rosters"):
        op.drop_table(table)
