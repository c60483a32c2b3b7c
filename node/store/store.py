"""The node's repository: verified feed entries, rosters, the hold, proofs and the node log.

Invariants (each write is one database transaction):

- Nothing unverified is stored: entries pass :func:`protocol.roster.verify_decoded`, and
  every feed decision (append, hold, release, duplicate, equivocation, freeze, refusal) is
  made by the pure planner :func:`protocol.feed.plan_appends`; the store reads the feed
  state it needs and writes the plan. An equivocation proof is the only thing kept from a
  rejected entry (spec §4.4); proofs received from peers are verified before they count.
- Writers are serialized by locking the single ``log_state`` row (``SELECT ... FOR UPDATE``
  on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), so heads and log indexes are read and
  advanced atomically even when a server and a CLI process write into one home. The
  unique constraints on ``entry_id`` and ``(lab, seq)`` are the backstop; a write that
  hits one is retried from the fresh state and ends as ``duplicate``.
- Signatures are verified before the transaction starts (verification dominates ingest
  cost; holding the write lock meanwhile would serialize it), then all valid entries of a
  batch are appended with a few bulk statements.
"""

from __future__ import annotations

import functools
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

from sqlalchemy import (
    Connection,
    Engine,
    LargeBinary,
    String,
    any_,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, SQLAlchemyError

from node.errors import (
    EntryNotFoundError,
    NetworkMismatchError,
    NoRosterError,
    StoreError,
)
from node.store import models as m
from node.store.engine import (
    check_schema,
    create_engine_for,
    db_reason,
    is_transient,
    migrate_schema,
    safe_url,
)
from node.store.misbehaviour import (
    MISBEHAVIOUR_PER_PEER,
    MisbehaviourCount,
    MisbehaviourRecord,
    insert_record,
    select_counts,
    select_records,
)
from protocol.canonical import format_time, utcnow
from protocol.entries import PROTOCOL, DecodedEntry, Model, VerifiedEntry, decode_entry
from protocol.envelope import Envelope
from protocol.errors import (
    ConfigurationError,
    MerkleProofError,
    OversizeError,
    PeerDataError,
    RevokedError,
    SignatureError,
    TripwireError,
    UnknownLabError,
)
from protocol.feed import (
    MAX_FUTURE_SKEW,
    EquivocationProof,
    FeedLimits,
    FeedState,
    FeedWriter,
    Head,
    plan_appends,
    time_key,
)
from protocol.keys import SigningKey
from protocol.merkle import (
    Checkpoint,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_from_hashes,
    sign_checkpoint,
)
from protocol.roster import RosterChain, VerifiedRoster, decode_roster, verify_decoded, verify_genesis

log = logging.getLogger(__name__)

#: Most envelopes accepted in one ingest call (the HTTP layer answers 413 above its own limit).
MAX_BATCH = 10_000
#: Out-of-order hold bounds (spec §4.3): per lab and in total, so a peer cannot fill the disk.
HOLD_PER_LAB = 1024
HOLD_TOTAL = 16_384
_RETRIES = 8
_IN_CHUNK = 900

_T = TypeVar("_T")
Status = Literal["accepted", "duplicate", "held", "rejected"]


@dataclass(frozen=True, slots=True)
class IngestOutcome:
    """What happened to one offered envelope."""

    entry_id: str | None
    lab: str | None
    seq: int | None
    status: Status
    code: str | None = None
    """Stable error code for ``rejected`` (see protocol.errors)."""
    reason: str | None = None
    """Human-readable reason for ``rejected``."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "entry_id": self.entry_id,
            "lab": self.lab,
            "seq": self.seq,
            "status": self.status,
            "code": self.code,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class ProofOutcome:
    """What happened to one offered equivocation proof."""

    proof_id: str | None
    lab: str | None
    seq: int | None
    status: Literal["accepted", "duplicate", "rejected"]
    code: str | None = None
    """Stable error code for ``rejected`` (see protocol.errors)."""
    reason: str | None = None
    """Human-readable reason for ``rejected``."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "proof_id": self.proof_id,
            "lab": self.lab,
            "seq": self.seq,
            "status": self.status,
            "code": self.code,
            "reason": self.reason,
        }


def _rejected(err: TripwireError, d: VerifiedEntry | DecodedEntry | None = None) -> IngestOutcome:
    st = d.statement if d else None
    return IngestOutcome(
        d.entry_id if d else None,
        st.lab if st else None,
        st.seq if st else None,
        "rejected",
        err.code,
        err.message,
    )


def _ok(v: VerifiedEntry | DecodedEntry, status: Status) -> IngestOutcome:
    return IngestOutcome(v.entry_id, v.statement.lab, v.statement.seq, status)


#: Which body field an entry is "about", per kind (indexed for the pause coordinator's lookups).
_SUBJECT_FIELD = {
    "pause_proposal": "proposal_id",
    "resume_proposal": "proposal_id",
    "vote": "proposal_id",
    "pause_certificate": "proposal_id",
    "alert": "result",
}


def _subject(v: VerifiedEntry | DecodedEntry) -> str | None:
    attr = _SUBJECT_FIELD.get(v.statement.kind)
    return None if attr is None else getattr(v.statement.body, attr)


def _chunks(items: Sequence[Any], n: int = _IN_CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def _envelope_from_json(text: str) -> Envelope:
    return Envelope.model_validate_json(text)


def _verified_from_row(envelope: str, signers: str, roster_version: int) -> VerifiedEntry:
    # Rows were verified when accepted; re-decoding restores the typed statement without
    # re-checking signatures (the database is this node's own trusted record).
    d = decode_entry(_envelope_from_json(envelope))
    return VerifiedEntry(
        d.envelope,
        d.payload,
        d.statement,
        d.entry_id,
        frozenset(filter(None, signers.split(","))),
        roster_version,
    )


class _ChainChanged(Exception):
    """Another process installed a roster version between verification and the write."""


@dataclass
class _WriteResult:
    accepted: list[VerifiedEntry]
    statuses: dict[str, IngestOutcome]
    chain: RosterChain | None
    leaves: list[bytes]
    base_size: int
    proofs: list[str] = field(default_factory=list)
    """Ids of equivocation proofs this write stored for the first time."""


class Store:
    """Repository of one node's verified data on SQLite (embedded default) or PostgreSQL."""

    def __init__(self, engine: Engine, url: str) -> None:
        self.engine = engine
        self.url = url
        self.dialect = engine.dialect.name
        self._chain: RosterChain | None = None
        self._chain_lock = threading.Lock()
        self._leaves: list[bytes] = []
        self._leaves_lock = threading.Lock()
        self._listeners: list[Callable[[list[VerifiedEntry]], None]] = []
        self.hold_per_lab = HOLD_PER_LAB
        self.hold_total = HOLD_TOTAL
        self.misbehaviour_per_peer = MISBEHAVIOUR_PER_PEER
        """Peer misbehaviour records kept per peer (older ones are pruned on each write)."""
        self.verify_workers = _cpu_count()
        """Threads that check a batch's signatures in parallel (``cryptography`` releases
        the GIL while it verifies); 1 verifies inline."""
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self.future_skew_s = int(MAX_FUTURE_SKEW.total_seconds())
        """Seconds an entry's ``issued_at`` may be ahead of :attr:`clock` (else ``future-dated``)."""
        self.clock: Callable[[], datetime] = _wall_clock
        """This node's clock (UTC): what ``future-dated`` is judged against, and the time
        of its own entries. Tests set a fixed one."""

    # --- opening -----------------------------------------------------------------------

    @classmethod
    def open(cls, url: str, *, migrate: bool = True) -> Store:
        """Create the engine and bring the schema to the newest migration."""
        engine = create_engine_for(url)
        store = cls(engine, url)
        try:
            if migrate:
                migrate_schema(engine, url)
            else:
                check_schema(engine, url)
        except Exception:
            engine.dispose()
            raise
        return store

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def safe_url(self) -> str:
        return safe_url(self.url)

    # --- transactions ------------------------------------------------------------------

    def _read(self) -> Connection:
        try:
            return self.engine.connect()
        except SQLAlchemyError as e:
            raise StoreError(f"database {self.safe_url} is unavailable: {db_reason(e)}") from e

    def _write(self, fn: Callable[[Connection, int], _T], *, lock_log: bool = True) -> _T:
        """Run ``fn(conn, log_size)`` in one write transaction, retrying transient conflicts.

        With ``lock_log`` the log-state row is locked first (every feed and log write);
        without it ``fn`` gets -1 as the size and only the transaction itself serializes.
        """
        last: Exception | None = None
        for attempt in range(_RETRIES):
            try:
                with self.engine.connect() as conn:
                    conn.execution_options(tripwire_begin="IMMEDIATE")
                    with conn.begin():
                        size = -1
                        if lock_log:
                            size = conn.execute(
                                select(m.log_state.c.size).where(m.log_state.c.id == 1).with_for_update()
                            ).scalar_one()
                        return fn(conn, size)
            except (IntegrityError, OperationalError) as e:
                # A unique-constraint race or a lock timeout: the state moved under us; redo
                # the whole decision from the fresh state (it usually ends as "duplicate").
                if not is_transient(e):
                    raise StoreError(f"database {self.safe_url} failed: {db_reason(e)}") from e
                last = e
                time.sleep(min(1.0, 0.02 * 2**attempt) * (0.5 + random.random()))
            except DBAPIError as e:
                raise StoreError(f"database {self.safe_url} failed: {db_reason(e)}") from e
        raise StoreError(f"database {self.safe_url} stayed busy after {_RETRIES} attempts: {last}") from last

    # --- rosters -----------------------------------------------------------------------

    def _load_chain(self, conn: Connection) -> RosterChain | None:
        """The roster chain, extended with versions other processes stored since last read."""
        with self._chain_lock:
            have = len(self._chain.versions) if self._chain else 0
            rows = conn.execute(
                select(m.rosters.c.version, m.rosters.c.envelope)
                .where(m.rosters.c.version > have)
                .order_by(m.rosters.c.version)
            ).all()
            if not rows:
                return self._chain
            chain = RosterChain(list(self._chain.versions)) if self._chain else None
            for version, text in rows:
                env = _envelope_from_json(text)
                if chain is None:
                    chain = RosterChain([verify_genesis(env)])
                else:
                    chain.apply(env)
                if len(chain.versions) != version:
                    raise StoreError(f"stored roster versions are not contiguous at v{version}")
            self._chain = chain
            return chain

    def roster_chain(self) -> RosterChain:
        """Every accepted roster version; raises :class:`NoRosterError` before genesis."""
        with self._read() as conn:
            chain = self._load_chain(conn)
        if chain is None:
            raise NoRosterError("no roster is installed on this node (run `tripwire roster install`)")
        # A copy: callers must not be able to add versions that were never stored.
        return RosterChain(list(chain.versions))

    def has_roster(self) -> bool:
        with self._read() as conn:
            return self._load_chain(conn) is not None

    def network_id(self) -> str:
        return self.roster_chain().network_id

    def install_genesis(self, envelope: Envelope | Mapping[str, Any]) -> VerifiedRoster:
        """Verify and store the genesis roster; idempotent; refuses a second, different network."""
        env = _as_envelope(envelope)
        vr = verify_genesis(env)

        def fn(conn: Connection, _size: int) -> VerifiedRoster:
            chain = self._load_chain(conn)
            if chain is not None:
                if chain.network_id == vr.roster_id:
                    return chain.versions[0]
                raise NetworkMismatchError(
                    f"this node is already on network {chain.network_id[:16]}…; refusing genesis "
                    f"{vr.roster_id[:16]}… of another network"
                )
            self._insert_rosters(conn, [vr])
            return vr

        out = self._write(fn)
        self._invalidate_chain()
        return out

    def apply_roster(
        self, envelope: Envelope | Mapping[str, Any], *, now: datetime | None = None
    ) -> VerifiedRoster:
        """Verify a roster update against the current version and store it (spec §7.3)."""
        env = _as_envelope(envelope)
        decode_roster(env)

        def fn(conn: Connection, _size: int) -> VerifiedRoster:
            chain = self._load_chain(conn)
            if chain is None:
                raise NoRosterError("install the genesis roster before applying updates")
            work = RosterChain(list(chain.versions))
            before = len(work.versions)
            vr = work.apply(env, now=now)
            if len(work.versions) > before:
                self._insert_rosters(conn, work.versions[before:])
            return vr

        out = self._write(fn)
        self._invalidate_chain()
        return out

    def _insert_rosters(self, conn: Connection, versions: Sequence[VerifiedRoster]) -> None:
        now = datetime.now(UTC)
        conn.execute(
            insert(m.rosters),
            [
                {
                    "version": v.version,
                    "roster_id": v.roster_id,
                    "envelope": v.envelope.model_dump_json(),
                    "expires": v.roster.expires,
                    "installed_at": now,
                }
                for v in versions
            ],
        )

    def _invalidate_chain(self) -> None:
        # Re-read after commit: the transaction may have been retried or rolled back.
        with self._chain_lock:
            self._chain = None

    # --- ingest ------------------------------------------------------------------------

    def ingest(
        self,
        envelopes: Sequence[Envelope | DecodedEntry | Mapping[str, Any]],
        *,
        now: datetime | None = None,
        source: str | None = None,
    ) -> list[IngestOutcome]:
        """Verify and append a batch of entry envelopes; one outcome per envelope, in order.

        Envelopes the caller already decoded (:func:`protocol.entries.decode_entry`) are
        not decoded again; their signatures are checked like any other's."""
        if len(envelopes) > MAX_BATCH:
            raise OversizeError(f"{len(envelopes)} envelopes in one batch; the limit is {MAX_BATCH}")
        now = now or self.clock()
        outcomes: list[IngestOutcome | None] = [None] * len(envelopes)
        decoded: list[tuple[int, DecodedEntry]] = []
        for i, raw in enumerate(envelopes):
            try:
                decoded.append((i, raw if isinstance(raw, DecodedEntry) else decode_entry(_as_envelope(raw))))
            except TripwireError as e:
                outcomes[i] = _rejected(e)
        # A roster_update changes which keys are valid for what follows it: verify the batch
        # in segments that end at each roster update (spec §7.4).
        segment: list[tuple[int, DecodedEntry]] = []
        for item in decoded:
            segment.append(item)
            if item[1].statement.kind == "roster_update":
                self._ingest_segment(segment, outcomes, now, source)
                segment = []
        if segment:
            self._ingest_segment(segment, outcomes, now, source)
        return [o for o in outcomes if o is not None]

    def _existing_ids(self, conn: Connection, ids: Sequence[str]) -> set[str]:
        out: set[str] = set()
        col = m.entries.c.entry_id
        if self.dialect == "postgresql":
            # One array parameter instead of hundreds of placeholders to render and parse.
            arr = bindparam("ids", list(ids), type_=ARRAY(String))
            out.update(conn.execute(select(col).where(col == any_(arr))).scalars())
            return out
        for chunk in _chunks(list(ids)):
            out.update(conn.execute(select(col).where(col.in_(chunk))).scalars())
        return out

    def _ingest_segment(
        self,
        items: list[tuple[int, DecodedEntry]],
        outcomes: list[IngestOutcome | None],
        now: datetime,
        source: str | None,
    ) -> None:
        for _ in range(_RETRIES):
            with self._read() as conn:
                chain = self._load_chain(conn)
                if chain is None:
                    raise NoRosterError("no roster is installed on this node: cannot verify entries")
                # Re-deliveries are the common case in sync; skip their signature checks.
                known = self._existing_ids(conn, [d.entry_id for _, d in items])
            verified: list[VerifiedEntry] = []
            first_of: dict[str, int] = {}
            copies: list[tuple[int, str]] = []
            fresh: list[tuple[int, DecodedEntry]] = []
            for i, d in items:
                if d.entry_id in known:
                    outcomes[i] = _ok(d, "duplicate")
                    continue
                if d.entry_id in first_of:
                    copies.append((i, d.entry_id))
                    continue
                first_of[d.entry_id] = i
                fresh.append((i, d))
            for (i, d), checked in zip(fresh, self._verify_all([d for _, d in fresh], chain, now), strict=True):
                if isinstance(checked, VerifiedEntry):
                    verified.append(checked)
                else:
                    outcomes[i] = _rejected(checked, d)
            if verified:
                try:
                    result = self._write(functools.partial(self._append_batch, verified, chain, now, source))
                except _ChainChanged:
                    continue
                self._after_commit(result)
                for eid, outcome in result.statuses.items():
                    outcomes[first_of[eid]] = outcome
            for i, eid in copies:
                o = outcomes[first_of[eid]]
                assert o is not None
                outcomes[i] = _ok_copy(o) if o.status == "accepted" else o
            return
        raise StoreError("the roster kept changing while ingesting; try again")

    def _verify_all(
        self, decoded: Sequence[DecodedEntry], chain: RosterChain, now: datetime
    ) -> list[VerifiedEntry | TripwireError]:
        """Check each entry's signature; the result for each entry, in order.

        Large batches are split across a thread pool: signature checks are independent,
        the roster chain is only read, and ``cryptography`` releases the GIL while it
        verifies, so a batch is checked on every core the node has.
        """

        def run(part: Sequence[DecodedEntry]) -> list[VerifiedEntry | TripwireError]:
            out: list[VerifiedEntry | TripwireError] = []
            for d in part:
                try:
                    out.append(verify_decoded(d, chain, now=now))
                except TripwireError as e:
                    out.append(e)
            return out

        workers = min(self.verify_workers, len(decoded) // _PER_WORKER_MIN)
        if workers <= 1:
            return run(decoded)
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.verify_workers, thread_name_prefix="tripwire-verify")
            pool = self._pool
        step = -(-len(decoded) // workers)
        parts = [decoded[k : k + step] for k in range(0, len(decoded), step)]
        return [r for part in pool.map(run, parts) for r in part]

    def _append_batch(
        self,
        verified: Sequence[VerifiedEntry],
        chain: RosterChain,
        now: datetime,
        source: str | None,
        conn: Connection,
        size: int,
        proofs: Sequence[EquivocationProof] = (),
    ) -> _WriteResult:
        """:meth:`_append` with the batch first (for ``functools.partial`` and ``_write``)."""
        return self._append(conn, size, verified, chain, now, source, proofs)

    def _append(
        self,
        conn: Connection,
        size: int,
        verified: Sequence[VerifiedEntry],
        chain: RosterChain,
        now: datetime,
        source: str | None,
        proofs: Sequence[EquivocationProof] = (),
    ) -> _WriteResult:
        """Plan a batch with :func:`protocol.feed.plan_appends` and write the plan, inside
        the locked transaction. The feed rules are all in the planner; this is I/O."""
        fresh = self._load_chain(conn)
        if fresh is None or len(fresh.versions) != len(chain.versions):
            raise _ChainChanged
        labs = sorted({v.lab for v in verified} | {p.lab for p in proofs})
        known, states, held_rows = self._lab_states(conn, labs)
        plan = plan_appends(
            states,
            verified,
            _StoreLookup(conn, held_rows, self._held_total),
            now=now,
            stored=self._existing_ids(conn, [v.entry_id for v in verified]) if verified else frozenset(),
            proofs=proofs,
            chain=chain,
            limits=FeedLimits(self.hold_per_lab, self.hold_total, timedelta(seconds=self.future_skew_s)),
        )
        for v, err in plan.dropped:
            log.info("dropped held entry %s: %s", v.entry_id, err.message)
        statuses = {
            v.entry_id: _ok(v, verdict.status) if verdict.error is None else _rejected(verdict.error, v)
            for v in verified
            if (verdict := plan.verdicts.get(v.entry_id)) is not None
        }

        # --- write -------------------------------------------------------------------------
        accepted_at = datetime.now(UTC)
        leaves = [leaf_hash(v.entry_id.encode("ascii")) for v in plan.appends]
        if plan.appends:
            self._bulk_insert(
                conn,
                m.entries,
                [
                    {
                        "log_index": size + k,
                        "entry_id": v.entry_id,
                        "lab": v.lab,
                        "seq": v.seq,
                        "prev": v.statement.prev,
                        "kind": v.kind,
                        "subject": _subject(v),
                        "issued_at": v.statement.issued_at,
                        "roster_version": v.roster_version,
                        "signers": ",".join(sorted(v.signers)),
                        "envelope": v.envelope.model_dump_json(),
                        "leaf_hash": leaves[k],
                        "accepted_at": accepted_at,
                        "source": source,
                    }
                    for k, v in enumerate(plan.appends)
                ],
            )
            conn.execute(update(m.log_state).where(m.log_state.c.id == 1).values(size=size + len(plan.appends)))
        new_feeds = [
            {
                "lab": lab,
                "head_seq": st.head.seq if st.head else 0,
                "head_id": st.head.entry_id if st.head else None,
                "frozen": st.frozen,
            }
            for lab, st in plan.states.items()
            if lab not in known
        ]
        if new_feeds:
            conn.execute(insert(m.feeds), new_feeds)
        for lab, st in plan.states.items():
            if lab in known:
                conn.execute(
                    update(m.feeds)
                    .where(m.feeds.c.lab == lab)
                    .values(
                        head_seq=st.head.seq if st.head else 0,
                        head_id=st.head.entry_id if st.head else None,
                        frozen=st.frozen,
                    )
                )
        if plan.unhold:
            for chunk in _chunks(sorted(plan.unhold)):
                conn.execute(delete(m.held).where(m.held.c.entry_id.in_(chunk)))
        if plan.hold:
            conn.execute(
                insert(m.held),
                [
                    {
                        "entry_id": v.entry_id,
                        "lab": v.lab,
                        "seq": v.seq,
                        "envelope": v.envelope.model_dump_json(),
                        "roster_version": v.roster_version,
                        "signers": ",".join(sorted(v.signers)),
                        "received_at": accepted_at,
                        "source": source,
                    }
                    for v in plan.hold
                ],
            )
        new_proofs: list[str] = []
        if plan.proofs:
            by_id = {p.proof_id: p for p in plan.proofs}
            have = set(
                conn.execute(
                    select(m.equivocations.c.proof_id).where(m.equivocations.c.proof_id.in_(list(by_id)))
                ).scalars()
            )
            new_proofs = [pid for pid in by_id if pid not in have]
            if new_proofs:
                conn.execute(
                    insert(m.equivocations),
                    [
                        {
                            "proof_id": pid,
                            "lab": by_id[pid].lab,
                            "seq": by_id[pid].seq,
                            "proof": by_id[pid].model_dump_json(),
                            "found_at": accepted_at,
                        }
                        for pid in new_proofs
                    ],
                )
        new_chain = None
        if plan.rosters:
            self._insert_rosters(conn, plan.rosters)
            new_chain = RosterChain([*chain.versions, *plan.rosters])
        return _WriteResult(list(plan.appends), statuses, new_chain, leaves, size, new_proofs)

    def _bulk_insert(self, conn: Connection, table: Any, rows: list[dict[str, Any]]) -> None:
        if self.dialect == "postgresql":
            # COPY streams the whole batch in one exchange inside the same transaction; row-wise
            # INSERTs cost a round trip each and compiling a multi-row INSERT costs more still.
            import psycopg

            cols = [c.name for c in table.columns]
            raw = conn.connection.driver_connection
            assert raw is not None
            sql = f"COPY {table.name} ({', '.join(cols)}) FROM STDIN"
            try:
                with raw.cursor() as cur, cur.copy(sql) as copy:
                    for r in rows:
                        copy.write_row(tuple(r.get(c) for c in cols))
            except psycopg.IntegrityError as e:
                raise IntegrityError(sql, None, e) from e
            except psycopg.OperationalError as e:
                raise OperationalError(sql, None, e) from e
        else:
            # SQLite is in-process: executemany of one prepared statement is the fastest path,
            # with each column's SQLAlchemy bind conversion applied once per value (a third of
            # the cost of going through the ORM-level insert construct for every row).
            cols = list(table.columns)
            # bytes go to sqlite3 as they are; only conversions that change a value are kept.
            procs = [
                None if isinstance(c.type, LargeBinary) else c.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
                for c in cols
            ]
            sql = f"INSERT INTO {table.name} ({', '.join(c.name for c in cols)}) VALUES ({', '.join('?' * len(cols))})"
            conn.exec_driver_sql(
                sql,
                [
                    tuple(r.get(c.name) if p is None else p(r.get(c.name)) for c, p in zip(cols, procs, strict=True))
                    for r in rows
                ],
            )

    def _lab_states(
        self, conn: Connection, labs: Sequence[str]
    ) -> tuple[set[str], dict[str, FeedState], dict[str, Any]]:
        """The labs with a feed row, each lab's :class:`FeedState`, and the held rows by id
        (decoded only if the plan needs them): a few queries per batch, none per entry."""
        if not labs:
            return set(), {}, {}
        rows = conn.execute(
            select(m.feeds.c.lab, m.feeds.c.head_seq, m.feeds.c.head_id, m.feeds.c.frozen, m.entries.c.issued_at)
            .select_from(m.feeds.outerjoin(m.entries, m.entries.c.entry_id == m.feeds.c.head_id))
            .where(m.feeds.c.lab.in_(list(labs)))
        ).all()
        known = {r.lab for r in rows}
        frozen = [r.lab for r in rows if r.frozen]
        fork_at: dict[str, int] = {}
        if frozen:
            fork_at = {
                lab: int(seq)
                for lab, seq in conn.execute(
                    select(m.equivocations.c.lab, func.min(m.equivocations.c.seq))
                    .where(m.equivocations.c.lab.in_(frozen))
                    .group_by(m.equivocations.c.lab)
                )
            }
        held: dict[str, dict[int, str]] = {lab: {} for lab in labs}
        held_rows: dict[str, Any] = {}
        for row in conn.execute(select(m.held).where(m.held.c.lab.in_(list(labs)))):
            held[row.lab][row.seq] = row.entry_id
            held_rows[row.entry_id] = row
        states = {
            r.lab: FeedState(
                head=Head(r.head_seq, r.head_id) if r.head_seq else None,
                head_issued_at=r.issued_at if r.head_seq else None,
                # A frozen feed without a stored proof (not written by this version) stays
                # frozen from its start, as it was.
                fork_seq=fork_at.get(r.lab, 1) if r.frozen else None,
                held=held[r.lab],
            )
            for r in rows
        }
        for lab in labs:
            if lab not in states and held[lab]:
                states[lab] = FeedState(held=held[lab])
        return known, states, held_rows

    def _held_total(self, conn: Connection) -> int:
        return int(conn.execute(select(func.count()).select_from(m.held)).scalar_one())

    def _after_commit(self, result: _WriteResult) -> None:
        if result.chain is not None:
            self._invalidate_chain()
        with self._leaves_lock:
            if len(self._leaves) == result.base_size:
                self._leaves.extend(result.leaves)
        if result.accepted:
            for cb in list(self._listeners):
                try:
                    cb(list(result.accepted))
                except Exception:
                    # The entries are committed; a failing listener must not turn that into an error.
                    log.exception("store listener %r failed", cb)

    # --- equivocation proofs from elsewhere (spec §4.4) ----------------------------------

    def add_equivocations(
        self, proofs: Sequence[EquivocationProof | Mapping[str, Any]], *, now: datetime | None = None
    ) -> list[ProofOutcome]:
        """Verify equivocation proofs received from peers and keep the valid ones; one
        outcome per proof, in order.

        A valid proof freezes its lab's feed from the proof's seq on, exactly as a fork
        found at ingest does (the planner applies both), so a fork seen by any node stops
        the feed on every node it reaches. A proof that does not verify is refused with its
        code and changes nothing.
        """
        outcomes: list[ProofOutcome | None] = [None] * len(proofs)
        parsed: list[tuple[int, EquivocationProof]] = []
        for i, raw in enumerate(proofs):
            try:
                parsed.append((i, raw if isinstance(raw, EquivocationProof) else EquivocationProof.parse(raw)))
            except TripwireError as e:
                outcomes[i] = ProofOutcome(None, None, None, "rejected", e.code, e.message)
        when = now or self.clock()
        for _ in range(_RETRIES):
            chain = self.roster_chain()
            valid: list[tuple[int, EquivocationProof]] = []
            for i, p in parsed:
                try:
                    # Both entries verified under the roster: only the lab's key holder can
                    # have made the proof, whoever relayed it.
                    p.verify(chain)
                    valid.append((i, p))
                except TripwireError as e:
                    outcomes[i] = ProofOutcome(p.proof_id, p.lab, p.seq, "rejected", e.code, e.message)
            if not valid:
                break
            try:
                result = self._write(
                    functools.partial(self._append_batch, [], chain, when, None, proofs=[p for _, p in valid])
                )
            except _ChainChanged:
                continue
            self._after_commit(result)
            fresh = set(result.proofs)
            for i, p in valid:
                status: Literal["accepted", "duplicate"] = "accepted" if p.proof_id in fresh else "duplicate"
                fresh.discard(p.proof_id)  # a second copy in the same call is a duplicate
                outcomes[i] = ProofOutcome(p.proof_id, p.lab, p.seq, status)
            break
        else:
            raise StoreError("the roster kept changing while storing equivocation proofs; try again")
        return [o for o in outcomes if o is not None]

    def proof_ids(self) -> set[str]:
        """Ids of every equivocation proof this node keeps."""
        with self._read() as conn:
            return set(conn.execute(select(m.equivocations.c.proof_id)).scalars())

    def forks(self) -> dict[str, int]:
        """Frozen feeds: lab → the seq the feed is frozen from (the lowest proven fork)."""
        with self._read() as conn:
            frozen = [str(x) for x in conn.execute(select(m.feeds.c.lab).where(m.feeds.c.frozen.is_(True))).scalars()]
            if not frozen:
                return {}
            at = {
                lab: seq
                for lab, seq in conn.execute(
                    select(m.equivocations.c.lab, func.min(m.equivocations.c.seq))
                    .where(m.equivocations.c.lab.in_(frozen))
                    .group_by(m.equivocations.c.lab)
                )
            }
        return {lab: int(at.get(lab, 1)) for lab in frozen}

    # --- own feed ----------------------------------------------------------------------

    def publish(
        self,
        lab: str,
        key: SigningKey,
        kind: str,
        body: Model | Mapping[str, Any],
        *,
        now: datetime | None = None,
        source: str | None = "local",
    ) -> VerifiedEntry:
        """Sign the next entry of ``lab``'s own feed from the stored head and append it.

        Reading the head, signing and appending happen under the write lock in one
        transaction, so two processes publishing into one home can never sign two
        different entries at one seq (which peers would rightly treat as equivocation).
        The entry is dated ``now`` (default: :attr:`clock`), or its predecessor's time if this
        node's clock has gone back since: a feed's time never decreases (spec §4.2 step 7).
        """
        when = now or self.clock()
        stamp = format_time(now if now is not None else when.replace(microsecond=0))

        def fn(conn: Connection, size: int) -> _WriteResult:
            chain = self._load_chain(conn)
            if chain is None:
                raise NoRosterError("no roster is installed: this node cannot publish yet")
            st = self._lab_states(conn, [lab])[1].get(lab) or FeedState()
            issued_at = stamp
            if st.head_issued_at is not None and time_key(st.head_issued_at) > time_key(stamp):
                issued_at = st.head_issued_at
            writer = FeedWriter(chain.network_id, lab, key, st.head)
            env, _eid = writer.append(kind, dict(body) if isinstance(body, Mapping) else body, issued_at)
            try:
                v = verify_decoded(decode_entry(env), chain, now=when)
            except (SignatureError, UnknownLabError, RevokedError) as e:
                # This home's key or lab is not what the roster says: a local setup problem.
                raise ConfigurationError(
                    f"cannot publish as lab {lab!r}: {e.message} (is this home's key the roster key of {lab!r}?)",
                    code=e.code,
                ) from e
            result = self._append(conn, size, [v], chain, when, source)
            outcome = result.statuses[v.entry_id]
            if outcome.status != "accepted":
                raise PeerDataError(f"own entry not accepted: {outcome.reason}", code=outcome.code)
            return result

        result = self._write(fn)
        self._after_commit(result)
        return result.accepted[0]

    # --- reads -------------------------------------------------------------------------

    def heads(self) -> dict[str, Head]:
        with self._read() as conn:
            rows = conn.execute(select(m.feeds).where(m.feeds.c.head_seq > 0).order_by(m.feeds.c.lab)).all()
        return {r.lab: Head(r.head_seq, r.head_id) for r in rows}

    def frozen_labs(self) -> set[str]:
        with self._read() as conn:
            return set(conn.execute(select(m.feeds.c.lab).where(m.feeds.c.frozen.is_(True))).scalars())

    def feed(self, lab: str, after: int = 0, limit: int = 500) -> list[Envelope]:
        """The lab's entries with seq > ``after``, in seq order (at most ``limit``)."""
        return [_envelope_from_json(t) for t in self.feed_json(lab, after, limit)]

    def feed_json(self, lab: str, after: int = 0, limit: int = 500) -> list[str]:
        """Like :meth:`feed`, as the stored envelope JSON (verified when it was accepted):
        serving a page needs no parse and re-serialization."""
        limit = max(0, min(limit, MAX_BATCH))
        with self._read() as conn:
            return list(
                conn.execute(
                    select(m.entries.c.envelope)
                    .where(m.entries.c.lab == lab, m.entries.c.seq > after)
                    .order_by(m.entries.c.seq)
                    .limit(limit)
                ).scalars()
            )

    def get(self, entry_id: str) -> VerifiedEntry | None:
        with self._read() as conn:
            row = conn.execute(
                select(m.entries.c.envelope, m.entries.c.signers, m.entries.c.roster_version).where(
                    m.entries.c.entry_id == entry_id
                )
            ).first()
        return None if row is None else _verified_from_row(*row)

    def entries(
        self, kind: str | None = None, lab: str | None = None, *, subject: str | None = None
    ) -> list[VerifiedEntry]:
        """Accepted entries in accept (log) order, optionally filtered."""
        q = select(m.entries.c.envelope, m.entries.c.signers, m.entries.c.roster_version).order_by(
            m.entries.c.log_index
        )
        if kind is not None:
            q = q.where(m.entries.c.kind == kind)
        if lab is not None:
            q = q.where(m.entries.c.lab == lab)
        if subject is not None:
            q = q.where(m.entries.c.subject == subject)
        with self._read() as conn:
            rows = conn.execute(q).all()
        return [_verified_from_row(*r) for r in rows]

    def held_count(self) -> int:
        with self._read() as conn:
            return self._held_total(conn)

    def equivocations(self) -> list[EquivocationProof]:
        with self._read() as conn:
            rows = conn.execute(
                select(m.equivocations.c.proof).order_by(m.equivocations.c.found_at)
            ).scalars()
            return [EquivocationProof.model_validate_json(t) for t in rows]

    def add_listener(self, callback: Callable[[list[VerifiedEntry]], None]) -> None:
        """Call ``callback(entries)`` after each commit that accepted entries (in log order)."""
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[list[VerifiedEntry]], None]) -> None:
        if callback in self._listeners:
            self._listeners.remove(callback)

    # --- peer misbehaviour ------------------------------------------------------------

    def record_misbehaviour(
        self,
        peer: str,
        code: str,
        reason: str,
        *,
        url: str,
        lab: str | None = None,
        seq: int | None = None,
        entry_id: str | None = None,
        now: datetime | None = None,
    ) -> MisbehaviourRecord:
        """Durably record that ``peer`` served data that was refused, in its own short
        transaction, pruning the peer's records beyond :attr:`misbehaviour_per_peer`.

        Text that may quote the peer's bytes is cut to the column lengths and made storable,
        so what a hostile peer sent cannot make the record fail. The log lock is not taken:
        the record touches no feed, and ingest must not wait for it.
        """
        when = now or datetime.now(UTC)
        # Two writers taking the same serial is a unique-constraint conflict: the loser retries.
        return self._write(
            lambda conn, _size: insert_record(
                conn, peer=peer, code=code, reason=reason, url=url, lab=lab, seq=seq,
                entry_id=entry_id, at=when, keep=self.misbehaviour_per_peer,
            ),
            lock_log=False,
        )

    def misbehaviour(self, peer: str | None = None, limit: int = 100) -> list[MisbehaviourRecord]:
        """Recorded peer misbehaviour, newest first (one peer's, or every peer's by time)."""
        with self._read() as conn:
            return select_records(conn, peer=peer, limit=limit)

    def misbehaviour_counts(self) -> dict[str, MisbehaviourCount]:
        """Per peer with records: how many ever, how many kept, when the last one was."""
        with self._read() as conn:
            return select_counts(conn)

    # --- node log (spec §5) -------------------------------------------------------------

    def log_size(self) -> int:
        with self._read() as conn:
            return int(conn.execute(select(m.log_state.c.size).where(m.log_state.c.id == 1)).scalar_one())

    def _leaf_hashes(self, size: int) -> list[bytes]:
        with self._leaves_lock:
            have = len(self._leaves)
            if have < size:
                with self._read() as conn:
                    rows = conn.execute(
                        select(m.entries.c.leaf_hash)
                        .where(m.entries.c.log_index >= have, m.entries.c.log_index < size)
                        .order_by(m.entries.c.log_index)
                    ).scalars()
                    fetched = [bytes(h) for h in rows]
                if len(fetched) != size - have:
                    raise StoreError(
                        f"node log has a gap: expected {size - have} leaves, found {len(fetched)}"
                    )
                self._leaves.extend(fetched)
            return self._leaves[:size]

    def _check_size(self, size: int | None) -> int:
        current = self.log_size()
        if size is None:
            return current
        if not 0 <= size <= current:
            raise MerkleProofError(f"tree size {size} is outside this node's log (size {current})")
        return size

    def log_root(self, size: int | None = None) -> str:
        """Hex RFC 9162 root of the first ``size`` log entries (default: all)."""
        return root_from_hashes(self._leaf_hashes(self._check_size(size))).hex()

    def checkpoint(self, lab: str, *, size: int | None = None, now: datetime | None = None) -> Checkpoint:
        """The checkpoint statement (spec §5.5) of this node's log at ``size`` (default: all)."""
        n = self._check_size(size)
        return Checkpoint(
            protocol=PROTOCOL,
            network=self.network_id(),
            node=lab,
            size=n,
            root=root_from_hashes(self._leaf_hashes(n)).hex(),
            issued_at=format_time(now or utcnow()),
        )

    def signed_checkpoint(
        self, key: SigningKey, lab: str, *, size: int | None = None, now: datetime | None = None
    ) -> Envelope:
        """A checkpoint envelope (CHECKPOINT_PAYLOAD_TYPE) signed by this node's key."""
        return sign_checkpoint(self.checkpoint(lab, size=size, now=now), key)

    def inclusion_proof(self, entry_id: str, size: int | None = None) -> tuple[int, int, list[str]]:
        """``(index, size, path)``: RFC 9162 inclusion proof of an entry in the log of ``size``."""
        with self._read() as conn:
            index = conn.execute(
                select(m.entries.c.log_index).where(m.entries.c.entry_id == entry_id)
            ).scalar_one_or_none()
        if index is None:
            raise EntryNotFoundError(f"entry {entry_id[:16]}… is not in this node's log")
        n = self._check_size(size)
        if index >= n:
            raise MerkleProofError(f"entry {entry_id[:16]}… is at index {index}, outside a tree of size {n}")
        return index, n, [h.hex() for h in inclusion_proof(index, self._leaf_hashes(n))]

    def consistency_proof(self, old: int, new: int | None = None) -> list[str]:
        """RFC 9162 consistency proof that the log of size ``old`` is a prefix of size ``new``."""
        n = self._check_size(new)
        if not 0 <= old <= n:
            raise MerkleProofError(f"old size {old} is not between 0 and {n}")
        return [h.hex() for h in consistency_proof(old, self._leaf_hashes(n))]

    def leaf_index(self, entry_id: str) -> int | None:
        with self._read() as conn:
            return conn.execute(
                select(m.entries.c.log_index).where(m.entries.c.entry_id == entry_id)
            ).scalar_one_or_none()


class _StoreLookup:
    """The store's answers to the planner's questions (:class:`protocol.feed.FeedLookup`)."""

    def __init__(self, conn: Connection, held_rows: Mapping[str, Any], held_total: Callable[[Connection], int]) -> None:
        self.conn, self.held_rows, self._held_total = conn, held_rows, held_total

    def stored_at(self, lab: str, seq: int) -> VerifiedEntry | None:
        # Only an entry not already accepted that claims a seq at or below the head asks
        # this: a possible equivocation, not the ingest path of a healthy feed.
        row = self.conn.execute(
            select(m.entries.c.envelope, m.entries.c.signers, m.entries.c.roster_version).where(
                m.entries.c.lab == lab, m.entries.c.seq == seq
            )
        ).first()
        return None if row is None else _verified_from_row(*row)

    def held_entry(self, lab: str, entry_id: str) -> VerifiedEntry:
        row = self.held_rows[entry_id]
        return _verified_from_row(row.envelope, row.signers, row.roster_version)

    def held_total(self) -> int:
        return self._held_total(self.conn)


def _wall_clock() -> datetime:
    return datetime.now(UTC)


#: Fewest entries worth handing to one verification thread (below it, threads cost more).
_PER_WORKER_MIN = 32


def _cpu_count() -> int:
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on every platform
        n = os.cpu_count() or 1
    return max(1, min(8, n))


def _ok_copy(o: IngestOutcome) -> IngestOutcome:
    # A second copy of an entry in the same batch: the first one was stored.
    return IngestOutcome(o.entry_id, o.lab, o.seq, "duplicate")


def _as_envelope(raw: Envelope | Mapping[str, Any]) -> Envelope:
    return raw if isinstance(raw, Envelope) else Envelope.parse(raw)
