"""Signed pause state for training gates (spec §6.9): the statement, its envelope, its checks.

A training gate must not act on an unauthenticated answer: anyone between the gate and its
node could answer ``{"paused": false}``. So a node answers a gate's poll with a *pause-state
statement* signed by its lab's key and bound to the gate's fresh nonce. The gate verifies it
against the roster chain it trusts with :func:`verify_pause_state` and stops training on any
failure. Pure: the caller supplies the clock, the nonce and the roster chain.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, ValidationError, model_validator

from protocol.canonical import canonical_bytes, parse_canonical, parse_time
from protocol.entries import OMIT_NONE, PROTOCOL, Hex64, LabId, Model, Timestamp, _schema_error
from protocol.envelope import Envelope, sign_payload, verify_signatures
from protocol.errors import (
    EnvelopeError,
    PauseStateNonceError,
    PauseStateSignerError,
    PauseStateStaleError,
    RosterVersionError,
    SchemaError,
    SignatureError,
    UnknownKeyError,
    UnknownLabError,
    WrongNetworkError,
)
from protocol.keys import SigningKey
from protocol.plans import PlanRef, RunStop, plan_for, run_stop
from protocol.roster import RosterChain
from protocol.scope import Run, Scope, covers

PAUSE_STATE_PAYLOAD_TYPE = "application/vnd.tripwire.pause-state.v1+json"
#: A gate's challenge: 16 to 64 random bytes, lowercase hex.
NONCE_PATTERN = r"^[0-9a-f]{32,128}$"
#: Default largest difference between a statement's ``issued_at`` and the verifier's clock.
DEFAULT_MAX_SKEW_S = 300.0

Nonce = Annotated[str, StringConstraints(pattern=NONCE_PATTERN)]


class PauseRef(Model):
    """One active pause, as the node's pause state lists it."""

    proposal_id: Hex64
    """Id of the certified pause proposal (spec §6.3)."""
    certificate: Hex64
    """Entry id of the ``pause_certificate`` entry that certified it (spec §6.5)."""
    scope: Scope | None = OMIT_NONE
    """The runs the pause covers now (spec §6.10; absent: every run). A gate stops only when
    it covers the gate's run."""


class PauseStateStatement(Model):
    """The pause-state statement (payload of a pause-state envelope, spec §6.9)."""

    protocol: Literal["tripwire/1"]
    """Protocol version."""
    type: Literal["pause_state"]
    """Statement type; distinct from feed statements and rosters."""
    network: Hex64
    """Network id (genesis roster id) the node is on."""
    node: LabId
    """The lab whose node answers and whose key signs."""
    issued_at: Timestamp
    """When the node signed the answer (RFC 3339 UTC)."""
    nonce: Nonce
    """The gate's challenge, copied from the request: binds the answer to one poll."""
    paused: bool
    """Whether the node holds a verified pause certificate not ended by a resume (spec §6.6)."""
    certificates: Annotated[list[PauseRef], Field(max_length=256)] = []
    """The active pauses the node holds (spec §6.6); empty when not paused."""
    roster_version: Annotated[int, Field(ge=1, le=2**53 - 1)]
    """The node's current roster version."""
    plans: Annotated[list[PlanRef], Field(max_length=256)] = Field(default=[], exclude_if=lambda v: not v)
    """The node lab's training plans and their states (spec §6.12): a gate stops its run at
    its plan's stop point, when overdue for an evaluation, or past its planned compute.
    Omitted when empty (statements of nodes without plans keep their bytes)."""

    @model_validator(mode="after")
    def _consistent(self) -> PauseStateStatement:
        if not self.paused and self.certificates:
            raise ValueError("a statement that is not paused lists no pause certificates")
        return self


@dataclass(frozen=True)
class VerifiedPauseState:
    """A pause-state statement whose signature, signer, network, nonce and time verified."""

    statement: PauseStateStatement
    envelope: Envelope
    keyids: frozenset[str]
    """Keys of the signing lab that validly signed."""

    @property
    def paused(self) -> bool:
        return self.statement.paused

    @property
    def proposal_ids(self) -> tuple[str, ...]:
        return tuple(c.proposal_id for c in self.statement.certificates)

    def covering(self, run: Run | None) -> tuple[PauseRef, ...]:
        """The active pauses whose scope covers ``run`` (all of them for an undescribed run)."""
        return tuple(c for c in self.statement.certificates if covers(c.scope, run))

    def plan_stop(self, run: Run | None) -> RunStop | None:
        """Why the node's plan state stops ``run`` (None: it does not, or the run has no plan)."""
        if run is None or not (run.model or run.plan):
            return None
        ref = plan_for(self.statement.plans, lab=self.statement.node, model=run.model, plan_id=run.plan)
        if ref is None:
            if run.plan is not None:
                return RunStop("plan-unknown", f"the node lists no training plan {run.plan[:16]}… of this lab; "
                               "fail-closed", run.plan)
            return None
        return run_stop(ref, run)


def parse_pause_state(obj: Any) -> PauseStateStatement:
    """Validate a parsed JSON value as a pause-state statement, raising :class:`SchemaError`."""
    if not isinstance(obj, dict):
        raise SchemaError("a pause-state statement must be a JSON object")
    try:
        return PauseStateStatement.model_validate(obj)
    except ValidationError as e:
        raise _schema_error(e, "pause state") from e


def pause_state_statement(
    *,
    network: str,
    node: str,
    issued_at: str,
    nonce: str,
    paused: bool,
    certificates: Iterable[Mapping[str, Any]] = (),
    roster_version: int,
    plans: Iterable[Mapping[str, Any]] = (),
) -> PauseStateStatement:
    """Build a statement from plain values (``certificates``: ``{proposal_id, certificate}``)."""
    return parse_pause_state(
        {
            "protocol": PROTOCOL,
            "type": "pause_state",
            "network": network,
            "node": node,
            "issued_at": issued_at,
            "nonce": nonce,
            "paused": paused,
            "certificates": [dict(c) for c in certificates],
            "roster_version": roster_version,
            "plans": [dict(p) for p in plans],
        }
    )


def sign_pause_state(statement: PauseStateStatement, key: SigningKey) -> Envelope:
    """The envelope a node serves: canonical statement bytes signed by its lab's key."""
    return sign_payload(canonical_bytes(statement.model_dump(mode="json")), PAUSE_STATE_PAYLOAD_TYPE, [key])


def decode_pause_state(envelope: Envelope) -> tuple[bytes, PauseStateStatement]:
    """Check the payload type and canonical form; return the payload bytes and statement."""
    if envelope.payloadType != PAUSE_STATE_PAYLOAD_TYPE:
        # PAE binds the type: a signed entry or checkpoint is never a pause state (spec §3.5).
        raise EnvelopeError(
            f"payloadType {envelope.payloadType!r} is not a pause state ({PAUSE_STATE_PAYLOAD_TYPE})"
        )
    payload = envelope.payload_bytes()
    return payload, parse_pause_state(parse_canonical(payload))


def verify_pause_state(
    answer: Any,
    chain: RosterChain,
    *,
    node: str,
    nonce: str,
    now: datetime,
    max_skew_s: float = DEFAULT_MAX_SKEW_S,
) -> VerifiedPauseState:
    """Verify a node's answer to a pause-state poll (spec §6.9), in order:

    1. ``answer`` is an envelope (a parsed JSON object) of the pause-state payload type,
       whose payload is the canonical bytes of a valid statement;
    2. ``network`` is the chain's network (``wrong-network``);
    3. ``node`` is the lab the verifier trusts (``pause-state-signer``) and a lab of the
       chain's current version (``unknown-lab``);
    4. ``roster_version`` is not newer than the chain's current version (``roster-version``:
       the verifier must catch up before it can know the node's keys);
    5. a key that the current version lists for that lab signed it (``unknown-key``,
       ``bad-signature``): keys rotated out cannot speak for the pause state now (spec §7.4);
    6. ``nonce`` is the verifier's challenge (``pause-state-nonce``);
    7. ``issued_at`` is within ``max_skew_s`` of ``now`` (``pause-state-stale``).
    """
    envelope = Envelope.parse(answer)
    payload, st = decode_pause_state(envelope)
    if st.network != chain.network_id:
        raise WrongNetworkError(
            f"pause state is for network {st.network[:16]}…, the gate trusts {chain.network_id[:16]}…"
        )
    if st.node != node:
        raise PauseStateSignerError(f"pause state speaks for node {st.node!r}; the gate trusts {node!r}")
    current = chain.current
    if current.roster.lab(st.node) is None:
        raise UnknownLabError(f"{st.node!r} is not a lab of roster v{current.version}")
    if st.roster_version > current.version:
        raise RosterVersionError(
            f"the node is on roster v{st.roster_version}; the verifier holds only v{current.version}"
        )
    keys = current.lab_keys(st.node)
    good = verify_signatures(envelope, payload, keys)
    if not good:
        hinted = {s.keyid for s in envelope.signatures if s.keyid}
        others = sorted({o for o in (current.roster.owner_of_key(k) for k in hinted) if o and o != st.node})
        if others:
            raise UnknownKeyError(f"pause state of node {st.node!r} is signed with a key of {', '.join(others)}")
        raise SignatureError(f"pause state does not verify under lab {st.node!r}'s roster key")
    if st.nonce != nonce:
        raise PauseStateNonceError("pause state answers another challenge (a replayed answer)")
    skew = abs((now - parse_time(st.issued_at)).total_seconds())
    if skew > max_skew_s:
        raise PauseStateStaleError(
            f"pause state was issued at {st.issued_at}, {skew:.0f}s from the verifier's clock "
            f"(window {max_skew_s:g}s)"
        )
    return VerifiedPauseState(st, envelope, good)


__all__ = [
    "DEFAULT_MAX_SKEW_S",
    "NONCE_PATTERN",
    "PAUSE_STATE_PAYLOAD_TYPE",
    "PauseRef",
    "PauseStateNonceError",
    "PauseStateSignerError",
    "PauseStateStaleError",
    "PauseStateStatement",
    "VerifiedPauseState",
    "decode_pause_state",
    "parse_pause_state",
    "pause_state_statement",
    "sign_pause_state",
    "verify_pause_state",
]
