"""Task and suite definitions: loading, validation, data pinning and content addresses.

Two task formats load into one :class:`TaskSpec`:

- Tripwire's own (``kind:`` key), documented in docs/evals.md, with data from a shipped
  generator or a SHA-256-pinned JSONL file;
- lm-evaluation-harness task YAML (``output_type:`` key) for ``multiple_choice`` and
  ``loglikelihood`` tasks on local JSON data, interpreted as lm-eval 0.4 does.

A task's digest is the SHA-256 of the JCS bytes of its normalised definition, which
includes the SHA-256 of its data, so two labs holding the same digest ran the same items
with the same prompts and metrics. A suite's digest covers its id, version and the task
digests in order; that is the digest a roster pins.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import math
import random
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment
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

from node.evals.errors import (
    DatasetDigestError,
    EvalDataError,
    EvalSpecError,
    NativeUnsupportedError,
    UnknownMetricError,
)
from node.evals.generators import generate
from protocol.canonical import canonical_bytes, digest_of, sha256_hex

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
# Field names the shipped generators emit, used when a Tripwire task leaves them out.
DEFAULT_FIELDS: dict[str, dict[str, Any]] = {
    "multiple_choice": {"doc_to_text": "context", "doc_to_choice": "choices", "doc_to_target": "gold"},
    "loglikelihood": {"doc_to_text": "context", "doc_to_target": "target"},
    "generate_until": {"doc_to_text": "context", "doc_to_target": "target"},
    "activation_probe": {"doc_to_text": "text", "doc_to_target": "label"},
}
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

_TRIPWIRE_KEYS = {
    "task", "kind", "version", "description", "data", "doc_to_text", "doc_to_choice", "doc_to_target",
    "target_delimiter", "fewshot_delimiter", "num_fewshot", "fewshot_seed", "fewshot_sampler", "metrics",
    "generation", "probe", "bootstrap", "prompt_prefix",
}
# The lm-eval task keys the native loader reproduces; any other key (process_docs, filter_list,
# generation_kwargs, gen_prefix, use_prompt, ...) hands the task to lm-eval.
_LMEVAL_KEYS = {
    "task", "task_alias", "tag", "dataset_path", "dataset_kwargs", "training_split",
    "validation_split", "test_split", "fewshot_split", "doc_to_text", "doc_to_target", "doc_to_choice",
    "description", "target_delimiter", "fewshot_delimiter", "fewshot_config", "num_fewshot", "metric_list",
    "output_type", "metadata", "should_decontaminate", "doc_to_decontamination_query", "repeats",
}
_LMEVAL_FEWSHOT_KEYS = {
    "split", "sampler", "samples", "doc_to_text", "doc_to_choice", "doc_to_target", "fewshot_delimiter",
    "target_delimiter",
}
#: lm-eval metric names the native runner computes, per output type (lm-eval's own meaning).
_LMEVAL_METRICS = {"multiple_choice": ("acc", "acc_norm"), "loglikelihood": ("acc",)}
#: How deep ``include:`` chains may go before the loader refuses the file.
MAX_INCLUDE_DEPTH = 16
_GEN_KEYS = {"until", "max_gen_toks", "do_sample", "temperature", "top_p", "samples", "k", "seed"}

_jinja = SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True)
_jinja.filters["regex_replace"] = lambda s, pattern, repl, count=0: re.sub(pattern, repl, s, count=count)


def _jsonable(v: Any) -> Any:
    """Spec values as canonical-JSON-safe data (floats become decimal strings)."""
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    return v


def read_yaml(path: Path) -> dict[str, Any]:
    """One YAML mapping from a file (no ``include:`` resolution; see :func:`read_task_yaml`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise EvalSpecError(f"{path}: no such file") from e
    except (OSError, UnicodeDecodeError) as e:
        raise EvalSpecError(f"{path}: cannot read: {e}") from e
    try:
        doc = yaml.safe_load(text)
    except yaml.constructor.ConstructorError as e:
        if "!function" in text:
            raise NativeUnsupportedError(
                f"{path}: lm-eval `!function` hooks run the task's own Python: the native runner does not "
                "reproduce them (use --engine lm-eval or auto)"
            ) from e
        raise EvalSpecError(f"{path}: malformed YAML: {e}") from e
    except yaml.YAMLError as e:
        raise EvalSpecError(f"{path}: malformed YAML: {e}") from e
    if not isinstance(doc, dict):
        raise EvalSpecError(f"{path}: expected a YAML mapping at the top level, got {type(doc).__name__}")
    return doc


def read_task_yaml(path: Path) -> dict[str, Any]:
    """A task file with its ``include:`` chain merged as lm-eval 0.4 merges it.

    Includes resolve relative to the including file; each included file's keys are the
    base, later includes override earlier ones and the including file's own keys win (a
    shallow merge, as lm-eval does). A file met twice is an include cycle.
    """
    return _read_with_includes(Path(path), set(), 0)


def _read_with_includes(path: Path, seen: set[Path], depth: int) -> dict[str, Any]:
    key = path.expanduser().resolve()
    if key in seen:
        raise EvalSpecError(f"{path}: include cycle: the file is met again in its own include chain")
    if depth > MAX_INCLUDE_DEPTH:
        raise EvalSpecError(f"{path}: includes nest deeper than {MAX_INCLUDE_DEPTH} files")
    seen.add(key)
    raw = read_yaml(path)
    if "include" not in raw or "kind" in raw:
        return raw
    includes = raw.pop("include")
    merged: dict[str, Any] = {}
    for inc in includes if isinstance(includes, list) else [includes]:
        if not isinstance(inc, str) or not inc:
            raise EvalSpecError(f"{path}: `include:` must name a YAML file (or a list of them), got {inc!r}")
        inc_path = Path(inc) if Path(inc).is_absolute() else key.parent / inc
        if not inc_path.is_file():
            raise EvalSpecError(f"{path}: included file {inc} does not exist (looked for {inc_path})")
        sub = _read_with_includes(inc_path, seen, depth + 1)
        sub.pop("task_list", None)
        merged.update(sub)
    merged.update(raw)
    return merged


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_rows(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise EvalDataError(f"data file {path}: cannot read: {e}") from e
    except UnicodeDecodeError as e:
        raise EvalDataError(f"data file {path}: not UTF-8") from e
    stripped = text.lstrip()
    rows: list[Any]
    try:
        if stripped.startswith("["):
            rows = json.loads(text)
        else:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise EvalDataError(f"data file {path}: invalid JSON: {e}") from e
    for n, r in enumerate(rows):
        if not isinstance(r, dict):
            raise EvalDataError(f"data file {path}: row {n + 1} is not a JSON object")
    return rows


# --- the models -----------------------------------------------------------------------------
#
# Frozen pydantic models, as protocol/entries.py's statements: what a loader builds cannot be
# changed afterwards (a change is a new, re-validated spec, see override_num_fewshot), unknown
# fields are refused, and the per-field rules live on the fields. Loaders read files, data and
# pins and build these; a ValidationError becomes an EvalSpecError naming file and field.

#: pydantic error types raised by this module's validators, reported with their own message.
_UNKNOWN_METRIC = "unknown_metric"
_SPEC_RULE = "task_spec_rule"
_DECIMAL_TEXT = re.compile(r"^-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?$")


class _RowError(EvalDataError):
    """A row a prompt cannot be built from: a field the task file names is missing, a template
    fails, a target or choice index does not fit. ``detail`` says what, starting with a verb,
    so the caller that knows which row it is (an item, a few-shot example) can name it."""

    def __init__(self, task: str, detail: str) -> None:
        super().__init__(f"task {task}: a row {detail}")
        self.detail = detail


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
        out = _jsonable(d)
        assert isinstance(out, dict)  # _jsonable maps a dict to a dict
        return out

    @property
    def digest(self) -> str:
        return digest_of(self.definition)

    # --- prompts (lm-evaluation-harness 0.4 semantics) ---------------------------------

    def _render(self, template: str, doc: dict[str, Any], what: str) -> str:
        try:
            return _jinja.from_string(template).render(**doc)
        except (TemplateError, TypeError, ValueError, ArithmeticError, LookupError, re.error) as e:
            # Jinja's own errors, and what a template's Python-level expression raises on a row's
            # values (`{{ a + b }}` on a string and a number, a bad regex_replace pattern).
            raise _RowError(self.name, f"fails the {what} template: {type(e).__name__}: {e}") from e

    def _field(self, doc: dict[str, Any], key: Any, what: str) -> Any:
        """``doc[key]`` for a field the task file names in ``what``."""
        try:
            return doc[key]
        except KeyError:
            raise _RowError(
                self.name, f"has no field {key!r}, which {what} names (the row's fields: {sorted(map(str, doc))[:20]})"
            ) from None

    def _fewshot(self, what: str) -> str:
        """The key that gives a few-shot example's ``what``: the fewshot_config override, or the
        task's own when the override is unset (as lm-eval falls back)."""
        if getattr(self, f"fewshot_{what}") is not None:
            return f"fewshot_config.{what}"
        return f"{what} (fewshot_config.{what} is unset)" if self.format == "lm-eval" else what

    @contextmanager
    def _row(self, label: str | Callable[[], str]) -> Iterator[None]:
        """Name the row (``item 3``, ``few-shot example 2 of split 'train'``) in what a prompt
        lookup inside refuses; a callable label is computed only then (finding a few-shot
        example's position in its pool is a scan, not for every prompt)."""
        try:
            yield
        except _RowError as e:
            name = label() if callable(label) else label
            raise EvalDataError(f"task {self.name} ({self.source}): {name} {e.detail}") from e

    def _pool_label(self, pool: list[dict[str, Any]], fs: dict[str, Any]) -> str:
        k = next((i for i, x in enumerate(pool) if x is fs), "?")
        ref = self.fewshot_ref or {}
        if ref.get("pool") == "samples":
            return f"few-shot example fewshot_config.samples[{k}]"
        if ref.get("pool") == "split":
            return f"few-shot example {k} of split {ref.get('split')!r}"
        return f"few-shot example (item {k})"

    def _is_field(self, spec: Any) -> bool:
        # lm-eval treats a string that is no column name as a (constant) template; in
        # Tripwire's own format a bare identifier always means a field, so a typo or a
        # row without it is an error instead of a constant prompt.
        if spec in self.features:
            return True
        return self.format == "tripwire" and isinstance(spec, str) and _IDENT.match(spec) is not None

    def text(self, doc: dict[str, Any], spec: Any = None, what: str = "doc_to_text") -> Any:
        spec = self.doc_to_text if spec is None else spec
        if isinstance(spec, int):
            return spec
        if self._is_field(spec):
            return self._field(doc, spec, what)
        s = self._render(spec, doc, what)
        if s.isdigit() and self.doc_to_choice is not None:
            return ast.literal_eval(s)
        return s

    def target(self, doc: dict[str, Any], spec: Any = None, what: str = "doc_to_target") -> Any:
        spec = self.doc_to_target if spec is None else spec
        if isinstance(spec, int | list):
            return spec
        if self._is_field(spec):
            return self._field(doc, spec, what)
        s = self._render(spec, doc, what)
        if s.isdigit() and self.doc_to_choice is not None:
            return ast.literal_eval(s)
        if len(s) >= 2 and s[0] == "[" and s[-1] == "]":
            try:
                return ast.literal_eval(s)
            except (SyntaxError, ValueError):
                return s
        return s

    def choices(self, doc: dict[str, Any], spec: Any = None, what: str = "doc_to_choice") -> list[str]:
        spec = self.doc_to_choice if spec is None else spec
        if isinstance(spec, list):
            out = spec
        elif isinstance(spec, dict):
            out = list(spec.values())
        elif self._is_field(spec):
            out = self._field(doc, spec, what)
        else:
            rendered = self._render(spec, doc, what)
            try:
                out = ast.literal_eval(rendered)
            except (SyntaxError, ValueError) as e:
                raise _RowError(self.name, f"renders {what} {spec!r} to {rendered!r}, not a list literal"[:400]) from e
        if not isinstance(out, list) or not out or not all(isinstance(c, str) for c in out):
            raise _RowError(self.name, f"gives {what} {out!r}: choices must be a non-empty list of strings")
        return out

    def gold_index(self, doc: dict[str, Any], choices: list[str], n: int) -> int:
        gold = self.target(doc)
        if isinstance(gold, str):
            if gold not in choices:
                raise EvalDataError(f"task {self.name}: item {n}: target {gold!r} is not among the choices {choices}")
            return choices.index(gold)
        if isinstance(gold, bool) or not isinstance(gold, int) or not 0 <= gold < len(choices):
            raise EvalDataError(f"task {self.name}: item {n}: target {gold!r} is not a valid choice index")
        return gold

    def _answer_text(self, doc: dict[str, Any]) -> str | None:
        """A few-shot example's answer, or None when it has none (lm-eval's build_qa_turn).

        An index answer picks a choice as Python indexing does (lm-eval's ``c[a]``), a list
        answer its first entry; one out of range, or an empty list, is refused (lm-eval fails
        there with a bare IndexError)."""
        what = self._fewshot("doc_to_target")
        a = self.target(doc, self.fewshot_doc_to_target, what)
        if a is None or a == "":
            return None
        if self.format == "lm-eval":
            c_spec = self.fewshot_doc_to_choice if self.fewshot_doc_to_choice is not None else self.doc_to_choice
            c = self.choices(doc, c_spec, self._fewshot("doc_to_choice")) if c_spec else None
            if c and isinstance(a, int):
                a = self._pick(c, a, what)
            elif isinstance(a, list):
                a = self._first(a, what)
            if not isinstance(a, str):
                raise _RowError(self.name, f"gives {what} {a!r}: a few-shot answer must be text, "
                                           f"not {type(a).__name__}")
            return a
        if self.doc_to_choice is not None and isinstance(a, int) and not isinstance(a, bool):
            return self._pick(self.choices(doc), a, what)
        if isinstance(a, list):
            a = self._first(a, what)
        return str(a)

    def _pick(self, choices: list[str], a: int, what: str) -> str:
        if not -len(choices) <= a < len(choices):
            raise _RowError(self.name, f"gives {what} index {a!r}, outside its {len(choices)} choices {choices}"[:400])
        return choices[a]

    def _first(self, a: list[Any], what: str) -> Any:
        if not a:
            raise _RowError(self.name, f"gives {what} [], an empty answer list (a list answer's first entry is used)")
        return a[0]

    def continuation(self, doc: dict[str, Any]) -> str:
        """What a loglikelihood item scores after its context.

        lm-eval scores ``doc_to_target`` exactly (a task that wants a leading space puts it
        in the target); Tripwire's own format puts ``target_delimiter`` before the target.
        """
        t = self.target(doc)
        if self.format == "lm-eval":
            if not isinstance(t, str):
                raise EvalDataError(f"task {self.name}: doc_to_target gave {type(t).__name__}, not text")
            return t
        return self.target_delimiter + str(t)

    def prefix(self, doc: dict[str, Any]) -> str:
        """The description before the examples: lm-eval renders it per item (a field name or
        a Jinja template); Tripwire's ``prompt_prefix`` is literal."""
        if self.format != "lm-eval" or not self.description:
            return self.description
        if self.description in self.features:
            out = self._field(doc, self.description, "description")
        else:
            out = self._render(self.description, doc, "description")
        if out is None or out == "":
            return ""
        if not isinstance(out, str):
            raise EvalDataError(f"task {self.name}: description gave {type(out).__name__}, not text")
        return out

    def contexts(self, limit: int | None = None) -> list[str]:
        """The prompt of every evaluated item, few-shot examples included (seeded, in item order)."""
        docs = self.docs[:limit] if limit else self.docs
        rnd = random.Random(self.fewshot_seed)
        pool = self.fewshot_docs if self.fewshot_docs is not None else self.docs
        tdelim = self.target_delimiter if self.fewshot_target_delimiter is None else self.fewshot_target_delimiter
        fdelim = self.fewshot_delimiter if self.fewshot_example_delimiter is None else self.fewshot_example_delimiter
        out = []
        for i, doc in enumerate(docs):
            with self._row(f"item {i}"):
                prefix = self.prefix(doc)
            parts = [prefix] if prefix else []
            if self.num_fewshot > 0:
                for fs in self._sample(rnd, pool, doc):
                    with self._row(functools.partial(self._pool_label, pool, fs)):
                        q = self.text(fs, self.fewshot_doc_to_text, self._fewshot("doc_to_text"))
                        a = self._answer_text(fs)
                    if not isinstance(q, str):
                        raise EvalDataError(f"task {self.name}: doc_to_text must give text for few-shot examples")
                    parts.append(q + (tdelim if a is not None else ""))
                    if a is not None:
                        parts.append(a + fdelim)
            with self._row(f"item {i}"):
                q = self.text(doc)
            if not isinstance(q, str):
                raise EvalDataError(f"task {self.name}: doc_to_text gave {type(q).__name__}, not text")
            parts.append(q)
            out.append("".join(parts))
        return out

    def _sample(self, rnd: random.Random, pool: list[dict[str, Any]], doc: dict[str, Any]) -> list[dict[str, Any]]:
        n = self.num_fewshot
        # lm-eval removes the evaluated doc only when its few-shot split equals test_split.
        eval_doc = doc if self.fewshot_is_eval_split else None
        if self.fewshot_sampler == "first_n":
            cands = [x for x in pool if x != eval_doc] if eval_doc is not None else pool
            if len(cands) < n:
                raise EvalDataError(f"task {self.name}: {n} few-shot examples requested, {len(cands)} available")
            return cands[:n]
        if len(pool) < n + (1 if eval_doc is not None else 0):
            raise EvalDataError(f"task {self.name}: {n} few-shot examples requested, {len(pool)} available")
        if eval_doc is None:
            return rnd.sample(pool, n)
        res = [x for x in rnd.sample(pool, n + 1) if x != eval_doc][:n]
        if len(res) < n:
            res = rnd.sample([x for x in pool if x != eval_doc], n)
        return res


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


# --- loading ------------------------------------------------------------------------------


def _resolve(base: Path, p: str) -> Path:
    path = Path(p)
    if path.is_absolute():
        return path
    local = base / path
    return local if local.exists() or not path.exists() else path


def _check_pin(path: Path, actual: str, expected: str | None, where: str) -> None:
    if expected is None:
        return
    if not isinstance(expected, str) or not HEX64.match(expected):
        raise EvalSpecError(
            f"{where}: sha256 pin for {path.name} must be 64 lowercase hex digits (quote it in YAML), got {expected!r}"
        )
    if expected != actual:
        raise DatasetDigestError(
            f"data file {path} has SHA-256 {actual}, but {where} pins {expected}; refusing to evaluate on "
            "data other than what the suite names"
        )


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
def _fields_of(where: object, names: dict[str, str] | None = None, prefix: str = "") -> Iterator[None]:
    """Build a model from a file's values: its ValidationError becomes an EvalSpecError."""
    try:
        yield
    except ValidationError as e:
        raise _spec_error(e, where, names or {}, prefix) from e


def _path_value(v: Any, what: str, where: Path) -> str:
    if not isinstance(v, str) or not v:
        raise EvalSpecError(f"{where}: {what} must be a file path, got {v!r}")
    return v


def _revalidated(spec: TaskSpec, where: object, names: dict[str, str] | None = None, **changes: Any) -> TaskSpec:
    """A new task with ``changes``, checked by every rule a loaded task passes (``model_copy``
    would check nothing)."""
    fields = {k: getattr(spec, k) for k in TaskSpec.model_fields} | changes
    with _fields_of(where, names if names is not None else _TASK_KEYS[spec.format]):
        return TaskSpec.model_validate(fields)


_TASK_KIND: TypeAdapter[Kind] = TypeAdapter(TaskKind)

#: The file's key for a TaskSpec field where the names differ, per format (for messages).
_TASK_KEYS: dict[str, dict[str, str]] = {
    "tripwire": {"name": "task", "description": "prompt_prefix"},
    "lm-eval": {
        "name": "task", "kind": "output_type", "metrics": "metric_list", "fewshot_docs": "fewshot_config.samples",
        "fewshot_sampler": "fewshot_config.sampler", "fewshot_doc_to_text": "fewshot_config.doc_to_text",
        "fewshot_doc_to_choice": "fewshot_config.doc_to_choice", "fewshot_doc_to_target": "fewshot_config.doc_to_target",
        "fewshot_target_delimiter": "fewshot_config.target_delimiter",
        "fewshot_example_delimiter": "fewshot_config.fewshot_delimiter",
    },
}


def load_task(path: str | Path, *, pins: dict[str, str] | None = None, name: str | None = None) -> TaskSpec:
    """Load and validate a task file (Tripwire or lm-evaluation-harness format).

    ``pins`` maps data file names (as written, or their base names) to SHA-256 digests
    the caller (a suite) requires; a mismatch raises :class:`DatasetDigestError`.
    ``name`` (a suite's ``name:``) renames the task.
    """
    p = Path(path)
    raw = read_task_yaml(p)
    if "kind" in raw:
        spec = _load_tripwire(p, raw, pins or {})
    elif "group" in raw and "output_type" not in raw:
        # An lm-eval group file (mmlu_stem: `group:`, a `task:` list, aggregate_metric_list).
        raise _unsupported(p, f"lm-eval group {raw['group']!r} (native runs single tasks)")
    elif "output_type" in raw or "dataset_path" in raw:
        spec = _load_lmeval(p, raw, pins or {})
    else:
        raise EvalSpecError(f"{p}: not a task file (needs `kind:` or lm-eval's `output_type:`)")
    if name:
        spec = _revalidated(spec, f"{p} (as the suite names it)", {}, name=name)
    return spec


def _features(docs: list[dict[str, Any]]) -> frozenset[str]:
    keys: set[str] = set()
    for d in docs:
        keys.update(d)
    return frozenset(keys)


def _load_tripwire(p: Path, raw: dict[str, Any], pins: dict[str, str]) -> TaskSpec:
    unknown = set(raw) - _TRIPWIRE_KEYS
    if unknown:
        raise EvalSpecError(f"{p}: unknown keys {sorted(unknown, key=str)} (known: {sorted(_TRIPWIRE_KEYS)})")
    # The kind picks the defaults, so TaskSpec's rule for it applies before anything is read.
    with _fields_of(p, prefix="kind"):
        kind = _TASK_KIND.validate_python(raw["kind"])
    data = raw.get("data")
    if not isinstance(data, dict):
        raise EvalSpecError(f"{p}: `data:` must name a generator or a JSONL path with its sha256")
    if "generator" in data:
        params = data.get("params") or {}
        if not isinstance(params, dict):
            raise EvalSpecError(f"{p}: data.params must be a mapping")
        if not isinstance(data["generator"], str):
            raise EvalSpecError(f"{p}: data.generator must be a generator name, got {data['generator']!r}")
        docs = generate(data["generator"], params)
        rows_digest = sha256_hex(b"".join(canonical_bytes(d) + b"\n" for d in docs))
        data_ref = {"generator": data["generator"], "params": _jsonable(params), "sha256": rows_digest}
    elif "path" in data:
        fpath = _resolve(p.parent, _path_value(data["path"], "data.path", p))
        if not fpath.is_file():
            raise EvalDataError(f"{p}: data file {fpath} does not exist")
        actual = file_sha256(fpath)
        expected = pins.get(str(data["path"]), pins.get(fpath.name, data.get("sha256")))
        if expected is None:
            raise EvalSpecError(
                f"{p}: data.sha256 is required for a local data file (this file's SHA-256 is {actual})"
            )
        if data.get("sha256") is not None:
            _check_pin(fpath, actual, data["sha256"], str(p))
        _check_pin(fpath, actual, expected, "the suite" if expected != data.get("sha256") else str(p))
        docs = _read_rows(fpath)
        data_ref = {"file": fpath.name, "sha256": actual}
    else:
        raise EvalSpecError(f"{p}: `data:` needs `generator:` or `path:`")
    if not docs:
        raise EvalDataError(f"{p}: the dataset is empty; nothing to evaluate")
    fields: dict[str, Any] = {**DEFAULT_FIELDS[kind], **{k: raw[k] for k in ("doc_to_text", "doc_to_choice", "doc_to_target") if k in raw}}
    gen = _generation(raw.get("generation") or {}, p) if kind == "generate_until" else Generation()
    metrics = raw.get("metrics") or DEFAULT_METRICS[kind]
    probe = _probe(raw.get("probe"), p, pins) if kind == "activation_probe" else None
    with _fields_of(p, _TASK_KEYS["tripwire"]):
        spec = TaskSpec.model_validate(dict(
            name=raw.get("task"),
            kind=kind,
            source=p,
            docs=docs,
            fewshot_docs=None,
            fewshot_is_eval_split=True,
            doc_to_text=fields.get("doc_to_text"),
            doc_to_choice=fields.get("doc_to_choice"),
            doc_to_target=fields.get("doc_to_target"),
            # `description` documents the task; only `prompt_prefix` goes into the prompt.
            description=str(raw.get("prompt_prefix", "")),
            target_delimiter=str(raw.get("target_delimiter", "")),
            fewshot_delimiter=str(raw.get("fewshot_delimiter", "\n\n")),
            num_fewshot=raw.get("num_fewshot", 0),
            fewshot_seed=raw.get("fewshot_seed", 1234),
            fewshot_sampler=raw.get("fewshot_sampler", "default"),
            metrics=tuple(metrics) if isinstance(metrics, list) else metrics,
            generation=gen,
            probe=probe,
            bootstrap=raw.get("bootstrap", 1000),
            data_ref=data_ref,
            format="tripwire",
            features=_features(docs),
        ))
    _check_rows(spec)
    return spec


def _number_text(v: Any) -> Any:
    """A YAML number as the decimal text the digest keeps (``0.7`` -> ``"0.7"``)."""
    return str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v


def _generation(g: Any, p: Path) -> Generation:
    if not isinstance(g, dict):
        raise EvalSpecError(f"{p}: generation must be a mapping")
    unknown = set(g) - _GEN_KEYS
    if unknown:
        raise EvalSpecError(f"{p}: unknown generation keys {sorted(unknown, key=str)}")
    until = g.get("until", [])
    k = g.get("k", [1])
    samples = g.get("samples", 1)
    with _fields_of(p, prefix="generation"):
        return Generation(
            until=(until,) if isinstance(until, str) else tuple(until) if isinstance(until, list) else until,
            max_gen_toks=g.get("max_gen_toks", 32),
            # Sampling is the default when several samples are asked for.
            do_sample=g.get("do_sample", isinstance(samples, int) and samples > 1),
            temperature=_number_text(g.get("temperature", "1.0")),
            top_p=_number_text(g.get("top_p", "1.0")),
            samples=samples,
            k=(k,) if isinstance(k, int) else tuple(k) if isinstance(k, list) else k,
            seed=g.get("seed", 1234),
        )


def _probe(raw: Any, p: Path, pins: dict[str, str]) -> ProbeSpec | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or "path" not in raw or "layer" not in raw:
        raise EvalSpecError(f"{p}: probe needs path, sha256 and layer")
    fpath = _resolve(p.parent, _path_value(raw["path"], "probe.path", p))
    if not fpath.is_file():
        raise EvalSpecError(f"{p}: probe weights {fpath} do not exist")
    actual = file_sha256(fpath)
    expected = pins.get(str(raw["path"]), pins.get(fpath.name, raw.get("sha256")))
    if expected is None:
        raise EvalSpecError(f"{p}: probe.sha256 is required (this file's SHA-256 is {actual})")
    _check_pin(fpath, actual, expected, str(p))
    unknown = set(raw) - {"path", "sha256", "layer", "pool"}
    if unknown:
        raise EvalSpecError(f"{p}: unknown probe keys {sorted(unknown, key=str)}")
    with _fields_of(p, prefix="probe"):
        return ProbeSpec(path=fpath, sha256=actual, layer=raw["layer"], pool=raw.get("pool", "last"))


def _unsupported(p: Path, what: str) -> NativeUnsupportedError:
    return NativeUnsupportedError(
        f"{p}: {what}: the native runner does not reproduce it exactly (use --engine lm-eval or auto)"
    )


def _load_lmeval(p: Path, raw: dict[str, Any], pins: dict[str, str]) -> TaskSpec:
    # `dataset_name: null` (hellaswag, piqa) is lm-eval's default: load_dataset(name=None).
    unknown = {k for k in set(raw) - _LMEVAL_KEYS if not (k == "dataset_name" and raw[k] is None)}
    if unknown:
        raise _unsupported(p, f"lm-eval task keys {sorted(unknown, key=str)}")
    kind = raw.get("output_type", "generate_until")
    if kind not in ("multiple_choice", "loglikelihood"):
        raise _unsupported(p, f"lm-eval output_type {kind!r} (native: multiple_choice, loglikelihood)")
    if raw.get("dataset_path") != "json":
        raise _unsupported(p, f"dataset_path {raw.get('dataset_path')!r} (native reads local `json` data only)")
    if raw.get("repeats", 1) != 1:
        raise _unsupported(p, "repeats other than 1")
    kwargs = raw.get("dataset_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise EvalSpecError(f"{p}: dataset_kwargs must be a mapping")
    if set(kwargs) - {"data_files"}:
        raise _unsupported(p, f"dataset_kwargs {sorted(set(kwargs) - {'data_files'}, key=str)}")
    files = kwargs.get("data_files")
    if files is None:
        raise EvalSpecError(f"{p}: dataset_kwargs.data_files is required")
    if isinstance(files, str | list):
        files = {"train": files}
    if not isinstance(files, dict):
        raise EvalSpecError(f"{p}: dataset_kwargs.data_files must be a path, a list or a split mapping")
    meta = raw.get("metadata") or {}
    meta_pins = (meta.get("sha256") or {}) if isinstance(meta, dict) else {}
    if not isinstance(meta_pins, dict):
        raise EvalSpecError(f"{p}: metadata.sha256 must map data file names to digests")
    pins = {**meta_pins, **pins}
    splits: dict[str, list[dict[str, Any]]] = {}
    split_refs: dict[str, list[dict[str, str]]] = {}
    for split, names in files.items():
        names = [names] if isinstance(names, str) else names
        if not isinstance(split, str) or not isinstance(names, list):
            raise EvalSpecError(f"{p}: dataset_kwargs.data_files must map split names to paths, got {split!r}: {names!r}")
        rows: list[dict[str, Any]] = []
        refs = []
        for fname in names:
            fpath = _resolve(p.parent, _path_value(fname, f"data file of split {split}", p))
            here = Path(fname)
            if fpath != here and here.is_file() and not fpath.samefile(here):
                # lm-eval reads a relative data file from the working directory.
                raise EvalSpecError(
                    f"{p}: data file {fname} names two different files (next to the task and in the working "
                    "directory); give an absolute path"
                )
            if not fpath.is_file():
                raise EvalDataError(f"{p}: data file {fpath} (split {split}) does not exist")
            actual = file_sha256(fpath)
            _check_pin(fpath, actual, pins.get(str(fname), pins.get(fpath.name)), "the task's sha256 pins")
            rows.extend(_read_rows(fpath))
            refs.append({"file": fpath.name, "sha256": actual})
        splits[split] = rows
        split_refs[split] = refs

    def split_rows(split: Any, what: str) -> list[dict[str, Any]]:
        if not isinstance(split, str) or split not in splits:
            raise EvalSpecError(f"{p}: {what} {split!r} is not in data_files ({', '.join(map(str, splits))})")
        return splits[split]

    # lm-eval evaluates test_split, else validation_split.
    test_split = raw.get("test_split")
    eval_split = test_split if test_split is not None else raw.get("validation_split")
    if eval_split is None:
        raise EvalSpecError(f"{p}: test_split (or validation_split) is required")
    docs = split_rows(eval_split, "split")
    if not docs:
        raise EvalDataError(f"{p}: the {eval_split} split is empty; nothing to evaluate")

    fs_cfg = raw.get("fewshot_config") or {}
    if not isinstance(fs_cfg, dict):
        raise EvalSpecError(f"{p}: fewshot_config must be a mapping")
    if set(fs_cfg) - _LMEVAL_FEWSHOT_KEYS:
        raise _unsupported(p, f"fewshot_config keys {sorted(set(fs_cfg) - _LMEVAL_FEWSHOT_KEYS, key=str)}")
    # As lm-eval's FewshotConfig: fewshot_config.split overrides the task's fewshot_split; a
    # split wins over `samples`; with neither, training, else validation, else test docs.
    fewshot_split = fs_cfg.get("split", raw.get("fewshot_split"))
    samples = fs_cfg.get("samples")
    fewshot_ref: dict[str, Any]
    if fewshot_split is not None:
        pool = split_rows(fewshot_split, "few-shot split")
        fewshot_ref = {"pool": "split", "split": fewshot_split}
    elif samples is not None:
        if not isinstance(samples, list) or not all(isinstance(x, dict) for x in samples):
            raise EvalSpecError(f"{p}: fewshot_config.samples must be a list of mappings")
        pool = samples
        fewshot_ref = {"pool": "samples", "samples": _jsonable(samples)}
    else:
        for key in ("training_split", "validation_split", "test_split"):
            if raw.get(key) is not None:
                pool = split_rows(raw[key], key)
                fewshot_ref = {"pool": "split", "split": raw[key]}
                break
    # lm-eval leaves the evaluated item out of its own examples when the few-shot split equals
    # test_split, compared as configured: both unset counts as equal.
    exclude_item = fewshot_split == test_split
    fewshot_ref["exclude_item"] = exclude_item
    sampler = fs_cfg.get("sampler", "default")
    if sampler not in ("default", "first_n"):
        raise _unsupported(p, f"fewshot_config.sampler {sampler!r} (native: default, first_n)")

    metric_list = raw.get("metric_list")
    if metric_list is None:
        names = ["acc", "acc_norm"] if kind == "multiple_choice" else ["perplexity", "acc"]
    else:
        if not isinstance(metric_list, list):
            raise EvalSpecError(f"{p}: metric_list must be a list")
        names = []
        for m in metric_list:
            if not isinstance(m, dict) or "metric" not in m:
                raise EvalSpecError(f"{p}: each metric_list entry needs `metric:`")
            extra = set(m) - {"metric", "aggregation", "higher_is_better"}
            if extra:
                raise _unsupported(p, f"metric {m['metric']!r} options {sorted(extra, key=str)}")
            if m.get("aggregation", "mean") != "mean":
                raise _unsupported(p, f"metric {m['metric']!r} aggregation {m['aggregation']!r} (native: mean)")
            names.append(m["metric"])
    other = [n for n in names if n not in _LMEVAL_METRICS[kind]]
    if other:
        raise _unsupported(p, f"lm-eval metrics {other} for {kind} (native: {', '.join(_LMEVAL_METRICS[kind])})")
    if kind == "multiple_choice" and raw.get("doc_to_choice") is None:
        raise EvalSpecError(f"{p}: doc_to_choice is required for multiple_choice")
    description = raw.get("description")
    with _fields_of(p, _TASK_KEYS["lm-eval"]):
        spec = TaskSpec.model_validate(dict(
            name=raw.get("task"),
            kind=kind,
            source=p,
            docs=docs,
            fewshot_docs=pool,
            fewshot_is_eval_split=exclude_item,
            doc_to_text=raw.get("doc_to_text"),
            doc_to_choice=raw.get("doc_to_choice"),
            doc_to_target=raw.get("doc_to_target"),
            description="" if description is None else description,
            target_delimiter=raw.get("target_delimiter", " "),
            fewshot_delimiter=raw.get("fewshot_delimiter", "\n\n"),
            num_fewshot=raw.get("num_fewshot") or 0,
            fewshot_seed=1234,
            fewshot_sampler=sampler,
            metrics=tuple(names),
            data_ref={"splits": split_refs, "test_split": eval_split, "fewshot_split": fewshot_ref.get("split")},
            format="lm-eval",
            # lm-eval resolves a bare string as a field when the evaluated split has that column.
            features=_features(docs),
            fewshot_doc_to_text=fs_cfg.get("doc_to_text"),
            fewshot_doc_to_choice=fs_cfg.get("doc_to_choice"),
            fewshot_doc_to_target=fs_cfg.get("doc_to_target"),
            fewshot_target_delimiter=fs_cfg.get("target_delimiter"),
            fewshot_example_delimiter=fs_cfg.get("fewshot_delimiter"),
            fewshot_ref=fewshot_ref,
            num_fewshot_configured=raw.get("num_fewshot"),
        ))
    _check_lmeval_shape(spec, p)
    _check_rows(spec)
    return spec


def _check_lmeval_shape(spec: TaskSpec, p: Path) -> None:
    """lm-eval decides multiple-input and multiple-target tasks from the first item; the
    native runner reproduces neither."""
    doc = spec.docs[0]
    try:
        text, target = spec.text(doc), spec.target(doc)
    except _RowError:
        return  # _check_rows names the row and what it lacks
    if isinstance(text, int) and spec.doc_to_choice is not None:
        raise _unsupported(p, "a multiple-input task (doc_to_text gives a choice index)")
    if isinstance(target, list) and spec.kind == "multiple_choice":
        raise _unsupported(p, "a multiple-target task (doc_to_target gives a list)")


def _check_rows(spec: TaskSpec) -> None:
    """Fail before any model work if a row lacks what the prompts read."""
    for n, doc in enumerate(spec.docs):
        with spec._row(f"item {n}"):
            if spec.kind == "multiple_choice":
                spec.gold_index(doc, spec.choices(doc), n)
            elif spec.kind == "activation_probe":
                if spec.target(doc) not in (0, 1):
                    raise EvalDataError(f"task {spec.name}: item {n}: label must be 0 or 1")
            elif spec.kind == "loglikelihood":
                spec.continuation(doc)
            else:
                spec.target(doc)
            spec.text(doc)
            spec.prefix(doc)


def load_suite(path: str | Path) -> SuiteSpec:
    """Load a suite file; task paths resolve relative to it, pins override task pins."""
    p = Path(path)
    raw = read_yaml(p)
    unknown = set(raw) - {"suite", "version", "description", "tasks"}
    if unknown:
        raise EvalSpecError(f"{p}: unknown suite keys {sorted(unknown, key=str)}")
    entries = raw.get("tasks")
    if not isinstance(entries, list):
        raise EvalSpecError(f"{p}: `tasks:` must be a non-empty list")
    tasks = []
    for n, e in enumerate(entries):
        if isinstance(e, str):
            e = {"path": e}
        if not isinstance(e, dict) or "path" not in e:
            raise EvalSpecError(f"{p}: tasks[{n}] needs `path:`")
        extra = set(e) - {"path", "sha256", "name", "digest"}
        if extra:
            raise EvalSpecError(f"{p}: tasks[{n}] has unknown keys {sorted(extra, key=str)}")
        pins = e.get("sha256") or {}
        if not isinstance(pins, dict):
            raise EvalSpecError(f"{p}: tasks[{n}].sha256 must map data file names to digests")
        t = load_task(_resolve(p.parent, _path_value(e["path"], f"tasks[{n}].path", p)), pins=pins, name=e.get("name"))
        if e.get("digest") is not None and e["digest"] != t.digest:
            raise DatasetDigestError(
                f"{p}: task {t.name} has digest {t.digest}, but the suite pins {e['digest']} "
                "(its definition or data changed)"
            )
        tasks.append(t)
    version = raw.get("version")
    with _fields_of(p, {"id": "suite"}):
        return SuiteSpec.model_validate(dict(
            id=raw.get("suite"),
            # A bare YAML integer is a version as written (`version: 2`).
            version=str(version) if isinstance(version, int) and not isinstance(version, bool) else version,
            source=p,
            tasks=tasks,
            description=str(raw.get("description", "")),
        ))


def override_num_fewshot(spec: TaskSpec, n: int) -> TaskSpec:
    """``--num-fewshot N`` on an lm-eval task file, with lm-eval's rule (``simple_evaluate``'s
    ``num_fewshot``): a new task whose count is ``n``, unless the file sets ``num_fewshot: 0``,
    which lm-eval keeps (wmdp, truthfulqa): then ``spec`` itself. ``spec`` is never changed;
    ``n`` passes the checks a loaded ``num_fewshot`` does either way."""
    if spec.format != "lm-eval":
        raise EvalSpecError(
            f"{spec.source}: --num-fewshot overrides an lm-eval task's few-shot count; a Tripwire task file "
            "sets num_fewshot itself"
        )
    new = _revalidated(spec, f"{spec.source} (--num-fewshot)", num_fewshot=n)
    return spec if spec.num_fewshot_configured == 0 else new


def single_task_suite(task: TaskSpec) -> SuiteSpec:
    """A one-task suite for ``--task``: id is the task name, version ``task``."""
    return SuiteSpec(id=task.name, version="task", source=task.source, tasks=[task])
