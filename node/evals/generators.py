"""Seeded data generators for capability proxies a tiny model can learn.

Each generator is a pure function of its parameters (the seed among them) and returns
documents with fixed field names, so a suite that names a generator and its parameters
pins the exact items; the task digest also covers the SHA-256 of the generated rows, so
a change in generator code shows up as a different task.

Document shapes by task kind:

- ``multiple_choice``: ``{"context", "choices", "gold"}``
- ``generate_until`` / ``loglikelihood``: ``{"context", "target"}``
- ``activation_probe``: ``{"text", "label"}`` (label 0 or 1)
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from typing import Any

from node.evals.errors import EvalSpecError

Doc = dict[str, Any]


def arithmetic_problem(rng: random.Random, digits: int = 2) -> tuple[str, str]:
    """One ``aa+bb=`` prompt and its ``ccc`` answer (zero-padded, fixed width)."""
    hi = 10**digits - 1
    a, b = rng.randint(0, hi), rng.randint(0, hi)
    return f"{a:0{digits}d}+{b:0{digits}d}=", f"{a + b:0{digits + 1}d}"


def arithmetic_stream(rng: random.Random, n_problems: int, digits: int = 2) -> str:
    """Solved problems packed back to back: ``12+34=046;56+78=134;...``."""
    return "".join(q + a + ";" for q, a in (arithmetic_problem(rng, digits) for _ in range(n_problems)))


def _distinct_choices(rng: random.Random, correct: int, candidates: list[int], k: int, lo: int, hi: int) -> list[int]:
    out = [correct]
    for c in candidates:
        if len(out) == k:
            break
        if lo <= c <= hi and c not in out:
            out.append(c)
    while len(out) < k:
        c = rng.randint(lo, hi)
        if c not in out:
            out.append(c)
    return out


def _place(rng: random.Random, correct: str, wrong: list[str]) -> tuple[list[str], int]:
    gold = rng.randrange(len(wrong) + 1)
    choices = list(wrong)
    choices.insert(gold, correct)
    return choices, gold


def arithmetic(n: int = 200, seed: int = 0, digits: int = 2, shots: int = 9, mode: str = "generate",
               n_choices: int = 4) -> list[Doc]:
    """Two-number addition in the ``aa+bb=ccc;`` format, after ``shots`` solved examples.

    With 9 shots the context is about 100 characters (tokens, for the char tokenizer).
    ``mode="multiple_choice"`` offers the answer and near misses (±1, ±10, ±100).
    """
    rng = random.Random(seed)
    width = digits + 1
    hi = 2 * (10**digits - 1)
    docs: list[Doc] = []
    for _ in range(n):
        prefix = arithmetic_stream(rng, shots, digits)
        q, a = arithmetic_problem(rng, digits)
        if mode == "generate":
            docs.append({"context": prefix + q, "target": a})
        elif mode == "multiple_choice":
            s = int(a)
            nums = _distinct_choices(rng, s, [s + 1, s - 1, s + 10, s - 10, s + 100, s - 100], n_choices, 0, hi)
            wrong = [f"{x:0{width}d}" for x in nums[1:]]
            rng.shuffle(wrong)
            choices, gold = _place(rng, a, wrong)
            docs.append({"context": prefix + q, "choices": choices, "gold": gold})
        elif mode == "probe":
            flipped = rng.random() < 0.5
            shown = a if not flipped else f"{(int(a) + rng.choice([1, 10, 11])) % (hi + 1):0{width}d}"
            docs.append({"text": prefix + q + shown + ";", "label": 0 if flipped else 1})
        else:
            raise EvalSpecError(f"arithmetic generator: unknown mode {mode!r}")
    return docs


def kv_recall(n: int = 200, seed: int = 0, pairs: int = 12, mode: str = "generate", n_choices: int = 4) -> list[Doc]:
    """Key-value recall: ``ab:12;cd:34;...|cd:`` must be answered with ``34``.

    Distractor choices are values of other keys in the same context, so only recall
    (not a value prior) tells them apart.
    """
    rng = random.Random(seed)
    docs: list[Doc] = []
    for _ in range(n):
        keys: list[str] = []
        while len(keys) < pairs:
            k = "".join(rng.choice(string.ascii_lowercase) for _ in range(2))
            if k not in keys:
                keys.append(k)
        vals = [f"{rng.randint(0, 99):02d}" for _ in keys]
        qi = rng.randrange(pairs)
        ctx = "".join(f"{k}:{v};" for k, v in zip(keys, vals, strict=True)) + f"|{keys[qi]}:"
        if mode == "generate":
            docs.append({"context": ctx, "target": vals[qi]})
        elif mode == "multiple_choice":
            others = [v for i, v in enumerate(vals) if i != qi and v != vals[qi]]
            others = list(dict.fromkeys(others))
            rng.shuffle(others)
            wrong = others[: n_choices - 1]
            while len(wrong) < n_choices - 1:
                v = f"{rng.randint(0, 99):02d}"
                if v != vals[qi] and v not in wrong:
                    wrong.append(v)
            choices, gold = _place(rng, vals[qi], wrong)
            docs.append({"context": ctx, "choices": choices, "gold": gold})
        else:
            raise EvalSpecError(f"kv_recall generator: unknown mode {mode!r}")
    return docs


def composition(n: int = 200, seed: int = 0, steps: int = 3, mode: str = "generate", n_choices: int = 4) -> list[Doc]:
    """Multi-step composition: ``a=12;b=a+7;c=b-3;c=`` must be answered with ``16``.

    Each step depends on the previous one, so a model must chain ``steps`` operations.
    """
    rng = random.Random(seed)
    names = string.ascii_lowercase
    docs: list[Doc] = []
    for _ in range(n):
        v = rng.randint(10, 49)
        parts = [f"{names[0]}={v}"]
        deltas = []
        for i in range(1, steps + 1):
            d = rng.randint(1, 9)
            if rng.random() < 0.5 and v - d >= 0:
                v -= d
                parts.append(f"{names[i]}={names[i - 1]}-{d}")
            else:
                v += d
                parts.append(f"{names[i]}={names[i - 1]}+{d}")
            deltas.append(d)
        ctx = ";".join(parts) + f";{names[steps]}="
        if mode == "generate":
            docs.append({"context": ctx, "target": str(v)})
        elif mode == "multiple_choice":
            cands = [v + deltas[-1], v - deltas[-1], v + 1, v - 1, v + 2 * deltas[0], v - 2 * deltas[0]]
            nums = _distinct_choices(rng, v, cands, n_choices, 0, 99)
            wrong = [str(x) for x in nums[1:]]
            rng.shuffle(wrong)
            choices, gold = _place(rng, str(v), wrong)
            docs.append({"context": ctx, "choices": choices, "gold": gold})
        else:
            raise EvalSpecError(f"composition generator: unknown mode {mode!r}")
    return docs


GENERATORS: dict[str, Callable[..., list[Doc]]] = {
    "arithmetic": arithmetic,
    "kv_recall": kv_recall,
    "composition": composition,
}


def generate(name: str, params: dict[str, Any]) -> list[Doc]:
    """Run a named generator; unknown names or parameters are spec errors, not crashes."""
    fn = GENERATORS.get(name)
    if fn is None:
        raise EvalSpecError(f"unknown data generator {name!r}; known: {', '.join(sorted(GENERATORS))}")
    try:
        return fn(**params)
    except (TypeError, ValueError) as e:  # wrong parameter names or types, or values out of range
        raise EvalSpecError(f"generator {name!r}: bad parameters {sorted(params, key=str)}: {e}") from e
