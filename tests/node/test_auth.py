"""RFC 9421 request signing and verification against roster keys (node.auth)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from node.auth import (
    BadRequestSignatureError,
    RateLimiter,
    ReplayCache,
    ReplayedRequestError,
    RequestVerifier,
    StaleRequestError,
    UnknownRequestKeyError,
    UnsignedRequestError,
    sign_request,
)
from protocol.keys import SigningKey
from protocol.roster import draft_roster

LAB = SigningKey.from_seed(b"\x01" * 32)
OBS = SigningKey.from_seed(b"\x02" * 32)
STRANGER = SigningKey.from_seed(b"\x03" * 32)
ROSTER = draft_roster(
    network_name="t",
    labs=[("lab-a", "A", [LAB.public_key], "http://127.0.0.1:1", 1)],
    observers=[("regulator", "R", [OBS.public_key])],
    pause_weight=1,
    resume_weight=1,
    roster_threshold=1,
    policy_digest="0" * 64,
    issued_at="2024-01-01T00:00:00Z",
    expires="2099-01-01T00:00:00Z",
)
BODY = b'[{"payloadType":"x"}]'


def verifier(**kw) -> RequestVerifier:
    return RequestVerifier(lambda: ROSTER, clock_skew_s=60, **kw)


def test_lab_and_observer_requests_verify() -> None:
    v = verifier()
    c = v.verify("POST", "/v1/envelopes", "", sign_request(LAB, "POST", "/v1/envelopes", BODY).items(), BODY)
    assert (c.member, c.role, c.keyid) == ("lab-a", "lab", LAB.keyid)
    h = sign_request(OBS, "GET", "/v1/feeds/lab-a?after=2&limit=5")
    c = v.verify("GET", "/v1/feeds/lab-a", "after=2&limit=5", h.items(), None)
    assert (c.member, c.role) == ("regulator", "observer")


def _drop(h: dict[str, str], name: str) -> dict[str, str]:
    return {k: v for k, v in h.items() if k.lower() != name}


def _skewed(seconds: int) -> datetime:
    """A `created` time relative to when the case runs (not when the module was collected)."""
    return datetime.now(UTC) + timedelta(seconds=seconds)

# (id, headers builder, method, path, query, body, expected error)
CASES = [
    ("unsigned", lambda: {}, "GET", "/v1/heads", "", None, UnsignedRequestError),
    ("signature-header-missing", lambda: _drop(sign_request(LAB, "GET", "/v1/heads"), "signature"),
     "GET", "/v1/heads", "", None, UnsignedRequestError),
    ("other-path", lambda: sign_request(LAB, "GET", "/v1/heads"), "GET", "/v1/status", "", None,
     BadRequestSignatureError),
    ("other-method", lambda: sign_request(LAB, "GET", "/v1/envelopes"), "POST", "/v1/envelopes", "", None,
     BadRequestSignatureError),
    ("other-query", lambda: sign_request(LAB, "GET", "/v1/feeds/a?after=1"), "GET", "/v1/feeds/a", "after=0",
     None, BadRequestSignatureError),
    ("tampered-body", lambda: sign_request(LAB, "POST", "/v1/envelopes", BODY), "POST", "/v1/envelopes", "",
     BODY + b" ", BadRequestSignatureError),
    ("body-without-digest", lambda: sign_request(LAB, "POST", "/v1/envelopes"), "POST", "/v1/envelopes", "",
     BODY, BadRequestSignatureError),
    ("expired", lambda: sign_request(LAB, "GET", "/v1/heads", created=_skewed(-120)), "GET", "/v1/heads", "", None,
     StaleRequestError),
    ("from-the-future", lambda: sign_request(LAB, "GET", "/v1/heads", created=_skewed(120)), "GET", "/v1/heads", "",
     None, StaleRequestError),
    ("unknown-key", lambda: sign_request(STRANGER, "GET", "/v1/heads"), "GET", "/v1/heads", "", None,
     UnknownRequestKeyError),
    ("short-nonce", lambda: sign_request(LAB, "GET", "/v1/heads", nonce="x"), "GET", "/v1/heads", "", None,
     BadRequestSignatureError),
    ("garbage-signature-input", lambda: {"Signature-Input": "tw=((", "Signature": "tw=:AAAA:"}, "GET",
     "/v1/heads", "", None, BadRequestSignatureError),
    ("wrong-key-same-keyid", lambda: {
        **sign_request(STRANGER, "GET", "/v1/heads"),
        "Signature-Input": sign_request(STRANGER, "GET", "/v1/heads")["Signature-Input"].replace(
            STRANGER.keyid, LAB.keyid),
    }, "GET", "/v1/heads", "", None, BadRequestSignatureError),
]


@pytest.mark.parametrize(("build", "method", "path", "query", "body", "err"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_requests_are_refused_with_a_named_reason(build, method, path, query, body, err) -> None:
    with pytest.raises(err) as ei:
        verifier().verify(method, path, query, build().items(), body)
    assert ei.value.status == 401
    assert ei.value.message


def test_replay_within_window_is_refused() -> None:
    v = verifier()
    h = sign_request(LAB, "GET", "/v1/heads")
    v.verify("GET", "/v1/heads", "", h.items(), None)
    with pytest.raises(ReplayedRequestError):
        v.verify("GET", "/v1/heads", "", h.items(), None)
    # A fresh nonce is a new request.
    v.verify("GET", "/v1/heads", "", sign_request(LAB, "GET", "/v1/heads").items(), None)


def test_replay_cache_forgets_only_after_the_window() -> None:
    cache = ReplayCache(window_s=10)
    cache.check_and_add("k", "n1", now=100.0)
    with pytest.raises(ReplayedRequestError):
        cache.check_and_add("k", "n1", now=109.0)
    cache.check_and_add("k", "n1", now=111.0)  # outside the window: `created` check refuses it anyway
    assert len(cache) == 1


def test_replay_cache_refuses_rather_than_forgets_when_full() -> None:
    cache = ReplayCache(window_s=10, max_entries=2)
    cache.check_and_add("k", "a", 0.0)
    cache.check_and_add("k", "b", 0.0)
    with pytest.raises(ReplayedRequestError):
        cache.check_and_add("k", "c", 1.0)


def test_rate_limiter_token_bucket() -> None:
    t = [0.0]
    rl = RateLimiter(60, clock=lambda: t[0])  # 1 per second, burst 60
    assert all(rl.take("k") == 0 for _ in range(60))
    wait = rl.take("k")
    assert 0 < wait <= 1.0
    assert rl.take("other") == 0  # buckets are per key
    t[0] += 1.0
    assert rl.take("k") == 0
