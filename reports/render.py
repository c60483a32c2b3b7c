"""Render a report from a *verified* bundle: HTML (self-contained) and PDF (headless Chromium).

What is shown is exactly what verified: the renderer takes a
:class:`~reports.bundle.VerifiedBundle` only, and every number it prints goes through
:meth:`Numbers.field` / :meth:`Numbers.verdict` / :meth:`Numbers.tally`, which refuse to
print anything the bundle does not claim. Peer-supplied strings are always data: one
Jinja2 environment with autoescaping for every template, SVG included, and each peer
string isolated with ``<bdi>`` so right-to-left text cannot reorder its surroundings.

This module sets up Jinja and writes the files; the parts live beside it: formatters
(:mod:`reports.formatting`), the claim guard (:mod:`reports.numbers`), table rows
(:mod:`reports.rows`), the story and timeline (:mod:`reports.story`) and PDF printing
(:mod:`reports.pdf`).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup, escape

from protocol.canonical import parse_time
from reports.analysis import (
    FLOP_PTR,
    STEP_PTR,
    pointer,
)
from reports.bundle import Check, VerificationReport, VerifiedBundle
from reports.charts import Chart, build_chart, marker_for, marker_path, open_shape
from reports.errors import RenderError
from reports.formatting import (
    KIND_TEXT,
    VERDICT_TEXT,
    _anchor,
    bound_name,
    confidence,
    confidence_words,
    css_string,
    exact_text,
    flop_text,
    fmt_day,
    fmt_dec,
    fmt_flop,
    fmt_when,
    peer,
    peer_short,
    riskier_words,
)
from reports.numbers import Numbers
from reports.pdf import print_pdf
from reports.rows import entry_rows, result_rows, routine_count, rule_cell
from reports.story import LabRow, _lab_names, _story, _timeline


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
