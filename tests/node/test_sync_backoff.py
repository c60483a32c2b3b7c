"""Sync backoff and retry scheduling, driven by fake clocks: no sleeps, no wall-clock reads.

The syncer reads time only through its injected ``clock`` and ``monotonic`` and jitter only
through its ``rng``, so every delay here is exact.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from node.net.client import PeerHTTPError, PeerUnavailableError
from node.net.sync import Peer, PeerState, Syncer


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, s: float) -> None:
        self.now += s


class FixedJitter(random.Random):
    """Jitter at a fixed fraction of its range (1.0: the top, i.e. no reduction)."""

    def __init__(self, fraction: float) -> None:
        super().__init__(0)
        self.fraction = fraction

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.fraction


@pytest.fixture
def clocks() -> tuple[FakeClock, FakeClock]:
    """(wall clock at an arbitrary epoch time, monotonic clock at an arbitrary origin)."""
    return FakeClock(1_700_000_000.0), FakeClock(5_000.0)


def _syncer(home: Any, clocks: tuple[FakeClock, FakeClock], jitter: float = 1.0, **kw: Any) -> Syncer:
    wall, mono = clocks
    kw = {"interval_s": 2.0, "max_backoff_s": 60.0} | kw
    return Syncer(home, [Peer("beta", "http://127.0.0.1:9")], clock=wall, monotonic=mono,
                  rng=FixedJitter(jitter), **kw)


def _fail(syncer: Syncer, e: BaseException | None = None) -> PeerState:
    st = syncer.states["beta"]
    asyncio.run(syncer._fail(st, e or PeerUnavailableError("down")))
    return st


def test_backoff_doubles_per_failure_up_to_the_cap(sqlite_network, clocks) -> None:
    syncer = _syncer(sqlite_network[0], clocks)
    _, mono = clocks
    delays = []
    for _ in range(7):
        st = _fail(syncer)
        delays.append(st.next_attempt - mono())
    # interval 2 s * 2**failures, capped at max_backoff_s (jitter at its top: no reduction).
    assert delays == [4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    assert syncer.peer_status()["beta"]["failures"] == 7


def test_jitter_shortens_the_backoff_to_at_least_half(sqlite_network, clocks) -> None:
    syncer = _syncer(sqlite_network[0], clocks, jitter=0.0)
    st = _fail(syncer)
    assert st.next_attempt - clocks[1]() == 2.0  # 4 s at the bottom of the jitter: half
    syncer.rng = FixedJitter(0.5)
    st = _fail(syncer)
    assert st.next_attempt - clocks[1]() == 6.0  # 8 s * 0.75


def test_retry_in_counts_down_with_the_monotonic_clock_only(sqlite_network, clocks) -> None:
    wall, mono = clocks
    syncer = _syncer(sqlite_network[0], clocks)
    st = _fail(syncer)  # retry in 4 s
    assert syncer.retry_in(st) == 4.0 and syncer.peer_status()["beta"]["retry_in_s"] == 4.0
    wall.advance(3600.0)  # the wall clock jumping (NTP, suspend) changes nothing
    assert syncer.peer_status()["beta"]["retry_in_s"] == 4.0
    mono.advance(1.5)
    assert syncer.retry_in(st) == 2.5 and syncer.peer_status()["beta"]["retry_in_s"] == 2.5
    mono.advance(2.5)
    assert syncer.retry_in(st) == 0.0
    mono.advance(100.0)
    assert syncer.peer_status()["beta"]["retry_in_s"] == 0.0  # never negative


def test_retry_after_is_honoured_but_capped(sqlite_network, clocks) -> None:
    syncer = _syncer(sqlite_network[0], clocks)
    mono = clocks[1]
    st = _fail(syncer, PeerHTTPError(429, "rate-limited", "slow down", retry_after=30.0))
    assert st.next_attempt - mono() == 30.0  # more than the 4 s backoff: the peer's wish wins
    st = _fail(syncer, PeerHTTPError(503, "busy", "later", retry_after=3600.0))
    assert st.next_attempt - mono() == 60.0  # but never past max_backoff_s
    st = _fail(syncer, PeerHTTPError(503, "busy", "later", retry_after=1.0))
    assert st.next_attempt - mono() == 16.0  # shorter than the backoff: the backoff stands
    assert syncer.peer_status()["beta"]["last_error"].startswith("peer-http-error: peer answered 503")


def test_success_resets_the_backoff_and_dates_last_ok_by_the_wall_clock(sqlite_network, clocks) -> None:
    wall, mono = clocks
    syncer = _syncer(sqlite_network[0], clocks)
    assert syncer.peer_status()["beta"]["last_ok_s_ago"] is None
    st = _fail(syncer)
    _fail(syncer)
    syncer._ok(st, "pull")
    status = syncer.peer_status()["beta"]
    assert (status["ok"], status["failures"], status["retry_in_s"], status["last_error"]) == (True, 0, 0.0, None)
    assert st.last_ok == wall() and status["last_ok_s_ago"] == 0.0
    wall.advance(12.25)
    mono.advance(1000.0)  # the monotonic clock does not date last_ok
    assert syncer.peer_status()["beta"]["last_ok_s_ago"] == 12.25
    # A failure after the success starts the backoff from the beginning again.
    st = _fail(syncer)
    assert st.next_attempt - mono() == 4.0
    assert syncer.peer_status()["beta"]["ok"] is False


def test_as_dict_reads_no_clock_of_its_own() -> None:
    st = PeerState(Peer("beta", "http://b"), failures=2, next_attempt=105.0, last_ok=990.0, last_error="x")
    d = st.as_dict(now=1000.0, now_mono=100.0)
    assert (d["retry_in_s"], d["last_ok_s_ago"], d["ok"]) == (5.0, 10.0, False)


def test_a_fetch_claim_expires_by_the_monotonic_clock(sqlite_network, clocks) -> None:
    """A claim on a lab stops a second peer's task from fetching it until the claim expires."""
    mono = clocks[1]
    syncer = _syncer(sqlite_network[0], clocks, timeout_s=1.0)
    syncer._claims["gamma"] = mono() + syncer._round_timeout()
    got = asyncio.run(syncer._fetch_lab(Peer("beta", "http://127.0.0.1:9"), "gamma", 0, 5))
    assert got == 0 and "gamma" in syncer._claims  # claimed elsewhere: not fetched, claim kept
    mono.advance(syncer._round_timeout() + 0.001)
    # Expired: this task claims it and tries (the unreachable peer fails the fetch), then releases it.
    with pytest.raises(PeerUnavailableError):
        asyncio.run(syncer._fetch_lab(Peer("beta", "http://127.0.0.1:9"), "gamma", 0, 5))
    assert "gamma" not in syncer._claims
