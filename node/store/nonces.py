"""The nonces of accepted signed requests, in the node's database (spec §8: replay).

A verifier remembers each accepted (keyid, nonce) until the request's ``created`` can no
longer pass the clock-skew check; keeping them in the database (not in memory) means a
restart does not reopen the window, and nodes sharing one PostgreSQL database share it.
Rows are written only after a signature verified, so strangers cannot fill the table;
expired rows are pruned on the write path, and a last-resort cap refuses new requests
rather than forget unexpired nonces (forgetting would reopen a replay window).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, delete, event, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError

from node.errors import ReplayedRequestError, StoreError
from node.store import models as m
from node.store.engine import create_engine_for

_COLS = m.request_nonces.c
#: Seconds between prunes of expired nonces (each prune runs with a write).
PRUNE_EVERY_S = 30.0
#: Most nonces kept at once (the window times every member's rate limit stays far below).
MAX_NONCES = 1_000_000


class NonceTable:
    """:class:`node.net.auth.NonceLedger` on the ``request_nonces`` table of a store's engine."""

    def __init__(
        self,
        engine: Engine,
        *,
        max_entries: int = MAX_NONCES,
        prune_every_s: float = PRUNE_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.max_entries = max_entries
        self.prune_every_s = prune_every_s
        self._clock = clock
        self._next_prune = 0.0
        self._count = 0
        self._lock = threading.Lock()
        dialect = engine.dialect.name
        if dialect not in ("sqlite", "postgresql"):
            raise StoreError(f"request nonces need SQLite or PostgreSQL, not {dialect}")
        self._insert = sqlite_insert if dialect == "sqlite" else pg_insert

    @classmethod
    def for_store(cls, store: Any, **options: Any) -> NonceTable:
        """The nonce table for ``store``: on PostgreSQL (row locks) the store's own database;
        on an SQLite file, a sibling database file (``tripwire-nonces.db`` beside
        ``tripwire.db``), so that recording a nonce, which every signed request does, never
        waits for the store's single write lock behind a large ingest (spec §13: status
        polls must stay cheap while a lab floods the node)."""
        from sqlalchemy.engine import make_url

        u = make_url(store.url)
        db = u.database or ""
        if u.get_backend_name() != "sqlite" or not db or db == ":memory:" or db.startswith("file:"):
            return cls(store.engine, **options)
        path = Path(db)
        side = path.with_name(f"{path.stem}-nonces{path.suffix or '.db'}")
        try:
            os.close(os.open(side, os.O_RDONLY | os.O_CREAT, 0o600))
            os.chmod(side, 0o600)
        except OSError as e:
            raise StoreError(f"cannot create the nonce database {side}: {e.strerror or e}") from e
        engine = create_engine_for(u.set(database=str(side)).render_as_string(hide_password=False))

        @event.listens_for(engine, "connect")
        def _no_fsync_per_request(dbapi_conn: Any, _record: Any) -> None:
            # WAL + NORMAL: a recorded nonce survives a killed process (the replay-after-restart
            # case) without an fsync on every signed request; only a power loss could forget
            # the last few, which a replay would then still have to reach within the skew window.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()
        try:
            m.request_nonces.create(engine, checkfirst=True)
        except SQLAlchemyError as e:
            engine.dispose()
            raise StoreError(f"cannot prepare the nonce database {side}: {e}") from e
        return cls(engine, **options)

    def remember(self, keyid: str, nonce: str, now: float, expires: float) -> bool:
        """Record the pair until ``expires``; False when it is already recorded."""
        with self._lock:
            due = self._clock() >= self._next_prune
            if due:
                self._next_prune = self._clock() + self.prune_every_s
        try:
            with self.engine.connect() as conn:
                conn.execution_options(tripwire_begin="IMMEDIATE")
                with conn.begin():
                    if due:
                        conn.execute(delete(m.RequestNonceRow).where(_COLS.expires <= int(now)))
                        self._count = conn.execute(select(func.count()).select_from(m.request_nonces)).scalar_one()
                    if self._count >= self.max_entries:
                        raise ReplayedRequestError("the nonce table is full; retry shortly")
                    # A replay changes no row, and no error aborts the transaction (two nodes on
                    # one PostgreSQL database race safely); an expired, unpruned row is reused.
                    stmt = self._insert(m.RequestNonceRow).values(keyid=keyid, nonce=nonce, expires=int(expires) + 1)
                    stmt = stmt.on_conflict_do_update(
                        index_elements=[_COLS.keyid, _COLS.nonce],
                        set_={"expires": stmt.excluded.expires},
                        where=_COLS.expires <= int(now),
                    )
                    added = conn.execute(stmt.returning(_COLS.expires)).first() is not None
        except SQLAlchemyError as e:
            raise StoreError(f"cannot record the request nonce: {e.__class__.__name__}: {e}") from e
        if added:
            self._count += 1
            return True
        return False

    def __len__(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(m.request_nonces)).scalar_one())
