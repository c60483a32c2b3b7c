"""The deterministic numeric kernel of forecasts: functions every node computes bit for bit.

IEEE-754 double ``+ - * /`` and ``sqrt`` are correctly rounded on every platform; libm's
``exp`` and ``log`` are not, and ``sum`` of floats changed its algorithm in Python 3.12.
So this module builds ``exp`` from basic operations (a fixed Horner polynomial), takes
logarithms of FLOP in :class:`decimal.Decimal`, solves linear systems by explicit loops
in a fixed order, and computes Student t quantiles by a fixed rational approximation.
The curve fits (:mod:`protocol.forecast`, :mod:`protocol.twostep`) use nothing else.
"""

from __future__ import annotations

import decimal
import functools
import math
from collections.abc import Iterable
from decimal import Decimal

from protocol.errors import PolicyError

__all__ = ["DCTX", "exp", "inverse", "log10", "log10_text", "normal_quantile", "sigmoid", "sigmoid_all", "solve", "t_quantile"]

#: Decimal context of every logarithm and published compute value.
DCTX = decimal.Context(prec=28, rounding=decimal.ROUND_HALF_EVEN, Emin=-999_999, Emax=999_999)
#: Reciprocal condition number below which a system counts as singular.
RCOND = 1e-10

_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e00
_EXP_COEF = tuple(1.0 / math.factorial(k) for k in range(13, -1, -1))


def exp(t: float) -> float:
    """exp(t) from IEEE-754 basic operations only (bit-identical on every platform)."""
    t = max(-700.0, min(700.0, t))
    n = int(t * _INV_LN2 + (0.5 if t >= 0 else -0.5))
    r = (t - n * _LN2_HI) - n * _LN2_LO
    p = 0.0
    for c in _EXP_COEF:
        p = p * r + c
    return math.ldexp(p, n)


def sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + exp(-z))
    e = exp(z)
    return e / (1.0 + e)


def sigmoid_all(zs: Iterable[float]) -> list[float]:
    """``[sigmoid(z) for z in zs]`` with :func:`exp` written out inline.

    The fits spend most of their time here (hundreds of thousands of values per fit), so
    the call per value and the Horner loop are unrolled. Every float operation, and its
    order, is exactly that of :func:`sigmoid` (``min``/``max`` included, NaN and -0.0
    alike), so results are bit-identical.
    """
    c13, c12, c11, c10, c9, c8, c7, c6, c5, c4, c3, c2, c1, c0 = _EXP_COEF
    out: list[float] = []
    for z in zs:
        t = -z if z >= 0 else z
        t = t if t < 700.0 else 700.0  # min(700.0, t)
        t = t if t > -700.0 else -700.0  # max(-700.0, t)
        n = int(t * _INV_LN2 + (0.5 if t >= 0 else -0.5))
        r = (t - n * _LN2_HI) - n * _LN2_LO
        p = ((((((((((((((0.0 * r + c13) * r + c12) * r + c11) * r + c10) * r + c9) * r + c8) * r + c7) * r
                      + c6) * r + c5) * r + c4) * r + c3) * r + c2) * r + c1) * r + c0)  # fmt: skip
        e = math.ldexp(p, n)
        out.append(1.0 / (1.0 + e) if z >= 0 else e / (1.0 + e))
    return out


def log10(d: Decimal) -> float:
    with decimal.localcontext(DCTX):
        return float(d.log10())


@functools.lru_cache(maxsize=1 << 16)
def log10_text(flop: str) -> float:
    # Every rule's fit over a lineage reads the same FLOP strings; the value depends only on them.
    return log10(Decimal(flop))


def solve(a: list[list[float]], b: list[float]) -> list[float] | None:
    """Gaussian elimination with partial pivoting; None when (numerically) singular."""
    n = len(b)
    m = [[*row, b[i]] for i, row in enumerate(a)]
    scale = 0.0
    for row in a:
        for v in row:
            scale = max(scale, abs(v))
    if scale == 0.0 or not math.isfinite(scale):
        return None
    for col in range(n):
        piv = col
        for r in range(col + 1, n):
            if abs(m[r][col]) > abs(m[piv][col]):
                piv = r
        if abs(m[piv][col]) <= RCOND * scale:
            return None
        m[col], m[piv] = m[piv], m[col]
        for r in range(col + 1, n):
            f = m[r][col] / m[col][col]
            if f != 0.0:
                for c in range(col, n + 1):
                    m[r][c] -= f * m[col][c]
    x = [0.0] * n
    for r in range(n - 1, -1, -1):
        acc = m[r][n]
        for c in range(r + 1, n):
            acc -= m[r][c] * x[c]
        x[r] = acc / m[r][r]
    return x


def inverse(a: list[list[float]]) -> list[list[float]] | None:
    """Inverse of a symmetric positive semi-definite matrix after unit-diagonal scaling.

    Scaling first makes the singularity test a relative one (a reciprocal condition
    number), so an unidentified parameter is caught whatever its units.
    """
    n = len(a)
    d = []
    for i in range(n):
        if not a[i][i] > 0.0:
            return None
        d.append(1.0 / math.sqrt(a[i][i]))
    s = [[a[i][j] * d[i] * d[j] for j in range(n)] for i in range(n)]
    cols: list[list[float]] = []
    for j in range(n):
        e = [1.0 if i == j else 0.0 for i in range(n)]
        col = solve(s, e)
        if col is None:
            return None
        cols.append(col)
    return [[cols[j][i] * d[i] * d[j] for j in range(n)] for i in range(n)]


def t_quantile(level: str, dof: int) -> float:
    """Two-sided Student t quantile: ``P(|T| <= t) = level`` with ``dof`` degrees of freedom.

    Deterministic: the normal quantile (Acklam's rational approximation, logarithms in
    Decimal) and a Cornish-Fisher expansion in 1/dof use only ``+ - * /`` and ``sqrt``.
    """
    p = (1.0 + float(Decimal(level))) / 2.0
    z = normal_quantile(p)
    n = float(dof)
    z2 = z * z
    g1 = (z2 + 1.0) * z / 4.0
    g2 = ((5.0 * z2 + 16.0) * z2 + 3.0) * z / 96.0
    g3 = (((3.0 * z2 + 19.0) * z2 + 17.0) * z2 - 15.0) * z / 384.0
    g4 = ((((79.0 * z2 + 776.0) * z2 + 1482.0) * z2 - 1920.0) * z2 - 945.0) * z / 92160.0
    return z + g1 / n + g2 / (n * n) + g3 / (n * n * n) + g4 / (n * n * n * n)


_A = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02, 1.383577518672690e02,
      -3.066479806614716e01, 2.506628277459239e00)  # fmt: skip
_B = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02, 6.680131188771972e01,
      -1.328068155288572e01)  # fmt: skip
_C = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00, -2.549732539343734e00,
      4.374664141464968e00, 2.938163982698783e00)  # fmt: skip
_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)


def normal_quantile(p: float) -> float:
    if p <= 0.5:
        raise PolicyError(f"quantile {p} must be above 0.5")
    if p <= 0.97575:
        q = p - 0.5
        r = q * q
        num = ((((_A[0] * r + _A[1]) * r + _A[2]) * r + _A[3]) * r + _A[4]) * r + _A[5]
        den = ((((_B[0] * r + _B[1]) * r + _B[2]) * r + _B[3]) * r + _B[4]) * r + 1.0
        return q * num / den
    with decimal.localcontext(DCTX):
        q = math.sqrt(float(-2 * Decimal(1.0 - p).ln()))
    num = ((((_C[0] * q + _C[1]) * q + _C[2]) * q + _C[3]) * q + _C[4]) * q + _C[5]
    den = (((_D[0] * q + _D[1]) * q + _D[2]) * q + _D[3]) * q + 1.0
    return -num / den
