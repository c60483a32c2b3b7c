"""Feed statements and one model per ``kind`` body (spec §4, §6).

Every model is frozen, forbids unknown fields, validates strictly (no type coercion)
and bounds every string and list, so that an invalid statement cannot be constructed.
:class:`VerifiedEntry` is only produced by :func:`protocol.roster.verify_entry`; a raw
:class:`~protocol.envelope.Envelope` is never treated as evidence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Final, Literal, TypeVar, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, InitErrorDetails, PydanticCustomError

from protocol.canonical import (
    DECIMAL_RE,
    MAX_STATEMENT_BYTES,
    TIME_RE,
    canonical_bytes,
    digest_of,
    entry_id,
    parse_canonical,
)
from protocol.envelope import ENTRY_PAYLOAD_TYPE, Envelope, sign_payload
from protocol.errors import EnvelopeError, NumericDomainError, OversizeError, SchemaError
from protocol.keys import SigningKey
from protocol.scope import Scope

PROTOCOL: Final = "tripwire/1"

Hex64 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
LabId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{1,64}$")]
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")]
DecStr = Annotated[str, StringConstraints(pattern=DECIMAL_RE.pattern, max_length=64)]
Timestamp = Annotated[str, StringConstraints(pattern=TIME_RE.pattern, max_length=40)]
ShortText = Annotated[str, StringConstraints(max_length=256)]
LongText = Annotated[str, StringConstraints(max_length=8192)]

Kind = Literal[
    "eval_result",
    "alert",
    "pause_proposal",
    "vote",
    "pause_certificate",
    "resume_proposal",
    "roster_update",
    "note",
    "training_plan",
    "safety_case",
    "forecast",
]
KINDS: tuple[str, ...] = get_args(Kind)


# --- numeric domains (spec §2.2) ------------------------------------------------------------

#: pydantic error type of a decimal outside its domain; reported as ``numeric-domain``.
NUMERIC_DOMAIN_ERROR = "numeric_domain"


@dataclass(frozen=True, slots=True)
class NumericDomain:
    """The values a decimal-string field of a signed body may take (spec §2.2 table).

    Every signed decimal has one, so that a well-formed but absurd number ("1E70",
    "1E-999", sixty digits) is refused at ingest by every verifier instead of reaching
    exact arithmetic, float conversion or a report where it could fail or mislead.
    """

    name: str
    """What the field measures, for messages."""
    minimum: str
    """Smallest allowed value (inclusive), as a decimal string."""
    maximum: str
    """Largest allowed value (inclusive), as a decimal string."""
    max_digits: int
    """Most significant digits, counted as written (``"1.50"`` has 3)."""
    max_places: int
    """Finest digit allowed is ``10^-max_places`` (``"1.5E-29"`` has 30 places)."""

    def describe(self) -> str:
        return (
            f"{self.name} must lie in [{self.minimum}, {self.maximum}] with at most "
            f"{self.max_digits} significant digits and {self.max_places} decimal places"
        )

    def check(self, text: str) -> str:
        """Return ``text`` if it lies in the domain, else raise the ``numeric_domain`` error."""
        # The pattern has matched already, so Decimal() cannot fail and the exponent has at
        # most three digits: every comparison below is cheap and exact.
        d = Decimal(text)
        _, digits, exponent = d.as_tuple()
        assert isinstance(exponent, int)  # finite: the pattern admits no NaN or Infinity
        if not Decimal(self.minimum) <= d <= Decimal(self.maximum):
            problem = f"{text} is out of range"
        elif len(digits) > self.max_digits:
            problem = f"{text} has {len(digits)} significant digits"
        elif -exponent > self.max_places:
            problem = f"{text} has {-exponent} decimal places"
        else:
            return text
        raise PydanticCustomError(NUMERIC_DOMAIN_ERROR, "{reason}", {"reason": f"{problem}: {self.describe()}"})

    def __get_pydantic_json_schema__(self, core: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        # Schemas cannot compare decimal strings; the domain is published for other
        # implementations as an annotation that spec §2.2 defines.
        schema = handler(core)
        schema["x-numeric-domain"] = {
            "minimum": self.minimum,
            "maximum": self.maximum,
            "maxDigits": self.max_digits,
            "maxPlaces": self.max_places,
        }
        return schema


#: Metric point estimates: eval scores, rates, counts and log-likelihoods all fit.
METRIC_VALUE = NumericDomain("a metric value", "-1E15", "1E15", 30, 30)
#: A standard error is a non-negative spread on the same scale as the value.
METRIC_STDERR = NumericDomain("a standard error", "0", "1E15", 30, 30)
#: Training compute: at least one operation, at most 1E40 FLOP (far beyond any planned run).
TRAINING_FLOP = NumericDomain("training compute", "1", "1E40", 30, 30)
#: Forecast compute (crossings, horizons): training compute times a policy horizon and the
#: forecast's search range beyond it.
FORECAST_FLOP = NumericDomain("forecast compute", "1", "1E60", 30, 30)
#: Observed values and levels in alerts and proposals: a metric moved by z standard errors,
#: or a policy level.
VERDICT_NUMBER = NumericDomain("an observed value or level", "-1E40", "1E40", 60, 30)

_DEC = StringConstraints(pattern=DECIMAL_RE.pattern, max_length=64)
MetricValueStr = Annotated[str, _DEC, AfterValidator(METRIC_VALUE.check), METRIC_VALUE]
MetricStderrStr = Annotated[str, _DEC, AfterValidator(METRIC_STDERR.check), METRIC_STDERR]
TrainingFlopStr = Annotated[str, _DEC, AfterValidator(TRAINING_FLOP.check), TRAINING_FLOP]
ForecastFlopStr = Annotated[str, _DEC, AfterValidator(FORECAST_FLOP.check), FORECAST_FLOP]
VerdictNumberStr = Annotated[str, _DEC, AfterValidator(VERDICT_NUMBER.check), VERDICT_NUMBER]
#: A training plan's evaluation cadence: evaluate each time compute grows by this factor.
CADENCE_MULTIPLE = NumericDomain("an evaluation cadence (compute multiple)", "1", "1000000", 12, 12)
CadenceStr = Annotated[str, _DEC, AfterValidator(CADENCE_MULTIPLE.check), CADENCE_MULTIPLE]
#: The stated coverage of a forecast's prediction interval (a policy's ``forecast.level``).
INTERVAL_LEVEL = NumericDomain("an interval level (coverage)", "0", "1", 12, 12)
IntervalLevelStr = Annotated[str, _DEC, AfterValidator(INTERVAL_LEVEL.check), INTERVAL_LEVEL]


class Model(BaseModel):
    """Base for every persisted/signed model: frozen, strict, no unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, use_attribute_docstrings=True)


# --- eval_result --------------------------------------------------------------------------


class SuiteRef(Model):
    id: Name
    """Suite id, e.g. ``tripwire-core``."""
    version: Annotated[str, StringConstraints(max_length=64)]
    """Suite version string."""
    digest: Hex64
    """SHA-256 of the suite's canonical JSON; must be one the roster pins."""


class ModelRef(Model):
    name: ShortText
    """The lab's name for the model or run (free text, never markup)."""
    commitment: Hex64
    """SHA-256 commitment to the weight files (see specs/evals: model commitment)."""
    checkpoint_step: Annotated[int, Field(ge=0)]
    """Training step of the evaluated checkpoint."""
    training_flop: TrainingFlopStr
    """Training compute spent up to this checkpoint, in FLOP (decimal string)."""
    parameters: Annotated[int, Field(ge=0)] | None = None
    """Parameter count, when disclosed."""


class Metric(Model):
    value: MetricValueStr
    """Point estimate."""
    stderr: MetricStderrStr
    """Standard error of the estimate."""


class TaskResult(Model):
    name: Name
    """Task name within the suite."""
    digest: Hex64
    """SHA-256 of the task definition's canonical JSON (including the data digest)."""
    n: Annotated[int, Field(ge=1)]
    """Number of items scored."""
    metrics: Annotated[dict[Name, Metric], Field(min_length=1, max_length=64)]
    """Metric name to value and standard error."""
    items_root: Hex64
    """RFC 9162 Merkle root over the JCS bytes of the per-item records, in item order."""


class EvalResultBody(Model):
    suite: SuiteRef
    model: ModelRef
    tasks: Annotated[list[TaskResult], Field(min_length=1, max_length=256)]
    runtime: Annotated[dict[Name, ShortText], Field(max_length=32)] = {}
    """Runtime facts: torch/transformers versions, device name, dtype, batch size."""
    started_at: Timestamp
    finished_at: Timestamp

    @model_validator(mode="after")
    def _unique_tasks(self) -> EvalResultBody:
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError("task names must be unique within a result")
        return self


# --- alert / pause / vote / certificate --------------------------------------------------


class ForecastSummary(Model):
    crossing_flop: ForecastFlopStr | None
    """Compute at which the fitted trend crosses the breach level (None: no crossing)."""
    crossing_low: ForecastFlopStr | None = None
    crossing_high: ForecastFlopStr | None = None
    horizon_flop: ForecastFlopStr
    """The compute horizon the policy looks ahead to."""


class AlertBody(Model):
    result: Hex64
    """entry_id of the eval_result that raised the alert."""
    result_lab: LabId
    rule: Name
    policy_digest: Hex64
    verdict: Literal["warn", "breach"]
    observed: VerdictNumberStr | None = None
    level: VerdictNumberStr | None = None
    forecast: ForecastSummary | None = None
    message: LongText


class Trigger(Model):
    result: Hex64
    """entry_id of the eval_result that breached."""
    lab: LabId
    """Lab whose result breached."""
    rule: Name
    policy_digest: Hex64


#: An optional member left out when it is None: of the signed bytes (a field added after v1,
#: so entries built before it existed keep their bytes, ids and vectors, spec §6.10), or of a
#: served document.
OMIT_NONE = Field(default=None, exclude_if=lambda v: v is None)


def pause_proposal_id(trigger: Trigger | DiscretionaryTrigger, scope: Scope | None = None) -> str:
    """Deterministic proposal id: the same trigger (and scope) always names the same proposal
    (spec §6.3). The scope is bound into the id when present, so a lab cannot publish a
    narrower pause under the id honest labs vote on."""
    obj: dict[str, Any] = {"action": "pause", "trigger": trigger.model_dump(mode="json")}
    if scope is not None:
        obj["scope"] = scope.model_dump(mode="json", exclude_none=True)
    return digest_of(obj)


class DocRef(Model):
    name: ShortText
    sha256: Hex64
    uri: Annotated[str, StringConstraints(max_length=2048)] | None = None


def resume_proposal_id(pause_proposal: str, safety_case: list[DocRef], scope: Scope | None = None) -> str:
    """Deterministic resume proposal id over the pause it ends (or narrows to ``scope``) and
    the safety case it cites."""
    docs = sorted((d.model_dump(mode="json") for d in safety_case), key=lambda d: d["sha256"])
    obj: dict[str, Any] = {"action": "resume", "pause_proposal": pause_proposal, "safety_case": docs}
    if scope is not None:
        obj["scope"] = scope.model_dump(mode="json", exclude_none=True)
    return digest_of(obj)


class DiscretionaryTrigger(Model):
    """A pause a lab asks for on its own judgement, citing evidence no rule measures (spec §6.11)."""

    kind: Literal["discretionary"]
    lab: LabId
    """The proposing lab (must be the lab that signs the proposal)."""
    evidence: Annotated[list[DocRef], Field(min_length=1, max_length=64)]
    """The documents the proposal rests on, by SHA-256 (the documents stay with the lab
    unless it attaches them)."""
    opened_at: Timestamp
    """When the proposal was opened; binds the id to this request (the same evidence cited
    again later is a new proposal)."""


class PauseProposalBody(Model):
    proposal_id: Hex64
    trigger: Trigger | DiscretionaryTrigger
    observed: VerdictNumberStr
    """The value (or bound, per the rule's uncertainty rule) that reached the level
    ("0" for a discretionary proposal, which measures nothing)."""
    level: VerdictNumberStr
    rationale: LongText = ""
    scope: Scope | None = OMIT_NONE
    """Which runs the pause covers (absent: every run, spec §6.10)."""

    @model_validator(mode="after")
    def _id(self) -> PauseProposalBody:
        if self.proposal_id != pause_proposal_id(self.trigger, self.scope):
            raise ValueError("proposal_id is not the digest of the trigger and scope")
        return self

    @property
    def discretionary(self) -> bool:
        return isinstance(self.trigger, DiscretionaryTrigger)


class ResumeProposalBody(Model):
    proposal_id: Hex64
    pause_proposal: Hex64
    """proposal_id of the pause this resume would end."""
    safety_case: Annotated[list[DocRef], Field(min_length=1, max_length=64)]
    rationale: LongText = ""
    scope: Scope | None = OMIT_NONE
    """Present: the pause stays in force for this narrower scope instead of ending (§6.10)."""

    @model_validator(mode="after")
    def _id(self) -> ResumeProposalBody:
        if self.proposal_id != resume_proposal_id(self.pause_proposal, list(self.safety_case), self.scope):
            raise ValueError("proposal_id is not the digest of the pause proposal, safety case and scope")
        return self


class VoteBody(Model):
    proposal_id: Hex64
    action: Literal["pause", "resume", "accept"]
    """Which kind of proposal this vote is on (``accept``: a safety case, spec §6.12)."""
    decision: Literal["pause", "resume", "accept", "object", "abstain"]
    rationale: LongText = ""

    @model_validator(mode="after")
    def _decision(self) -> VoteBody:
        if self.decision in ("pause", "resume", "accept") and self.decision != self.action:
            raise ValueError(f"a vote on a {self.action} proposal cannot decide {self.decision!r}")
        return self


class PauseCertificateBody(Model):
    proposal_id: Hex64
    action: Literal["pause", "resume", "accept"]
    roster_version: Annotated[int, Field(ge=1)]
    """Roster version whose weights and quorum the votes were counted under."""
    proposal: Envelope
    """The signed pause_proposal (or resume_proposal, or safety_case) entry."""
    votes: Annotated[list[Envelope], Field(min_length=1, max_length=512)]
    """The signed vote entries that make the quorum."""


# --- training plans and safety cases (spec §6.12) -------------------------------------------


class TrainingPlanBody(Model):
    """A run a lab declares before training it: what, how far, how often evaluated, and the
    ladder of smaller models whose results forecast it (spec §6.12)."""

    model: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    """The model the run trains, as its eval results will name it (``model.name``)."""
    planned_flop: TrainingFlopStr
    """Training compute the run is planned to reach, FLOP (decimal string)."""
    cadence: CadenceStr
    """Evaluation cadence: a signed eval_result each time compute grows by this factor
    (greater than 1). The policy's own cadence applies too: the stricter one counts."""
    ladder: Annotated[list[Annotated[str, StringConstraints(min_length=1, max_length=256)]], Field(min_length=1, max_length=64)]
    """The lab's smaller models (same recipe) the forecast extrapolates from, by name."""
    results: Annotated[list[Hex64], Field(max_length=256)] = []
    """Optional: the eval_result entries of the ladder the plan rests on; when given, the
    forecast reads only these (still only the lab's own results of ladder models)."""
    domains: Annotated[list[Name], Field(max_length=16)] = []
    """Capability domains the model is declared in (domain-scoped pauses cover it)."""
    rationale: LongText = ""

    @model_validator(mode="after")
    def _sane(self) -> TrainingPlanBody:
        if Decimal(self.cadence) <= 1:
            raise ValueError(f"cadence {self.cadence} must be greater than 1 (a compute multiple)")
        for name, items in (("ladder", self.ladder), ("results", self.results), ("domains", self.domains)):
            if len(set(items)) != len(items):
                raise ValueError(f"{name} lists an item twice")
        return self


def safety_case_id(plan: str, documents: list[DocRef]) -> str:
    """Deterministic id of a safety case: the plan it is for and the documents it cites
    (spec §6.12); votes and certificates name it as their ``proposal_id``."""
    docs = sorted((d.model_dump(mode="json") for d in documents), key=lambda d: d["sha256"])
    return digest_of({"action": "accept", "plan": plan, "documents": docs})


class SafetyCaseBody(Model):
    """A lab's positive case that its planned run is safe past its stop point; accepted by
    votes with the roster's safety-case quorum (spec §6.12)."""

    proposal_id: Hex64
    plan: Hex64
    """entry_id of the training_plan this case is for (signed by the same lab)."""
    documents: Annotated[list[DocRef], Field(min_length=1, max_length=64)]
    """The case's documents, by SHA-256 (as resume proposals cite theirs)."""
    rationale: LongText = ""

    @model_validator(mode="after")
    def _id(self) -> SafetyCaseBody:
        if self.proposal_id != safety_case_id(self.plan, list(self.documents)):
            raise ValueError("proposal_id is not the digest of the plan and documents")
        return self


# --- forecasts on record (spec §6.13) -------------------------------------------------------

RuleId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]


class RulePrediction(Model):
    """One rule's pre-registered prediction: the indicator's value and its interval."""

    rule: RuleId
    """The policy rule whose indicator is predicted (its ``id``)."""
    value: MetricValueStr
    """Central forecast, in the metric's units."""
    low: MetricValueStr
    high: MetricValueStr
    """Prediction interval (inclusive), ``low <= value <= high``."""
    level: IntervalLevelStr | None = OMIT_NONE
    """The interval's stated coverage (e.g. "0.9"); absent for a bare ``z``-wide interval."""

    @model_validator(mode="after")
    def _ordered(self) -> RulePrediction:
        low, value, high = Decimal(self.low), Decimal(self.value), Decimal(self.high)
        if low > high:
            raise ValueError(f"rule {self.rule!r}: interval low {self.low} is above high {self.high}")
        if not low <= value <= high:
            raise ValueError(f"rule {self.rule!r}: value {self.value} lies outside its interval [{self.low}, {self.high}]")
        if self.level is not None and not Decimal(0) < Decimal(self.level) < Decimal(1):
            raise ValueError(f"rule {self.rule!r}: level {self.level} must lie strictly between 0 and 1")
        return self


class ForecastBody(Model):
    """A prediction a lab puts on record before a run: what the model will measure at its
    planned compute, per rule, with an interval; scored when the result arrives (spec §6.13).

    Validated with a context ``{"rules": <rule ids>}`` (:meth:`for_rules`), a rule the
    policy does not have is refused too; at ingest, where the policy may differ, only the
    form is checked."""

    model: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    """The model the forecast is about, as its eval results will name it (``model.name``)."""
    planned_flop: TrainingFlopStr
    """The training compute the forecast is for, FLOP (decimal string)."""
    policy_digest: Hex64
    """Digest of the policy whose rules (and forecast) the prediction was made under."""
    predictions: Annotated[list[RulePrediction], Field(min_length=1, max_length=256)]
    """One per rule, each rule at most once."""
    ladder: Annotated[
        list[Annotated[str, StringConstraints(min_length=1, max_length=256)]], Field(max_length=64)
    ] = []
    """The lab's smaller models whose signed results the prediction extrapolates from."""
    note: LongText = ""

    @model_validator(mode="after")
    def _sane(self, info: ValidationInfo) -> ForecastBody:
        rules = [p.rule for p in self.predictions]
        dup = sorted({r for r in rules if rules.count(r) > 1})
        if dup:
            raise ValueError(f"predictions name rule {dup[0]!r} more than once")
        if len(set(self.ladder)) != len(self.ladder):
            raise ValueError("ladder lists a model twice")
        if self.model in self.ladder:
            raise ValueError(f"model {self.model!r} is in its own ladder: a forecast extrapolates from other models")
        known = info.context.get("rules") if isinstance(info.context, dict) else None
        if known is not None:
            unknown = sorted(set(rules) - set(known))
            if unknown:
                raise ValueError(
                    f"rule {unknown[0]!r} is not a rule of the policy (its rules: {', '.join(sorted(known)) or 'none'})"
                )
        return self

    @classmethod
    def for_rules(cls, obj: Any, rules: Iterable[str]) -> ForecastBody:
        """Validate ``obj`` and refuse predictions for rules outside ``rules`` (SchemaError)."""
        try:
            return cls.model_validate(obj, context={"rules": frozenset(rules)})
        except ValidationError as e:
            raise _schema_error(e, "forecast body") from e


class RosterUpdateBody(Model):
    roster: Envelope
    """The new roster, as a roster envelope signed per the roster rules."""


class NoteBody(Model):
    text: LongText
    refs: Annotated[list[Hex64], Field(max_length=64)] = []


#: A training gate's *halt record* is a ``note`` whose text begins with this, then the step
#: (specs/evidence.md §6); gates write it, reports and the demo read the step back.
HALT_PREFIX = "training halted at step "
_HALT_STEP = re.compile(r"^training halted at step ([0-9]{1,15})\b")


def halt_text(step: int, reason: str) -> str:
    """The text of a halt record for ``step``, with the gate's reason."""
    return f"{HALT_PREFIX}{int(step)}: {reason[:2000]}"


def halt_step(text: str) -> int | None:
    """The step a halt record's text names (None: the text is no halt record)."""
    m = _HALT_STEP.match(text)
    return int(m.group(1)) if m else None


BODY_MODELS: dict[str, type[Model]] = {
    "eval_result": EvalResultBody,
    "alert": AlertBody,
    "pause_proposal": PauseProposalBody,
    "vote": VoteBody,
    "pause_certificate": PauseCertificateBody,
    "resume_proposal": ResumeProposalBody,
    "roster_update": RosterUpdateBody,
    "note": NoteBody,
    "training_plan": TrainingPlanBody,
    "safety_case": SafetyCaseBody,
    "forecast": ForecastBody,
}

Body = (
    EvalResultBody
    | AlertBody
    | PauseProposalBody
    | VoteBody
    | PauseCertificateBody
    | ResumeProposalBody
    | RosterUpdateBody
    | NoteBody
    | TrainingPlanBody
    | SafetyCaseBody
    | ForecastBody
)


B = TypeVar("B", bound=Model)

#: The bodies votes are cast on: each carries the ``proposal_id`` votes cite.
ProposalBody = PauseProposalBody | ResumeProposalBody | SafetyCaseBody


class Statement(Model):
    """The signed feed statement (spec §4.1)."""

    protocol: Literal["tripwire/1"]
    network: Hex64
    """Network id: entry_id of the genesis roster statement."""
    lab: LabId
    seq: Annotated[int, Field(ge=1, le=2**53 - 1)]
    prev: Hex64 | None
    """entry_id of the lab's entry seq-1; null exactly when seq is 1."""
    issued_at: Timestamp
    kind: Kind
    body: Body

    @model_validator(mode="before")
    @classmethod
    def _dispatch_body(cls, data: Any) -> Any:
        # The body schema is chosen by kind; validating it up front gives errors that
        # name the right schema instead of a union's eight failed attempts.
        if isinstance(data, dict):
            kind, body = data.get("kind"), data.get("body")
            model = BODY_MODELS.get(kind) if isinstance(kind, str) else None
            if model is not None and isinstance(body, dict):
                try:
                    data = {**data, "body": model.model_validate(body)}
                except ValidationError as e:
                    # Re-raise with locations under "body" so errors name the field path.
                    raise ValidationError.from_exception_data(
                        e.title,
                        [
                            InitErrorDetails(
                                type=_error_type(err["type"], err.get("ctx", {})),
                                loc=("body", *err["loc"]),
                                input=err["input"],
                                ctx=err.get("ctx", {}),
                            )
                            for err in e.errors()
                        ],
                    ) from e
        return data

    @model_validator(mode="after")
    def _consistency(self) -> Statement:
        if type(self.body) is not BODY_MODELS[self.kind]:
            raise ValueError(f"body does not match kind {self.kind!r}")
        if (self.seq == 1) != (self.prev is None):
            raise ValueError("prev must be null exactly when seq is 1")
        return self

    def body_as(self, model: type[B]) -> B:
        """The body, typed as ``model``; :class:`SchemaError` if the kind has another body.

        Callers that have already selected entries by kind use this instead of an
        ``isinstance`` check, so the type checker knows the body's fields.
        """
        if not isinstance(self.body, model):
            raise SchemaError(
                f"a {self.kind} statement has a {type(self.body).__name__}, not a {model.__name__}"
            )
        return self.body

    def proposal_body(self) -> ProposalBody:
        """The body of a pause proposal, resume proposal or safety case (what votes cite)."""
        if not isinstance(self.body, PauseProposalBody | ResumeProposalBody | SafetyCaseBody):
            raise SchemaError(f"a {self.kind} statement is not a proposal votes can cite")
        return self.body

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def canonical(self) -> bytes:
        # Spec §2.4: a signer refuses what every verifier would refuse before parsing.
        return canonical_bytes(self.to_json(), max_bytes=MAX_STATEMENT_BYTES)


def _error_type(type_: str, ctx: dict[str, Any]) -> str | PydanticCustomError:
    # Custom error types are not in pydantic's registry; re-raising one needs the object.
    if type_ == NUMERIC_DOMAIN_ERROR:
        return PydanticCustomError(type_, "{reason}", ctx)
    return type_


def _schema_error(e: ValidationError, what: str) -> SchemaError | OversizeError:
    first = e.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or what
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "string_pattern_mismatch" and first.get("ctx", {}).get("pattern") == DECIMAL_RE.pattern:
        # A regex says nothing to a person; the field wants the project's decimal text.
        msg = f"{first['input']!r} is not a decimal string (write numbers as text, e.g. \"0.5\" or \"1E22\")"
    if first["type"] in ("string_too_long", "too_long"):
        return OversizeError(f"{what} field {loc}: {msg}")
    if first["type"] == NUMERIC_DOMAIN_ERROR:
        return NumericDomainError(f"{what} field {loc}: {msg}")
    return SchemaError(f"{what} field {loc}: {msg}")


def parse_statement(obj: Any) -> Statement:
    """Validate a parsed JSON object as a statement, raising :class:`SchemaError`."""
    if not isinstance(obj, dict):
        raise SchemaError("a statement must be a JSON object")
    try:
        return Statement.model_validate(obj)
    except ValidationError as e:
        raise _schema_error(e, "statement") from e


def parse_body(kind: str, body: Any) -> Model:
    """Validate a body for ``kind`` (used when building statements from user input)."""
    model = BODY_MODELS.get(kind)
    if model is None:
        raise SchemaError(f"unknown entry kind {kind!r}; known kinds: {', '.join(KINDS)}")
    if isinstance(body, model):
        return body
    try:
        return model.model_validate(body)
    except ValidationError as e:
        raise _schema_error(e, f"{kind} body") from e


@dataclass(frozen=True, slots=True)
class DecodedEntry:
    """An entry envelope whose payload decoded to a valid canonical statement.

    Signatures are NOT checked yet: this is not evidence. See :class:`VerifiedEntry`.
    """

    envelope: Envelope
    payload: bytes
    statement: Statement
    entry_id: str


@dataclass(frozen=True, slots=True)
class VerifiedEntry:
    """An entry whose signature verified under the lab's roster key (spec §4.2).

    Constructed only by :func:`protocol.roster.verify_entry`.
    """

    envelope: Envelope
    payload: bytes
    statement: Statement
    entry_id: str
    signers: frozenset[str]
    """keyids of roster keys of the statement's lab that signed it."""
    roster_version: int
    """The roster version the signature was checked against."""

    @property
    def lab(self) -> str:
        return self.statement.lab

    @property
    def seq(self) -> int:
        return self.statement.seq

    @property
    def kind(self) -> str:
        return self.statement.kind


def decode_entry(envelope: Envelope) -> DecodedEntry:
    """Decode an entry envelope: payload type, base64, canonical JSON, statement schema."""
    if envelope.payloadType != ENTRY_PAYLOAD_TYPE:
        raise EnvelopeError(
            f"payloadType {envelope.payloadType!r} is not a feed entry ({ENTRY_PAYLOAD_TYPE})"
        )
    payload = envelope.payload_bytes()
    if len(payload) > MAX_STATEMENT_BYTES:
        raise OversizeError(f"statement is {len(payload)} bytes; the limit is {MAX_STATEMENT_BYTES}")
    obj = parse_canonical(payload)
    statement = parse_statement(obj)
    return DecodedEntry(envelope, payload, statement, entry_id(payload))


def build_statement(
    *,
    network: str,
    lab: str,
    seq: int,
    prev: str | None,
    issued_at: str,
    kind: str,
    body: Model | dict[str, Any],
) -> Statement:
    """Build and validate a statement (producers)."""
    body_model = parse_body(kind, body)
    return parse_statement(
        {
            "protocol": PROTOCOL,
            "network": network,
            "lab": lab,
            "seq": seq,
            "prev": prev,
            "issued_at": issued_at,
            "kind": kind,
            "body": body_model.model_dump(mode="json"),
        }
    )


def sign_statement(statement: Statement, key: SigningKey) -> tuple[Envelope, str]:
    """Sign a statement; return the envelope and its entry_id."""
    payload = statement.canonical()
    return sign_payload(payload, ENTRY_PAYLOAD_TYPE, [key]), entry_id(payload)
