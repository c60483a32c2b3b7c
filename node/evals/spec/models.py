"""The task and suite models: frozen pydantic models whose fields carry every rule, and the
digests that name them.

Frozen, as protocol/entries.py's statements: what a loader builds cannot be changed
afterwards (a change is a new, re-validated spec, see override_num_fewshot), unknown fields
are refused, and the per-field rules live on the fields. Loaders read files, data and pins
and build these; a ValidationError becomes an EvalSpecError naming file and field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from node.evals.errors import EvalSpecError, UnknownMetricError
from node.evals.spec.files import HEX64, jsonable
from protocol.canonical import digest_of

Kind = Literal["multiple_choice", "loglikelihood", "generate_until", "activation_probe"]
KINDS: tuple[str, ...] = get_args(Kind)

#: Metrics each kind can compute; asking for anything else is an error, never a silent skip.
METRICS: dict[str, tuple[str, ...]] = {
    "multiple_choice": ("acc", "acc_norm", "logprob_correct", "prob_correct", "brier"),
    "loglikelihood": ("acc", "logprob", "logprob_per_token"),
    "generate_until": ("exact_match", "pass_at_k"),
    "activation_probe": ("mean_score", "auroc", "acc"),
}
DEFAULT_METRICS: dict[str, tuple[str, ...]] = {
    "multiple_choice": METRICS["multiple_choice"],
    "loglikelihood": METRICS["loglikelihood"],
    "generate_until": ("exact_match",),
    "activation_probe": ("mean_score", "auroc"),
}
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")

#: pydantic error types raised by this module's validators, reported with their own message.
_UNKNOWN_METRIC = "unknown_metric"
_SPEC_RULE = "task_spec_rule"
_DECIMAL_TEXT = re.compile(r"^-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?$")


def _rule(reason: str, kind: str = _SPEC_RULE) -> PydanticCustomError:
    return PydanticCustomError(kind, "{reason}", {"reason": reason})


def _known_kind(v: Any) -> Any:
    if not isinstance(v, str) or v not in KINDS:
        raise _rule(f"unknown task kind {v!r}; known: {', '.join(KINDS)}")
    return v


def _prompt_field(allowed: tuple[type, ...], what: str) -> PlainValidator:
    """A prompt field: a value of one of ``allowed`` types (never a bool), as written."""

    def check(v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, allowed):
            raise _rule(f"must be {what}, got {type(v).__name__} {v!r}"[:300])
        return v

    return PlainValidator(check)


def _decimal(v: str, what: str) -> float:
    """A sampling parameter written as decimal text (the digest keeps the text as written)."""
    x = float(v) if _DECIMAL_TEXT.match(v) else math.nan
    if not math.isfinite(x):
        raise _rule(f"{what} must be a decimal number such as \"0.7\", got {v!r}")
    return x


TaskKind = Annotated[Kind, BeforeValidator(_known_kind)]
TaskName = Annotated[str, StringConstraints(pattern=NAME_RE.pattern)]
TextSpec = Annotated[str | int, _prompt_field((str, int), "a field name, a template or a choice index")]
ChoiceSpec = Annotated[
    str | list[Any] | dict[str, Any], _prompt_field((str, list, dict), "a field name, a template, a list or a mapping")
]
TargetSpec = Annotated[str | int | list[Any], _prompt_field((str, int, list), "a field name, a template, an index or a list")]
Sampler = Literal["default", "first_n"]
Hex64 = Annotated[str, StringConstraints(pattern=HEX64.pattern)]
_STRICT = ConfigDict(frozen=True, extra="forbid", strict=True)


class Generation(BaseModel):
    """How a ``generate_until`` task decodes (the ``generation:`` mapping)."""

    model_config = _STRICT

    until: tuple[Annotated[str, StringConstraints(min_length=1)], ...] = ()
    """Stop sequences; the continuation is cut at the first one."""
    max_gen_toks: int = Field(32, ge=1)
    """Most new tokens per continuation."""
    do_sample: bool = False
    """Sample (with ``temperature``, ``top_p`` and ``seed``) instead of greedy decoding."""
    temperature: str = "1.0"
    """Sampling temperature as decimal text (kept as written: it is part of the digest)."""
    top_p: str = "1.0"
    """Nucleus-sampling mass as decimal text, in (0, 1]."""
    samples: int = Field(1, ge=1)
    """Continuations per item; more than one needs ``do_sample``."""
    k: tuple[Annotated[int, Field(ge=1)], ...] = Field((1,), min_length=1)
    """The ``k`` of each ``pass_at_k`` reported."""
    seed: int = Field(1234, ge=0)
    """Sampling seed."""

    @field_validator("temperature")
    @classmethod
    def _temperature(cls, v: str, info: ValidationInfo) -> str:
        t = _decimal(v, "temperature")
        if t < 0 or (t == 0 and info.data.get("do_sample")):
            raise _rule(f"temperature must be > 0 (>= 0 without do_sample), got {v!r}")
        return v

    @field_validator("top_p")
    @classmethod
    def _top_p(cls, v: str) -> str:
        if not 0 < _decimal(v, "top_p") <= 1:
            raise _rule(f"top_p must lie in (0, 1], got {v!r}")
        return v

    @field_validator("samples")
    @classmethod
    def _samples_need_sampling(cls, v: int, info: ValidationInfo) -> int:
        if v > 1 and info.data.get("do_sample") is False:
            raise _rule("samples > 1 needs do_sample: true (greedy samples are identical)")
        return v


class ProbeSpec(BaseModel):
    """The linear probe of an ``activation_probe`` task, its weights checked against their pin."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, arbitrary_types_allowed=True)

    path: Path
    """The probe weights file (safetensors), resolved."""
    sha256: Hex64
    """SHA-256 of the weights file as read (part of the task digest)."""
    layer: int = Field(ge=0)
    """Hidden-state layer the probe reads."""
    pool: Literal["last", "mean"] = "last"
    """How token activations become one vector: the last token's, or the mean."""


class TaskSpec(BaseModel):
    """A validated task, its data already loaded and checked against its pins."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, arbitrary_types_allowed=True)

    name: TaskName
    """Task name (``task:``), unique within a suite; it names the task in results."""
    kind: TaskKind
    """What the task scores: choices, a continuation's likelihood, generations or a probe."""
    source: Path
    """The task file it was loaded from."""
    docs: list[dict[str, Any]]
    """The evaluated items, in order."""
    fewshot_docs: list[dict[str, Any]] | None
    """The few-shot pool (None: the evaluated items themselves)."""
    fewshot_is_eval_split: bool
    """Whether the evaluated item is left out of its own few-shot examples."""
    doc_to_text: TextSpec
    """The prompt of an item: a field name or a Jinja template."""
    doc_to_choice: ChoiceSpec | None
    """The choices of a ``multiple_choice`` item: a field, a template, a list or a mapping."""
    doc_to_target: TargetSpec
    """The answer: a field, a template, a choice index or a list."""
    description: str = ""
    """Text before the examples (Tripwire's ``prompt_prefix``; a template in lm-eval)."""
    target_delimiter: str = " "
    """Between a question and its answer."""
    fewshot_delimiter: str = "\n\n"
    """After each few-shot example."""
    num_fewshot: int = Field(0, ge=0)
    """Few-shot examples before each item."""
    fewshot_seed: int = Field(1234, ge=0)
    """Seed of the few-shot sampler."""
    fewshot_sampler: Sampler = "default"
    """``default`` samples at random (seeded); ``first_n`` takes the pool's first examples."""
    metrics: tuple[str, ...] = ()
    """Metrics to report, each one the kind computes (duplicates dropped, order kept)."""
    generation: Generation = Field(default_factory=Generation)
    """Decoding settings (``generate_until`` only)."""
    probe: ProbeSpec | None = Field(None, validate_default=True)
    """The probe of an ``activation_probe`` task (required there)."""
    bootstrap: int = Field(1000, ge=10)
    """Bootstrap resamples for AUROC standard errors."""
    data_ref: dict[str, Any] = Field(default_factory=dict)
    """What the digest names as the data: generator and parameters, or files and SHA-256s."""
    format: Literal["tripwire", "lm-eval"] = "tripwire"
    """Which task-file format's semantics the prompts follow."""
    features: frozenset[str] = frozenset()
    """Column names of the evaluated items (lm-eval: a bare string naming one is a field)."""
    fewshot_doc_to_text: TextSpec | None = None
    """lm-eval's ``fewshot_config`` override for the few-shot prompts (None: the task's own)."""
    fewshot_doc_to_choice: ChoiceSpec | None = None
    """``fewshot_config`` override for the few-shot choices."""
    fewshot_doc_to_target: TargetSpec | None = None
    """``fewshot_config`` override for the few-shot answers."""
    fewshot_target_delimiter: str | None = None
    """``fewshot_config`` override for ``target_delimiter`` in examples."""
    fewshot_example_delimiter: str | None = None
    """``fewshot_config`` override for ``fewshot_delimiter`` in examples."""
    fewshot_ref: dict[str, Any] | None = None
    """Where few-shot examples come from, as the digest names it (lm-eval format)."""
    num_fewshot_configured: int | None = Field(None, ge=0)
    """The task file's own ``num_fewshot`` as written (lm-eval format; None when unset):
    lm-eval never overrides an explicit 0 with ``--num_fewshot``."""

    @field_validator("metrics")
    @classmethod
    def _metrics_of_the_kind(cls, v: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        kind = info.data.get("kind")
        if kind is None:  # the kind was refused already
            return v
        for m in v:
            if m not in METRICS[kind]:
                raise _rule(f"unknown metric {m!r} for a {kind} task; known: {', '.join(METRICS[kind])}",
                            _UNKNOWN_METRIC)
        if not v:
            raise _rule("a task needs at least one metric")
        return tuple(dict.fromkeys(v))

    @field_validator("generation")
    @classmethod
    def _enough_samples(cls, v: Generation, info: ValidationInfo) -> Generation:
        if "pass_at_k" in info.data.get("metrics", ()) and max(v.k) > v.samples:
            raise _rule(f"pass_at_k with k={max(v.k)} needs generation.samples >= {max(v.k)}")
        return v

    @field_validator("probe")
    @classmethod
    def _probe_for_probe_tasks(cls, v: ProbeSpec | None, info: ValidationInfo) -> ProbeSpec | None:
        if info.data.get("kind") == "activation_probe" and v is None:
            raise _rule("an activation_probe task needs `probe: {path, sha256, layer}`")
        return v

    @property
    def definition(self) -> dict[str, Any]:
        """The normalised definition whose canonical digest is the task digest."""
        d: dict[str, Any] = {
            "format": "tripwire-task/1",
            "name": self.name,
            "kind": self.kind,
            "data": self.data_ref,
            "prompt": {
                "description": self.description,
                "doc_to_text": self.doc_to_text,
                "doc_to_choice": self.doc_to_choice,
                "doc_to_target": self.doc_to_target,
                "target_delimiter": self.target_delimiter,
                "fewshot_delimiter": self.fewshot_delimiter,
                "num_fewshot": self.num_fewshot,
                "fewshot_seed": self.fewshot_seed,
                "fewshot_sampler": self.fewshot_sampler,
            },
            "metrics": list(self.metrics),
        }
        if self.format == "lm-eval":
            # lm-eval semantics the prompt depends on: the description is a template, a
            # loglikelihood continuation is the target exactly, few-shot overrides and pool.
            d["prompt"]["semantics"] = "lm-eval-0.4"
            fs = {
                "doc_to_text": self.fewshot_doc_to_text, "doc_to_choice": self.fewshot_doc_to_choice,
                "doc_to_target": self.fewshot_doc_to_target, "target_delimiter": self.fewshot_target_delimiter,
                "fewshot_delimiter": self.fewshot_example_delimiter,
            }
            d["prompt"]["fewshot"] = {k: v for k, v in fs.items() if v is not None} | (self.fewshot_ref or {})
        if self.kind == "generate_until":
            g = self.generation
            d["generation"] = {
                "until": list(g.until), "max_gen_toks": g.max_gen_toks, "do_sample": g.do_sample,
                "temperature": g.temperature, "top_p": g.top_p, "samples": g.samples, "k": list(g.k), "seed": g.seed,
            }
        if self.probe is not None:
            d["probe"] = {"sha256": self.probe.sha256, "layer": self.probe.layer, "pool": self.probe.pool}
        if self.kind == "activation_probe" or "auroc" in self.metrics:
            d["bootstrap"] = self.bootstrap
        out = jsonable(d)
        assert isinstance(out, dict)  # jsonable maps a dict to a dict
        return out

    @property
    def digest(self) -> str:
        return digest_of(self.definition)


class SuiteSpec(BaseModel):
    """A validated suite: its tasks in order, each loaded with the suite's pins."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, arbitrary_types_allowed=True)

    id: TaskName
    """Suite id (``suite:``); with ``version`` and the task digests it makes the suite digest."""
    version: str = Field(min_length=1)
    """Suite version as written (``task`` for a one-task suite made from ``--task``)."""
    source: Path
    """The suite file (or the task file of a one-task suite)."""
    tasks: list[TaskSpec] = Field(min_length=1)
    """The tasks, in the order they run and are digested."""
    description: str = ""
    """What the suite is for (not part of the digest)."""

    @field_validator("tasks")
    @classmethod
    def _unique_names(cls, v: list[TaskSpec]) -> list[TaskSpec]:
        names = [t.name for t in v]
        if len(set(names)) != len(names):
            raise _rule(f"task names must be unique within a suite: {names}")
        return v

    @property
    def definition(self) -> dict[str, Any]:
        return {
            "format": "tripwire-suite/1",
            "id": self.id,
            "version": self.version,
            "tasks": [{"name": t.name, "digest": t.digest} for t in self.tasks],
        }

    @property
    def digest(self) -> str:
        return digest_of(self.definition)


def _spec_error(e: ValidationError, where: object, names: dict[str, str], prefix: str) -> EvalSpecError:
    """The first problem of a ValidationError, as "<file> field <key>: <msg>" (the key as the
    file spells it where the model's field name differs)."""
    first = e.errors()[0]
    loc = [str(x) for x in first["loc"]]
    if loc:
        loc[0] = names.get(loc[0], loc[0])
    msg = first["msg"]
    if first["type"] not in (_SPEC_RULE, _UNKNOWN_METRIC):
        got = first.get("input")
        if isinstance(got, str | int | float | None) and len(repr(got)) <= 80:
            msg += f" (got {got!r})"
    cls = UnknownMetricError if first["type"] == _UNKNOWN_METRIC else EvalSpecError
    return cls(f"{where} field {'.'.join([prefix, *loc] if prefix else loc) or 'value'}: {msg}")


@contextmanager
def fields_of(where: object, names: dict[str, str] | None = None, prefix: str = "") -> Iterator[None]:
    """Build a model from a file's values: its ValidationError becomes an EvalSpecError."""
    try:
        yield
    except ValidationError as e:
        raise _spec_error(e, where, names or {}, prefix) from e


def path_value(v: Any, what: str, where: Path) -> str:
    if not isinstance(v, str) or not v:
        raise EvalSpecError(f"{where}: {what} must be a file path, got {v!r}")
    return v


def revalidated(spec: TaskSpec, where: object, names: dict[str, str] | None = None, **changes: Any) -> TaskSpec:
    """A new task with ``changes``, checked by every rule a loaded task passes (``model_copy``
    would check nothing)."""
    fields = {k: getattr(spec, k) for k in TaskSpec.model_fields} | changes
    with fields_of(where, names if names is not None else TASK_KEYS[spec.format]):
        return TaskSpec.model_validate(fields)


TASK_KIND: TypeAdapter[Kind] = TypeAdapter(TaskKind)

#: The file's key for a TaskSpec field where the names differ, per format (for messages).
TASK_KEYS: dict[str, dict[str, str]] = {
    "tripwire": {"name": "task", "description": "prompt_prefix"},
    "lm-eval": {
        "name": "task", "kind": "output_type", "metrics": "metric_list", "fewshot_docs": "fewshot_config.samples",
        "fewshot_sampler": "fewshot_config.sampler", "fewshot_doc_to_text": "fewshot_config.doc_to_text",
        "fewshot_doc_to_choice": "fewshot_config.doc_to_choice", "fewshot_doc_to_target": "fewshot_config.doc_to_target",
        "fewshot_target_delimiter": "fewshot_config.target_delimiter",
        "fewshot_example_delimiter": "fewshot_config.fewshot_delimiter",
    },
}
