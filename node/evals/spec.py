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
import hashlib
import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from node.evals.errors import (
    DatasetDigestError,
    EvalDataError,
    EvalSpecError,
    NativeUnsupportedError,
    UnknownMetricError,
)
from node.evals.generators import generate
from protocol.canonical import canonical_bytes, digest_of, sha256_hex
from protocol.errors import TripwireError

KINDS = ("multiple_choice", "loglikelihood", "generate_until", "activation_probe")

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


@dataclass(frozen=True)
class Generation:
    until: tuple[str, ...] = ()
    max_gen_toks: int = 32
    do_sample: bool = False
    temperature: str = "1.0"
    top_p: str = "1.0"
    samples: int = 1
    k: tuple[int, ...] = (1,)
    seed: int = 1234


@dataclass(frozen=True)
class ProbeSpec:
    path: Path
    sha256: str
    layer: int
    pool: str = "last"


@dataclass
class TaskSpec:
    """A validated task, its data already loaded and checked against its pins."""

    name: str
    kind: str
    source: Path
    docs: list[dict[str, Any]]
    fewshot_docs: list[dict[str, Any]] | None
    #: Whether the evaluated item is left out of its own few-shot examples.
    fewshot_is_eval_split: bool
    doc_to_text: Any
    doc_to_choice: Any
    doc_to_target: Any
    description: str = ""
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    num_fewshot: int = 0
    fewshot_seed: int = 1234
    fewshot_sampler: str = "default"
    metrics: tuple[str, ...] = ()
    generation: Generation = field(default_factory=Generation)
    probe: ProbeSpec | None = None
    bootstrap: int = 1000
    data_ref: dict[str, Any] = field(default_factory=dict)
    format: str = "tripwire"
    features: frozenset[str] = frozenset()
    #: lm-eval's ``fewshot_config`` overrides for the few-shot examples (None: the task's own).
    fewshot_doc_to_text: Any = None
    fewshot_doc_to_choice: Any = None
    fewshot_doc_to_target: Any = None
    fewshot_target_delimiter: str | None = None
    fewshot_example_delimiter: str | None = None
    #: Where few-shot examples come from, as the digest names it (lm-eval format).
    fewshot_ref: dict[str, Any] | None = None
    #: The task file's own ``num_fewshot`` as written (lm-eval format; None when unset):
    #: lm-eval never overrides an explicit 0 with ``--num_fewshot``.
    num_fewshot_configured: int | None = None

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
        except TemplateError as e:
            raise EvalDataError(f"task {self.name}: {what} template failed on a row: {e}") from e

    def _is_field(self, spec: Any) -> bool:
        # lm-eval treats a string that is no column name as a (constant) template; in
        # Tripwire's own format a bare identifier always means a field, so a typo or a
        # row without it is an error instead of a constant prompt.
        if spec in self.features:
            return True
        return self.format == "tripwire" and isinstance(spec, str) and _IDENT.match(spec) is not None

    def text(self, doc: dict[str, Any], spec: Any = None) -> Any:
        spec = self.doc_to_text if spec is None else spec
        if isinstance(spec, int):
            return spec
        if self._is_field(spec):
            return doc[spec]
        s = self._render(spec, doc, "doc_to_text")
        if s.isdigit() and self.doc_to_choice is not None:
            return ast.literal_eval(s)
        return s

    def target(self, doc: dict[str, Any], spec: Any = None) -> Any:
        spec = self.doc_to_target if spec is None else spec
        if isinstance(spec, int | list):
            return spec
        if self._is_field(spec):
            return doc[spec]
        s = self._render(spec, doc, "doc_to_target")
        if s.isdigit() and self.doc_to_choice is not None:
            return ast.literal_eval(s)
        if len(s) >= 2 and s[0] == "[" and s[-1] == "]":
            try:
                return ast.literal_eval(s)
            except (SyntaxError, ValueError):
                return s
        return s

    def choices(self, doc: dict[str, Any], spec: Any = None) -> list[str]:
        spec = self.doc_to_choice if spec is None else spec
        if isinstance(spec, list):
            out = spec
        elif isinstance(spec, dict):
            out = list(spec.values())
        elif self._is_field(spec):
            out = doc[spec]
        else:
            try:
                out = ast.literal_eval(self._render(spec, doc, "doc_to_choice"))
            except (SyntaxError, ValueError) as e:
                raise EvalDataError(f"task {self.name}: doc_to_choice did not render to a list literal") from e
        if not isinstance(out, list) or not out or not all(isinstance(c, str) for c in out):
            raise EvalDataError(f"task {self.name}: choices must be a non-empty list of strings, got {out!r}")
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
        """A few-shot example's answer, or None when it has none (lm-eval's build_qa_turn)."""
        a = self.target(doc, self.fewshot_doc_to_target)
        if a is None or a == "":
            return None
        if self.format == "lm-eval":
            c_spec = self.fewshot_doc_to_choice if self.fewshot_doc_to_choice is not None else self.doc_to_choice
            c = self.choices(doc, c_spec) if c_spec else None
            if c and isinstance(a, int):
                if not -len(c) <= a < len(c):
                    raise EvalDataError(f"task {self.name}: few-shot target {a!r} is not a valid choice index")
                a = c[a]
            elif isinstance(a, list):
                a = a[0]
            if not isinstance(a, str):
                raise EvalDataError(f"task {self.name}: a few-shot answer must be text, got {type(a).__name__}")
            return a
        if self.doc_to_choice is not None and isinstance(a, int) and not isinstance(a, bool):
            return self.choices(doc)[a]
        if isinstance(a, list):
            a = a[0]
        return str(a)

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
            out = doc[self.description]
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
        for doc in docs:
            prefix = self.prefix(doc)
            parts = [prefix] if prefix else []
            if self.num_fewshot > 0:
                for fs in self._sample(rnd, pool, doc):
                    q = self.text(fs, self.fewshot_doc_to_text)
                    a = self._answer_text(fs)
                    if not isinstance(q, str):
                        raise EvalDataError(f"task {self.name}: doc_to_text must give text for few-shot examples")
                    parts.append(q + (tdelim if a is not None else ""))
                    if a is not None:
                        parts.append(a + fdelim)
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


@dataclass
class SuiteSpec:
    id: str
    version: str
    source: Path
    tasks: list[TaskSpec]
    description: str = ""

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


def _int(v: Any, what: str, where: Path, lo: int = 0) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise EvalSpecError(f"{where}: {what} must be an integer >= {lo}, got {v!r}")
    return v


def _metrics(kind: str, names: Sequence[str], where: Path) -> tuple[str, ...]:
    for m in names:
        if m not in METRICS[kind]:
            raise UnknownMetricError(
                f"{where}: unknown metric {m!r} for a {kind} task; known: {', '.join(METRICS[kind])}"
            )
    if not names:
        raise EvalSpecError(f"{where}: a task needs at least one metric")
    return tuple(dict.fromkeys(names))


def _check_name(name: Any, where: Path) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise EvalSpecError(f"{where}: task name {name!r} must match {NAME_RE.pattern}")
    return name


def load_task(path: str | Path, *, pins: dict[str, str] | None = None, name: str | None = None) -> TaskSpec:
    """Load and validate a task file (Tripwire or lm-evaluation-harness format).

    ``pins`` maps data file names (as written, or their base names) to SHA-256 digests
    the caller (a suite) requires; a mismatch raises :class:`DatasetDigestError`.
    """
    p = Path(path)
    raw = read_task_yaml(p)
    try:
        if "kind" in raw:
            spec = _load_tripwire(p, raw, pins or {})
        elif "group" in raw and "output_type" not in raw:
            # An lm-eval group file (mmlu_stem: `group:`, a `task:` list, aggregate_metric_list).
            raise _unsupported(p, f"lm-eval group {raw['group']!r} (native runs single tasks)")
        elif "output_type" in raw or "dataset_path" in raw:
            spec = _load_lmeval(p, raw, pins or {})
        else:
            raise EvalSpecError(f"{p}: not a task file (needs `kind:` or lm-eval's `output_type:`)")
    except TripwireError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise EvalSpecError(f"{p}: invalid task definition: {type(e).__name__}: {e}") from e
    if name:
        spec.name = _check_name(name, p)
    return spec


def _features(docs: list[dict[str, Any]]) -> frozenset[str]:
    keys: set[str] = set()
    for d in docs:
        keys.update(d)
    return frozenset(keys)


def _load_tripwire(p: Path, raw: dict[str, Any], pins: dict[str, str]) -> TaskSpec:
    unknown = set(raw) - _TRIPWIRE_KEYS
    if unknown:
        raise EvalSpecError(f"{p}: unknown keys {sorted(unknown)} (known: {sorted(_TRIPWIRE_KEYS)})")
    kind = raw["kind"]
    if kind not in KINDS:
        raise EvalSpecError(f"{p}: unknown task kind {kind!r}; known: {', '.join(KINDS)}")
    name = _check_name(raw.get("task"), p)
    data = raw.get("data")
    if not isinstance(data, dict):
        raise EvalSpecError(f"{p}: `data:` must name a generator or a JSONL path with its sha256")
    if "generator" in data:
        params = data.get("params") or {}
        if not isinstance(params, dict):
            raise EvalSpecError(f"{p}: data.params must be a mapping")
        docs = generate(data["generator"], params)
        rows_digest = sha256_hex(b"".join(canonical_bytes(d) + b"\n" for d in docs))
        data_ref = {"generator": data["generator"], "params": _jsonable(params), "sha256": rows_digest}
    elif "path" in data:
        fpath = _resolve(p.parent, data["path"])
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
    metrics = _metrics(kind, raw.get("metrics") or DEFAULT_METRICS[kind], p)
    if "pass_at_k" in metrics and max(gen.k) > gen.samples:
        raise EvalSpecError(f"{p}: pass_at_k with k={max(gen.k)} needs generation.samples >= {max(gen.k)}")
    probe = _probe(raw.get("probe"), p, pins) if kind == "activation_probe" else None
    if kind == "activation_probe" and probe is None:
        raise EvalSpecError(f"{p}: an activation_probe task needs `probe: {{path, sha256, layer}}`")
    sampler = raw.get("fewshot_sampler", "default")
    if sampler not in ("default", "first_n"):
        raise EvalSpecError(f"{p}: fewshot_sampler must be default or first_n")
    spec = TaskSpec(
        name=name,
        kind=kind,
        source=p,
        docs=docs,
        fewshot_docs=None,
        fewshot_is_eval_split=True,
        doc_to_text=fields["doc_to_text"],
        doc_to_choice=fields.get("doc_to_choice"),
        doc_to_target=fields["doc_to_target"],
        # `description` documents the task; only `prompt_prefix` goes into the prompt.
        description=str(raw.get("prompt_prefix", "")),
        target_delimiter=str(raw.get("target_delimiter", "")),
        fewshot_delimiter=str(raw.get("fewshot_delimiter", "\n\n")),
        num_fewshot=_int(raw.get("num_fewshot", 0), "num_fewshot", p),
        fewshot_seed=_int(raw.get("fewshot_seed", 1234), "fewshot_seed", p),
        fewshot_sampler=sampler,
        metrics=metrics,
        generation=gen,
        probe=probe,
        bootstrap=_int(raw.get("bootstrap", 1000), "bootstrap", p, 10),
        data_ref=data_ref,
        format="tripwire",
        features=_features(docs),
    )
    _check_rows(spec)
    return spec


def _generation(g: dict[str, Any], p: Path) -> Generation:
    if not isinstance(g, dict):
        raise EvalSpecError(f"{p}: generation must be a mapping")
    unknown = set(g) - _GEN_KEYS
    if unknown:
        raise EvalSpecError(f"{p}: unknown generation keys {sorted(unknown)}")
    until = g.get("until", [])
    if isinstance(until, str):
        until = [until]
    if not isinstance(until, list) or not all(isinstance(u, str) and u for u in until):
        raise EvalSpecError(f"{p}: generation.until must be a list of non-empty strings")
    k = g.get("k", [1])
    k = [k] if isinstance(k, int) else k
    if not isinstance(k, list) or not k:
        raise EvalSpecError(f"{p}: generation.k must be a list of integers")
    ks = tuple(_int(x, "generation.k", p, 1) for x in k)
    samples = _int(g.get("samples", 1), "generation.samples", p, 1)
    do_sample = bool(g.get("do_sample", samples > 1))
    if samples > 1 and not do_sample:
        raise EvalSpecError(f"{p}: generation.samples > 1 needs do_sample: true (greedy samples are identical)")
    return Generation(
        until=tuple(until),
        max_gen_toks=_int(g.get("max_gen_toks", 32), "generation.max_gen_toks", p, 1),
        do_sample=do_sample,
        temperature=str(g.get("temperature", "1.0")),
        top_p=str(g.get("top_p", "1.0")),
        samples=samples,
        k=ks,
        seed=_int(g.get("seed", 1234), "generation.seed", p),
    )


def _probe(raw: Any, p: Path, pins: dict[str, str]) -> ProbeSpec | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or "path" not in raw or "layer" not in raw:
        raise EvalSpecError(f"{p}: probe needs path, sha256 and layer")
    fpath = _resolve(p.parent, raw["path"])
    if not fpath.is_file():
        raise EvalSpecError(f"{p}: probe weights {fpath} do not exist")
    actual = file_sha256(fpath)
    expected = pins.get(str(raw["path"]), pins.get(fpath.name, raw.get("sha256")))
    if expected is None:
        raise EvalSpecError(f"{p}: probe.sha256 is required (this file's SHA-256 is {actual})")
    _check_pin(fpath, actual, expected, str(p))
    pool = raw.get("pool", "last")
    if pool not in ("last", "mean"):
        raise EvalSpecError(f"{p}: probe.pool must be last or mean")
    return ProbeSpec(path=fpath, sha256=actual, layer=_int(raw["layer"], "probe.layer", p), pool=pool)


def _unsupported(p: Path, what: str) -> NativeUnsupportedError:
    return NativeUnsupportedError(
        f"{p}: {what}: the native runner does not reproduce it exactly (use --engine lm-eval or auto)"
    )


def _load_lmeval(p: Path, raw: dict[str, Any], pins: dict[str, str]) -> TaskSpec:
    # `dataset_name: null` (hellaswag, piqa) is lm-eval's default: load_dataset(name=None).
    unknown = {k for k in set(raw) - _LMEVAL_KEYS if not (k == "dataset_name" and raw[k] is None)}
    if unknown:
        raise _unsupported(p, f"lm-eval task keys {sorted(unknown)}")
    kind = raw.get("output_type", "generate_until")
    if kind not in ("multiple_choice", "loglikelihood"):
        raise _unsupported(p, f"lm-eval output_type {kind!r} (native: multiple_choice, loglikelihood)")
    name = _check_name(raw.get("task"), p)
    if raw.get("dataset_path") != "json":
        raise _unsupported(p, f"dataset_path {raw.get('dataset_path')!r} (native reads local `json` data only)")
    if raw.get("repeats", 1) != 1:
        raise _unsupported(p, "repeats other than 1")
    kwargs = raw.get("dataset_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise EvalSpecError(f"{p}: dataset_kwargs must be a mapping")
    if set(kwargs) - {"data_files"}:
        raise _unsupported(p, f"dataset_kwargs {sorted(set(kwargs) - {'data_files'})}")
    files = kwargs.get("data_files")
    if files is None:
        raise EvalSpecError(f"{p}: dataset_kwargs.data_files is required")
    if isinstance(files, str | list):
        files = {"train": files}
    if not isinstance(files, dict):
        raise EvalSpecError(f"{p}: dataset_kwargs.data_files must be a path, a list or a split mapping")
    meta = raw.get("metadata") or {}
    pins = {**(meta.get("sha256") or {}), **pins} if isinstance(meta, dict) else pins
    splits: dict[str, list[dict[str, Any]]] = {}
    split_refs: dict[str, list[dict[str, str]]] = {}
    for split, names in files.items():
        names = [names] if isinstance(names, str) else names
        rows: list[dict[str, Any]] = []
        refs = []
        for fname in names:
            fpath = _resolve(p.parent, fname)
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

    def split_rows(split: str, what: str) -> list[dict[str, Any]]:
        if split not in splits:
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
        raise _unsupported(p, f"fewshot_config keys {sorted(set(fs_cfg) - _LMEVAL_FEWSHOT_KEYS)}")
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
                raise _unsupported(p, f"metric {m['metric']!r} options {sorted(extra)}")
            if m.get("aggregation", "mean") != "mean":
                raise _unsupported(p, f"metric {m['metric']!r} aggregation {m['aggregation']!r} (native: mean)")
            names.append(m["metric"])
    other = [n for n in names if n not in _LMEVAL_METRICS[kind]]
    if other:
        raise _unsupported(p, f"lm-eval metrics {other} for {kind} (native: {', '.join(_LMEVAL_METRICS[kind])})")
    doc_to_target = raw.get("doc_to_target")
    if doc_to_target is None or raw.get("doc_to_text") is None:
        raise EvalSpecError(f"{p}: doc_to_text and doc_to_target are required")
    if kind == "multiple_choice" and raw.get("doc_to_choice") is None:
        raise EvalSpecError(f"{p}: doc_to_choice is required for multiple_choice")
    if raw.get("description") is not None and not isinstance(raw["description"], str):
        raise EvalSpecError(f"{p}: description must be a string")
    for key in ("target_delimiter", "fewshot_delimiter"):
        if key in raw and not isinstance(raw[key], str):
            raise EvalSpecError(f"{p}: {key} must be a string")
    for key in ("target_delimiter", "fewshot_delimiter"):
        if fs_cfg.get(key) is not None and not isinstance(fs_cfg[key], str):
            raise EvalSpecError(f"{p}: fewshot_config.{key} must be a string")
    spec = TaskSpec(
        name=name,
        kind=kind,
        source=p,
        docs=docs,
        fewshot_docs=pool,
        fewshot_is_eval_split=exclude_item,
        doc_to_text=raw["doc_to_text"],
        doc_to_choice=raw.get("doc_to_choice"),
        doc_to_target=doc_to_target,
        description=raw.get("description") or "",
        target_delimiter=raw.get("target_delimiter", " "),
        fewshot_delimiter=raw.get("fewshot_delimiter", "\n\n"),
        num_fewshot=_int(raw.get("num_fewshot") or 0, "num_fewshot", p),
        fewshot_seed=1234,
        fewshot_sampler=sampler,
        metrics=_metrics(kind, names, p),
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
    )
    _check_lmeval_shape(spec, p)
    _check_rows(spec)
    return spec


def _check_lmeval_shape(spec: TaskSpec, p: Path) -> None:
    """lm-eval decides multiple-input and multiple-target tasks from the first item; the
    native runner reproduces neither."""
    doc = spec.docs[0]
    try:
        text, target = spec.text(doc), spec.target(doc)
    except KeyError:
        return  # _check_rows names the missing field
    if isinstance(text, int) and spec.doc_to_choice is not None:
        raise _unsupported(p, "a multiple-input task (doc_to_text gives a choice index)")
    if isinstance(target, list) and spec.kind == "multiple_choice":
        raise _unsupported(p, "a multiple-target task (doc_to_target gives a list)")


def _check_rows(spec: TaskSpec) -> None:
    """Fail before any model work if a row lacks what the prompts read."""
    for n, doc in enumerate(spec.docs):
        try:
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
        except KeyError as e:
            raise EvalDataError(f"task {spec.name}: item {n} has no field {e}") from e


def load_suite(path: str | Path) -> SuiteSpec:
    """Load a suite file; task paths resolve relative to it, pins override task pins."""
    p = Path(path)
    raw = read_yaml(p)
    unknown = set(raw) - {"suite", "version", "description", "tasks"}
    if unknown:
        raise EvalSpecError(f"{p}: unknown suite keys {sorted(unknown)}")
    sid = raw.get("suite")
    if not isinstance(sid, str) or not NAME_RE.match(sid):
        raise EvalSpecError(f"{p}: `suite:` id must match {NAME_RE.pattern}")
    version = raw.get("version")
    if not isinstance(version, str | int) or not str(version):
        raise EvalSpecError(f"{p}: `version:` is required (a string such as \"1.0.0\")")
    entries = raw.get("tasks")
    if not isinstance(entries, list) or not entries:
        raise EvalSpecError(f"{p}: `tasks:` must be a non-empty list")
    tasks = []
    for n, e in enumerate(entries):
        if isinstance(e, str):
            e = {"path": e}
        if not isinstance(e, dict) or "path" not in e:
            raise EvalSpecError(f"{p}: tasks[{n}] needs `path:`")
        extra = set(e) - {"path", "sha256", "name", "digest"}
        if extra:
            raise EvalSpecError(f"{p}: tasks[{n}] has unknown keys {sorted(extra)}")
        pins = e.get("sha256") or {}
        if not isinstance(pins, dict):
            raise EvalSpecError(f"{p}: tasks[{n}].sha256 must map data file names to digests")
        t = load_task(_resolve(p.parent, e["path"]), pins=pins, name=e.get("name"))
        if e.get("digest") is not None and e["digest"] != t.digest:
            raise DatasetDigestError(
                f"{p}: task {t.name} has digest {t.digest}, but the suite pins {e['digest']} "
                "(its definition or data changed)"
            )
        tasks.append(t)
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise EvalSpecError(f"{p}: task names must be unique within a suite: {names}")
    return SuiteSpec(id=sid, version=str(version), source=p, tasks=tasks, description=str(raw.get("description", "")))


def override_num_fewshot(spec: TaskSpec, n: int) -> None:
    """``--num-fewshot N`` on an lm-eval task file, with lm-eval's rule (``simple_evaluate``'s
    ``num_fewshot``): the task's count becomes ``n`` unless the file sets ``num_fewshot: 0``,
    which lm-eval keeps (wmdp, truthfulqa)."""
    if spec.format != "lm-eval":
        raise EvalSpecError(
            f"{spec.source}: --num-fewshot overrides an lm-eval task's few-shot count; a Tripwire task file "
            "sets num_fewshot itself"
        )
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise EvalSpecError(f"--num-fewshot must be >= 0, got {n!r}")
    if spec.num_fewshot_configured == 0:
        return
    spec.num_fewshot = n


def single_task_suite(task: TaskSpec) -> SuiteSpec:
    """A one-task suite for ``--task``: id is the task name, version ``task``."""
    return SuiteSpec(id=task.name, version="task", source=task.source, tasks=[task])
