"""The node's pause state, kept current as entries arrive and cheap to read.

:class:`EntryIndex` reads a store's entries of chosen kinds incrementally by node-log
index; :class:`PauseTracker` feeds the pause entries to :func:`protocol.pause.pause_state`
(the one definition of the pause state) and caches the result until the log or the roster
chain changes. Reading the state costs one small query (the log size) when nothing
changed, and certificate signatures are checked once per certificate, so neither a
status poll nor a flood of large entries makes ``/v1/status`` slow (spec §13).

The tracker never depends on the coordinator or the adopted policy: a result that cannot
be evaluated, or a coordinator pass that fails, cannot freeze the pause state gates read.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

from protocol.entries import VerifiedEntry
from protocol.pause import PAUSE_KINDS, CertCache, PauseState, pause_state

log = logging.getLogger(__name__)


def record_conflicts(store: Any, conflicts: Iterable[VerifiedEntry]) -> int:
    """Record, as equivocation proofs, certificate votes that conflict with the entry the
    store holds at their position (spec §6.5 step 7, §4.4); returns how many were new.

    The proof then freezes the feed here and travels with sync, so every node judges the
    forked vote alike, whichever branch it held."""
    from protocol.feed import EquivocationProof

    proofs = []
    for v in conflicts:
        held = store.stored_at(v.lab, v.seq)
        if held is not None and held.entry_id != v.entry_id:
            proofs.append(EquivocationProof.of(held, v))
    if not proofs:
        return 0
    known = store.proof_ids()
    fresh = [p for p in proofs if p.proof_id not in known]
    if fresh:
        store.add_equivocations(fresh)
    return len(fresh)


def feeds_held(store: Any) -> dict[str, Any]:
    """What ``store`` holds of each feed, as :func:`protocol.pause.pause_state` (and the
    coordinator's ``analyze``) take it: contiguous heads, entry ids held, proven forks
    (spec §6.5 step 7)."""
    return {
        "heads": {lab: h.seq for lab, h in store.heads().items()},
        "held_ids": lambda eid: store.get(eid) is not None,
        "forks": held_forks(store),
    }


def held_forks(store: Any) -> dict[str, int]:
    """lab -> the lowest seq at which the store holds an equivocation proof for its feed."""
    out: dict[str, int] = {}
    for p in store.equivocations():
        out[p.lab] = min(p.seq, out.get(p.lab, p.seq))
    return out


class EntryIndex:
    """Entries of some kinds, read incrementally by node-log index.

    Each update reads only rows appended since the previous one (writers are serialized and
    log indexes are contiguous per commit, so nothing below the cursor can appear later).
    Rows were verified when the store accepted them, as in ``Store.entries``.
    """

    def __init__(self, kinds: Iterable[str]) -> None:
        self.kinds = tuple(kinds)
        self.cursor = 0
        self.by_kind: dict[str, list[VerifiedEntry]] = {k: [] for k in self.kinds}

    def update(self, store: Any) -> dict[str, list[VerifiedEntry]]:
        from sqlalchemy import select

        from node.store import models as m
        from node.store.store import _verified_from_row

        t = m.entries.c
        with store.engine.connect() as conn:
            rows = conn.execute(
                select(t.log_index, t.envelope, t.signers, t.roster_version)
                .where(t.log_index >= self.cursor, t.kind.in_(self.kinds))
                .order_by(t.log_index)
            ).all()
        for index, envelope, signers, roster_version in rows:
            v = _verified_from_row(envelope, signers, roster_version)
            self.by_kind[v.kind].append(v)
            self.cursor = index + 1
        return self.by_kind


class PauseTracker:
    """The pause state of one store, recomputed only when its log or roster chain changed.

    Run in the background (:meth:`start`, as ``tripwire serve`` does), a worker thread
    recomputes when the store signals new entries (and polls for entries other processes
    wrote), and :meth:`state` returns the latest computed state without touching the
    database: a status poll never waits behind a recomputation, however many large
    certificates a hostile lab sends. Without the worker (CLI, tests), :meth:`state`
    computes on demand.

    ``cache`` (certificate signatures checked once per certificate) may be shared with the
    coordinator, so a node verifies each certificate's votes once.
    """

    def __init__(self, store: Any, *, cache: CertCache | None = None, poll_interval_s: float = 1.0) -> None:
        self.store = store
        self.cache: CertCache = cache if cache is not None else {}
        self.poll_interval_s = poll_interval_s
        self._lock = threading.Lock()
        self._index = EntryIndex(PAUSE_KINDS)
        self._key: tuple[int, int] | None = None
        self._state: PauseState | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.updates = 0
        self.last_error: str | None = None

    # background worker -----------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        try:
            self._refresh()  # the first state is there before the first request
        except Exception as e:  # the worker retries; state() computes on demand until then
            self.last_error = f"{type(e).__name__}: {e}"
            log.exception("pause tracker could not compute the initial pause state")
        self.store.add_listener(self._notify)
        self._thread = threading.Thread(target=self._run, name="pause-tracker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.store.remove_listener(self._notify)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _notify(self, entries: list[VerifiedEntry] | None = None) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_interval_s)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self._refresh()
            except Exception as e:  # keep serving the last state; the next wake-up retries
                self.last_error = f"{type(e).__name__}: {e}"
                log.exception("pause tracker could not update the pause state")

    # reading ---------------------------------------------------------------------------------

    def state(self) -> PauseState:
        """The pause state (the latest computed one while the worker runs)."""
        if self._thread is not None and self._state is not None:
            return self._state
        return self._refresh()

    def wait_for(self, log_size: int, timeout: float) -> PauseState:
        """The state once it covers at least ``log_size`` log entries (tests, tools)."""
        deadline = time.monotonic() + timeout
        while True:
            key = self._key
            if key is not None and key[0] >= log_size and self._state is not None:
                return self._state
            if self._thread is None:
                return self._refresh()
            if time.monotonic() >= deadline:
                raise TimeoutError(f"pause state did not reach log size {log_size} within {timeout}s")
            self._wake.set()
            time.sleep(0.01)

    def _refresh(self) -> PauseState:
        with self._lock:
            size = self.store.log_size()
            chain = self.store.roster_chain()
            key = (size, len(chain.versions))
            if self._state is not None and key == self._key:
                return self._state
            by_kind = self._index.update(self.store)

            def compute() -> PauseState:
                return pause_state(
                    (e for k in PAUSE_KINDS for e in by_kind[k]), chain, cache=self.cache, **feeds_held(self.store)
                )

            state = compute()
            if state.conflicts and record_conflicts(self.store, state.conflicts):
                state = compute()  # a certificate exposed a fork: judge again with the proof held
            self._state, self._key = state, key
            self.updates += 1
            return state


__all__ = ["EntryIndex", "PauseTracker", "feeds_held", "held_forks", "record_conflicts"]
