"""Server-side SVG charts: an indicator against training compute, per policy rule.

Each chart shows every lab's results (one marker shape per lab, so meaning never rests
on colour), the rule's alert and breach levels, and the forecast band of the lineage
closest to the breach level. Coordinates are computed here; the SVG markup is written by
a Jinja2 template with autoescaping, so lab and model names are always text.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from decimal import Decimal

from markupsafe import Markup

from protocol.policy import Rule
from reports.analysis import Analysis, Result

WIDTH, HEIGHT = 720, 420
LEFT, RIGHT, TOP, BOTTOM = 84, 20, 20, 60
#: Units of the common metrics, for the y axis (a metric id alone tells a reader nothing).
METRIC_UNITS = {
    "acc": "fraction correct (0–1)",
    "accuracy": "fraction correct (0–1)",
    "exact_match": "fraction exactly right (0–1)",
    "logprob_correct": "log-probability of the correct answer (nats)",
}
LEVEL_LABEL_GAP = 16
"""Least vertical distance between the alert and the breach label (px), so they never overlap."""
#: Okabe–Ito palette: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#8C6D00")
SHAPES = ("circle", "square", "triangle", "diamond", "cross", "triangle-down", "plus", "star")
BAND_STEPS = 48


@dataclass(frozen=True)
class Marker:
    shape: str
    colour: str


def marker_for(index: int) -> Marker:
    # Shapes cycle faster than colours so that the (shape, colour) pair stays unique for 64 labs.
    return Marker(SHAPES[index % len(SHAPES)], PALETTE[(index // len(SHAPES) + index) % len(PALETTE)])


def marker_path(shape: str, x: float, y: float, r: float = 4.5) -> str:
    """SVG path data for a marker centred on (x, y)."""
    return f"M{_num(x)} {_num(y)}{marker_stub(shape, r)}"


def open_shape(shape: str) -> bool:
    """Line-only markers are stroked, not filled."""
    return shape in ("cross", "plus")


def _num(v: float) -> str:
    """Shortest fixed-point text of ``v`` to 0.01 (SVG path data)."""
    text = f"{v:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def marker_stub(shape: str, r: float = 4.5) -> str:
    """Path data drawing a marker around the current point, in relative commands.

    A marker at (x, y) is ``M{x} {y}`` plus this stub, so a chart with thousands of points
    formats two numbers per point instead of every vertex (:func:`marker_path` is the absolute form).
    """
    n = _num
    if shape == "circle":
        return f"m{n(-r)} 0a{n(r)} {n(r)} 0 1 0 {n(2 * r)} 0a{n(r)} {n(r)} 0 1 0 {n(-2 * r)} 0z"
    if shape == "square":
        s = r * 0.9
        return f"m{n(-s)} {n(-s)}h{n(2 * s)}v{n(2 * s)}h{n(-2 * s)}z"
    if shape in ("triangle", "triangle-down"):
        d = 1.0 if shape == "triangle" else -1.0
        return f"m0 {n(-1.15 * r * d)}l{n(r)} {n(1.95 * r * d)}h{n(-2 * r)}z"
    if shape == "diamond":
        return f"m0 {n(-1.2 * r)}l{n(r)} {n(1.2 * r)}l{n(-r)} {n(1.2 * r)}l{n(-r)} {n(-1.2 * r)}z"
    if shape == "cross":
        s = r * 0.8
        return f"m{n(-s)} {n(-s)}l{n(2 * s)} {n(2 * s)}m0 {n(-2 * s)}l{n(-2 * s)} {n(2 * s)}"
    if shape == "plus":
        return f"m{n(-r)} 0h{n(2 * r)}m{n(-r)} {n(-r)}v{n(2 * r)}"
    # star: five-pointed; rounded vertices, then relative steps between them
    pts = []
    for k in range(10):
        rr = r * 1.2 if k % 2 == 0 else r * 0.5
        a = -math.pi / 2 + k * math.pi / 5
        pts.append((round(rr * math.cos(a), 2), round(rr * math.sin(a), 2)))
    steps = [f"{n(x1 - x0)} {n(y1 - y0)}" for (x0, y0), (x1, y1) in itertools.pairwise(pts)]
    return f"m{n(pts[0][0])} {n(pts[0][1])}l" + " ".join(steps) + "z"


@dataclass
class Series:
    lab: str
    name: str
    marker: Marker
    count: int = 0
    """Number of points plotted."""
    plain: list[str] = field(default_factory=list)
    """Path data of the markers (one path per lab: a chart can hold thousands of points)."""
    bars: list[str] = field(default_factory=list)
    """Path data of the error bars (± one standard error), one vertical stroke per point."""

    def markup(self) -> Markup:
        """The series' error bars, then its markers. Nothing in a chart is a link: a chart is
        one image to assistive technology (``role=img``), so its links sit beside it."""
        bars = (
            f'<path class="err" d="{"".join(self.bars)}" stroke="{self.marker.colour}"/>' if self.bars else ""
        )
        first = f'<path d="{"".join(self.plain)}"/>' if self.plain else ""
        return Markup(bars + first)  # noqa: S704 (paths are numbers, colour from our palette)


def y_label(metric: str) -> str:
    unit = METRIC_UNITS.get(metric)
    if unit is None and "logprob" in metric:
        unit = "log-probability (nats)"
    return f"{metric}: {unit}" if unit else metric


@dataclass
class Chart:
    rule: Rule
    title: str
    metric: str
    width: int = WIDTH
    height: int = HEIGHT
    plot: tuple[int, int, int, int] = (LEFT, TOP, WIDTH - RIGHT, HEIGHT - BOTTOM)
    series: list[Series] = field(default_factory=list)
    x_ticks: list[tuple[float, int]] = field(default_factory=list)
    """(pixel x, decade exponent)."""
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    levels: list[tuple[str, float, str, str, float]] = field(default_factory=list)
    """(kind alert|breach, pixel y, value text, name, pixel y of its label)."""
    y_label: str = ""
    """The y axis: metric and unit."""
    riskier: str = ""
    """``higher is riskier`` or ``lower is riskier``."""
    of_note: list[Result] = field(default_factory=list)
    """Results to link beside the chart: each lineage's latest, and those past a level."""
    more_of_note: int = 0
    band: str | None = None
    """SVG path of the forecast band polygon."""
    centre: str | None = None
    """SVG path of the fitted central curve."""
    band_lab: str | None = None
    band_model: str | None = None
    band_note: str = ""
    horizon_x: float | None = None
    band_edges: tuple[str, str] | None = None
    """SVG paths of the band's two edges (outlined, so the band shows in print and at low contrast)."""
    description: str = ""
    n_points: int = 0


def _fmt(v: float) -> str:
    text = f"{v:.3g}"
    return text


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    span = hi - lo
    if span <= 0:
        return [lo]
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw), default=raw)
    start = math.ceil(lo / step) * step
    out = []
    v = start
    while v <= hi + 1e-12:
        out.append(round(v, 10))
        v += step
    return out


def build_chart(
    a: Analysis, rule: Rule, lab_names: dict[str, str], lab_order: list[str], *, printed: bool = False
) -> Chart:
    """Lay out the chart of ``rule``'s indicator; pure geometry from verified results.

    On screen every marker links to its entry and names its value in a tooltip. ``printed``:
    routine results (every rule OK; their rows are not printed) are drawn as one unlinked
    path per lab, which keeps printing quick; the others stay linked, drawn on top.
    """
    ind = rule.indicator
    title = rule.title or rule.id
    chart = Chart(rule=rule, title=title, metric=ind.metric, y_label=y_label(ind.metric))
    chart.riskier = "higher is riskier" if ind.direction == "higher_is_riskier" else "lower is riskier"
    data: list[tuple[Result, float, float, float]] = []
    extra: list[tuple[str, str, str, str]] = []
    """(lab, model, value, stderr) of each point, beside ``data``."""
    for res in a.results:
        m = res.summary.metric(ind)
        if m is None or Decimal(res.flop) <= 0:
            continue
        data.append((res, res.log10_flop, float(m.value), float(m.stderr)))
        extra.append((res.lab, res.model, m.value, m.stderr))
    chart.n_points = len(data)

    # Forecast band: the lineage whose latest verdict is riskiest (highest bound in the
    # risky direction), i.e. the one a reader most needs to see projected.
    focus: tuple[str, str] | None = None
    best: tuple[int, Decimal] | None = None
    rank = {"ok": 0, "warn": 1, "breach": 2}
    sign = Decimal(1) if ind.direction == "higher_is_riskier" else Decimal(-1)
    for key, res in a.latest.items():
        v = a.trend.get((res.id, rule.id))
        if v is None:
            continue
        score = (rank[v.verdict], sign * Decimal(v.bound))
        if best is None or score > best:
            best, focus = score, key
    fit = None
    horizon = None
    if focus is not None and rule.forecast is not None:
        # The very fit behind the verified trend verdict (analysis keeps it): no refit here.
        fit = a.fits.get((a.latest[focus].id, rule.id))
        horizon = a.latest[focus].log10_flop + math.log10(float(Decimal(rule.forecast.horizon)))

    xs = [d[1] for d in data] or [18.0, 21.0]
    x_lo = math.floor(min(xs) - 0.05)
    x_hi = math.ceil(max([*xs, horizon or -math.inf]) + 0.05)
    if x_hi - x_lo < 2:
        x_hi = x_lo + 2
    ys = [d[2] for d in data] + [float(Decimal(rule.alert_level)), float(Decimal(rule.breach_level))]
    ys += [d[2] + d[3] for d in data] + [d[2] - d[3] for d in data]
    band_pts: list[tuple[float, float, float, float]] = []
    """(log10 FLOP, interval low, interval high, forecast): the verdict's own prediction
    interval (``BandFit.interval``), whether the policy states a level or a z."""
    if fit is not None:
        x0 = min(d[1] for d, e in zip(data, extra, strict=True) if e[:2] == focus)
        x1 = horizon if horizon is not None else x_hi
        for k in range(BAND_STEPS + 1):
            x = x0 + (x1 - x0) * k / BAND_STEPS
            lo, hi = fit.interval(x)
            band_pts.append((x, lo, hi, fit.predict(x)[0]))
    y_lo, y_hi = min(ys), max(ys)
    # The central forecast is drawn whole to the horizon, within reason: the scale may grow by
    # half the data's span to hold it; the band's edges are clipped to the plot instead.
    span = (y_hi - y_lo) or 0.1
    if band_pts:
        mids = [mean for _x, _lo, _hi, mean in band_pts]
        y_lo = max(min(y_lo, *mids), y_lo - span / 2)
        y_hi = min(max(y_hi, *mids), y_hi + span / 2)
    pad = (y_hi - y_lo) * 0.08 or 0.1
    y_lo, y_hi = y_lo - pad, y_hi + pad
    if ind.metric in ("acc", "accuracy", "exact_match") and y_lo > -0.05:
        y_lo = max(y_lo, 0.0)
        y_hi = min(max(y_hi, 0.0), 1.0) if y_hi <= 1.05 else y_hi

    px0, py0, px1, py1 = chart.plot

    def sx(x: float) -> float:
        return px0 + (x - x_lo) / (x_hi - x_lo) * (px1 - px0)

    def sy(y: float) -> float:
        # Clamped a little beyond the plot: the band's far edge is clipped by the SVG clip path.
        y = min(max(y, y_lo - (y_hi - y_lo)), y_hi + (y_hi - y_lo))
        return py1 - (y - y_lo) / (y_hi - y_lo) * (py1 - py0)

    chart.x_ticks = [(sx(d), d) for d in range(x_lo, x_hi + 1)]
    chart.y_ticks = [(sy(t), _fmt(t)) for t in _nice_ticks(y_lo, y_hi)]
    names = rule.level_names
    levels = [
        ("alert", sy(float(Decimal(rule.alert_level))), rule.alert_level, names.alert if names else "alert level"),
        ("breach", sy(float(Decimal(rule.breach_level))), rule.breach_level, names.breach if names else "breach level"),
    ]
    # Labels: the upper line's label above it, the lower line's below it once they are close,
    # so the two never overlap; both kept inside the plot.
    (hi_kind, hi_y, *_), (lo_kind, lo_y, *_) = sorted(levels, key=lambda lv: lv[1])
    label_y = {hi_kind: hi_y - 5, lo_kind: lo_y - 5}
    if lo_y - hi_y < LEVEL_LABEL_GAP:
        label_y[lo_kind] = max(lo_y + 15, label_y[hi_kind] + LEVEL_LABEL_GAP)
    for kind in label_y:
        label_y[kind] = min(max(label_y[kind], py0 + 13), py1 - 4)
    if abs(label_y[hi_kind] - label_y[lo_kind]) < LEVEL_LABEL_GAP:
        label_y[lo_kind] = label_y[hi_kind] + LEVEL_LABEL_GAP
    chart.levels = [(kind, y, value, name, label_y[kind]) for kind, y, value, name in levels]
    if band_pts and focus is not None:
        upper = [f"{sx(x):.1f},{sy(hi):.1f}" for x, _lo, hi, _m in band_pts]
        lower = [f"{sx(x):.1f},{sy(lo):.1f}" for x, lo, _hi, _m in reversed(band_pts)]
        chart.band = "M" + "L".join(upper + lower) + "Z"
        centre = [f"{sx(x):.1f},{sy(mean):.1f}" for x, _lo, _hi, mean in band_pts]
        chart.centre = "M" + "L".join(centre)
        chart.band_lab, chart.band_model = focus
        chart.band_note = fit.note if fit else ""
        chart.horizon_x = sx(horizon) if horizon is not None else None
        chart.band_edges = (
            "M" + "L".join(upper),
            "M" + "L".join(f"{sx(x):.1f},{sy(lo):.1f}" for x, lo, _hi, _m in band_pts),
        )

    by_lab: dict[str, Series] = {}
    for i, lab in enumerate(lab_order):
        by_lab[lab] = Series(lab, lab_names.get(lab, lab), marker_for(i))
    # Hot loop (one iteration per point): per-lab pieces looked up once, scales precomputed.
    per_lab: dict[str, tuple[Series, str, str]] = {}
    kx = (px1 - px0) / (x_hi - x_lo)
    ky = (py1 - py0) / (y_hi - y_lo)
    for (_res, x, y, se), (lab, _model, _value, _stderr) in zip(data, extra, strict=True):
        got = per_lab.get(lab)
        if got is None:
            s = by_lab.get(lab)
            if s is None:
                s = by_lab[lab] = Series(lab, lab, marker_for(len(by_lab)))
            got = per_lab[lab] = (s, marker_stub(s.marker.shape), "")
        s, stub, _ = got
        yc = y_lo if y < y_lo else y_hi if y > y_hi else y
        px = px0 + (x - x_lo) * kx
        s.plain.append(f"M{px:.1f} {py1 - (yc - y_lo) * ky:.1f}{stub}")
        if se > 0:
            top = min(y + se, y_hi)
            bottom = max(y - se, y_lo)
            if top > bottom:
                s.bars.append(f"M{px:.1f} {py1 - (top - y_lo) * ky:.1f}V{py1 - (bottom - y_lo) * ky:.1f}")
        s.count += 1
    del printed  # the same chart on screen and in print: nothing in it is a link
    latest = {r.id for r in a.latest.values()}
    notable = [
        r
        for r, *_ in data
        if r.id in latest or (a.point.get((r.id, rule.id)) is not None and a.point[(r.id, rule.id)].verdict != "ok")
    ]
    chart.of_note = notable[:12]
    chart.more_of_note = len(notable) - len(chart.of_note)
    chart.series = [s for s in by_lab.values() if s.count]
    chart.description = _describe(chart, a, rule, data)
    return chart


_SUP = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def _flop(value: str) -> str:
    """``1.33 × 10¹²``: compute in words a reader can say (never ``1.32648E+12``)."""
    d = Decimal(value)
    if d == 0:
        return "0"
    exp = d.adjusted()
    return f"{d.scaleb(-exp):.2f}".rstrip("0").rstrip(".") + f" × 10{str(exp).translate(_SUP)}"


def _sig(value: str) -> str:
    d = Decimal(value)
    if d == 0:
        return "0"
    text = f"{abs(d):.{max(2 - d.adjusted(), 0)}f}"
    return ("−" if d < 0 else "") + text


def _describe(chart: Chart, a: Analysis, rule: Rule, data: list[tuple[Result, float, float, float]]) -> str:
    """The chart's text alternative: what a sighted reader would take from it."""
    ind = rule.indicator
    if not data:
        return f"No results report {ind.metric} for {ind.task}."
    higher = ind.direction == "higher_is_riskier"
    top = max(data, key=lambda d: d[2] if higher else -d[2])
    labs = len({d[0].lab for d in data})
    m = top[0].summary.metric(ind)
    assert m is not None
    lo = math.floor(min(d[1] for d in data))
    hi = math.ceil(max(d[1] for d in data))
    parts = [
        f"{len(data)} results from {labs} lab(s), plotted as {chart.y_label} against training compute "
        f"from 10{str(lo).translate(_SUP)} to 10{str(hi).translate(_SUP)} FLOP; each point is a measured "
        "value, its bar ± one standard error.",
        f"Alert level {_sig(rule.alert_level)}; breach level {_sig(rule.breach_level)}"
        f" ({'higher' if higher else 'lower'} values are riskier).",
        f"The {'highest' if higher else 'lowest'} measured value is {_sig(m.value)} ± {_sig(m.stderr)} "
        f"(lab {top[0].lab}, step {top[0].body.model.checkpoint_step}).",
    ]
    if chart.band_lab is not None:
        v = a.trend.get((a.latest[(chart.band_lab, chart.band_model or "")].id, rule.id))
        t = v.trend if v else None
        if t is not None and t.crossing_low_flop is not None:
            central = _flop(t.crossing_flop) if t.crossing_flop else "beyond the range"
            parts.append(
                f"The shaded band is the forecast for lab {chart.band_lab}, drawn to the look-ahead horizon: "
                f"it may reach the breach level from {_flop(t.crossing_low_flop)} FLOP "
                f"(central estimate {central})."
            )
        else:
            parts.append(
                f"The shaded band is the forecast for lab {chart.band_lab}, drawn to the look-ahead horizon; "
                "it does not reach the breach level."
            )
    return " ".join(parts)
