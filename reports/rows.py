"""The report's tables of results and entries, row by row, every number through :class:`Numbers`."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup, escape

from protocol.policy import Rule
from reports.analysis import (
    FLOP_PTR,
    STEP_PTR,
    Analysis,
    Result,
)
from reports.errors import RenderError
from reports.formatting import (
    KIND_TEXT,
    VERDICT_TEXT,
    _anchor,
    bound_name,
    exact_text,
    fmt_flop,
    fmt_when,
    peer,
)
from reports.numbers import Numbers


def rule_cell(nums: Numbers, res: Result, rule: Rule, trend: bool) -> Markup:
    """Verdict, measured value ± stderr and the compared bound of one rule on one result."""
    ind = rule.indicator
    if res.summary.metric(ind) is None:
        return Markup('<span class="muted">not measured</span>')
    note = ' <span class="trend-note">by trend</span>' if trend and nums.by_trend(res.id, rule.id) else ""
    value = nums.field(res.id, res.metric_pointer(ind.task, ind.metric, "value"), "value")
    stderr = nums.field(res.id, res.metric_pointer(ind.task, ind.metric, "stderr"), "stderr")
    bound = ""
    if rule.uncertainty.method == "upper_bound":
        bound = f'<br><span class="small">{escape(bound_name(rule))!s} {nums.bound(res.id, rule.id, trend)}</span>'
    return Markup(  # noqa: S704 (every part is Markup built from escaped values)
        f'{nums.verdict(res.id, rule.id, trend)}{note}<br><span class="small">measured {value} ± {stderr}</span>{bound}'
    )


def routine_count(a: Analysis) -> int:
    """Results whose every point verdict is OK: left out of the printed appendices."""
    return sum(1 for r in a.results if a.routine(r.id))


def _tbodies(rows: list[tuple[bool, str]]) -> Markup:
    """Rows grouped into ``<tbody>`` runs; runs of routine rows carry the class print CSS hides."""
    parts: list[str] = []
    current: bool | None = None
    for routine, row in rows:
        if routine is not current:
            if current is not None:
                parts.append("</tbody>\n")
            parts.append('<tbody class="routine">\n' if routine else "<tbody>\n")
            current = routine
        parts.append(row)
    if current is not None:
        parts.append("</tbody>\n")
    return Markup("".join(parts))  # noqa: S704 (rows built from escaped or validated values)


def result_rows(nums: Numbers, a: Analysis, printed: bool = False) -> Markup:
    """The every-result appendix's ``<tbody>`` runs, one row per result (thousands of rows).

    Lean on purpose (a 10,000-result report must stay quick to render and to print): each
    number is a plain link to its entry's row in the cited-documents appendix, the column
    headers say where in the signed statement the numbers sit, and the stylesheet styles
    cells by column. Every number still comes from a claim, as :meth:`Numbers.field`.
    ``printed``: leave out the routine results (the print stylesheet hides them anyway).
    """
    fields = nums.claims.fields
    verdicts = nums.claims.verdicts
    reads = [(rule.id, rule.indicator) for rule in a.policy.rules]
    ptrs: dict[tuple[int, str], tuple[str, str]] = {}
    models: dict[str, str] = {}
    labs: dict[str, str] = {}
    rows: list[tuple[bool, str]] = []

    def claimed(doc: str, ptr: str) -> Any:
        try:
            return fields[(doc, ptr)]
        except KeyError:
            raise RenderError(
                f"the report tried to show {doc[:16]}…{ptr}, which the bundle does not claim"
            ) from None

    for res in a.results:
        eid = res.id
        routine = a.routine(eid)
        if printed and routine:
            continue
        a_open = f'<a href="#e-{eid[:16]}">'
        flop = claimed(eid, FLOP_PTR)
        cells = [
            f"<tr><td>{labs.get(res.lab) or labs.setdefault(res.lab, str(escape(res.lab)))}</td>"
            f"<td>{a_open}{escape(claimed(eid, '/seq'))}</a></td>"
            f"<td>{models.get(res.model) or models.setdefault(res.model, str(peer(res.model)))}</td>"
            f"<td>{a_open}{escape(claimed(eid, STEP_PTR))}</a></td>"
            f'<td><a href="#e-{eid[:16]}" title="{escape(flop)} FLOP">{fmt_flop(flop)}</a></td>'
        ]
        for rule_id, ind in reads:
            if res.summary.metric(ind) is None:
                cells.append('<td class="muted">not measured</td>')
                continue
            c = verdicts.get((eid, rule_id, False))
            if c is None:
                raise RenderError(f"no verdict claim for rule {rule_id} on {eid[:16]}…")
            ti = res.task_index[ind.task]
            vp, sp = ptrs.get((ti, ind.metric)) or ptrs.setdefault(
                (ti, ind.metric),
                (
                    res.metric_pointer(ind.task, ind.metric, "value"),
                    res.metric_pointer(ind.task, ind.metric, "stderr"),
                ),
            )
            cells.append(
                f'<td><a class="v-{c.verdict}" href="#e-{eid[:16]}">{VERDICT_TEXT[c.verdict]}</a> '
                f"{a_open}{escape(claimed(eid, vp))}</a> ± {a_open}{escape(claimed(eid, sp))}</a></td>"
            )
        cells.append(f"<td>{a_open}{eid[:10]}</a></td></tr>\n")
        nums.used += 4 + 3 * len(reads)
        rows.append((routine, "".join(cells)))
    return _tbodies(rows)


def entry_rows(nums: Numbers, a: Analysis, printed: bool = False) -> Markup:
    """The cited-documents appendix's ``<tbody>`` runs: the anchors every number links to.

    Rendered after everything else that links here: a routine result the body cites
    (``nums.linked``) is not marked routine, so that its row prints; ``printed`` leaves
    out the routine rows instead of marking them.
    """
    rows: list[tuple[bool, str]] = []
    for vr in a.chain.versions:
        rows.append(
            (
                False,
                f'<tr id="{_anchor(vr.roster_id)}"><td>{vr.roster_id}</td>'
                f"<td>{escape(', '.join(sorted(vr.signed_by)))}</td><td>v{vr.version}</td>"
                f"<td>Roster</td><td>{fmt_when(vr.roster.issued_at)}</td><td></td></tr>\n",
            )
        )
    labs: dict[str, str] = {}
    shown = nums.shown
    for e in a.entries:
        routine = a.routine(e.entry_id) and e.entry_id not in nums.linked
        if printed and routine:
            continue
        exact = shown.get(e.entry_id)
        values = (
            "<td><ul class=\"plain\">"
            + "".join(f"<li><code>{escape(w)!s}</code> = {escape(exact_text(v))!s}</li>" for w, v in exact.items())
            + "</ul></td>"
            if exact
            else "<td></td>"
        )
        rows.append(
            (
                routine,
                f'<tr id="{_anchor(e.entry_id)}"><td>{e.entry_id}</td>'
                f"<td>{labs.get(e.lab) or labs.setdefault(e.lab, str(escape(e.lab)))}</td><td>{e.seq}</td>"
                f"<td>{KIND_TEXT[e.kind]}</td><td>{fmt_when(e.statement.issued_at)}</td>{values}</tr>\n",
            )
        )
    return _tbodies(rows)
