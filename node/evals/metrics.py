"""Per-item scores to metrics with standard errors.

Means get the analytic standard error (sample standard deviation / sqrt(n), as
lm-evaluation-harness reports); statistics that are not means (AUROC) get a seeded
bootstrap, so two runs on the same items report the same numbers.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence


def mean_and_stderr(xs: Sequence[float]) -> tuple[float, float]:
    n = len(xs)
    mu = sum(xs) / n
    if n < 2:
        return mu, 0.0
    var = sum((x - mu) ** 2 for x in xs) / (n - 1)
    return mu, math.sqrt(var / n)


def softmax(xs: Sequence[float]) -> list[float]:
    m = max(xs)
    es = [math.exp(x - m) for x in xs]
    s = sum(es)
    return [e / s for e in es]


def argmax_first(xs: Sequence[float]) -> int:
    """Index of the first maximum (numpy's tie rule, which lm-eval relies on)."""
    best = 0
    for i, x in enumerate(xs):
        if x > xs[best]:
            best = i
    return best


def auroc(scores: Sequence[float], labels: Sequence[int]) -> float | None:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties); None if one class."""
    pos = sum(1 for y in labels if y == 1)
    neg = len(labels) - pos
    if pos == 0 or neg == 0:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        r = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[order[k]] = r
        i = j + 1
    rank_pos = sum(r for r, y in zip(ranks, labels, strict=True) if y == 1)
    return (rank_pos - pos * (pos + 1) / 2) / (pos * neg)


def bootstrap_stderr(
    scores: Sequence[float],
    labels: Sequence[int],
    stat: Callable[[Sequence[float], Sequence[int]], float | None],
    *,
    resamples: int,
    seed: int,
) -> float:
    """Standard deviation of ``stat`` over seeded resamples (resamples with one class are skipped)."""
    rng = random.Random(seed)
    n = len(scores)
    vals: list[float] = []
    for _ in range(resamples):
        idx = [rng.randrange(n) for _ in range(n)]
        v = stat([scores[i] for i in idx], [labels[i] for i in idx])
        if v is not None:
            vals.append(v)
    if len(vals) < 2:
        return 0.0
    mu = sum(vals) / len(vals)
    return math.sqrt(sum((v - mu) ** 2 for v in vals) / (len(vals) - 1))


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021)."""
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod
