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
    NoteBody,
    PauseCertificateBody,
    PauseProposalBody,
    ResumeProposalBody,
    RosterUpdateBody,
    VerifiedEntry,
    VoteBody,
)
from protocol.policy import Rule, RuleVerdict
from reports.analysis import FLOP_PTR, STEP_PTR, Analysis, ProposalState, Result, pointer
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


_TIME = re.compile(r"(\d{4}-\d{2}-\d{2})T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?Z")


@lru_cache(maxsize=4096)
def _day_text(day: str) -> str:
    return date.fromisoformat(day).strftime("%d %b %Y")  # ValueError for a date that does not exist


def fmt_when(ts: str) -> str:
    """``03 Mar 2025 09:01 UTC`` for an RFC 3339 UTC timestamp."""
    # Thousands of appendix rows: the date's words are cached per day and the time is sliced
    # from the text, instead of parsing every timestamp again.
    m = _TIME.fullmatch(ts)
    if m is not None:
        try:
            return f"{_day_text(m.group(1))} {ts[11:16]} UTC"
        except ValueError:
            pass
    return parse_time(ts).strftime("%d %b %Y %H:%M UTC")  # raises SchemaError for a malformed time


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

    def _link(self, doc: str, text: Any, title: str) -> Markup:
        # An f-string of str(escape(...)) parts: Markup.format is several times slower, and
        # adding a Markup to a plain str would escape the str instead.
        self.used += 1
        self.linked.add(doc)
        return Markup(  # noqa: S704 (anchor is hex; title and text escaped)
            f'<a class="num" href="#{_anchor(doc)}" title="{escape(title)!s}">{escape(text)!s}</a>'
        )

    def field(self, doc: str, ptr: str, kind: str = "plain") -> Markup:
        key = (doc, ptr)
        if key not in self.claims.fields:
            raise RenderError(f"the report tried to show {doc[:16]}…{ptr}, which the bundle does not claim")
        v = self.claims.fields[key]
        text: Any = fmt_flop(v) if kind == "flop" else v
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
        c = self.claims.verdicts.get((entry, rule, trend))
        if c is None:
            raise RenderError(f"no verdict claim for rule {rule} on {entry[:16]}…")
        return self._link(entry, c.bound, f"value compared with the levels, recomputed from entry {entry}")

    def crossing(self, entry: str, rule: str, which: str) -> Markup:
        c = self.claims.verdicts.get((entry, rule, True))
        if c is None:
            raise RenderError(f"no trend verdict claim for rule {rule} on {entry[:16]}…")
        v = getattr(c, which)
        if v is None:
            return Markup('<span class="muted">beyond range</span>')
        return self._link(
            entry, fmt_flop(v), f"forecast {which} = {v} FLOP, recomputed from the lineage of {entry}"
        )

    def tally(self, entry: str, what: str) -> Markup:
        c = self.claims.tallies.get(entry)
        if c is None:
            raise RenderError(f"no tally claim for proposal {entry[:16]}…")
        return self._link(
            entry, getattr(c, what), f"{what} recomputed from the signed votes on proposal {entry}"
        )

    def entry(self, entry_id: str) -> Markup:
        """A link to a cited document by its id (shortened; the full id in the tooltip)."""
        self.linked.add(entry_id)
        return Markup(  # noqa: S704 (entry ids are validated lowercase hex)
            f'<a class="entry" href="#{_anchor(entry_id)}" title="signed entry {entry_id}">'
            f"<code>{entry_id[:10]}</code></a>"
        )


def rule_cell(nums: Numbers, res: Result, rule: Rule, trend: bool) -> Markup:
    """Verdict and value ± stderr of one rule on one result (hot path: f-strings of escaped parts)."""
    ind = rule.indicator
    if res.summary.metric(ind) is None:
        return Markup('<span class="muted">not measured</span>')
    note = ' <span class="trend-note">by trend</span>' if trend and nums.by_trend(res.id, rule.id) else ""
    value = nums.field(res.id, res.metric_pointer(ind.task, ind.metric, "value"))
    stderr = nums.field(res.id, res.metric_pointer(ind.task, ind.metric, "stderr"))
    return Markup(  # noqa: S704 (every part is Markup built from escaped values)
        f'{nums.verdict(res.id, rule.id, trend)}{note}<br><span class="small">{value} ± {stderr}</span>'
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
                f"<td>Roster</td><td>{fmt_when(vr.roster.issued_at)}</td></tr>\n",
            )
        )
    labs: dict[str, str] = {}
    for e in a.entries:
        routine = a.routine(e.entry_id) and e.entry_id not in nums.linked
        if printed and routine:
            continue
        rows.append(
            (
                routine,
                f'<tr id="{_anchor(e.entry_id)}"><td>{e.entry_id}</td>'
                f"<td>{labs.get(e.lab) or labs.setdefault(e.lab, str(escape(e.lab)))}</td><td>{e.seq}</td>"
                f"<td>{KIND_TEXT[e.kind]}</td><td>{fmt_when(e.statement.issued_at)}</td></tr>\n",
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
    chosen = (certified or pause or [None])[-1]
    if chosen is not None:
        body = chosen.entry.statement.body
        assert isinstance(body, PauseProposalBody)
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


def _event_text(e: VerifiedEntry, a: Analysis, names: dict[str, str], nums: Numbers) -> Markup | None:
    body = e.statement.body
    if isinstance(body, AlertBody):
        rule = body.rule
        return Markup("{} for {} on rule <code>{}</code>: observed {} against level {}.").format(
            VERDICT_TEXT[body.verdict],
            peer(names.get(body.result_lab, body.result_lab)),
            rule,
            nums.field(e.entry_id, pointer("body", "observed")) if body.observed is not None else "—",
            nums.field(e.entry_id, pointer("body", "level")) if body.level is not None else "—",
        )
    if isinstance(body, PauseProposalBody):
        return Markup(
            "Pause proposed after {}'s result on rule <code>{}</code> ({} against breach level {})."
        ).format(
            peer(names.get(body.trigger.lab, body.trigger.lab)),
            body.trigger.rule,
            nums.field(e.entry_id, pointer("body", "observed")),
            nums.field(e.entry_id, pointer("body", "level")),
        )
    if isinstance(body, VoteBody):
        return Markup("Voted <strong>{}</strong> on the {} proposal.").format(body.decision, body.action)
    if isinstance(body, PauseCertificateBody):
        return Markup("Published the {} certificate ({} signed vote(s), roster version {}).").format(
            body.action, len(body.votes), nums.field(e.entry_id, pointer("body", "roster_version"))
        )
    if isinstance(body, ResumeProposalBody):
        return Markup("Resume proposed, citing a safety case of {} document(s).").format(
            len(body.safety_case)
        )
    if isinstance(body, RosterUpdateBody):
        return Markup("Published a roster update.")
    if isinstance(body, NoteBody):
        return Markup("Note: {}").format(peer(body.text[:300] + ("…" if len(body.text) > 300 else "")))
    return None


def _timeline(
    a: Analysis, names: dict[str, str], nums: Numbers, since: str | None
) -> tuple[list[Event], int]:
    events: list[Event] = []
    hidden = 0
    t_since = parse_time(since) if since else None
    last_verdict: dict[tuple[str, str, str], str] = {}
    for e in sorted(a.entries, key=lambda e: (e.statement.issued_at, e.lab, e.seq)):
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
                    events.append(
                        Event(
                            e.statement.issued_at,
                            e.lab,
                            "eval_result",
                            e,
                            Markup("{} <code>{}</code> {} ± {} → {} on rule <code>{}</code> ({}).").format(
                                peer(res.model),
                                ind.metric,
                                nums.field(e.entry_id, res.metric_pointer(ind.task, ind.metric, "value")),
                                nums.field(e.entry_id, res.metric_pointer(ind.task, ind.metric, "stderr")),
                                nums.verdict(e.entry_id, rule.id, False),
                                rule.id,
                                fmt_flop(res.flop),
                            ),
                        )
                    )
            if not shown:
                hidden += 1
            continue
        text = _event_text(e, a, names, nums)
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
        generated=(generated_at or parse_time(b.generated_at)).strftime("%d %B %Y, %H:%M UTC"),
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
