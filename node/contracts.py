"""The documents the node serves, as one pydantic model each (spec §8; ``specs/openapi.json``).

The API's routes return these models (FastAPI ``response_model``), and the clients
(:mod:`node.net.client`), the training gate and the CLI parse a peer's answer with the same
models, so the served shape and the parsed shape cannot drift apart. The module is pure
pydantic: a gate or a client imports it without the web framework or the store.

The models are closed (``extra="forbid"``) and frozen: a node never sends a key its contract
does not name (the served side validates against them). A reader is forward compatible: it
parses a peer's answer with :func:`read_answer`, which ignores members a newer contract added
(spec §8) while still refusing a missing or wrongly typed member. Only the unsigned documents'
own members are dropped: envelopes, and anything signed inside a document (an alert's
``body``), are never pruned, since their signatures cover the bytes (signed data is closed by
§4.2). Optional members that are absent on the wire (an open proposal's ``trigger``, a
certificate's ``scope``, the coordinator's sections) are ``None`` when unset and are left out
when the document is written (``exclude_unset``).
"""

from __future__ import annotations

import types
from functools import cache
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, overload

from pydantic import Field, TypeAdapter, ValidationError
from pydantic_core import from_json

from protocol.documents import WireDocument
from protocol.entries import OMIT_NONE
from protocol.envelope import Envelope
from protocol.pause import ActivePause, Flag, PauseSection, ResumedPause
from protocol.plans import PlanState, RuleStop, SafetyCaseState
from protocol.track import ForecastScore, RuleScore, TrackRecord

# --- feeds and ingest (spec §4.2, §4.5) ----------------------------------------------------------


class HeadDocument(WireDocument):
    """The last accepted entry of a lab's feed."""

    seq: int = Field(ge=0)
    """Sequence number of the head entry."""
    entry_id: str = Field(pattern=r"^[0-9a-f]{64}$")
    """Entry id (lowercase hex SHA-256) of the head entry."""


class FeedPage(WireDocument):
    """A page of one lab's feed (``GET /v1/feeds/{lab}``)."""

    lab: str
    """The lab whose feed this is."""
    after: int = Field(ge=0)
    """The ``after`` of the request: the page starts at seq after+1."""
    envelopes: list[Envelope]
    """Envelopes with seq after+1, after+2, ... in seq order (at most ``limit``)."""
    head: HeadDocument | None
    """The lab's head on this node, so a reader knows when it has caught up."""


class IngestResult(WireDocument):
    """What happened to one offered envelope (``POST /v1/envelopes``)."""

    status: Literal["accepted", "duplicate", "held", "rejected"]
    """Accepted into the feed, already held, held until its predecessors arrive, or refused."""
    entry_id: str | None = None
    """Entry id of the offered envelope (None when it did not decode)."""
    lab: str | None = None
    """Lab whose feed the entry belongs to (None when it did not decode)."""
    seq: int | None = None
    """Sequence number of the entry (None when it did not decode)."""
    code: str | None = None
    """Machine code of the rejection (a protocol error code)."""
    reason: str | None = None
    """Human explanation of the rejection."""


class BatchResult(WireDocument):
    """The answer to a batch offered to ``POST /v1/envelopes``."""

    results: list[IngestResult]
    """One result per offered envelope, in request order."""


class RosterDocument(WireDocument):
    """The roster chain (``GET /v1/roster``, spec §7)."""

    network: str
    """Network id (the genesis roster id)."""
    version: int
    """Current roster version."""
    expires: str
    """When the current roster version expires (RFC 3339, UTC)."""
    expired: bool
    """Whether it has expired by the node's clock (no new votes are accepted then)."""
    envelopes: list[Envelope]
    """Every accepted roster envelope, version 1 first; verify with the genesis signatures."""


# --- the status document (GET /v1/status; spec §6.6, §6.9-6.13) ---------------------------------


class StatusRoster(WireDocument):
    """The node's current roster version."""

    version: int
    """Current roster version."""
    expires: str
    """When it expires (RFC 3339, UTC)."""
    expired: bool
    """Whether it has expired by the node's clock at ``time``."""


class OpenProposal(WireDocument):
    """A proposal still collecting votes."""

    proposal_id: str
    """The proposal id (spec §6.3)."""
    action: Literal["pause", "resume", "accept"]
    """What a certificate for it would do."""
    entry_id: str
    """Entry id of the proposal entry that represents it."""
    lab: str
    """Lab that published that entry."""
    trigger: dict[str, Any] | None = None
    """For a pause proposal: its trigger (absent otherwise)."""
    pause_proposal: str | None = None
    """For a resume proposal: the pause it would end (absent otherwise)."""
    plan: str | None = None
    """For a safety case: the training plan it is for (absent otherwise)."""


class Alert(WireDocument):
    """A recent alert entry."""

    entry_id: str
    """Entry id of the alert."""
    lab: str
    """Lab that published it."""
    issued_at: str
    """When it was signed (RFC 3339, UTC)."""
    body: dict[str, Any]
    """The alert body as signed (``body-alert.schema.json``)."""


class EquivocationRef(WireDocument):
    """An equivocation proof the node holds (``GET /v1/equivocations`` serves the proof)."""

    proof_id: str
    """Id of the proof."""
    lab: str
    """The lab that signed two entries at one position."""
    seq: int
    """The position."""


class MisbehaviourCount(WireDocument):
    """Refused data recorded against one peer."""

    total: int
    """Refusals ever recorded."""
    kept: int
    """Records still kept (the oldest are pruned)."""
    last_at: str
    """When the last one was recorded (RFC 3339, UTC)."""


class MisbehaviourRecord(WireDocument):
    """One refusal of a peer's data."""

    peer: str
    """The peer that sent it."""
    serial: int
    """Record number (increasing)."""
    at: str
    """When it was refused (RFC 3339, UTC)."""
    code: str
    """The protocol error code."""
    reason: str
    """Human explanation."""
    url: str | None
    """The request that fetched it."""
    lab: str | None
    """Lab of the refused entry, when known."""
    seq: int | None
    """Seq of the refused entry, when known."""
    entry_id: str | None
    """Entry id of the refused entry, when known."""


class PeerSync(WireDocument):
    """Sync state with one peer."""

    url: str
    """The peer's API base URL."""
    ok: bool
    """Whether the last exchange succeeded."""
    last_ok_s_ago: float | None
    """Seconds since the last successful exchange (None: never)."""
    failures: int
    """Consecutive failed exchanges."""
    last_error: str | None
    """The last failure, in words."""
    retry_in_s: float
    """Seconds until the next attempt."""
    fetched: int
    """Entries fetched from it."""
    pushed: int
    """Entries it accepted from this node."""
    misbehaviour_total: int
    """Refusals ever recorded against it."""
    misbehaviour: list[MisbehaviourRecord]
    """Its newest misbehaviour records."""


# --- the coordinator's sections of the status (spec §6.6, §6.12, §6.13) -----------------------



class SectionError(WireDocument):
    """A status section that could not be built (the store could not be analysed)."""

    error: str
    """Why, in words."""


class TriggerCheckDocument(WireDocument):
    """This node's check of a pause proposal's trigger (spec §6.4)."""

    status: Literal["breach", "not-breach", "unknown"]
    """Whether the signed result breaches the named rule under the adopted policy, or
    cannot be judged here (the result or the policy is not held)."""
    reason: str
    """Why, in words."""


class CoordinationProposal(WireDocument):
    """A proposal as this node judges it: its state, tally and this node's vote.

    The members after ``my_vote`` depend on the action: a pause proposal has ``trigger``,
    ``trigger_check``, ``discretionary`` and ``rationale``; an accept proposal ``plan``; a
    resume proposal ``pause_proposal``. The others are absent."""

    proposal_id: str
    """The proposal id (spec §6.3)."""
    action: Literal["pause", "resume", "accept"]
    """What a certificate for it would do."""
    proposed_by: list[str]
    """Labs that published a proposal entry with this id."""
    entry_id: str
    """Entry id of the proposal entry that represents it."""
    state: Literal["open", "certified", "paused", "resumed", "expired"]
    """Where it stands: collecting votes, certified, in force as a pause, ended by a resume, or
    past its voting deadline uncertified."""
    certificates: list[str]
    """Entry ids of the valid certificates for it."""
    weight: int
    """Supporting weight counted under the current roster."""
    threshold: int | None
    """Supporting weight a certificate needs (None: not yet counted)."""
    supporting: list[str]
    """Labs whose first vote supports it."""
    objecting: list[str]
    """Labs whose first vote objects."""
    abstaining: list[str]
    """Labs whose first vote abstains."""
    missing: list[str]
    """Voting labs that have not voted."""
    my_vote: str | None
    """This node's lab's decision (None: it has not voted)."""
    trigger: dict[str, Any] | None = None
    """Pause proposals: the signed trigger."""
    trigger_check: TriggerCheckDocument | None = None
    """Pause proposals: this node's check of the trigger (None: discretionary)."""
    discretionary: bool | None = None
    """Pause proposals: asked for on a lab's own judgement (spec §6.11)."""
    rationale: str | None = None
    """Pause proposals: the proposer's rationale."""
    plan: str | None = None
    """Accept proposals: the training plan whose safety case it accepts."""
    pause_proposal: str | None = None
    """Resume proposals: the pause it would end."""
    scope: dict[str, Any] | None
    """The runs it names (None: every run)."""
    covers: str | None
    """Pause proposals: the runs it covers, in words."""
    deadline: str | None
    """When its voting closes (RFC 3339), where the pause state tracks it."""


class RuleVerdictDocument(WireDocument):
    """One rule's verdict on a result that is not ``ok``."""

    rule: str
    """The policy rule id."""
    verdict: Literal["ok", "warn", "breach"]
    """The rule's verdict."""
    reason: str
    """Why, in words."""


class ResultVerdict(WireDocument):
    """A judged result whose verdict is not ``ok``."""

    result: str
    """Entry id of the result."""
    lab: str
    """The lab that signed it."""
    seq: int
    """Its position in the lab's feed."""
    checkpoint_step: int
    """The evaluated checkpoint's training step."""
    training_flop: str
    """The checkpoint's training compute (decimal text)."""
    overall: Literal["ok", "warn", "breach"]
    """The worst rule verdict."""
    rules: list[RuleVerdictDocument]
    """The rules whose verdict is not ``ok``."""


class CoordinationPolicy(WireDocument):
    """The adopted policy and whether this node could load it."""

    adopted: str
    """Digest the roster adopts."""
    loaded: bool
    """Whether this node holds and loaded that policy."""
    id: str | None
    """Its id (None: not loaded)."""
    version: int | None
    """Its version (None: not loaded)."""
    error: str | None
    """Why it could not be loaded (None: loaded)."""


class ForecastsSection(WireDocument):
    """The forecast track record (spec §6.13): each lab's record and the latest forecasts."""

    track: list[TrackRecord]
    """Each lab's track record."""
    forecasts: list[ForecastScore]
    """The most recent forecasts with their scores, oldest first."""


class CoordinatorRun(WireDocument):
    """The running coordinator's own state."""

    passes: int
    """Analysis passes made."""
    pending: int
    """Planned actions not yet taken (not yet due, or awaiting a fresh look)."""
    judged_log_size: int
    """Node-log size the last pass judged (-1: it published, so it looks again)."""
    failures: int
    """Failed passes."""
    last_error: str | None
    """The last failure, in words."""
    running: bool
    """Whether its worker runs."""


class CoordinationSection(WireDocument):
    """The coordinator's latest pass (``GET /v1/status`` ``coordination``; ``tripwire
    proposals --json``): the policy, proposals, plans and the results it judged."""

    rule: Literal["manual", "pause-on-breach", "object-unless-breach"]
    """The node's automatic vote rule (``[votes] auto``)."""
    policy: CoordinationPolicy
    """The adopted policy and whether it loaded."""
    roster_expired: bool
    """Whether the current roster has expired."""
    pause: PauseSection
    """The pause state the pass judged (the status' own ``pause`` is the authority)."""
    proposals: list[CoordinationProposal]
    """Every proposal held, oldest first."""
    plans: list[PlanState]
    """The most recent training plans."""
    verdicts: list[ResultVerdict]
    """The most recent results whose verdict is not ``ok``."""
    forecasts: ForecastsSection | None = OMIT_NONE
    """The forecast track record (``tripwire proposals --json``; the status serves it as its
    own ``forecasts`` section)."""
    results_judged: int
    """Results the policy was applied to."""
    flags: list[Flag]
    """Entries the pause rules flagged and skipped."""
    coordinator: CoordinatorRun | None = OMIT_NONE
    """The coordinator's state (absent where no coordinator runs)."""


class StatusDocument(WireDocument):
    """The node's status (``GET /v1/status``): what its store knows, judged now.

    The ``GET /v1/status/pause`` answer signs the pause state of this document for a gate
    (spec §6.9).
    """

    node: str
    """The answering node's lab."""
    network: str
    """Network id."""
    roster: StatusRoster
    """The current roster version."""
    paused: bool
    """Whether the network is paused (spec §6.6 rule 5); equals ``pause.paused``."""
    pause: PauseSection
    """The pause state (spec §6.6)."""
    open_proposals: list[OpenProposal]
    """Proposals still collecting votes."""
    pause_flags: list[Flag]
    """Entries the pause rules flagged and skipped (kind, lab, reason, and what they name)."""
    alerts: list[Alert]
    """The most recent alerts, oldest first."""
    equivocations: list[EquivocationRef]
    """Equivocation proofs held."""
    heads: dict[str, HeadDocument]
    """Head of every lab feed held, by lab."""
    log_size: int
    """Entries in the node log (spec §5)."""
    forecasts: ForecastsSection | SectionError | None = None
    """The forecast track record (spec §6.13), when the coordinator runs; absent otherwise."""
    coordination: CoordinationSection | SectionError | None = None
    """The coordinator's latest pass (plans, judged results), when it runs; absent otherwise."""
    time: str
    """The node's clock when it answered (RFC 3339, UTC, seconds)."""
    peers: dict[str, PeerSync]
    """Sync state per peer (empty when the node does not sync)."""
    misbehaviour: dict[str, MisbehaviourCount]
    """Refusals recorded per peer, including peers no longer synced with."""


# --- reading a peer's answer (forward compatible) ------------------------------------------------

_T = TypeVar("_T")


@cache
def _adapter(tp: Any) -> TypeAdapter[Any]:
    return TypeAdapter(tp)


def _is_document(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, WireDocument)


def drop_unknown(tp: Any, data: Any) -> Any:
    """``data`` (parsed JSON) with the members that the contract type ``tp`` does not name
    removed from every :class:`WireDocument` object in it, at any depth.

    Only documents are pruned: a value whose type is not a document (an :class:`Envelope`, a
    signed ``body`` typed ``dict[str, Any]``) is returned as it is, so a signed payload is never
    altered and its own closed schema still applies. Nothing is added or converted: a missing
    or wrongly typed member stays missing or wrong for validation to refuse.
    """
    if _is_document(tp):
        if not isinstance(data, dict):
            return data
        # The documents name their members by field name (no aliases).
        fields = tp.model_fields
        return {k: drop_unknown(fields[k].annotation, v) for k, v in data.items() if k in fields}
    origin, args = get_origin(tp), get_args(tp)
    if origin is list and args and isinstance(data, list):
        return [drop_unknown(args[0], v) for v in data]
    if origin is dict and len(args) == 2 and isinstance(data, dict):
        return {k: drop_unknown(args[1], v) for k, v in data.items()}
    if origin in (Union, types.UnionType) and data is not None:
        docs = [a for a in args if _is_document(a)]
        if isinstance(data, dict):
            # The first member whose required fields the object has (BatchResult | IngestResult).
            for doc in docs:
                if all(k in data for k, f in doc.model_fields.items() if f.is_required()):
                    return drop_unknown(doc, data)
        others = [a for a in args if a is not type(None) and not _is_document(a)]
        if not docs and len(others) == 1:
            return drop_unknown(others[0], data)
    return data


@overload
def read_answer(tp: type[_T], data: Any) -> _T: ...
@overload
def read_answer(tp: Any, data: Any) -> Any: ...
def read_answer(tp: Any, data: Any) -> Any:
    """Parse a peer's unsigned answer (JSON ``bytes``/``str``, or already parsed JSON) as the
    contract type ``tp`` (a document model, or e.g. ``dict[str, HeadDocument]``).

    Forward compatible: members a newer peer's contract added are ignored (see
    :func:`drop_unknown`); a missing or wrongly typed member raises the
    :class:`~pydantic.ValidationError` naming it. An answer that is exactly this contract takes
    one validation pass; only one carrying unknown members is parsed, pruned and validated again.
    """
    adapter = _adapter(tp)
    raw = isinstance(data, bytes | bytearray | str)
    try:
        return adapter.validate_json(data) if raw else adapter.validate_python(data)
    except ValidationError as e:
        if not any(err["type"] == "extra_forbidden" for err in e.errors()):
            raise
        if raw:
            try:
                data = from_json(data)
            except ValueError:
                raise e from None
        return adapter.validate_python(drop_unknown(tp, data))


__all__ = [
    "ActivePause",
    "Alert",
    "BatchResult",
    "CoordinationPolicy",
    "CoordinationProposal",
    "CoordinationSection",
    "CoordinatorRun",
    "EquivocationRef",
    "FeedPage",
    "Flag",
    "ForecastScore",
    "ForecastsSection",
    "HeadDocument",
    "IngestResult",
    "MisbehaviourCount",
    "MisbehaviourRecord",
    "OpenProposal",
    "PauseSection",
    "PeerSync",
    "PlanState",
    "ResultVerdict",
    "ResumedPause",
    "RosterDocument",
    "RuleScore",
    "RuleStop",
    "RuleVerdictDocument",
    "SafetyCaseState",
    "SectionError",
    "StatusDocument",
    "StatusRoster",
    "TrackRecord",
    "TriggerCheckDocument",
    "WireDocument",
    "drop_unknown",
    "read_answer",
]
