"""Database tables of a node (SQLAlchemy 2.x declarative models).

The models document the schema; the repository (:mod:`node.store.store`) uses their
tables through SQLAlchemy Core for bulk inserts. The schema itself is created and
evolved only by the Alembic migrations in ``node/store/migrations`` (a test checks that
the migrations and these models agree).

Records are versioned through the Alembic revision stored in ``alembic_version``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Deterministic constraint names keep migrations portable between SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class RosterRow(Base):
    """Every accepted roster version (spec §7: every accepted roster is kept)."""

    __tablename__ = "rosters"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    """Roster version (1 = genesis)."""
    roster_id: Mapped[str] = mapped_column(String(64), unique=True)
    """SHA-256 of the canonical roster statement; version 1's is the network id."""
    envelope: Mapped[str] = mapped_column(Text)
    """The roster envelope as JSON, exactly as verified."""
    expires: Mapped[str] = mapped_column(String(40))
    """The roster's expiry (RFC 3339), for cheap status queries."""
    installed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    """When this node accepted the version."""


class EntryRow(Base):
    """Accepted feed entries; the primary key is the entry's index in the node's log."""

    __tablename__ = "entries"
    __table_args__ = (UniqueConstraint("lab", "seq", name="uq_entries_lab_seq"),)

    log_index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    """0-based position in this node's log of accepted entries (accept order; spec §5)."""
    entry_id: Mapped[str] = mapped_column(String(64), unique=True)
    """SHA-256 of the canonical statement bytes."""
    lab: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(BigInteger)
    prev: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32), index=True)
    subject: Mapped[str | None] = mapped_column(String(64), index=True)
    """What the entry is about: proposal id (proposals, votes, certificates) or result id (alerts)."""
    issued_at: Mapped[str] = mapped_column(String(40))
    roster_version: Mapped[int] = mapped_column(Integer)
    """Roster version whose key verified the signature."""
    signers: Mapped[str] = mapped_column(Text)
    """Comma-separated keyids that verified."""
    envelope: Mapped[str] = mapped_column(Text)
    """The DSSE envelope as JSON."""
    leaf_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    """RFC 9162 leaf hash of the UTF-8 entry id, kept so proofs need not re-hash the log."""
    accepted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    source: Mapped[str | None] = mapped_column(String(256))
    """Where the entry came from (peer URL, ``local``, ``cli``), for operators."""


class FeedRow(Base):
    """One row per lab seen: the head of its feed and whether it is frozen by a fork."""

    __tablename__ = "feeds"

    lab: Mapped[str] = mapped_column(String(64), primary_key=True)
    head_seq: Mapped[int] = mapped_column(BigInteger)
    """seq of the last accepted entry (0: none yet)."""
    head_id: Mapped[str | None] = mapped_column(String(64))
    frozen: Mapped[bool] = mapped_column(Boolean)
    """True once an equivocation is proven (spec §4.4: stop accepting past the fork)."""


class HeldRow(Base):
    """Verified entries that arrived ahead of their predecessors (bounded hold, spec §4.3)."""

    __tablename__ = "held"
    __table_args__ = (UniqueConstraint("lab", "seq", name="uq_held_lab_seq"),)

    entry_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    lab: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(BigInteger)
    envelope: Mapped[str] = mapped_column(Text)
    roster_version: Mapped[int] = mapped_column(Integer)
    signers: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    source: Mapped[str | None] = mapped_column(String(256))


class EquivocationRow(Base):
    """Proofs that a lab signed two entries at one seq (the only data kept from a rejection)."""

    __tablename__ = "equivocations"

    proof_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    lab: Mapped[str] = mapped_column(String(64), index=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    proof: Mapped[str] = mapped_column(Text)
    """The EquivocationProof as JSON (both envelopes)."""
    found_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PeerMisbehaviourRow(Base):
    """Data a peer served that broke the rules and was refused (forged, truncated, reordered,
    equivocating), kept so operators and regulators can see it after a restart.

    Bounded per peer: each write prunes that peer's oldest rows beyond the retention limit
    (``node.store.misbehaviour``), so a hostile peer cannot grow the database.
    """

    __tablename__ = "peer_misbehaviour"

    peer: Mapped[str] = mapped_column(String(64), primary_key=True)
    """Lab id of the peer that served the data (from this node's roster or node.toml)."""
    serial: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    """1-based count of records from this peer: the newest row's serial is the total ever
    recorded, which pruning never lowers."""
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    """When this node refused the data (UTC)."""
    code: Mapped[str] = mapped_column(String(64))
    """Stable machine code of the refusal (``unknown-key``, ``bad-feed-page``, ...)."""
    reason: Mapped[str] = mapped_column(String(500))
    """Human explanation (truncated to the column length)."""
    lab: Mapped[str | None] = mapped_column(String(64))
    """Lab whose feed the refused data claimed to extend, when known."""
    seq: Mapped[int | None] = mapped_column(BigInteger)
    """Sequence number the refused entry claimed, when known."""
    entry_id: Mapped[str | None] = mapped_column(String(64))
    """Id of the refused entry, when it could be computed."""
    url: Mapped[str] = mapped_column(String(512))
    """The URL the data came from (the peer's endpoint, with the request path when known)."""


class RequestNonceRow(Base):
    """Nonces of accepted signed requests, kept until their ``created`` leaves the clock-skew
    window, so a captured request cannot be replayed, after a restart either (spec §8)."""

    __tablename__ = "request_nonces"

    keyid: Mapped[str] = mapped_column(String(64), primary_key=True)
    """Roster keyid that signed the request."""
    nonce: Mapped[str] = mapped_column(String(128), primary_key=True)
    """The signature's ``nonce`` parameter."""
    expires: Mapped[int] = mapped_column(BigInteger, index=True)
    """Unix time (s) after which the request's ``created`` can no longer pass the skew check."""


class LogStateRow(Base):
    """A single row holding the node log's size; locking it serializes writers."""

    __tablename__ = "log_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(BigInteger)


metadata = Base.metadata


def _table(row: type[Base]) -> Table:
    """A mapped class's Core table (``__table__`` is typed as a plain FromClause)."""
    t = row.__table__
    assert isinstance(t, Table)
    return t


rosters = _table(RosterRow)
entries = _table(EntryRow)
feeds = _table(FeedRow)
held = _table(HeldRow)
equivocations = _table(EquivocationRow)
log_state = _table(LogStateRow)
peer_misbehaviour = _table(PeerMisbehaviourRow)
request_nonces = _table(RequestNonceRow)
