"""Prompts from rows, with lm-evaluation-harness 0.4 semantics: fields and Jinja templates,
choices, targets, few-shot examples and the description; a row a prompt cannot be built
from is refused naming the row."""

from __future__ import annotations

import ast
import functools
import random
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from node.evals.errors import EvalDataError

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


class PromptRules:
    """The prompt half of a task: mixed into :class:`~node.evals.spec.models.TaskSpec`, whose
    fields (declared here for the type checker only) it reads."""

    if TYPE_CHECKING:
        name: str
        kind: str
        source: Path
        docs: list[dict[str, Any]]
        fewshot_docs: list[dict[str, Any]] | None
        fewshot_is_eval_split: bool
        doc_to_text: Any
        doc_to_choice: Any
        doc_to_target: Any
        description: str
        target_delimiter: str
        fewshot_delimiter: str
        num_fewshot: int
        fewshot_seed: int
        fewshot_sampler: str
        format: str
        features: frozenset[str]
        fewshot_doc_to_text: Any
        fewshot_doc_to_choice: Any
        fewshot_doc_to_target: Any
        fewshot_target_delimiter: str | None
        fewshot_example_delimiter: str | None
        fewshot_ref: dict[str, Any] | None

    def _render(self, template: str, doc: dict[str, Any], what: str) -> str:
        try:
            return _jinja.from_string(template).render(**doc)
        except (TemplateError, TypeError, ValueError, ArithmeticError, LookupError, re.error) as e:
            # Jinja's own errors, and what a template's Python-level expression raises on a row's
            # values (`{{ a + b }}` on a string and a number, a bad regex_replace pattern).
            raise RowError(self.name, f"fails the {what} template: {type(e).__name__}: {e}") from e

    def _field(self, doc: dict[str, Any], key: Any, what: str) -> Any:
        """``doc[key]`` for a field the task file names in ``what``."""
        try:
            return doc[key]
        except KeyError:
            raise RowError(
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
        except RowError as e:
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
                raise RowError(self.name, f"renders {what} {spec!r} to {rendered!r}, not a list literal"[:400]) from e
        if not isinstance(out, list) or not out or not all(isinstance(c, str) for c in out):
            raise RowError(self.name, f"gives {what} {out!r}: choices must be a non-empty list of strings")
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
                raise RowError(self.name, f"gives {what} {a!r}: a few-shot answer must be text, "
                                           f"not {type(a).__name__}")
            return a
        if self.doc_to_choice is not None and isinstance(a, int) and not isinstance(a, bool):
            return self._pick(self.choices(doc), a, what)
        if isinstance(a, list):
            a = self._first(a, what)
        return str(a)

    def _pick(self, choices: list[str], a: int, what: str) -> str:
        if not -len(choices) <= a < len(choices):
            raise RowError(self.name, f"gives {what} index {a!r}, outside its {len(choices)} choices {choices}"[:400])
        return choices[a]

    def _first(self, a: list[Any], what: str) -> Any:
        if not a:
            raise RowError(self.name, f"gives {what} [], an empty answer list (a list answer's first entry is used)")
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


def check_rows(spec: PromptRules) -> None:
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
