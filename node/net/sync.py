"""Peer sync: anti-entropy pull plus eager push of the node's own new entries.

Design (see docs/benchmarks.md "## Sync" for measurements):

- **Pull (anti-entropy)**: one task per peer reads the peer's heads every ``interval_s``
  and fetches, page by page, every lab's entries it is missing (any lab: relayed entries
  are accepted because their authenticity is their own signature, so labs that cannot
  reach each other converge through others). Pages are checked to be the requested lab's
  next entries in seq order before ingest; anything else is refused and recorded against
  the peer (forged, truncated, reordered or equivocating feeds), and the store keeps the
  equivocation proof. Records go to the store (``Store.record_misbehaviour``), bounded per
  peer, so they survive restarts and a hostile peer cannot grow them without end.
- **Forks are global**: each pull round first exchanges equivocation proofs with the peer
  (``GET /v1/equivocations`` for its proofs, ``POST /v1/equivocations`` for ours it lacks);
  a proof is verified against the roster before the store keeps it and freezes the lab's
  feed, so a fork seen by one node stops the feed everywhere, and nothing at or past a
  known fork is fetched. A refusal the origin lab caused (it equivocated, its feed is
  frozen, its clock is off) is not recorded against a peer that merely relayed the entry;
  a ``prev-mismatch`` from a peer is probed for a fork one position earlier first.
- **Push (eager)**: one task per peer sends this node's own new entries as soon as they
  are accepted (``Store.add_listener``) or appear in the database through another process
  (own head polled every interval), so a new entry reaches every node within one round
  trip when all are up.
- **No double transfer**: push covers small gaps (at most ``push_max_gap`` entries), pull
  catches up large ones. For a small gap, pull fetches only up to the head the peer showed
  in the *previous* round, giving the origin's push one interval to land first; a claim
  per lab stops two peers' tasks from fetching the same range at once.
- **Isolation**: every request has a timeout; each peer has its own tasks and exponential
  backoff (jittered, capped at ``max_backoff_s``, honouring Retry-After); claims expire, so
  a slow or hostile peer delays nobody but itself. Out-of-order entries go to the store's
  bounded hold; sync keeps no unbounded state.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from node.errors import StoreError
from node.net.client import AsyncPeerClient, PeerHTTPError
from node.net.tls import client_context_for
from protocol.canonical import entry_id
from protocol.entries import DecodedEntry, VerifiedEntry, decode_entry
from protocol.envelope import Envelope
from protocol.errors import PeerDataError, TransportError
from protocol.feed import EquivocationProof, Head

if TYPE_CHECKING:
    from node.api.metrics import NodeMetrics
    from node.home import NodeHome

log = logging.getLogger(__name__)

#: Gaps up to this many entries are left to the origin's push for one interval.
PUSH_MAX_GAP = 256
#: Most recent misbehaviour records shown per peer in /v1/status (the store keeps more).
STATUS_RECORDS = 20
#: Refusals of a validly signed entry that its origin lab caused, not whoever relayed it
#: (spec §4.2 step 7, §4.4): recorded only against a peer that is the origin itself.
ORIGIN_FAULTS = frozenset({"equivocation", "feed-forked", "feed-time", "future-dated"})


@dataclass(frozen=True)
class Peer:
    lab: str
    url: str


@dataclass
class PeerState:
    """What this node knows about one peer (served in /v1/status under ``peers``)."""

    peer: Peer
    heads: dict[str, Head] = field(default_factory=dict)
    """The peer's heads from the latest round."""
    prev_heads: dict[str, Head] = field(default_factory=dict)
    """The peer's heads one round earlier."""
    own_known: int | None = None
    """Highest seq of our own feed the peer is known to hold (None: not yet learned)."""
    failures: int = 0
    next_attempt: float = 0.0
    """Monotonic time (the syncer's ``monotonic`` clock) before which no attempt is made."""
    last_ok: float | None = None
    """Wall-clock time (the syncer's ``clock``, epoch seconds) of the last success."""
    last_error: str | None = None
    fetched: int = 0
    pushed: int = 0

    def as_dict(self, now: float, now_mono: float) -> dict[str, Any]:
        """The state judged at wall-clock ``now`` and monotonic ``now_mono`` (the caller's
        clocks: this reads no time itself)."""
        return {
            "url": self.peer.url,
            "ok": self.failures == 0 and self.last_ok is not None,
            "last_ok_s_ago": None if self.last_ok is None else round(now - self.last_ok, 3),
            "failures": self.failures,
            "last_error": self.last_error,
            "retry_in_s": max(0.0, round(self.next_attempt - now_mono, 3)),
            "fetched": self.fetched,
            "pushed": self.pushed,
        }


class _RecordedError(PeerDataError):
    """A peer data error already recorded with its request's details (not to record twice)."""


def _decode_page(envelopes: Sequence[Envelope]) -> tuple[list[DecodedEntry], PeerDataError | None]:
    """Decode a feed page's envelopes up to the first that does not decode (and its error).

    The store takes the decoded entries as they are, so each payload is decoded once.
    """
    out: list[DecodedEntry] = []
    for env in envelopes:
        try:
            out.append(decode_entry(env))
        except PeerDataError as e:
            return out, e
    return out, None


def peers_for(home: NodeHome) -> list[Peer]:
    """The roster endpoints of the other labs, with ``[[peers]]`` in node.toml overriding them
    (an unreachable override models labs that cannot reach each other directly)."""
    return [Peer(p.lab, p.url) for p in home.peers() if p.lab != home.lab]


class Syncer:
    """Runs pull and push tasks for every peer of ``home``.

    Time is read only through ``clock`` (wall clock, epoch seconds: when a peer last
    answered) and ``monotonic`` (backoff, claims and retry delays), and jitter comes only
    from ``rng``; all three are injectable for simulation and tests, as in
    :class:`node.pause.coordinator.Coordinator`. The loops' ``asyncio.sleep`` waits on the
    event loop's own clock for the delays computed from them.
    """

    def __init__(
        self,
        home: NodeHome,
        peers: Sequence[Peer] | None = None,
        *,
        interval_s: float | None = None,
        timeout_s: float | None = None,
        batch: int | None = None,
        max_backoff_s: float | None = None,
        push_max_gap: int = PUSH_MAX_GAP,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        cfg = home.config.sync
        self.home = home
        self.clock = clock
        """Wall clock, epoch seconds (injectable for simulation and tests)."""
        self.monotonic = monotonic
        """Monotonic clock for backoff, claims and delays (injectable for simulation and tests)."""
        self.rng = rng or random.Random()
        """Source of the backoff and interval jitter (seedable for tests)."""
        self.lab = home.lab
        self.interval_s = interval_s or cfg.interval_s
        self.timeout_s = timeout_s or cfg.timeout_s
        self.batch = min(batch or cfg.batch, 1000)
        self.max_backoff_s = max_backoff_s or cfg.max_backoff_s
        self.push_max_gap = push_max_gap
        self.peers = list(peers) if peers is not None else peers_for(home)
        self.states = {p.lab: PeerState(p) for p in self.peers}
        # With [tls], https:// peers get this node's certificate and are checked against its CAs.
        tls = client_context_for(home)
        self.clients = {
            p.lab: AsyncPeerClient(p.url, home.key, home.lab, timeout=self.timeout_s, tls=tls) for p in self.peers
        }
        self.metrics: NodeMetrics | None = None
        self._claims: dict[str, float] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._push_wake: dict[str, asyncio.Event] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False

    # --- lifecycle -------------------------------------------------------------------

    async def start(self, metrics: NodeMetrics | None = None) -> None:
        self.metrics = metrics
        self._loop = asyncio.get_running_loop()
        self.home.store.add_listener(self._on_accepted)
        for p in self.peers:
            self._push_wake[p.lab] = asyncio.Event()
            self._tasks.append(asyncio.create_task(self._pull_loop(p), name=f"pull:{p.lab}"))
            self._tasks.append(asyncio.create_task(self._push_loop(p), name=f"push:{p.lab}"))

    async def stop(self) -> None:
        self._stopping = True
        self.home.store.remove_listener(self._on_accepted)
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.aclose()

    async def aclose(self) -> None:
        await asyncio.gather(*(c.aclose() for c in self.clients.values()), return_exceptions=True)

    def peer_status(self) -> dict[str, Any]:
        """Per peer: sync state, and its recorded misbehaviour read from the store (so it
        survives restarts): ``misbehaviour_total`` ever recorded and the newest records."""
        counts = self.home.store.misbehaviour_counts()
        now, now_mono = self.clock(), self.monotonic()
        out: dict[str, Any] = {}
        for lab, st in sorted(self.states.items()):
            d = st.as_dict(now, now_mono)
            count = counts.get(lab)
            d["misbehaviour_total"] = count.total if count else 0
            d["misbehaviour"] = (
                [r.to_dict() for r in self.home.store.misbehaviour(lab, STATUS_RECORDS)] if count else []
            )
            out[lab] = d
        return out

    def _on_accepted(self, entries: list[VerifiedEntry]) -> None:
        # Called by the store after commit, from whichever thread wrote.
        if self._loop is None or not any(e.lab == self.lab for e in entries):
            return
        for ev in self._push_wake.values():
            self._loop.call_soon_threadsafe(ev.set)

    # --- one-shot (CLI `tripwire sync --once`) ----------------------------------------

    async def sync_once(self) -> dict[str, Any]:
        """One pull round and one full push with every peer, concurrently; per-peer summary."""
        self._loop = asyncio.get_running_loop()

        async def one(p: Peer) -> tuple[str, dict[str, Any]]:
            st = self.states[p.lab]
            out: dict[str, Any] = {}
            try:
                out["fetched"] = await asyncio.wait_for(self._pull_round(p, eager=True), self._round_timeout())
                out["pushed"] = await asyncio.wait_for(self._push_round(p, max_gap=None), self._round_timeout())
                out["ok"] = True
            except (TransportError, PeerDataError, TimeoutError) as e:
                await self._fail(st, e)
                out.update(ok=False, error=_describe(e))
            return p.lab, out

        try:
            return dict(await asyncio.gather(*(one(p) for p in self.peers)))
        finally:
            await self.aclose()

    # --- loops -------------------------------------------------------------------------

    def _round_timeout(self) -> float:
        # Generous for a large catch-up, but finite: a peer trickling bytes cannot hold a task.
        return max(30.0, self.timeout_s * 12)

    async def _pull_loop(self, peer: Peer) -> None:
        st = self.states[peer.lab]
        while not self._stopping:
            delay = self.retry_in(st)
            if delay:
                await asyncio.sleep(delay)
            try:
                await asyncio.wait_for(self._pull_round(peer), self._round_timeout())
                self._ok(st, "pull")
            except asyncio.CancelledError:
                raise
            except (TransportError, PeerDataError, TimeoutError) as e:
                await self._fail(st, e)
                continue
            except Exception as e:  # a bug must not kill sync with this peer for good
                log.exception("sync with %s failed unexpectedly", peer.lab)
                await self._fail(st, e)
                continue
            await asyncio.sleep(self.interval_s * self.rng.uniform(0.9, 1.1))

    async def _push_loop(self, peer: Peer) -> None:
        st = self.states[peer.lab]
        wake = self._push_wake[peer.lab]
        while not self._stopping:
            try:
                await asyncio.wait_for(wake.wait(), self.interval_s)
            except TimeoutError:
                pass  # poll: entries may have been published by another process
            woken = wake.is_set()
            wake.clear()
            # A new own entry is worth a try even during backoff (a refused connection is
            # cheap); the periodic poll respects the backoff.
            if not woken and self.retry_in(st) > 0:
                continue
            try:
                if await asyncio.wait_for(
                    self._push_round(peer, max_gap=self.push_max_gap), self._round_timeout()
                ) and st.failures:
                    self._ok(st, "push")
            except asyncio.CancelledError:
                raise
            except (TransportError, PeerDataError, TimeoutError) as e:
                await self._fail(st, e)
            except Exception as e:
                log.exception("push to %s failed unexpectedly", peer.lab)
                await self._fail(st, e)

    def retry_in(self, st: PeerState) -> float:
        """Seconds until ``st``'s peer may be tried again (0: now), by the monotonic clock."""
        return max(0.0, st.next_attempt - self.monotonic())

    def backoff_s(self, st: PeerState, e: BaseException) -> float:
        """The delay before the next attempt after ``st.failures`` consecutive failures, the
        last being ``e``: exponential in the failures, jittered to half or more, capped at
        ``max_backoff_s``, and never less than a Retry-After the peer asked for (capped too)."""
        backoff = min(self.max_backoff_s, self.interval_s * (2.0 ** min(st.failures, 16)))
        backoff *= self.rng.uniform(0.5, 1.0)
        if isinstance(e, PeerHTTPError) and e.retry_after:
            backoff = max(backoff, min(e.retry_after, self.max_backoff_s))
        return backoff

    def _ok(self, st: PeerState, what: str) -> None:
        st.failures = 0
        st.next_attempt = 0.0
        st.last_ok = self.clock()
        st.last_error = None
        if self.metrics:
            self.metrics.sync_rounds.labels(st.peer.lab, "ok").inc()

    async def _fail(self, st: PeerState, e: BaseException) -> None:
        st.failures += 1
        st.last_error = _describe(e)
        backoff = self.backoff_s(st, e)
        st.next_attempt = self.monotonic() + backoff
        if isinstance(e, PeerDataError) and not isinstance(e, _RecordedError):
            await self._misbehaved(st, e.code, e.message, url=st.peer.url)
        if self.metrics:
            self.metrics.sync_rounds.labels(st.peer.lab, "error").inc()
        log.info("sync with %s failed (%s); retry in %.1fs", st.peer.lab, st.last_error, backoff)

    async def _misbehaved(
        self,
        st: PeerState,
        code: str,
        reason: str,
        *,
        url: str,
        lab: str | None = None,
        seq: int | None = None,
        entry_id: str | None = None,
    ) -> None:
        """Count and durably record data the peer served that was refused."""
        if self.metrics:
            self.metrics.peer_misbehaviour.labels(st.peer.lab, code).inc()
        log.warning("peer %s served refused data (%s): %s", st.peer.lab, code, reason[:300])
        try:
            await asyncio.to_thread(
                self.home.store.record_misbehaviour,
                st.peer.lab, code, reason, url=url, lab=lab, seq=seq, entry_id=entry_id,
            )
        except StoreError as e:
            # The data is refused either way; an unavailable database must not stop sync.
            log.error("could not record misbehaviour of peer %s: %s", st.peer.lab, e.message)

    # --- pull ----------------------------------------------------------------------------

    async def _pull_round(self, peer: Peer, *, eager: bool = False) -> int:
        st = self.states[peer.lab]
        client = self.clients[peer.lab]
        before = client.bytes_in
        remote = await client.heads()
        st.prev_heads, st.heads = (st.heads or remote), remote
        mine = remote.get(self.lab)
        if mine is not None and (st.own_known is None or mine.seq > st.own_known):
            st.own_known = mine.seq
        elif mine is None and st.own_known is None:
            st.own_known = 0
        # Proofs first: a fork the peer knows of must freeze the feed before we fetch it.
        await self._exchange_proofs(peer)
        local = await asyncio.to_thread(self.home.store.heads)
        forks = await asyncio.to_thread(self.home.store.forks)
        fetched = 0
        for lab, head in sorted(remote.items()):
            have = local.get(lab)
            have_seq = have.seq if have else 0
            gap = head.seq - have_seq
            fork = forks.get(lab)
            if fork is not None:
                # Nothing at or past a proven fork can be accepted: fetch only what precedes it.
                if min(head.seq, fork - 1) > have_seq:
                    fetched += await self._fetch_lab(peer, lab, have_seq, min(head.seq, fork - 1))
                continue
            if gap <= 0:
                await self._check_fork(peer, lab, head, have)
                continue
            target = head.seq
            if gap <= self.push_max_gap and not eager:
                # Small gap: the origin's eager push is likely in flight; only take what the
                # peer already showed a round ago.
                prev = st.prev_heads.get(lab)
                target = min(target, prev.seq if prev else 0)
                if target <= have_seq:
                    continue
            fetched += await self._fetch_lab(peer, lab, have_seq, target)
        if self.metrics:
            self.metrics.sync_bytes.labels(peer.lab, "in").inc(client.bytes_in - before)
        return fetched

    async def _exchange_proofs(self, peer: Peer) -> None:
        """Take the peer's equivocation proofs we lack (each verified before it counts) and
        offer it ours it lacks (spec §4.4: a fork freezes the feed on every node)."""
        st = self.states[peer.lab]
        client = self.clients[peer.lab]
        url = f"{peer.url}/v1/equivocations"
        try:
            items = await client.equivocations()
        except PeerHTTPError as e:
            if e.status in (404, 405):
                return  # a node without proof exchange: its entries still sync
            raise
        except PeerDataError as e:
            await self._misbehaved(st, e.code, f"equivocations: {e.message}", url=url)
            return
        theirs: dict[str, EquivocationProof] = {}
        for i, item in enumerate(items):
            try:
                proof = EquivocationProof.parse(item)
            except PeerDataError as e:
                await self._misbehaved(st, e.code, f"equivocation proof {i}: {e.message}", url=url)
                continue
            theirs[proof.proof_id] = proof
        mine = await asyncio.to_thread(self.home.store.proof_ids)
        new = [p for pid, p in theirs.items() if pid not in mine]
        if new:
            for o in await asyncio.to_thread(self.home.store.add_equivocations, new):
                if o.status == "rejected":
                    # Only the lab's key can sign the two entries: a proof that does not
                    # verify is the serving peer's own bad data.
                    await self._misbehaved(
                        st, o.code or "rejected", f"equivocation proof {o.proof_id}: {o.reason}",
                        url=url, lab=o.lab, seq=o.seq,
                    )
                else:
                    mine.add(str(o.proof_id))
                    log.warning("lab %s equivocated at seq %s (proof from %s): feed frozen", o.lab, o.seq, peer.lab)
        lacking = mine - set(theirs)
        if not lacking:
            return
        ours = [p for p in await asyncio.to_thread(self.home.store.equivocations) if p.proof_id in lacking]
        try:
            results = await client.post_equivocations(ours)
        except PeerHTTPError as e:
            if e.status not in (404, 405):
                log.info("peer %s did not take our equivocation proofs: %s", peer.lab, e.message)
            return
        for r in results:
            if r.get("status") == "rejected":
                log.warning("peer %s refused equivocation proof %s: %s", peer.lab, r.get("proof_id"), r.get("reason"))

    async def _check_fork(self, peer: Peer, lab: str, remote: Head, local: Head | None) -> None:
        """The peer's head at a seq we hold names another entry: fetch it so the store can
        keep the equivocation proof (spec §4.4). Comparing seqs alone would hide a fork."""
        if local is None or remote.seq <= 0:
            return
        if remote.seq == local.seq:
            ours = local.entry_id
        else:
            held = await asyncio.to_thread(self.home.store.feed, lab, remote.seq - 1, 1)
            ours = entry_id(held[0].payload_bytes()) if held else remote.entry_id
        if ours != remote.entry_id:
            await self._fetch_lab(peer, lab, remote.seq - 1, remote.seq, recheck=False)

    async def _fetch_lab(self, peer: Peer, lab: str, have_seq: int, target: int, *, recheck: bool = True) -> int:
        now = self.monotonic()
        claim = self._claims.get(lab)
        if claim is not None and claim > now:
            return 0  # another peer's task is fetching this lab; look again next round
        self._claims[lab] = now + self._round_timeout()
        st = self.states[peer.lab]
        client = self.clients[peer.lab]
        fetched = 0
        try:
            # Re-read: another task may have advanced this lab while we were waiting.
            after = have_seq
            if recheck:
                head = (await asyncio.to_thread(self.home.store.heads)).get(lab)
                after = max(have_seq, head.seq if head else 0)
            while after < target:
                limit = min(self.batch, target - after)
                url = f"{peer.url}/v1/feeds/{quote(lab, safe='')}?after={after}&limit={limit}"
                try:
                    page = await client.feed(lab, after=after, limit=limit)
                except PeerDataError as e:
                    await self._misbehaved(st, e.code, e.message, url=url, lab=lab, seq=after + 1)
                    raise _RecordedError(e.message, code=e.code) from e
                if not page.envelopes:
                    break
                decoded, undecodable = await asyncio.to_thread(_decode_page, page.envelopes)
                good: list[DecodedEntry] = []
                for i, d in enumerate(decoded):
                    at = (d.statement.lab, d.statement.seq)
                    if at != (lab, after + 1 + i):
                        await self._misbehaved(
                            st,
                            "bad-feed-page",
                            f"feed {lab} after {after}: item {i} is {at}, expected {(lab, after + 1 + i)}",
                            url=url,
                            lab=at[0],
                            seq=at[1],
                            entry_id=d.entry_id,
                        )
                        break
                    good.append(d)
                else:
                    if undecodable is not None:
                        i = len(decoded)
                        await self._misbehaved(
                            st,
                            undecodable.code,
                            f"feed {lab} after {after}: item {i} does not decode: {undecodable.message}",
                            url=url,
                            lab=lab,
                            seq=after + 1 + i,
                            entry_id=_entry_id_or_none(page.envelopes[i]),
                        )
                if not good:
                    break
                outcomes = await asyncio.to_thread(self.home.store.ingest, good, source=peer.lab)
                if self.metrics:
                    for status, n in Counter(o.status for o in outcomes).items():
                        self.metrics.ingest.labels(status, "sync").inc(n)
                        self.metrics.sync_entries.labels(peer.lab, "fetch", status).inc(n)
                progressed = 0
                for o in outcomes:
                    if o.status == "rejected":
                        code = o.code or "rejected"
                        if code == "prev-mismatch" and o.seq is not None and o.seq > 1:
                            # The entry extends another history than ours: if the peer's
                            # entry one position earlier differs from ours, the lab forked
                            # (its proof freezes the feed) and the peer only relayed it.
                            if await self._probe_fork(peer, lab, o.seq - 1):
                                code = "equivocation"
                        if code in ORIGIN_FAULTS and lab != peer.lab:
                            log.info("not blaming %s for relaying %s#%s: %s", peer.lab, lab, o.seq, o.reason)
                        else:
                            await self._misbehaved(
                                st,
                                code,
                                f"{lab}#{o.seq}: {o.reason}",
                                url=url,
                                lab=o.lab or lab,
                                seq=o.seq,
                                entry_id=o.entry_id,
                            )
                        break
                    progressed += 1
                fetched += sum(1 for o in outcomes if o.status == "accepted")
                st.fetched += sum(1 for o in outcomes if o.status == "accepted")
                if progressed < len(good) or len(good) < len(page.envelopes):
                    break  # refused from here on; honest peers will fill the rest
                after += len(good)
        finally:
            self._claims.pop(lab, None)
        return fetched

    async def _probe_fork(self, peer: Peer, lab: str, seq: int) -> bool:
        """Fetch the peer's entry of ``lab`` at ``seq`` and offer it: True when it is another
        entry than ours there, i.e. the store now keeps the lab's equivocation proof."""
        client = self.clients[peer.lab]
        try:
            page = await client.feed(lab, after=seq - 1, limit=1)
        except (PeerDataError, TransportError):
            return False
        decoded, _ = await asyncio.to_thread(_decode_page, page.envelopes[:1])
        if not decoded or (decoded[0].statement.lab, decoded[0].statement.seq) != (lab, seq):
            return False
        [outcome] = await asyncio.to_thread(self.home.store.ingest, decoded, source=peer.lab)
        return outcome.code == "equivocation"

    # --- push ----------------------------------------------------------------------------

    async def _push_round(self, peer: Peer, *, max_gap: int | None) -> int:
        st = self.states[peer.lab]
        client = self.clients[peer.lab]
        own = (await asyncio.to_thread(self.home.store.heads)).get(self.lab)
        if own is None:
            return 0
        if st.own_known is None:
            remote = await client.heads()
            st.own_known = remote[self.lab].seq if self.lab in remote else 0
        pushed = 0
        while st.own_known < own.seq:
            gap = own.seq - st.own_known
            if max_gap is not None and gap > max_gap:
                return pushed  # a large gap is the peer's pull to close (no double transfer)
            # The stored JSON of our own verified entries goes out as it is.
            envs = await asyncio.to_thread(self.home.store.feed_json, self.lab, st.own_known, self.batch)
            if not envs:
                break
            before = client.bytes_out
            results = await client.post_envelopes(envs)
            if self.metrics:
                self.metrics.sync_bytes.labels(peer.lab, "out").inc(client.bytes_out - before)
                for status, n in Counter(r.status for r in results).items():
                    self.metrics.sync_entries.labels(peer.lab, "push", status).inc(n)
            advanced = st.own_known
            for r in results:
                if r.status in ("accepted", "duplicate") and r.seq is not None:
                    if r.seq == advanced + 1:
                        advanced = r.seq
                else:
                    break
            pushed += sum(1 for r in results if r.status == "accepted")
            st.pushed += sum(1 for r in results if r.status == "accepted")
            if advanced == st.own_known:
                # The peer did not take the next entry (held: it lacks earlier ones, or it
                # refused): relearn its head next round instead of looping.
                st.own_known = None
                break
            st.own_known = advanced
        return pushed


def _entry_id_or_none(env: Envelope) -> str | None:
    try:
        return entry_id(env.payload_bytes())
    except PeerDataError:
        return None


def _describe(e: BaseException) -> str:
    if isinstance(e, TimeoutError):
        return "timeout"
    code = getattr(e, "code", type(e).__name__)
    return f"{code}: {str(e)[:300]}"
