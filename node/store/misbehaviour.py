"""Durable, bounded records of peer misbehaviour: the SQL behind ``Store.record_misbehaviour``.

What a peer served that broke the rules is refused (nothing of it enters the feeds); the
record of the refusal is what operators and regulators need to see, after a restart too.
Every field that can carry the peer's own bytes (the lab it claimed, the reason quoting it)
is cut to its column length and made storable (no NUL, no lone surrogate) before it is
written, and each write prunes the peer's records beyond the retention limit, so a hostile
peer can neither break the write nor grow the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select

from node.store import models as m
from protocol.canonical import format_time
from protocol.errors import ConfigurationError

#: Records kept per peer; each write prunes that peer's older ones.
MISBEHAVIOUR_PER_PEER = 1000
#: Most records one read returns.
MAX_READ = 1000

_COLS = m.peer_misbehaviour.c
_MAX_SEQ = 2**63 - 1  # BIGINT; a claimed seq beyond it is kept only in the reason text
_LOCK_CLASS = 740129041  # PostgreSQL advisory lock space of misbehaviour writers (per peer)


@dataclass(frozen=True, slots=True)
class MisbehaviourRecord:
    """One refusal of a peer's data, as stored (version: schema revision 0002)."""

    peer: str
    """Lab id of the peer that served the data."""
    serial: int
    """1-based count of this peer's records; the newest one's is the peer's total."""
    at: datetime
    """When the data was refused (UTC)."""
    code: str
    """Stable machine code of the refusal."""
    reason: str
    """Human explanation."""
    url: str
    """Where the data came from (peer endpoint, with the request path when known)."""
    lab: str | None = None
    """Lab whose feed the data claimed to extend, when known."""
    seq: int | None = None
    """Sequence number the refused entry claimed, when known."""
    entry_id: str | None = None
    """Id of the refused entry, when known."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "peer": self.peer,
            "serial": self.serial,
            "at": format_time(self.at),
            "code": self.code,
            "reason": self.reason,
            "url": self.url,
            "lab": self.lab,
            "seq": self.seq,
            "entry_id": self.entry_id,
        }


@dataclass(frozen=True, slots=True)
class MisbehaviourCount:
    """How much one peer misbehaved: ever (``total``) and still on record (``kept``)."""

    total: int
    kept: int
    last_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "kept": self.kept, "last_at": format_time(self.last_at)}


def _text(value: str, limit: int) -> str:
    # PostgreSQL text cannot hold NUL and no UTF-8 database can hold a lone surrogate
    # (JSON "\ud800" decodes to one); either would make the write itself fail.
    clean = value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


def _opt_text(value: str | None, limit: int) -> str | None:
    return None if value is None else _text(value, limit)


def _limit(column: Any) -> int:
    return int(column.type.length)


def insert_record(
    conn: Connection,
    *,
    peer: str,
    code: str,
    reason: str,
    url: str,
    lab: str | None,
    seq: int | None,
    entry_id: str | None,
    at: datetime,
    keep: int,
) -> MisbehaviourRecord:
    """Append one record for ``peer`` and prune the peer's records beyond the newest ``keep``.

    Runs inside the caller's transaction. Writers for one peer are serialized (SQLite: the
    caller's ``BEGIN IMMEDIATE``; PostgreSQL: a per-peer advisory lock), so serials stay
    contiguous; the primary key is the backstop and the caller retries on a collision.
    """
    if keep < 1:
        raise ConfigurationError(f"misbehaviour retention must keep at least 1 record per peer, not {keep}")
    if at.tzinfo is None:
        raise ConfigurationError("misbehaviour time must be timezone-aware")
    peer = _text(peer, _limit(_COLS.peer))
    if conn.dialect.name == "postgresql":
        # Not the log lock: ingest never waits for a misbehaviour record.
        conn.execute(select(func.pg_advisory_xact_lock(_LOCK_CLASS, func.hashtext(peer))))
    last = conn.execute(select(func.max(_COLS.serial)).where(_COLS.peer == peer)).scalar_one()
    rec = MisbehaviourRecord(
        peer=peer,
        serial=int(last or 0) + 1,
        at=at.astimezone(UTC),
        code=_text(code, _limit(_COLS.code)),
        reason=_text(reason, _limit(_COLS.reason)),
        url=_text(url, _limit(_COLS.url)),
        lab=_opt_text(lab, _limit(_COLS.lab)),
        seq=seq if seq is not None and 0 <= seq <= _MAX_SEQ else None,
        entry_id=_opt_text(entry_id, _limit(_COLS.entry_id)),
    )
    conn.execute(
        insert(m.PeerMisbehaviourRow).values(
            peer=rec.peer, serial=rec.serial, at=rec.at, code=rec.code, reason=rec.reason,
            url=rec.url, lab=rec.lab, seq=rec.seq, entry_id=rec.entry_id,
        )
    )
    conn.execute(
        delete(m.PeerMisbehaviourRow).where(_COLS.peer == peer, _COLS.serial <= rec.serial - keep)
    )
    return rec


def _utc(dt: datetime) -> datetime:
    # SQLite returns naive datetimes; every stored time is UTC.
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def select_records(conn: Connection, *, peer: str | None, limit: int) -> list[MisbehaviourRecord]:
    """Newest first: one peer's records by serial, or every peer's by time."""
    q = select(m.peer_misbehaviour)
    if peer is not None:
        q = q.where(_COLS.peer == peer).order_by(_COLS.serial.desc())
    else:
        q = q.order_by(_COLS.at.desc(), _COLS.peer, _COLS.serial.desc())
    rows = conn.execute(q.limit(max(0, min(limit, MAX_READ)))).all()
    return [
        MisbehaviourRecord(
            peer=r.peer, serial=r.serial, at=_utc(r.at), code=r.code, reason=r.reason, url=r.url,
            lab=r.lab, seq=r.seq, entry_id=r.entry_id,
        )
        for r in rows
    ]


def select_counts(conn: Connection) -> dict[str, MisbehaviourCount]:
    """Per peer with any record: total ever recorded, records kept, time of the newest."""
    rows = conn.execute(
        select(_COLS.peer, func.max(_COLS.serial), func.count(), func.max(_COLS.at))
        .group_by(_COLS.peer)
        .order_by(_COLS.peer)
    ).all()
    return {peer: MisbehaviourCount(int(total), int(kept), _utc(last)) for peer, total, kept, last in rows}
