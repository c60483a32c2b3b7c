"""Synthetic scaling curves for the two-step forecast tests: a power-law log-probability of
the correct answer against log10 compute ``x``, and accuracy a sigmoid of it above chance.

The loss of the correct answer in nats is ``L = A * 10^(-ALPHA * (x - X0))``; the proxy is
its negation (a log-probability). Accuracy from the proxy is
``chance + (1 - chance) * sigmoid(K * (p - M))``.
"""

from __future__ import annotations

import math

A, ALPHA, X0 = 5.0, 0.35, 15.0
CHANCE, K, M = 0.25, 2.0, -1.2


def proxy_at(x: float) -> float:
    return -A * 10 ** (-ALPHA * (x - X0))


def acc_at(x: float) -> float:
    return CHANCE + (1 - CHANCE) / (1 + math.exp(-K * (proxy_at(x) - M)))
