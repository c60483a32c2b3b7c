"""Prompts from rows, with lm-evaluation-harness 0.4 semantics: fields and Jinja templates,
choices, targets, few-shot examples and the description; a row a prompt cannot be built
from is refused naming the row.

Functions of a :class:`~node.evals.spec.models.TaskSpec`: the model holds a task's definition
and digest, this module what the runner builds from it (``contexts``, ``choices``,
``gold_index``, ``continuation``, ``target``).
"""

from __future__ import annotations

import ast
import functools
import random
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from node.evals.errors import EvalDataError
from node.evals.spec.models import TaskSpec

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

_jinja = SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True)
_jinja.filters["regex_replace"] = lambda s, pattern, repl, count=0: re.sub(pattern, repl, s, count=count)


class RowError(EvalDataError):
    """A row a prompt cannot be built from: a field the task file names is missing, a template
    fails, a target or choice index does not fit. ``detail`` says what, starting with a verb,
    so the caller that knows which row it is (an item, a few-shot example) can name it."""

    def __init__(self, task: str, detail: str) -> None:
        super().__init__(f"task {task}: a row {detail}")
        self.detail = detail


def _render(task: TaskSpec, template: str, doc: dict[str, Any], what: str) -> str:
    try:
        return _jinja.from_string(template).render(**doc)
    except (TemplateError, TypeError, ValueError, ArithmeticError, LookupError, re.error) as e:
        # Jinja's own errors, and what a template's Python-level expression raises on a row's
        # values (`{{ a + b }}` on a string and a number, a bad regex_replace pattern).
        raise RowError(task.name, f"fails the {what} template: {type(e).__name__}: {e}") from e


def _field(task: TaskSpec, doc: dict[str, Any], key: Any, what: str) -> Any:
    """``doc[key]`` for a field the task file names in ``what``."""
    try:
        return doc[key]
    except KeyError:
        raise RowError(
            task.name, f"has no field {key!r}, which {what} names (the row's fields: {sorted(map(str, doc))[:20]})"
        ) from None


def _fewshot(task: TaskSpec, what: str) -> str:
    """The key that gives a few-shot example's ``what``: the fewshot_config override, or the
    task's own when the override is unset (as lm-eval falls back)."""
    if getattr(task, f"fewshot_{what}") is not None:
        return f"fewshot_config.{what}"
    return f"{what} (fewshot_config.{what} is unset)" if task.format == "lm-eval" else what


@contextmanager

def _row(task: TaskSpec, label: str | Callable[[], str]) -> Iterator[None]:
    """Name the row (``item 3``, ``few-shot example 2 of split 'train'``) in what a prompt
    lookup inside refuses; a callable label is computed only then (finding a few-shot
    example's position in its pool is a scan, not for every prompt)."""
    try:
        yield
    except RowError as e:
        name = label() if callable(label) else label
        raise EvalDataError(f"task {task.name} ({task.source}): {name} {e.detail}") from e


def _pool_label(task: TaskSpec, pool: list[dict[str, Any]], fs: dict[str, Any]) -> str:
    k = next((i for i, x in enumerate(pool) if x is fs), "?")
    ref = task.fewshot_ref or {}
    if ref.get("pool") == "samples":
        return f"few-shot example fewshot_config.samples[{k}]"
    if ref.get("pool") == "split":
        return f"few-shot example {k} of split {ref.get('split')!r}"
    return f"few-shot example (item {k})"


def _is_field(task: TaskSpec, spec: Any) -> bool:
    # lm-eval treats a string that is no column name as a (constant) template; in
    # Tripwire's own format a bare identifier always means a field, so a typo or a
    # row without it is an error instead of a constant prompt.
    if spec in task.features:
        return True
    return task.format == "tripwire" and isinstance(spec, str) and _IDENT.match(spec) is not None


def _value(task: TaskSpec, doc: dict[str, Any], spec: Any, what: str) -> Any:
    """A field's value, or a template's text; a rendered number is a choice index in a
    multiple-input or choice task (lm-eval's rule)."""
    if _is_field(task, spec):
        return _field(task, doc, spec, what)
    s = _render(task, spec, doc, what)
    if s.isdigit() and task.doc_to_choice is not None:
        return ast.literal_eval(s)
    return s


def text(task: TaskSpec, doc: dict[str, Any], spec: Any = None, what: str = "doc_to_text") -> Any:
    """An item's prompt text (or a choice index) from ``spec`` (default ``doc_to_text``)."""
    spec = task.doc_to_text if spec is None else spec
    return spec if isinstance(spec, int) else _value(task, doc, spec, what)


def target(task: TaskSpec, doc: dict[str, Any], spec: Any = None, what: str = "doc_to_target") -> Any:
    """An item's answer: text, a choice index or a list (``spec`` default ``doc_to_target``)."""
    spec = task.doc_to_target if spec is None else spec
    if isinstance(spec, int | list):
        return spec
    s = _value(task, doc, spec, what)
    if _is_field(task, spec) or not isinstance(s, str):
        return s
    if len(s) >= 2 and s[0] == "[" and s[-1] == "]":
        try:
            return ast.literal_eval(s)
        except (SyntaxError, ValueError):
            return s
    return s


def choices(task: TaskSpec, doc: dict[str, Any], spec: Any = None, what: str = "doc_to_choice") -> list[str]:
    spec = task.doc_to_choice if spec is None else spec
    if isinstance(spec, list):
        out = spec
    elif isinstance(spec, dict):
        out = list(spec.values())
    elif _is_field(task, spec):
        out = _field(task, doc, spec, what)
    else:
        rendered = _render(task, spec, doc, what)
        try:
            out = ast.literal_eval(rendered)
        except (SyntaxError, ValueError) as e:
            raise RowError(task.name, f"renders {what} {spec!r} to {rendered!r}, not a list literal"[:400]) from e
    if not isinstance(out, list) or not out or not all(isinstance(c, str) for c in out):
        raise RowError(task.name, f"gives {what} {out!r}: choices must be a non-empty list of strings")
    return out


def gold_index(task: TaskSpec, doc: dict[str, Any], choices: list[str], n: int) -> int:
    gold = target(task, doc)
    if isinstance(gold, str):
        if gold not in choices:
            raise EvalDataError(f"task {task.name}: item {n}: target {gold!r} is not among the choices {choices}")
        return choices.index(gold)
    if isinstance(gold, bool) or not isinstance(gold, int) or not 0 <= gold < len(choices):
        raise EvalDataError(f"task {task.name}: item {n}: target {gold!r} is not a valid choice index")
    return gold


def _answer_text(task: TaskSpec, doc: dict[str, Any]) -> str | None:
    """A few-shot example's answer, or None when it has none (lm-eval's build_qa_turn).

    An index answer picks a choice as Python indexing does (lm-eval's ``c[a]``), a list
    answer its first entry; one out of range, or an empty list, is refused (lm-eval fails
    there with a bare IndexError)."""
    what = _fewshot(task, "doc_to_target")
    a = target(task, doc, task.fewshot_doc_to_target, what)
    if a is None or a == "":
        return None
    if task.format == "lm-eval":
        c_spec = task.fewshot_doc_to_choice if task.fewshot_doc_to_choice is not None else task.doc_to_choice
        c = choices(task, doc, c_spec, _fewshot(task, "doc_to_choice")) if c_spec else None
        if c and isinstance(a, int):
            a = _pick(task, c, a, what)
        elif isinstance(a, list):
            a = _first(task, a, what)
        if not isinstance(a, str):
            raise RowError(task.name, f"gives {what} {a!r}: a few-shot answer must be text, "
                                       f"not {type(a).__name__}")
        return a
    if task.doc_to_choice is not None and isinstance(a, int) and not isinstance(a, bool):
        return _pick(task, choices(task, doc), a, what)
    if isinstance(a, list):
        a = _first(task, a, what)
    return str(a)


def _pick(task: TaskSpec, choices: list[str], a: int, what: str) -> str:
    if not -len(choices) <= a < len(choices):
        raise RowError(task.name, f"gives {what} index {a!r}, outside its {len(choices)} choices {choices}"[:400])
    return choices[a]


def _first(task: TaskSpec, a: list[Any], what: str) -> Any:
    if not a:
        raise RowError(task.name, f"gives {what} [], an empty answer list (a list answer's first entry is used)")
    return a[0]


def continuation(task: TaskSpec, doc: dict[str, Any]) -> str:
    """What a loglikelihood item scores after its context.

    lm-eval scores ``doc_to_target`` exactly (a task that wants a leading space puts it
    in the target); Tripwire's own format puts ``target_delimiter`` before the target.
    """
    t = target(task, doc)
    if task.format == "lm-eval":
        if not isinstance(t, str):
            raise EvalDataError(f"task {task.name}: doc_to_target gave {type(t).__name__}, not text")
        return t
    return task.target_delimiter + str(t)


def prefix(task: TaskSpec, doc: dict[str, Any]) -> str:
    """The description before the examples: lm-eval renders it per item (a field name or
    a Jinja template); Tripwire's ``prompt_prefix`` is literal."""
    if task.format != "lm-eval" or not task.description:
        return task.description
    if task.description in task.features:
        out = _field(task, doc, task.description, "description")
    else:
        out = _render(task, task.description, doc, "description")
    if out is None or out == "":
        return ""
    if not isinstance(out, str):
        raise EvalDataError(f"task {task.name}: description gave {type(out).__name__}, not text")
    return out


def contexts(task: TaskSpec, limit: int | None = None) -> list[str]:
    """The prompt of every evaluated item, few-shot examples included (seeded, in item order)."""
    docs = task.docs[:limit] if limit else task.docs
    rnd = random.Random(task.fewshot_seed)
    pool = task.fewshot_docs if task.fewshot_docs is not None else task.docs
    tdelim = task.target_delimiter if task.fewshot_target_delimiter is None else task.fewshot_target_delimiter
    fdelim = task.fewshot_delimiter if task.fewshot_example_delimiter is None else task.fewshot_example_delimiter
    out = []
    for i, doc in enumerate(docs):
        with _row(task, f"item {i}"):
            head = prefix(task, doc)
        parts = [head] if head else []
        if task.num_fewshot > 0:
            for fs in _sample(task, rnd, pool, doc):
                with _row(task, functools.partial(_pool_label, task, pool, fs)):
                    q = text(task, fs, task.fewshot_doc_to_text, _fewshot(task, "doc_to_text"))
                    a = _answer_text(task, fs)
                if not isinstance(q, str):
                    raise EvalDataError(f"task {task.name}: doc_to_text must give text for few-shot examples")
                parts.append(q + (tdelim if a is not None else ""))
                if a is not None:
                    parts.append(a + fdelim)
        with _row(task, f"item {i}"):
            q = text(task, doc)
        if not isinstance(q, str):
            raise EvalDataError(f"task {task.name}: doc_to_text gave {type(q).__name__}, not text")
        parts.append(q)
        out.append("".join(parts))
    return out


def _sample(task: TaskSpec, rnd: random.Random, pool: list[dict[str, Any]], doc: dict[str, Any]) -> list[dict[str, Any]]:
    n = task.num_fewshot
    # lm-eval removes the evaluated doc only when its few-shot split equals test_split.
    eval_doc = doc if task.fewshot_is_eval_split else None
    if task.fewshot_sampler == "first_n":
        cands = [x for x in pool if x != eval_doc] if eval_doc is not None else pool
        if len(cands) < n:
            raise EvalDataError(f"task {task.name}: {n} few-shot examples requested, {len(cands)} available")
        return cands[:n]
    if len(pool) < n + (1 if eval_doc is not None else 0):
        raise EvalDataError(f"task {task.name}: {n} few-shot examples requested, {len(pool)} available")
    if eval_doc is None:
        return rnd.sample(pool, n)
    res = [x for x in rnd.sample(pool, n + 1) if x != eval_doc][:n]
    if len(res) < n:
        res = rnd.sample([x for x in pool if x != eval_doc], n)
    return res


def check_rows(spec: TaskSpec) -> None:
    """Fail before any model work if a row lacks what the prompts read."""
    for n, doc in enumerate(spec.docs):
        with _row(spec, f"item {n}"):
            if spec.kind == "multiple_choice":
                gold_index(spec, doc, choices(spec, doc), n)
            elif spec.kind == "activation_probe":
                if target(spec, doc) not in (0, 1):
                    raise EvalDataError(f"task {spec.name}: item {n}: label must be 0 or 1")
            elif spec.kind == "loglikelihood":
                continuation(spec, doc)
            else:
                target(spec, doc)
            text(spec, doc)
            prefix(spec, doc)
