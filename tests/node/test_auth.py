"""RFC 9421 request signing and verification against roster keys (node.net.auth)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from node.errors import (
    BadRequestSignatureError,
    MisdirectedRequestError,
    ReplayedRequestError,
    StaleRequestError,
    UncheckableComponentError,
    UnknownRequestKeyError,
    UnsignedRequestError,
)
from node.net.auth import (
    NodeOrigins,
    RateLimiter,
    ReplayCache,
    RequestVerifier,
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
#: The node under test answers as node-a.example:8700 (its public URL) and 127.0.0.1:8700.
ORIGINS = NodeOrigins(("http", "node-a.example:8700"), (("http", "127.0.0.1:8700"),))
URL = "http://node-a.example:8700"
HOST = "node-a.example:8700"


def verifier(**kw) -> RequestVerifier:
    return RequestVerifier(lambda: ROSTER, clock_skew_s=60, origins=kw.pop("origins", ORIGINS), **kw)


def signed(key: SigningKey, method: str, target: str, body: bytes | None = None, **kw) -> list[tuple[str, str]]:
    """Headers of a request signed for ``URL + target``, as the node receives them (Host included)."""
    return [("host", HOST), *sign_request(key, method, URL + target, body, **kw).items()]


def test_lab_and_observer_requests_verify() -> None:
    v = verifier()
    c = v.verify("POST", "/v1/envelopes", "", signed(LAB, "POST", "/v1/envelopes", BODY), BODY)
    assert (c.member, c.role, c.keyid) == ("lab-a", "lab", LAB.keyid)
    h = signed(OBS, "GET", "/v1/feeds/lab-a?after=2&limit=5")
    c = v.verify("GET", "/v1/feeds/lab-a", "after=2&limit=5", h, None)
    assert (c.member, c.role) == ("regulator", "observer")


def _drop(h: dict[str, str], name: str) -> dict[str, str]:
    return {k: v for k, v in h.items() if k.lower() != name}


def _skewed(seconds: int) -> datetime:
    """A `created` time relative to when the case runs (not when the module was collected)."""
    return datetime.now(UTC) + timedelta(seconds=seconds)

# (id, headers builder, method, path, query, body, expected error)
CASES = [
    ("unsigned", lambda: {}, "GET", "/v1/heads", "", None, UnsignedRequestError),
    ("signature-header-missing", lambda: _drop(sign_request(LAB, "GET", URL + "/v1/heads"), "signature"),
     "GET", "/v1/heads", "", None, UnsignedRequestError),
    ("other-path", lambda: sign_request(LAB, "GET", URL + "/v1/heads"), "GET", "/v1/status", "", None,
     BadRequestSignatureError),
    ("other-method", lambda: sign_request(LAB, "GET", URL + "/v1/envelopes"), "POST", "/v1/envelopes", "", None,
     BadRequestSignatureError),
    ("other-query", lambda: sign_request(LAB, "GET", URL + "/v1/feeds/a?after=1"), "GET", "/v1/feeds/a", "after=0",
     None, BadRequestSignatureError),
    ("tampered-body", lambda: sign_request(LAB, "POST", URL + "/v1/envelopes", BODY), "POST", "/v1/envelopes", "",
     BODY + b" ", BadRequestSignatureError),
    ("body-without-digest", lambda: sign_request(LAB, "POST", URL + "/v1/envelopes"), "POST", "/v1/envelopes", "",
     BODY, BadRequestSignatureError),
    ("expired", lambda: sign_request(LAB, "GET", URL + "/v1/heads", created=_skewed(-120)), "GET", "/v1/heads", "", None,
     StaleRequestError),
    ("from-the-future", lambda: sign_request(LAB, "GET", URL + "/v1/heads", created=_skewed(120)), "GET", "/v1/heads", "",
     None, StaleRequestError),
    ("unknown-key", lambda: sign_request(STRANGER, "GET", URL + "/v1/heads"), "GET", "/v1/heads", "", None,
     UnknownRequestKeyError),
    ("short-nonce", lambda: sign_request(LAB, "GET", URL + "/v1/heads", nonce="x"), "GET", "/v1/heads", "", None,
     BadRequestSignatureError),
    ("garbage-signature-input", lambda: {"Signature-Input": "tw=((", "Signature": "tw=:AAAA:"}, "GET",
     "/v1/heads", "", None, BadRequestSignatureError),
    ("wrong-key-same-keyid", lambda: {
        **sign_request(STRANGER, "GET", URL + "/v1/heads"),
        "Signature-Input": sign_request(STRANGER, "GET", URL + "/v1/heads")["Signature-Input"].replace(
            STRANGER.keyid, LAB.keyid),
    }, "GET", "/v1/heads", "", None, BadRequestSignatureError),
]


@pytest.mark.parametrize(("build", "method", "path", "query", "body", "err"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_requests_are_refused_with_a_named_reason(build, method, path, query, body, err) -> None:
    with pytest.raises(err) as ei:
        verifier().verify(method, path, query, [("host", HOST), *build().items()], body)
    assert ei.value.status == 401
    assert ei.value.message


def test_replay_within_window_is_refused() -> None:
    v = verifier()
    h = signed(LAB, "GET", "/v1/heads")
    v.verify("GET", "/v1/heads", "", h, None)
    with pytest.raises(ReplayedRequestError):
        v.verify("GET", "/v1/heads", "", h, None)
    # A fresh nonce is a new request.
    v.verify("GET", "/v1/heads", "", signed(LAB, "GET", "/v1/heads"), None)


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


# --- binding to the receiving node (spec §8) -------------------------------------------------


def test_request_signed_for_another_node_is_refused_as_misdirected() -> None:
    h = [("host", "node-b.example:8700"), *sign_request(LAB, "GET", "http://node-b.example:8700/v1/heads").items()]
    with pytest.raises(MisdirectedRequestError) as ei:
        verifier().verify("GET", "/v1/heads", "", h, None)
    assert ei.value.code == "misdirected-request"
    assert "node-b.example:8700" in ei.value.message and "node-a.example:8700" in ei.value.message


def test_request_signed_for_another_node_with_rewritten_host_is_refused() -> None:
    h = [("host", HOST), *sign_request(LAB, "GET", "http://node-b.example:8700/v1/heads").items()]
    with pytest.raises(BadRequestSignatureError) as ei:
        verifier().verify("GET", "/v1/heads", "", h, None)
    assert "@authority" in ei.value.message and "'node-a.example:8700'" in ei.value.message


def test_unbound_request_is_refused_naming_authority() -> None:
    h = [("host", HOST), *sign_request(LAB, "GET", URL + "/v1/heads",
                                       components=("@method", "@path", "@query")).items()]
    with pytest.raises(BadRequestSignatureError, match="must cover @authority"):
        verifier().verify("GET", "/v1/heads", "", h, None)


def test_signature_mismatch_names_a_reason() -> None:
    with pytest.raises(BadRequestSignatureError) as ei:
        verifier().verify("GET", "/v1/status", "", signed(LAB, "GET", "/v1/heads"), None)
    assert "does not verify: the signature does not match the request" in ei.value.message


def test_host_behind_a_proxy_is_checked_as_the_public_url() -> None:
    origins = NodeOrigins(("https", "tripwire.lab-a.example"), (("http", "10.0.0.5:8700"),))
    v = verifier(origins=origins)
    for host in ("backend:8700", "10.0.0.5:8700"):
        url = "https://tripwire.lab-a.example/v1/heads"
        h = [("host", host), *sign_request(LAB, "GET", url, components=("@method", "@target-uri", "@scheme")).items()]
        if host == "backend:8700":
            assert v.verify("GET", "/v1/heads", "", h, None).member == "lab-a"
        else:  # a request to the bind address is checked as such: signed for the public URL, it fails
            with pytest.raises(BadRequestSignatureError):
                v.verify("GET", "/v1/heads", "", h, None)


EXTRA = [
    ("target-uri", ("@method", "@target-uri"), {}),
    ("request-target-and-authority", ("@method", "@authority", "@request-target", "@scheme"), {}),
    ("query-param", (*("@method", "@authority", "@path", "@query"), '"@query-param";name="after"'), {}),
    ("header-field", (*("@method", "@authority", "@path", "@query"), "user-agent", "host"), {"user-agent": "t/1"}),
    ("sf-field", (*("@method", "@authority", "@path", "@query"), '"content-type";sf'), {"content-type": "text/plain"}),
]


@pytest.mark.parametrize(("components", "extra"), [c[1:] for c in EXTRA], ids=[c[0] for c in EXTRA])
def test_extra_covered_components_are_accepted_when_they_verify(components, extra) -> None:
    extra = {"host": HOST, **extra}
    hdrs = [*extra.items(), *sign_request(LAB, "GET", URL + "/v1/feeds/lab-a?after=2", components=components,
                                          headers=extra).items()]
    assert verifier().verify("GET", "/v1/feeds/lab-a", "after=2", hdrs, None).member == "lab-a"


UNCHECKABLE = [
    ("status", "@status", "@status is a response component"),
    ("unknown-derived", "@body", "unknown derived component"),
    ("missing-field", "x-missing", "carries no x-missing header field"),
    ("trailer", "user-agent;tr", "trailer fields are not checked"),
    ("req", "@method;req", "'req' names a component"),
]


@pytest.mark.parametrize(("component", "why"), [c[1:] for c in UNCHECKABLE], ids=[c[0] for c in UNCHECKABLE])
def test_uncheckable_covered_components_are_named_and_refused(component, why) -> None:
    # The Signature-Input is edited after signing: the component check runs before any
    # cryptography, so the refusal names the component rather than a failed signature.
    h = sign_request(LAB, "GET", URL + "/v1/heads")
    inner = component.split(";")
    item = f'"{inner[0]}"' + "".join(f";{p}" for p in inner[1:])
    h["Signature-Input"] = h["Signature-Input"].replace('("@method"', f'({item} "@method"', 1)
    with pytest.raises(UncheckableComponentError) as ei:
        verifier().verify("GET", "/v1/heads", "", [("host", HOST), ("user-agent", "t/1"), *h.items()], None)
    assert ei.value.code == "uncheckable-signature-component"
    assert inner[0] in ei.value.message and why in ei.value.message


def test_sign_request_needs_an_absolute_url() -> None:
    with pytest.raises(ValueError, match="absolute URL"):
        sign_request(LAB, "GET", "/v1/heads")
