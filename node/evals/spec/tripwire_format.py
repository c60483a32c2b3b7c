"""Tripwire's own task format (``kind:``), documented in docs/evals.md: data from a shipped
generator or a SHA-256-pinned JSONL file, optional generation settings and probe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from node.evals.errors import EvalDataError, EvalSpecError
from node.evals.generators import generate
from node.evals.spec.files import (
    check_pin,
    file_sha256,
    jsonable,
    path_value,
    pin_for,
    read_rows,
    resolve_path,
    row_features,
)
from node.evals.spec.models import (
    DEFAULT_METRICS,
    TASK_KEYS,
    TASK_KIND,
    Generation,
    ProbeSpec,
    TaskSpec,
    fields_of,
)
from node.evals.spec.prompts import check_rows
from protocol.canonical import canonical_bytes, sha256_hex

DEFAULT_FIELDS: dict[str, dict[str, Any]] = {
    "multiple_choice": {"doc_to_text": "context", "doc_to_choice": "choices", "doc_to_target": "gold"},
    "loglikelihood": {"doc_to_text": "context", "doc_to_target": "target"},
    "generate_until": {"doc_to_text": "context", "doc_to_target": "target"},
    "activation_probe": {"doc_to_text": "text", "doc_to_target": "label"},
}
_TRIPWIRE_KEYS = {
    "task", "kind", "version", "description", "data", "doc_to_text", "doc_to_choice", "doc_to_target",
    "target_delimiter", "fewshot_delimiter", "num_fewshot", "fewshot_seed", "fewshot_sampler", "metrics",
    "generation", "probe", "bootstrap", "prompt_prefix",
}
_GEN_KEYS = {"until", "max_gen_toks", "do_sample", "temperature", "top_p", "samples", "k", "seed"}


def load_tripwire_task(p: Path, raw: dict[str, Any], pins: dict[str, str]) -> TaskSpec:
    unknown = set(raw) - _TRIPWIRE_KEYS
    if unknown:
        raise EvalSpecError(f"{p}: unknown keys {sorted(unknown, key=str)} (known: {sorted(_TRIPWIRE_KEYS)})")
    # The kind picks the defaults, so TaskSpec's rule for it applies before anything is read.
    with fields_of(p, prefix="kind"):
        kind = TASK_KIND.validate_python(raw["kind"])
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
        data_ref = {"generator": data["generator"], "params": jsonable(params), "sha256": rows_digest}
    elif "path" in data:
        fpath = resolve_path(p.parent, path_value(data["path"], "data.path", p))
        if not fpath.is_file():
            raise EvalDataError(f"{p}: data file {fpath} does not exist")
        actual = file_sha256(fpath)
        expected = pin_for(pins, data["path"], fpath, data.get("sha256"))
        if expected is None:
            raise EvalSpecError(
                f"{p}: data.sha256 is required for a local data file (this file's SHA-256 is {actual})"
            )
        if data.get("sha256") is not None:
            check_pin(fpath, actual, data["sha256"], str(p))
        check_pin(fpath, actual, expected, "the suite" if expected != data.get("sha256") else str(p))
        docs = read_rows(fpath)
        data_ref = {"file": fpath.name, "sha256": actual}
    else:
        raise EvalSpecError(f"{p}: `data:` needs `generator:` or `path:`")
    if not docs:
        raise EvalDataError(f"{p}: the dataset is empty; nothing to evaluate")
    fields: dict[str, Any] = {**DEFAULT_FIELDS[kind], **{k: raw[k] for k in ("doc_to_text", "doc_to_choice", "doc_to_target") if k in raw}}
    gen = _generation(raw.get("generation") or {}, p) if kind == "generate_until" else Generation()
    metrics = raw.get("metrics") or DEFAULT_METRICS[kind]
    probe = _probe(raw.get("probe"), p, pins) if kind == "activation_probe" else None
    with fields_of(p, TASK_KEYS["tripwire"]):
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
            features=row_features(docs),
        ))
    check_rows(spec)
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
    with fields_of(p, prefix="generation"):
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
    fpath = resolve_path(p.parent, path_value(raw["path"], "probe.path", p))
    if not fpath.is_file():
        raise EvalSpecError(f"{p}: probe weights {fpath} do not exist")
    actual = file_sha256(fpath)
    expected = pin_for(pins, raw["path"], fpath, raw.get("sha256"))
    if expected is None:
        raise EvalSpecError(f"{p}: probe.sha256 is required (this file's SHA-256 is {actual})")
    check_pin(fpath, actual, expected, str(p))
    unknown = set(raw) - {"path", "sha256", "layer", "pool"}
    if unknown:
        raise EvalSpecError(f"{p}: unknown probe keys {sorted(unknown, key=str)}")
    with fields_of(p, prefix="probe"):
        return ProbeSpec(path=fpath, sha256=actual, layer=raw["layer"], pool=raw.get("pool", "last"))
