"""Render a report from a *verified* bundle: HTML (self-contained) and PDF (headless Chromium).

What is shown is exactly what verified: the renderer takes a
:class:`~reports.bundle.VerifiedBundle` only, and every number it prints goes through
:meth:`Numbers.field` / :meth:`Numbers.verdict` / :meth:`Numbers.tally`, which refuse to
print anything the bundle does not claim. Peer-supplied strings are always data: one
Jinja2 environment with autoescaping for every template, SVG included, and each peer
string isolated with ``<bdi>`` so right-to-left text cannot reorder its surroundings.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup, escape

from protocol.canonical import parse_time
from protocol.entries import (
    AlertBody,
    DiscretionaryTrigger,
    NoteBody,
    PauseCertificateBody,
    PauseProposalBody,
    ResumeProposalBody,
    RosterUpdateBody,
    Trigger,
    VerifiedEntry,
    VoteBody,
    halt_step,
)
from protocol.policy import Rule
from protocol.scope import describe
from protocol.verdicts import RuleVerdict
from reports.analysis import (
    FLOP_PTR,
    STEP_PTR,
    TEXT_PTR,
    Analysis,
    ProposalState,
    Result,
    pointer,
)
from reports.bundle import Check, VerificationReport, VerifiedBundle
from reports.charts import Chart, build_chart, marker_for, marker_path, open_shape
from reports.errors import BrowserMissingError, RenderError

SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")
VERDICT_TEXT = {"ok": "OK", "warn": "Warning", "breach": "Breach"}
KIND_TEXT = {
    "eval_result": "Evaluation result",
    "alert": "Alert",
    "pause_proposal": "Pause proposed",
    "vote": "Vote",
    "pause_certificate": "Certificate",
    "resume_proposal": "Resume proposed",
    "roster_update": "Roster changed",
    "note": "Note",
    "training_plan": "Training plan",
    "safety_case": "Safety case proposed",
    "forecast": "Forecast on record",
}


def _anchor(doc_id: str) -> str:
    return f"e-{doc_id[:16]}"


def fmt_flop(value: str) -> Markup:
    """``3.2 × 10²⁰`` for a FLOP decimal string (exact value kept in the link title)."""
    d = Decimal(value)
    if d == 0:
        return Markup("0")
    exp = d.adjusted()
    mant = d.scaleb(-exp)
    text = f"{mant:.2f}".rstrip("0").rstrip(".")
    return Markup(f"{text} × 10<sup>{exp}</sup>")  # noqa: S704 (digits and a sign only)


def flop_text(value: str) -> str:
    """``3.2 × 10²⁰`` as plain text (chart descriptions, tooltips): never ``3.2E+20``."""
    d = Decimal(value)
    if d == 0:
        return "0"
    exp = d.adjusted()
    text = f"{d.scaleb(-exp):.2f}".rstrip("0").rstrip(".")
    return f"{text} × 10{str(exp).translate(SUPERSCRIPT)}"


MINUS = "\u2212"


def fmt_dec(value: Any, sig: int = 3) -> str:
    """A measured number for lay readers: ``sig`` significant digits, a true minus sign.

    ``-8.441237`` → ``−8.44``, ``0.02171`` → ``0.0217`` (``sig=2``: ``0.022``), ``-14.12`` →
    ``−14.1``; whole digits are never dropped (``1234.7`` → ``1235``). The exact signed value
    stays one step away: every such number links to its entry, whose row lists it.
    """
    try:
        d = Decimal(str(value))
    except ArithmeticError:
        return str(value)
    if not d.is_finite():
        return str(value)
    if d == 0:
        return "0"
    places = max(sig - 1 - d.adjusted(), 0)
    text = f"{abs(d):.{places}f}"
    return (MINUS if d < 0 else "") + text


def exact_text(value: Any) -> str:
    """A signed value exactly as signed, for readers: ``1.17166E+20`` → ``1.17166 × 10²⁰``, ``-6.6`` → ``−6.6``."""
    text = str(value)
    m = re.fullmatch(r"(-?)(\d+(?:\.\d+)?)[eE]\+?(-?\d+)", text)
    if m is not None:
        return f"{MINUS if m.group(1) else ''}{m.group(2)} × 10{str(int(m.group(3))).translate(SUPERSCRIPT)}"
    return MINUS + text[1:] if text.startswith("-") else text


def confidence(z: str | None) -> str:
    """One-sided confidence of a bound ``z`` standard errors out: ``1.0`` → ``84``, ``1.96`` → ``97.5``."""
    if z is None:
        return ""
    p = 50.0 * (1.0 + math.erf(float(Decimal(z)) / math.sqrt(2.0)))
    q = round(p)
    return str(q) if abs(p - q) < 0.3 else f"{p:.1f}"


def bound_name(rule: Rule) -> str:
    """What the rule compares with its levels, in words: ``upper 84% bound`` or ``measured value``."""
    u = rule.uncertainty
    if u.method != "upper_bound":
        return "measured value"
    side = "upper" if rule.indicator.direction == "higher_is_riskier" else "lower"
    return f"{side} {confidence(u.z)}% bound"


def confidence_words(rule: Rule) -> str:
    """The rule's confidence in words: ``z = 1.0 ≈ 84% one-sided``."""
    u = rule.uncertainty
    if u.method != "upper_bound":
        return "the measured value itself, without a margin for error"
    side = "higher" if rule.indicator.direction == "higher_is_riskier" else "lower"
    return (
        f"the measured value moved {u.z} standard error(s) toward risk ({side}): "
        f"z = {u.z} ≈ {confidence(u.z)}% one-sided confidence that the true value is no riskier"
    )


def riskier_words(rule: Rule) -> str:
    return "higher is riskier" if rule.indicator.direction == "higher_is_riskier" else "lower is riskier"


def css_string(text: str) -> Markup:
    """A CSS string literal of peer text (every character but letters, digits and space escaped).

    Markup because it goes inside ``<style>``, where HTML entities are not decoded: the output
    holds no ``<``, ``&`` or quote of the peer's own, so it cannot leave the string or the element.
    """
    out = []
    for ch in text:
        if ch.isascii() and (ch.isalnum() or ch == " "):
            out.append(ch)
        else:
            out.append(f"\\{ord(ch):06x}")
    return Markup('"' + "".join(out) + '"')  # noqa: S704 (letters, digits, spaces and CSS escapes only)


_TIME = re.compile(r"(\d{4}-\d{2}-\d{2})T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?Z")


@lru_cache(maxsize=4096)
def _day_text(day: str) -> str:
    return date.fromisoformat(day).strftime("%d %b %Y")  # ValueError for a date that does not exist


def fmt_when(ts: str) -> str:
    """``03 Mar 2025 09:01:07 UTC`` for an RFC 3339 UTC timestamp (to the second: order is visible)."""
    # Thousands of appendix rows: the date's words are cached per day and the time is sliced
    # from the text, instead of parsing every timestamp again.
    m = _TIME.fullmatch(ts)
    if m is not None:
        try:
            return f"{_day_text(m.group(1))} {ts[11:19]} UTC"
        except ValueError:
            pass
    return parse_time(ts).strftime("%d %b %Y %H:%M:%S UTC")  # raises SchemaError for a malformed time


def fmt_day(ts: str) -> str:
    return parse_time(ts).strftime("%-d %B %Y")


def peer(text: str) -> Markup:
    """Peer-supplied text: escaped and bidi-isolated."""
    return Markup(f'<bdi class="peer">{escape(text)!s}</bdi>')  # noqa: S704 (escaped)


def peer_short(text: str, limit: int = 60) -> Markup:
    """Peer text shortened for table cells; the full text stays in the tooltip and appendices."""
    if len(text) <= limit:
        return peer(text)
    return Markup(  # noqa: S704 (both parts escaped)
        f'<bdi class="peer" title="{escape(text)!s}">{escape(text[:limit])!s}…</bdi>'
    )


class Numbers:
    """The only way a template prints a number: each is a claim, linked to its source."""

    def __init__(self, vb: VerifiedBundle) -> None:
        self.vb = vb
        self.claims = vb.claims
        self.used = 0
        self.linked: set[str] = set()
        """Documents the report's body links to (the appendices then keep their rows in print)."""
        self.shown: dict[str, dict[str, str]] = {}
        """Document -> {where: exact signed value} of each number the body shows rounded.

        The cited-documents appendix lists them in the document's row, so the exact value
        and its place in the signed statement are one link away for every reader (a tooltip
        is not: touch and keyboard users cannot open one)."""

    def _link(self, doc: str, text: Any, title: str) -> Markup:
        # An f-string of str(escape(...)) parts: Markup.format is several times slower, and
        # adding a Markup to a plain str would escape the str instead.
        self.used += 1
        self.linked.add(doc)
        return Markup(  # noqa: S704 (anchor is hex; title and text escaped)
            f'<a class="num" href="#{_anchor(doc)}" title="{escape(title)!s}">{escape(text)!s}</a>'
        )

    def _show(self, doc: str, where: str, exact: Any) -> None:
        self.shown.setdefault(doc, {})[where] = str(exact)

    def field(self, doc: str, ptr: str, kind: str = "plain") -> Markup:
        """A claimed value, linked to its entry. ``kind``: ``plain`` (as signed), ``flop``
        (× 10ⁿ), ``value`` (3 significant digits) or ``stderr`` (2)."""
        key = (doc, ptr)
        if key not in self.claims.fields:
            raise RenderError(f"the report tried to show {doc[:16]}…{ptr}, which the bundle does not claim")
        v = self.claims.fields[key]
        text: Any
        if kind == "flop":
            text = fmt_flop(v)
        elif kind == "value":
            text = fmt_dec(v, 3)
        elif kind == "stderr":
            text = fmt_dec(v, 2)
        else:
            text = v
        if kind != "plain":
            self._show(doc, ptr, v)
        return self._link(doc, text, f"signed value {v} at {ptr} in entry {doc}")

    def verdict(self, entry: str, rule: str, trend: bool) -> Markup:
        c = self.claims.verdicts.get((entry, rule, trend))
        if c is None:
            raise RenderError(f"no verdict claim for rule {rule} on {entry[:16]}…")
        self.linked.add(entry)
        # The symbol (● ▲ ■) comes from the stylesheet, hidden from screen readers there.
        return Markup(  # noqa: S704 (verdict is a Literal, anchor hex, entry validated hex)
            f'<a class="verdict v-{c.verdict}" href="#{_anchor(entry)}" '
            f'title="recomputed from entry {entry} under the pinned policy">{VERDICT_TEXT[c.verdict]}</a>'
        )

    def by_trend(self, entry: str, rule: str) -> bool:
        """True when the trend forecast, not the measured value, sets the verdict."""
        rank = {"ok": 0, "warn": 1, "breach": 2}
        t = self.claims.verdicts.get((entry, rule, True))
        p = self.claims.verdicts.get((entry, rule, False))
        return t is not None and p is not None and rank[t.verdict] > rank[p.verdict]

    def bound(self, entry: str, rule: str, trend: bool) -> Markup:
        """The number the rule compared with its levels (recomputed by the verifier), rounded."""
        c = self.claims.verdicts.get((entry, rule, trend))
        if c is None:
            raise RenderError(f"no verdict claim for rule {rule} on {entry[:16]}…")
        self._show(entry, f"bound compared by rule {rule}", c.bound)
        return self._link(
            entry, fmt_dec(c.bound), f"value compared with the levels ({c.bound}), recomputed from entry {entry}"
        )

    def crossing(self, entry: str, rule: str, which: str) -> Markup:
        c = self.claims.verdicts.get((entry, rule, True))
        if c is None:
            raise RenderError(f"no trend verdict claim for rule {rule} on {entry[:16]}…")
        v = getattr(c, which)
        if v is None:
            return Markup('<span class="muted">beyond range</span>')
        self._show(entry, f"forecast {which} of rule {rule} (FLOP)", v)
        return self._link(
            entry, fmt_flop(v), f"forecast {which} = {v} FLOP, recomputed from the lineage of {entry}"
        )

    def plan(self, entry: str, what: str) -> Markup:
        """A training plan's recomputed compute figure (``stop_flop`` or ``overdue_after``)."""
        c = self.claims.plans.get(entry)
        if c is None:
            raise RenderError(f"no state claim for training plan {entry[:16]}…")
        v = getattr(c, what)
        if v is None:
            return Markup('<span class="muted">none</span>')
        self._show(entry, f"plan {what} (FLOP)", v)
        return self._link(entry, fmt_flop(v), f"{what} = {v} FLOP, recomputed from plan {entry} and the signed results")

    def forecast_rule(self, entry: str, rule: str) -> Any:
        """The score claim of ``rule``'s prediction in forecast ``entry``."""
        c = self.claims.forecasts.get(entry)
        if c is None:
            raise RenderError(f"no score claim for forecast {entry[:16]}…")
        for r in c.rules:
            if r.rule == rule:
                return r
        raise RenderError(f"no score claim for rule {rule} of forecast {entry[:16]}…")

    def forecast(self, entry: str, rule: str, what: str) -> Markup:
        """A forecast's recomputed score figure: ``observed`` (linked to the result it is
        scored against) or ``abs_error``."""
        r = self.forecast_rule(entry, rule)
        v = getattr(r, what)
        if v is None:
            return Markup('<span class="muted">none</span>')
        result = self.claims.forecasts[entry].result
        if what == "observed" and result is not None:
            self._show(result, f"value of rule {rule}'s metric", v)
            return self._link(result, fmt_dec(v), f"measured {v} in result {result}, the one forecast {entry} is scored against")
        self._show(entry, f"{what} of rule {rule}", v)
        return self._link(entry, fmt_dec(v), f"{what} = {v}, recomputed from forecast {entry} and the signed result")

    def track(self, lab: str, what: str) -> Markup:
        """A lab's recomputed track-record figure (a count, ``coverage`` or ``mean_abs_error``)."""
        c = self.claims.track.get(lab)
        if c is None:
            raise RenderError(f"no track-record claim for lab {lab}")
        v = getattr(c, what)
        if v is None:
            return Markup('<span class="muted">none yet</span>')
        text = f"{Decimal(v) * 100:.1f}%" if what == "coverage" else v
        return Markup(  # noqa: S704 (escaped text and title)
            f'<span class="num" title="{escape(what)!s} = {escape(v)!s}, recomputed from the signed forecasts and '
            f'results">{escape(text)!s}</span>'
        )

    def tally(self, entry: str, what: str) -> Markup:
        c = self.claims.tallies.get(entry)
        if c is None:
            raise RenderError(f"no tally claim for proposal {entry[:16]}…")
        return self._link(
            entry, getattr(c, what), f"{what} recomputed from the signed votes on proposal {entry}"
        )

    def halt_step(self, doc: str) -> Markup:
        """The step a lab's signed halt record names, linked to the record (its full signed
        text is in the cited-documents appendix)."""
        key = (doc, TEXT_PTR)
        if key not in self.claims.fields:
            raise RenderError(f"the report tried to show halt record {doc[:16]}…, which the bundle does not claim")
        text = str(self.claims.fields[key])
        step = halt_step(text)
        if step is None:
            raise RenderError(f"entry {doc[:16]}… is not a halt record")
        self._show(doc, TEXT_PTR, text)
        return self._link(doc, f"{step:,}", f"signed halt record {doc}: {text[:200]}")

    def entry(self, entry_id: str) -> Markup:
        """A link to a cited document by its id (shortened; the full id in the tooltip)."""
        self.linked.add(entry_id)
        return Markup(  # noqa: S704 (entry ids are validated lowercase hex)
            f'<a class="entry" href="#{_anchor(entry_id)}" title="signed entry {entry_id}">'
            f"<code>{entry_id[:10]}</code></a>"
        )


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


@dataclass
class Event:
    when: str
    lab: str
    kind: str
    entry: VerifiedEntry
    text: Markup


@dataclass
class LabRow:
    id: str
    name: str
    marker_path: str
    marker_colour: str
    marker_open: bool
    results: int
    latest: list[Result] = field(default_factory=list)


@dataclass
class Story:
    """The headline facts the summary and the banner are written from."""

    status: str
    proposal: ProposalState | None
    result: Result | None
    rule: Rule | None
    verdict: RuleVerdict | None


def _lab_names(a: Analysis) -> dict[str, str]:
    names: dict[str, str] = {}
    for vr in a.chain.versions:
        for lab in vr.roster.labs:
            names[lab.id] = lab.name
    return names


def _story(a: Analysis) -> Story:
    status = a.status
    # The proposal that matters most: an uncertified-but-open one only if nothing is certified.
    pause = [p for p in a.proposals if p.action == "pause"]
    certified = [p for p in pause if p.certificate is not None]
    live = [p for p in pause if p.status != "expired"]
    chosen = (certified or live)[-1] if certified or live else None
    if chosen is not None:
        body = chosen.entry.statement.body
        assert isinstance(body, PauseProposalBody)
        if isinstance(body.trigger, DiscretionaryTrigger):  # no result, no rule: the lab's evidence
            return Story(status, chosen, None, None, None)
        res = a.results_by_id.get(body.trigger.result)
        rule = next((r for r in a.policy.rules if r.id == body.trigger.rule), None)
        v = a.point.get((body.trigger.result, body.trigger.rule)) if res else None
        return Story(status, chosen, res, rule, v)
    rank = {"ok": 0, "warn": 1, "breach": 2}
    worst: tuple[int, str, Result, Rule, RuleVerdict] | None = None
    for res in a.latest.values():
        for rule in a.policy.rules:
            v = a.trend.get((res.id, rule.id))
            if v is None:
                continue
            key = (rank[v.verdict], res.entry.statement.issued_at)
            if worst is None or key > worst[:2]:
                worst = (*key, res, rule, v)
    if worst is None:
        return Story(status, None, None, None, None)
    return Story(status, None, worst[2], worst[3], worst[4])


def _level_name(rule: Rule | None, level: str) -> str:
    if rule is not None:
        names = rule.level_names
        if Decimal(level) == Decimal(rule.breach_level):
            return f"breach level ({names.breach})" if names else "breach level"
        if Decimal(level) == Decimal(rule.alert_level):
            return f"alert level ({names.alert})" if names else "alert level"
    return "level"


def _reached(rule: Rule | None, observed: str, level: str) -> bool:
    higher = rule is None or rule.indicator.direction == "higher_is_riskier"
    return Decimal(observed) >= Decimal(level) if higher else Decimal(observed) <= Decimal(level)


def _compared(nums: Numbers, a: Analysis, e: VerifiedEntry, result_id: str, rule: Rule | None) -> Markup:
    """The value the rule compared for the cited result, named: ``its upper 84% bound −6.52``.

    Recomputed from the result (a verdict claim) where the bundle holds it; otherwise the
    value the entry itself states, named as such rather than guessed."""
    if rule is not None and (result_id, rule.id, False) in nums.claims.verdicts:
        return Markup("its {} {}").format(bound_name(rule), nums.bound(result_id, rule.id, False))
    return Markup("the value it states, {},").format(nums.field(e.entry_id, pointer("body", "observed"), "value"))


def _measured(nums: Numbers, a: Analysis, result_id: str, rule: Rule | None) -> Markup:
    """`` (measured −6.64 ± 0.12; higher is riskier)`` from the result entry, if the bundle holds it."""
    res = a.results_by_id.get(result_id)
    if res is None or rule is None or res.summary.metric(rule.indicator) is None:
        return Markup("")
    ind = rule.indicator
    return Markup(" (measured {} ± {}; {})").format(
        nums.field(res.id, res.metric_pointer(ind.task, ind.metric, "value"), "value"),
        nums.field(res.id, res.metric_pointer(ind.task, ind.metric, "stderr"), "stderr"),
        riskier_words(rule),
    )


def _event_text(
    e: VerifiedEntry, a: Analysis, names: dict[str, str], nums: Numbers, rules: dict[str, Rule]
) -> Markup | None:
    body = e.statement.body
    if isinstance(body, AlertBody):
        rule = rules.get(body.rule)
        lab = peer(names.get(body.result_lab, body.result_lab))
        if body.observed is None or body.level is None:
            return Markup("{} for {} on rule <code>{}</code>{}.").format(
                VERDICT_TEXT[body.verdict], lab, body.rule, _measured(nums, a, body.result, rule)
            )
        observed = _compared(nums, a, e, body.result, rule)
        level = nums.field(e.entry_id, pointer("body", "level"), "value")
        fc = body.forecast
        if fc is not None and not _reached(rule, body.observed, body.level):
            low = fc.crossing_low or fc.crossing_flop
            crossing = (
                Markup("may reach the breach level from {} FLOP").format(
                    nums.field(
                        e.entry_id,
                        pointer("body", "forecast", "crossing_low" if fc.crossing_low else "crossing_flop"),
                        "flop",
                    )
                )
                if low is not None
                else Markup("may reach the breach level")
            )
            return Markup(
                "{} <strong>by trend</strong> for {} on rule <code>{}</code>: the forecast of its results {}, "
                "within the look-ahead to {} FLOP. Now {} is short of the {} of {}{}."
            ).format(
                VERDICT_TEXT[body.verdict],
                lab,
                body.rule,
                crossing,
                nums.field(e.entry_id, pointer("body", "forecast", "horizon_flop"), "flop"),
                observed,
                _level_name(rule, body.level),
                level,
                _measured(nums, a, body.result, rule),
            )
        return Markup("{} for {} on rule <code>{}</code>: {} reached the {} of {}{}.").format(
            VERDICT_TEXT[body.verdict],
            lab,
            body.rule,
            observed,
            _level_name(rule, body.level),
            level,
            _measured(nums, a, body.result, rule),
        )
    if isinstance(body, PauseProposalBody):
        covers = Markup(" It would cover {}.").format(describe(body.scope)) if body.scope is not None else Markup("")
        if isinstance(body.trigger, DiscretionaryTrigger):
            return Markup(
                "Pause asked for on {}'s own judgement, citing {} document(s) by digest that no policy rule "
                "measures; it needs the roster's quorum of votes like any pause.{}"
            ).format(peer(names.get(body.trigger.lab, body.trigger.lab)), len(body.trigger.evidence), covers)
        rule = rules.get(body.trigger.rule)
        return Markup(
            "Pause proposed after {}'s result on rule <code>{}</code>: {} reached the {} of {}{}.{}"
        ).format(
            peer(names.get(body.trigger.lab, body.trigger.lab)),
            body.trigger.rule,
            _compared(nums, a, e, body.trigger.result, rule),
            _level_name(rule, body.level),
            nums.field(e.entry_id, pointer("body", "level"), "value"),
            _measured(nums, a, body.trigger.result, rule),
            covers,
        )
    if isinstance(body, VoteBody):
        return Markup("Voted <strong>{}</strong> on the {} proposal.").format(body.decision, body.action)
    if isinstance(body, PauseCertificateBody):
        return Markup("Published the {} certificate ({} signed vote(s), roster version {}).").format(
            body.action, len(body.votes), nums.field(e.entry_id, pointer("body", "roster_version"))
        )
    if isinstance(body, ResumeProposalBody):
        if body.scope is not None:
            return Markup(
                "Resume proposed, citing a safety case of {} document(s): the pause would stay in force for {} only."
            ).format(len(body.safety_case), describe(body.scope))
        return Markup("Resume proposed, citing a safety case of {} document(s).").format(
            len(body.safety_case)
        )
    if isinstance(body, RosterUpdateBody):
        return Markup("Published a roster update.")
    if isinstance(body, NoteBody):
        return Markup("Note: {}").format(peer(body.text[:300] + ("…" if len(body.text) > 300 else "")))
    return None


def _time_key(ts: str) -> str:
    """A sort key for RFC 3339 UTC times that orders fractions of a second correctly."""
    if _TIME.fullmatch(ts) is not None:
        return ts[:19] + ts[19:-1].ljust(10, "0")
    return parse_time(ts).strftime("%Y-%m-%dT%H:%M:%S.%f000")


def causal_order(a: Analysis) -> list[VerifiedEntry]:
    """Entries by time, then by dependency: nothing is listed before what it cites.

    A vote follows its proposal, a proposal and an alert the result they cite, and a
    certificate the proposal and every vote it carries, even where a signer's clock ran
    behind (its own time is still the one shown). Ties go to the cited entry, then lab, seq.
    """
    deps: dict[str, list[str]] = {}
    by_proposal = {p.proposal_id: p for p in a.proposals}
    for e in a.entries:
        body = e.statement.body
        d: list[str] = []
        if isinstance(body, AlertBody):
            d.append(body.result)
        elif isinstance(body, PauseProposalBody) and isinstance(body.trigger, Trigger):
            d.append(body.trigger.result)
        elif isinstance(body, VoteBody):
            p = by_proposal.get(body.proposal_id)
            if p is not None:
                d.append(p.entry.entry_id)
        elif isinstance(body, PauseCertificateBody):
            p = by_proposal.get(body.proposal_id)
            if p is not None:
                d.append(p.entry.entry_id)
                counted = p.certificate_result.votes if p.certificate_result is not None else p.votes
                d += [v.entry_id for v in counted]
        if d:
            deps[e.entry_id] = [x for x in d if x in a.by_id]
    key: dict[str, tuple[str, int]] = {}

    def k(eid: str) -> tuple[str, int]:
        got = key.get(eid)
        if got is not None:
            return got
        own = (_time_key(a.by_id[eid].statement.issued_at), 0)
        key[eid] = own  # a cycle (impossible with content ids) would stop here
        for dep in deps.get(eid, ()):
            t, depth = k(dep)
            own = (max(own[0], t), max(own[1], depth + 1))
        key[eid] = own
        return own

    return sorted(a.entries, key=lambda e: (*k(e.entry_id), e.lab, e.seq))


def _timeline(
    a: Analysis, names: dict[str, str], nums: Numbers, since: str | None
) -> tuple[list[Event], int]:
    events: list[Event] = []
    hidden = 0
    t_since = parse_time(since) if since else None
    last_verdict: dict[tuple[str, str, str], str] = {}
    rules = {r.id: r for r in a.policy.rules}
    for e in causal_order(a):
        if t_since is not None and parse_time(e.statement.issued_at) < t_since:
            continue
        if e.kind == "eval_result":
            res = a.results_by_id[e.entry_id]
            shown = False
            for rule in a.policy.rules:
                v = a.point.get((e.entry_id, rule.id))
                if v is None:
                    continue
                key = (res.lab, res.model, rule.id)
                before = last_verdict.get(key, "ok")
                last_verdict[key] = v.verdict
                # Only changes of verdict make the timeline; every result is in the appendix.
                if v.verdict != before:
                    shown = True
                    ind = rule.indicator
                    bound = (
                        Markup("; {} {}").format(bound_name(rule), nums.bound(e.entry_id, rule.id, False))
                        if rule.uncertainty.method == "upper_bound"
                        else Markup("")
                    )
                    events.append(
                        Event(
                            e.statement.issued_at,
                            e.lab,
                            "eval_result",
                            e,
                            Markup(
                                "{} at {} FLOP: <code>{}</code> measured {} ± {}{} → {} on rule <code>{}</code>."
                            ).format(
                                peer(res.model),
                                nums.field(e.entry_id, FLOP_PTR, "flop"),
                                ind.metric,
                                nums.field(
                                    e.entry_id, res.metric_pointer(ind.task, ind.metric, "value"), "value"
                                ),
                                nums.field(
                                    e.entry_id, res.metric_pointer(ind.task, ind.metric, "stderr"), "stderr"
                                ),
                                bound,
                                nums.verdict(e.entry_id, rule.id, False),
                                rule.id,
                            ),
                        )
                    )
            if not shown:
                hidden += 1
            continue
        text = _event_text(e, a, names, nums, rules)
        if text is not None:
            events.append(Event(e.statement.issued_at, e.lab, e.kind, e, text))
    return events, hidden


@lru_cache(maxsize=1)
def _css() -> Markup:
    css = resources.files("reports").joinpath("templates/report.css").read_text(encoding="utf-8")
    if "</" in css:
        raise RenderError("stylesheet must not contain '</'")
    return Markup(css)  # noqa: S704 (our own file, checked above)


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The one Jinja2 environment: autoescape for every template, undefined names are errors."""
    env = Environment(
        loader=PackageLoader("reports", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["flop"] = fmt_flop
    env.filters["when"] = fmt_when
    env.filters["day"] = fmt_day
    env.filters["peer"] = peer
    env.filters["peer_short"] = peer_short
    env.filters["anchor"] = _anchor
    env.filters["dec"] = fmt_dec
    env.filters["exact"] = exact_text
    env.filters["flop_text"] = flop_text
    env.filters["css_string"] = css_string
    env.globals["bound_name"] = bound_name
    env.globals["confidence"] = confidence
    env.globals["confidence_words"] = confidence_words
    env.globals["riskier_words"] = riskier_words
    env.globals["entry_rows"] = entry_rows
    env.globals["routine_count"] = routine_count
    env.globals["result_rows"] = result_rows
    env.globals["rule_cell_py"] = rule_cell
    env.globals["VERDICT_TEXT"] = VERDICT_TEXT
    env.globals["KIND_TEXT"] = KIND_TEXT
    env.globals["pointer"] = pointer
    env.globals["FLOP_PTR"] = FLOP_PTR
    env.globals["STEP_PTR"] = STEP_PTR
    return env


def render_html(
    vb: VerifiedBundle,
    *,
    report: VerificationReport | None = None,
    bundle_sha256: str | None = None,
    generated_at: datetime | None = None,
    for_print: bool = False,
) -> str:
    """Render the report (one self-contained HTML document) from a verified bundle.

    ``for_print``: the document the PDF is printed from. It leaves out what the print
    stylesheet would hide anyway (results on which every rule was OK, unless the report
    cites them) and does not link those results' chart markers: hidden rows still cost
    Chromium time, so printing this is many times faster than printing the full report.
    """
    if not isinstance(vb, VerifiedBundle):
        raise RenderError("reports render only from a VerifiedBundle (run verify_bundle first)")
    a = vb.analysis
    b = vb.bundle
    names = _lab_names(a)
    nums = Numbers(vb)
    lab_order = sorted({e.lab for e in a.entries} | set(names))
    lab_order = [lab for lab in lab_order if lab in names]
    charts: list[Chart] = [
        build_chart(a, rule, names, lab_order, printed=for_print) for rule in a.policy.rules
    ]
    labs: list[LabRow] = []
    per_lab = Counter(e.lab for e in a.entries if e.kind == "eval_result")
    for i, lab in enumerate(lab_order):
        m = marker_for(i)
        latest = sorted((r for (lb, _), r in a.latest.items() if lb == lab), key=lambda r: r.entry.seq)
        labs.append(
            LabRow(
                lab,
                names.get(lab, lab),
                marker_path(m.shape, 8, 8, 5),
                m.colour,
                open_shape(m.shape),
                per_lab[lab],
                latest,
            )
        )
    events, hidden = _timeline(a, names, nums, b.since)
    story = _story(a)
    checks: Sequence[Check] = report.checks if report else ()
    roster = a.chain.current
    env = environment()
    html = env.get_template("report.html.j2").render(
        b=b,
        a=a,
        vb=vb,
        n=nums,
        names=names,
        labs=labs,
        charts=charts,
        events=events,
        hidden_results=hidden,
        story=story,
        checks=checks,
        roster=roster,
        policy=a.policy,
        rules=a.policy.rules,
        css=_css(),
        regulator=b.audience == "regulator",
        for_print=for_print,
        bundle_sha256=bundle_sha256,
        # The bundle's own time, not the clock: the same bundle always renders the same bytes
        # (tripwire verify re-renders a report to check it against its evidence).
        generated=(generated_at or parse_time(b.generated_at)).strftime("%d %B %Y, %H:%M:%S UTC"),
        network_name=a.chain.current.roster.network_name,
        marker_path=marker_path,
        lab_index={lab: i for i, lab in enumerate(lab_order)},
        escape=escape,
    )
    return html


# --- PDF ---------------------------------------------------------------------------------


def chromium_path() -> str:
    """Headless Chromium: $TRIPWIRE_CHROMIUM, else ``chromium`` / ``chromium-browser`` on PATH."""
    explicit = os.environ.get("TRIPWIRE_CHROMIUM")
    if explicit:
        return explicit
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise BrowserMissingError(
        "headless Chromium is needed to print the PDF; install it (Debian: apt-get install chromium, "
        "or scripts/ensure-chromium.sh) or pass --no-pdf"
    )


def chromium_args(profile: str) -> list[str]:
    # No network, no extensions, no first-run work: the report is a local, self-contained file.
    return [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-extensions",
        "--disable-background-networking",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
    ]


def print_pdf(html_path: Path, pdf_path: Path, *, timeout: float = 900.0) -> None:
    """Print ``html_path`` to ``pdf_path`` with headless Chromium (print CSS applies)."""
    exe = chromium_path()
    with tempfile.TemporaryDirectory(prefix="tripwire-chromium-") as profile:
        cmd = [
            exe,
            *chromium_args(profile),
            "--no-pdf-header-footer",
            f"--print-to-pdf={pdf_path}",
            html_path.resolve().as_uri(),
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as e:
            raise RenderError(f"Chromium did not finish printing within {timeout:.0f} s") from e
    if proc.returncode != 0 or not pdf_path.exists() or pdf_path.stat().st_size == 0:
        tail = proc.stderr.decode("utf-8", "replace")[-500:]
        raise RenderError(f"Chromium failed to print the PDF (exit {proc.returncode}): {tail}")


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    evidence: Path
    pdf: Path | None
    evidence_sha256: str


def write_report(
    vb: VerifiedBundle,
    out_dir: Path,
    *,
    report: VerificationReport | None = None,
    pdf: bool = True,
) -> ReportFiles:
    """Write evidence.json, report.html and (optionally) report.pdf into ``out_dir``.

    Files are written to temporary names and renamed into place only when everything
    succeeded, so a failed run never leaves a report that disagrees with its evidence.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    evidence_bytes = vb.bundle.to_json_bytes()
    digest = hashlib.sha256(evidence_bytes).hexdigest()
    when = parse_time(vb.bundle.generated_at)
    html = render_html(vb, report=report, bundle_sha256=digest, generated_at=when)
    final = {
        "evidence": out_dir / "evidence.json",
        "html": out_dir / "report.html",
        "pdf": out_dir / "report.pdf",
    }
    tmp = {k: v.with_name(f".{v.name}.tmp") for k, v in final.items()}
    try:
        tmp["evidence"].write_bytes(evidence_bytes)
        tmp["html"].write_text(html, encoding="utf-8")
        if pdf:
            # Print from the final file name so relative fragment links in the PDF are right.
            print_src = tmp["html"].with_name(".report.print.html")
            printable = render_html(
                vb, report=report, bundle_sha256=digest, generated_at=when, for_print=True
            )
            print_src.write_text(printable, encoding="utf-8")
            try:
                print_pdf(print_src, tmp["pdf"])
            finally:
                print_src.unlink(missing_ok=True)
        for k in ("evidence", "html", "pdf"):
            if k == "pdf" and not pdf:
                continue
            tmp[k].replace(final[k])
    finally:
        for p in tmp.values():
            p.unlink(missing_ok=True)
    return ReportFiles(final["html"], final["evidence"], final["pdf"] if pdf else None, digest)
