"""The pause coordinator: the worker thread that judges and acts, inside the node process.

The decisions are pure and live apart: :mod:`node.pause.analysis` (what the entries say),
:mod:`node.pause.planner` (what to publish, and when) and :mod:`node.pause.view` (the status
documents). This module runs them on a thread, with an injectable clock, and publishes.

Every node runs one. It reacts to newly accepted entries (spec §6 "Pause, end to end"):

1. every verified ``eval_result`` is judged against the adopted policy
   (:func:`protocol.forecast.evaluate_with_trend`); a ``warn`` or ``breach`` whose rule asks
   for it gets an ``alert`` entry, a ``breach`` whose rule asks for it a ``pause_proposal``
   with the deterministic id :func:`protocol.entries.pause_proposal_id`;
2. every pause proposal's trigger is recomputed from the signed result; the operator's
   rule (``[votes] auto``) may then vote automatically. An honest node never votes pause
   on a trigger that is not a verified breach under the shared policy, and reports it;
3. the first node that sees a quorum (:func:`protocol.quorum.tally`) publishes the
   certificate; a node that already holds a valid certificate for a proposal publishes
   none.

Design rules:

- **Derived, not remembered.** Each pass recomputes the wanted actions from the store
  (:func:`analyze` is a pure function of verified entries, roster chain and policy) and
  performs only those whose result is not already held. A restart replays nothing
  twice: a node's own earlier proposal, vote or certificate is in its store.
- **Off the request path.** The store listener only sets an event; a worker thread does
  the work, so ingest never waits on verdicts or signing. The worker also polls, which
  catches entries written by another process (``tripwire vote``) into the same home.
- **Who acts first.** The result's own lab proposes and alerts at once; other labs wait
  ``propose_delay_s`` and act only if nothing arrived (the origin may have died right
  after publishing). For certificates, supporters act in lab-id order, one
  ``certificate_stagger_s`` apart, so one certificate usually suffices; duplicates
  are harmless (the pause state is keyed by proposal id).

Pause state (the definition every node and gate applies, order-independent): a pause
proposal P is *paused* when the node holds a valid pause certificate for P and no valid
resume certificate whose resume proposal names P. Certificates are facts that never
expire, so a pause certificate for P replayed after P's resume changes nothing, and a
new pause needs a new trigger (a new result, hence a new proposal id).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from node.contracts import CoordinationSection, CoordinatorRun, SectionError
from node.pause.analysis import KINDS, Analysis, EvaluationCache, analyze
from node.pause.planner import VotesConfig, plan_actions
from node.pause.tracker import EntryIndex, feeds_held, record_conflicts
from node.pause.view import describe, local_analysis
from protocol.canonical import utcnow
from protocol.entries import VerifiedEntry
from protocol.errors import ConfigurationError, TripwireError
from protocol.pause import CertCache
from protocol.policy import Policy
from protocol.roster import RosterChain

if TYPE_CHECKING:
    from fastapi import FastAPI

    from node.home import NodeHome

log = logging.getLogger(__name__)


class Coordinator:
    """Runs :func:`~node.pause.analysis.analyze` / :func:`~node.pause.planner.plan_actions` on a worker thread of the node process."""

    def __init__(
        self,
        home: NodeHome,
        *,
        config: VotesConfig | None = None,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.home = home
        self.config = config or VotesConfig.from_mapping(home.config.votes)
        self.clock = clock
        """Wall clock for entry timestamps and expiry (injectable for simulation and tests)."""
        self.monotonic = monotonic
        """Monotonic clock for delays (injectable for simulation and tests)."""
        self.cache = EvaluationCache()
        self.index = EntryIndex(KINDS)
        self.cert_cache: CertCache = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._first_seen: dict[str, float] = {}
        self._quorum_seen: dict[str, float] = {}
        self._last_size = -1
        self._next_due: float | None = None
        self._policy: Policy | None = None
        self._policy_digest: str | None = None
        self._policy_error: str | None = None
        self.snapshot: CoordinationSection | None = None
        """The latest pass's ``coordination`` section (None: no pass yet)."""
        self.analysis: Analysis | None = None
        self.published: list[tuple[str, str]] = []
        """(kind, entry_id) of every entry this coordinator published (diagnostics, tests)."""
        self.passes = 0
        self.pending = 0
        self._judged_size = -1
        self.failures = 0
        self.last_error: str | None = None

    @property
    def settled(self) -> bool:
        """Whether this coordinator has judged everything its store holds and has nothing
        left to do (no action waiting for its delay): it publishes nothing more until a new
        entry arrives. Tests wait for this instead of sleeping past the delays."""
        return self.passes > 0 and not self.pending and self._judged_size == self.home.store.log_size()

    # lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self.home.store.add_listener(self.notify)
        self._thread = threading.Thread(target=self._run, name=f"coordinator:{self.home.lab}", daemon=True)
        self._thread.start()
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self.home.store.remove_listener(self.notify)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def notify(self, entries: list[VerifiedEntry] | None = None) -> None:
        """Store listener: wake the worker (never blocks the ingest that called it)."""
        if entries is None or any(e.kind in KINDS for e in entries):
            self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            timeout = self.config.poll_interval_s
            if self._next_due is not None:
                timeout = max(0.0, min(timeout, self._next_due - self.monotonic()))
            self._wake.wait(timeout)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.run_once()
            except Exception as e:  # the worker must outlive a bad pass; the next one retries
                self.last_error = f"{type(e).__name__}: {e}"
                self.failures += 1
                with self._lock:
                    self._last_size = -1  # retry the whole pass on the next wake-up or poll
                log.exception("pause coordinator pass failed")

    # one pass -------------------------------------------------------------------------------

    def _load_policy(self, chain: RosterChain) -> Policy | None:
        digest = chain.current.roster.policy_digest
        if self._policy_digest == digest and (self._policy is not None or self._policy_error is not None):
            return self._policy
        from node.home.policyfile import load_policy

        self._policy_digest = digest
        try:
            self._policy, self._policy_error = load_policy(self.home.path, digest), None
        except ConfigurationError as e:
            self._policy, self._policy_error = None, e.message
            log.error("pause coordinator has no adopted policy: %s", e.message)
        return self._policy

    def reload_policy(self) -> None:
        """Forget the loaded policy (after ``tripwire policy install``); the next pass reloads it."""
        with self._lock:
            self._policy_digest = None
            self._last_size = -1
        self._wake.set()

    def run_once(self, *, force: bool = False) -> list[tuple[str, str]]:
        """One pass (repeated while it publishes); returns what it published."""
        with self._lock:
            published: list[tuple[str, str]] = []
            for _ in range(8):
                new = self._pass(force=force or bool(published))
                published += new
                if not new:
                    break
            return published

    def _pass(self, *, force: bool) -> list[tuple[str, str]]:
        store = self.home.store
        size = store.log_size()
        now_mono = self.monotonic()
        due = self._next_due is not None and now_mono >= self._next_due
        if not force and size == self._last_size and not due:
            return []
        self._last_size = size
        chain = store.roster_chain()
        policy = self._load_policy(chain)
        entries = self.index.update(store)
        for e in entries["eval_result"]:
            self._first_seen.setdefault(e.entry_id, now_mono)
        now = self.clock()
        a = analyze(
            entries,
            chain,
            policy,
            policy_error=self._policy_error,
            cache=self.cache,
            cert_cache=self.cert_cache,
            now=now,
            **feeds_held(store),
        )
        if a.pause.conflicts and record_conflicts(store, a.pause.conflicts):
            # A certificate exposed a fork: the proof is now held; judge again with it.
            self._last_size = -1
            return self._pass(force=True)
        for pid, st in a.proposals.items():
            if st.tally is not None and st.tally and not st.certified:
                self._quorum_seen.setdefault(pid, now_mono)
        actions = plan_actions(
            a,
            lab=self.home.lab,
            chain=chain,
            policy=policy,
            config=self.config,
            first_seen=lambda rid: self._first_seen.get(rid, now_mono),
            now_mono=now_mono,
            now=now,
            quorum_seen=lambda pid: self._quorum_seen.get(pid, now_mono),
        )
        published: list[tuple[str, str]] = []
        later = [x.due for x in actions if x.due > now_mono]
        self._next_due = min(later) if later else None
        attempted = 0
        for act in actions:
            if act.due > now_mono:
                continue
            attempted += 1
            try:
                eid = self.home.publish(act.kind, act.body)
            except TripwireError as e:
                self.last_error = f"{act.key}: {e.message}"
                log.error("pause coordinator could not publish %s: %s", act.key, e.message)
                continue
            log.info("published %s (%s) as %s", act.kind, act.key, eid)
            published.append((act.kind, eid))
            if act.kind in ("vote", "pause_certificate", "pause_proposal"):
                # What follows depends on this entry (a proposal gets voted on, a vote may
                # complete a quorum): recompute before doing more.
                break
        self.published += published
        self.analysis = a
        self.passes += 1
        # Planned actions not taken in this pass (not yet due, or after an entry that needs
        # a fresh look): zero means this node will publish nothing more until new entries
        # arrive, which tests wait for instead of sleeping past the delays.
        self.pending = len(actions) - attempted
        self._judged_size = size if not published else -1
        run = CoordinatorRun(
            passes=self.passes,
            pending=self.pending,
            judged_log_size=self._judged_size,
            failures=self.failures,
            last_error=self.last_error,
            running=self._thread is not None,
        )
        self.snapshot = describe(a, chain, policy, self._policy_error, self.config, self.home.lab, now).model_copy(
            update={"coordinator": run}
        )
        return published


def _status_section(ctx: Any, status: dict[str, Any]) -> None:
    coord: Coordinator | None = ctx.extra.get("coordinator")
    snap = coord.snapshot if coord is not None else None
    if snap is None:
        try:
            _, snap = local_analysis(ctx.home)
        except TripwireError as e:
            status["coordination"] = status["forecasts"] = SectionError(error=e.message)
            return
    # Informational: the pause state itself ("paused", "pause") comes from the node's
    # PauseTracker, never from this snapshot, so a coordinator that is behind or failing
    # cannot make /v1/status say anything stale about the pause.
    # Forecasts have their own section (spec §6.13); the coordination section stays as it was.
    status["forecasts"] = snap.forecasts
    status["coordination"] = snap.model_copy(update={"forecasts": None})


def attach(app: FastAPI, home: NodeHome, *, config: VotesConfig | None = None) -> Coordinator:
    """Run a coordinator for the lifetime of ``app`` (started and stopped with its lifespan)."""
    from contextlib import asynccontextmanager

    coord = Coordinator(home, config=config)
    ctx = app.state.node
    ctx.extra["coordinator"] = coord
    tracker = ctx.extra.get("pause_tracker")
    if tracker is not None:
        coord.cert_cache = tracker.cache  # verify each certificate's votes once per node
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        coord.start()
        try:
            async with inner(a) as state:
                yield state
        finally:
            coord.stop()

    app.router.lifespan_context = lifespan
    return coord


def _register() -> None:
    try:
        from node.api.status import register_status_section
    except ImportError:  # pragma: no cover - the API ships with the node
        return
    register_status_section(_status_section)


_register()

__all__ = ["Coordinator", "attach"]
