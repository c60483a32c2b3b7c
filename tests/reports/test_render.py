"""Rendering: only claimed numbers, every link resolves, peer strings are inert data."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

import pytest
from synthetic import HOSTILE_NAMES, synthetic_network

from reports.bundle import VerificationReport, verify_bundle
from reports.claims import Claims
from reports.errors import RenderError
from reports.formatting import VERDICT_TEXT
from reports.render import render_html


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.ids: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        d = dict(attrs)
        self.tags.append((tag, d))
        if d.get("id"):
            self.ids.add(str(d["id"]))

    handle_startendtag = handle_starttag

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(html: str) -> _Collect:
    p = _Collect()
    p.feed(html)
    return p


@pytest.fixture(scope="module")
def hostile_html(hostile_verified: VerificationReport) -> str:
    assert hostile_verified.verified is not None
    return render_html(hostile_verified.verified, report=hostile_verified)


def test_hostile_strings_are_text_not_markup(hostile_html: str) -> None:
    doc = _parse(hostile_html)
    tags = {t for t, _ in doc.tags}
    assert "script" not in tags and "img" not in tags and "iframe" not in tags
    for tag, attrs in doc.tags:
        bad = [a for a in attrs if a.startswith("on")]
        assert not bad, f"<{tag}> carries event handler attributes {bad}"
    text = "".join(doc.text)
    # The strings survive, as text, exactly as the labs wrote them (here in the roster table).
    for name in HOSTILE_NAMES:
        assert name in text, name[:40]
    assert "<script>console.log('TRIPWIRE-XSS')</script>" in text
    assert "TRIPWIRE-XSS" not in re.sub(r"&[#a-z0-9]+;", "", hostile_html).split("<style>")[0]


def test_peer_strings_are_bidi_isolated(hostile_html: str) -> None:
    # A right-to-left override inside a lab name must not reorder the text around it.
    rtl = next(n for n in HOSTILE_NAMES if "\u202e" in n)
    assert f'<bdi class="peer">{rtl}</bdi>' in hostile_html


def test_every_internal_link_resolves(hostile_html: str) -> None:
    doc = _parse(hostile_html)
    targets = {str(a["href"])[1:] for t, a in doc.tags if t == "a" and str(a.get("href", "")).startswith("#")}
    assert targets, "the report links its numbers"
    assert targets <= doc.ids, sorted(targets - doc.ids)[:5]


def test_every_number_link_names_its_signed_source(verified: VerificationReport) -> None:
    assert verified.verified is not None
    html = render_html(verified.verified, report=verified)
    nums = re.findall(r'<a class="num" href="#(e-[0-9a-f]{16}|policy-[a-z0-9.-]+)" title="([^"]*)"', html)
    assert len(nums) > 50
    for target, title in nums:
        if target.startswith("e-"):
            assert "entry" in title or "proposal" in title or "lineage" in title


def test_render_refuses_numbers_the_bundle_does_not_claim(net: Any) -> None:
    b = net.bundle()
    fields = [fc for fc in b.claims.fields if not any(p.endswith("/training_flop") for p in fc.values)]
    trimmed = b.model_copy(
        update={"claims": Claims(fields=fields, verdicts=b.claims.verdicts, tallies=b.claims.tallies)}
    )
    report = verify_bundle(trimmed)
    assert report.ok  # fewer claims is still true ...
    with pytest.raises(RenderError, match="does not claim"):
        render_html(report.require())  # ... but the report may not show an unclaimed number


def test_render_only_takes_a_verified_bundle(bundle: Any) -> None:
    with pytest.raises(RenderError, match="VerifiedBundle"):
        render_html(bundle)


@pytest.mark.parametrize(
    ("kwargs", "banner", "phrase"),
    [
        ({"pause": True}, "Status: PAUSED", "certified on"),
        ({"pause": False}, "Status: ALERT", "No pause is in force"),
    ],
    ids=["paused", "alert"],
)
def test_banner_and_summary_follow_the_evidence(kwargs: dict[str, Any], banner: str, phrase: str) -> None:
    report = verify_bundle(synthetic_network(3, 6, **kwargs).bundle())
    html = render_html(report.require(), report=report)
    assert banner in html
    summary = html.split('id="h-summary"')[1].split("</section>")[0]
    assert phrase in re.sub(r"<[^>]+>", "", summary)


def test_normal_status_when_nothing_reaches_a_level() -> None:
    from synthetic import synthetic_network as build

    net = build(3, 4, pause=False, reach=0.3)  # early checkpoints only: far below every level
    report = verify_bundle(net.bundle())
    vb = report.require()
    assert vb.analysis.status == "normal"
    assert "Status: NORMAL" in render_html(vb)


def test_public_edition_leaves_out_the_regulator_appendices(net: Any) -> None:
    public = verify_bundle(net.bundle(audience="public")).require()
    html = render_html(public)
    assert "Public edition" in html and "Appendix: roster and keys" not in html
    assert "Appendix: signed documents cited" in html


def test_accessibility_basics(hostile_html: str) -> None:
    doc = _parse(hostile_html)
    tags = [t for t, _ in doc.tags]
    assert tags.count("h1") == 1
    assert 'lang="en"' in hostile_html
    for t, a in doc.tags:
        if t == "svg" and "plot" in str(a.get("class", "")):
            assert a.get("role") == "img" and a.get("aria-labelledby")
    # Column headers are real header cells with scope.
    assert sum(1 for t, a in doc.tags if t == "th" and a.get("scope") == "col") > 20
    # Verdicts carry words, not only colour.
    assert "Breach</a>" in hostile_html and "Warning</a>" in hostile_html


# --- the long appendices and the charts: lean markup, same guarantees ----------------------


def _section(html: str, name: str) -> str:
    start = html.index(f'<section id="{name}"')
    return html[start : html.index("</section>", start)]


def _rows(section: str) -> list[tuple[bool, str]]:
    """(inside a routine tbody, row markup) for every body row of a section's table."""
    out: list[tuple[bool, str]] = []
    for attrs, body in re.findall(r"<tbody([^>]*)>(.*?)</tbody>", section, flags=re.S):
        out += [
            ('class="routine"' in attrs, row) for row in re.findall(r"<tr[^>]*>.*?</tr>", body, flags=re.S)
        ]
    return out


def test_every_number_in_the_results_appendix_links_to_its_entry(verified: VerificationReport) -> None:
    vb = verified.require()
    a = vb.analysis
    rows = _rows(_section(render_html(vb, report=verified), "results"))
    assert len(rows) == len(a.results)
    rules = len(a.policy.rules)
    for (_routine, row), res in zip(rows, a.results, strict=True):
        anchor = f"e-{res.id[:16]}"
        links = re.findall(
            r'<a (?:class="v-(?:ok|warn|breach)" )?href="#(e-[0-9a-f]{16})"[^>]*>(.*?)</a>', row
        )
        # seq, step, compute and the entry; per rule the verdict, the value and its stderr
        assert len(links) == 4 + 3 * rules, row
        assert {target for target, _ in links} == {anchor}
        texts = [text for _, text in links]
        assert texts[0] == str(res.entry.seq) and texts[1] == str(res.body.model.checkpoint_step)
        assert texts[-1] == res.id[:10]
        for rule in a.policy.rules:
            m = res.summary.metric(rule.indicator)
            assert m is not None
            assert m.value in texts and m.stderr in texts
            assert VERDICT_TEXT[a.point[(res.id, rule.id)].verdict] in texts
        assert f'title="{res.flop} FLOP"' in row  # the exact signed compute behind the rounded one
        # No digit outside a link, apart from the lab id and the model name (first and third cell).
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
        rest = re.sub(r"<a [^>]*>.*?</a>|<[^>]+>", "", "".join(cells[1:2] + cells[3:]))
        assert not re.search(r"[0-9]", rest), rest


def _cited_by_body(html: str) -> set[str]:
    """Anchors the report's text links to: everything before the appendices."""
    body = html[: html.index('<section id="results"')]
    return set(re.findall(r'href="#(e-[0-9a-f]{16})"', body))


def test_print_css_hides_exactly_the_uncited_routine_rows(verified: VerificationReport) -> None:
    vb = verified.require()
    a = vb.analysis
    html = render_html(vb, report=verified)
    results = _rows(_section(html, "results"))
    assert [routine for routine, _ in results] == [a.routine(r.id) for r in a.results]
    assert any(routine for routine, _ in results) and not all(routine for routine, _ in results)
    cited = _cited_by_body(html)
    routine_ids = {f"e-{r.id[:16]}" for r in a.results if a.routine(r.id)}
    assert cited & routine_ids, "the fixture's body cites some routine result (e.g. a lab's latest)"
    rows = _rows(_section(html, "entries"))
    ids = [re.search(r'id="(e-[0-9a-f]{16})"', row).group(1) for _, row in rows]  # type: ignore[union-attr]
    assert len(set(ids)) == len(ids) == len(a.chain.versions) + len(a.entries)
    assert [routine for routine, _ in rows] == [i in routine_ids and i not in cited for i in ids]
    assert "tbody.routine { display: none; }" in html


def test_print_edition_leaves_out_the_hidden_rows_and_links_only_to_printed_ones(
    verified: VerificationReport,
) -> None:
    vb = verified.require()
    a = vb.analysis
    when = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    screen = render_html(vb, report=verified, generated_at=when)
    printed = render_html(vb, report=verified, generated_at=when, for_print=True)
    assert 'class="routine"' not in printed
    visible = [row for routine, row in _rows(_section(screen, "results")) if not routine]
    assert [row for _, row in _rows(_section(printed, "results"))] == visible
    kept = [row for routine, row in _rows(_section(screen, "entries")) if not routine]
    assert [row for _, row in _rows(_section(printed, "entries"))] == kept
    # No link dangles (a dead link in print costs Chromium dearly and leads nowhere).
    doc = _parse(printed)
    targets = {
        str(t["href"])[1:] for tag, t in doc.tags if tag == "a" and str(t.get("href", "")).startswith("#")
    }
    assert targets <= doc.ids, sorted(targets - doc.ids)[:5]
    # A chart is one image to assistive technology: nothing inside it is a link (its links sit
    # beside it), and it is the same chart on screen and in print.
    for which in (screen, printed):
        for svg in re.findall(r"<svg [^>]*role=\"img\".*?</svg>", _section(which, "charts"), flags=re.S):
            assert "<a " not in svg and "tabindex" not in svg
    svgs = re.findall(r"<svg [^>]*role=\"img\".*?</svg>", screen, flags=re.S)
    assert len(svgs) == len(a.policy.rules)
    assert svgs == re.findall(r"<svg [^>]*role=\"img\".*?</svg>", printed, flags=re.S)

    # Same words otherwise: the body before the appendices is identical but for the charts.
    def body(html: str) -> str:
        return re.sub(
            r'<section id="charts".*?</section>', "", html.split('<section id="results"')[0], flags=re.S
        )

    assert body(screen) == body(printed)


def test_results_appendix_refuses_a_number_the_bundle_does_not_claim(net: Any) -> None:
    from reports.analysis import STEP_PTR
    from reports.claims import FieldClaims

    b = net.bundle(audience="regulator")
    first = verify_bundle(b).require().analysis.results[0].id  # shown only in the appendices
    fields = [
        fc
        if fc.entry != first
        else FieldClaims(entry=first, values={p: v for p, v in fc.values.items() if p != STEP_PTR})
        for fc in b.claims.fields
    ]
    trimmed = b.model_copy(
        update={"claims": Claims(fields=fields, verdicts=b.claims.verdicts, tallies=b.claims.tallies)}
    )
    report = verify_bundle(trimmed)
    assert report.ok
    with pytest.raises(RenderError, match=f"{first[:16]}….*checkpoint_step.*does not claim"):
        render_html(report.require())
    assert "Appendix: every evaluation result" not in render_html(
        verify_bundle(trimmed.model_copy(update={"audience": "public"})).require()
    )


def test_chart_band_is_the_fit_behind_the_verified_trend_verdict(verified: VerificationReport) -> None:
    from protocol.trend import fit_trend, points_for_rule
    from reports.charts import build_chart

    a = verified.require().analysis
    assert set(a.fits) == set(a.trend)
    for (lab, model), latest in a.latest.items():
        for rule in a.policy.rules:
            if (latest.id, rule.id) not in a.trend:
                continue
            pts = points_for_rule([r.summary for r in a.lineages[(lab, model)]], rule)
            fresh = fit_trend(pts, direction=rule.indicator.direction)
            kept = a.fits[(latest.id, rule.id)]
            assert fresh is not None and kept is not None
            assert (kept.model, kept.note, kept.params()) == (fresh.model, fresh.note, fresh.params())
            assert kept.predict(21.3) == fresh.predict(21.3)
    names = {lab.id: lab.name for lab in a.chain.current.roster.labs}
    for rule in a.policy.rules:
        chart = build_chart(a, rule, names, sorted(names))
        assert chart.band and chart.band_lab is not None
        focus = a.latest[(chart.band_lab, chart.band_model or "")]
        assert chart.band_note == a.fits[(focus.id, rule.id)].note  # type: ignore[union-attr]
        # Without the verified fit there is no band: the renderer never fits on its own.
        saved = a.fits.pop((focus.id, rule.id))
        try:
            assert build_chart(a, rule, names, sorted(names)).band is None
        finally:
            a.fits[(focus.id, rule.id)] = saved


def _vertices(d: str) -> list[tuple[float, float]]:
    """End points of an SVG path's segments (M m L l H h V v A a Z z; subpath starts included)."""
    pts: list[tuple[float, float]] = []
    x = y = 0.0
    moved = False
    for cmd, args in re.findall(r"([MmLlHhVvAaZz])([^MmLlHhVvAaZz]*)", d):
        nums = [float(t) for t in re.findall(r"-?\d*\.?\d+", args)]
        step = {"M": 2, "L": 2, "H": 1, "V": 1, "A": 7, "Z": 0}[cmd.upper()]
        groups = [nums[i : i + step] for i in range(0, len(nums), step)] if step else [[]]
        for k, g in enumerate(groups):
            rel = cmd.islower()
            if cmd in "Zz":
                continue
            if cmd in "Hh":
                x = x * rel + g[0]
            elif cmd in "Vv":
                y = y * rel + g[0]
            else:
                x, y = x * rel + g[-2], y * rel + g[-1]
            if cmd in "Mm" and k == 0 and moved:
                pts[-1] = (x, y)  # a move right after a move: only the last counts
            else:
                pts.append((x, y))
            moved = cmd in "Mm" and k == 0
    return pts


@pytest.mark.parametrize(
    "shape", ["circle", "square", "triangle", "diamond", "cross", "triangle-down", "plus", "star"]
)
def test_markers_are_distinct_shapes_centred_on_their_point(shape: str) -> None:
    from reports.charts import SHAPES, marker_path, marker_stub

    assert shape in SHAPES
    r = 4.5
    pts = _vertices(marker_path(shape, 100.0, 50.0, r))
    assert len(set(pts)) >= 2
    # Every vertex lies within the marker's reach of the point it marks...
    assert all(math.hypot(x - 100.0, y - 50.0) <= 1.3 * r for x, y in pts), pts
    # ...and the relative stub drawn at another point is the same shape, shifted.
    moved = _vertices(f"M10 20{marker_stub(shape, r)}")
    shifted = [c for x, y in moved for c in (x + 90.0, y + 30.0)]
    assert shifted == pytest.approx([c for p in pts for c in p], abs=0.06)
    others = {marker_stub(s) for s in SHAPES if s != shape}
    assert marker_stub(shape) not in others


@pytest.mark.parametrize(
    ("ts", "text"),
    [
        ("2025-03-03T09:01:00Z", "03 Mar 2025 09:01:00 UTC"),
        ("2024-12-31T23:59:59.999999Z", "31 Dec 2024 23:59:59 UTC"),
        ("2026-01-09T00:00:07.5Z", "09 Jan 2026 00:00:07 UTC"),
    ],
    ids=["plain", "fraction", "january"],
)
def test_fmt_when_matches_the_parsed_time(ts: str, text: str) -> None:
    from protocol.canonical import parse_time
    from reports.formatting import fmt_when

    assert fmt_when(ts) == text == parse_time(ts).strftime("%d %b %Y %H:%M:%S UTC")


@pytest.mark.parametrize(
    "ts", ["2025-13-03T09:01:00Z", "2025-02-30T09:01:00Z", "2025-03-03 09:01"], ids=["month", "day", "format"]
)
def test_fmt_when_rejects_a_malformed_time(ts: str) -> None:
    from protocol.errors import SchemaError
    from reports.formatting import fmt_when

    with pytest.raises(SchemaError):
        fmt_when(ts)


# --- the number layer: one vocabulary for lay readers (issue: "Numbers mislead") -------------


def _text(html: str) -> str:
    """Visible text: no tags, no stylesheet, whitespace collapsed."""
    html = re.sub(r"<style>.*?</style>", "", html, flags=re.S)
    html = re.sub(r"<title>.*?</title>|<desc[^>]*>.*?</desc>", "", html, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", html).split()).replace(" ,", ",").replace(" .", ".")


def test_observed_value_is_the_point_value_with_bound_named(verified: VerificationReport) -> None:
    from reports.formatting import bound_name, fmt_dec

    vb = verified.require()
    a = vb.analysis
    html = render_html(vb, report=verified)
    p = next(p for p in a.proposals if p.action == "pause")
    trigger = p.entry.statement.body.trigger  # type: ignore[union-attr]
    res = a.results_by_id[trigger.result]
    rule = next(r for r in a.policy.rules if r.id == trigger.rule)
    m = res.summary.metric(rule.indicator)
    assert m is not None
    v = a.point[(res.id, rule.id)]
    assert v.bound != m.value  # the fixture's bound differs from the measured value
    measured = f"measured {fmt_dec(m.value)} ± {fmt_dec(m.stderr, 2)}"
    bound = f"{bound_name(rule)} {fmt_dec(v.bound)}"
    assert bound_name(rule) == "upper 84% bound"
    # Summary, timeline and vote record all say the same: the measured value is the point value,
    # the compared number is the bound, named as such; nothing is called "observed".
    for section in ("summary", "timeline", "votes"):
        text = _text(_section(html, section))
        assert measured in text, (section, text[:600])
        assert bound in text or f"{bound_name(rule)}, {fmt_dec(v.bound)}" in text, (section, text[:600])
        assert "observed" not in text.lower(), section
    # The Labs table shows the same measured value with the same words.
    labs = _text(_section(html, "labs"))
    latest = a.latest[(res.lab, res.model)]
    lm = latest.summary.metric(rule.indicator)
    assert lm is not None and f"measured {fmt_dec(lm.value)} ± {fmt_dec(lm.stderr, 2)}" in labs
    assert "z = 1.0 ≈ 84% one-sided" in _text(_section(html, "thresholds"))


def test_trend_warning_says_by_trend() -> None:
    report = verify_bundle(synthetic_network(3, 6, pause=False, reach=0.6).bundle())
    vb = report.require()
    a = vb.analysis
    html = render_html(vb, report=report)
    rank = {"ok": 0, "warn": 1, "breach": 2}
    by_trend = [
        (eid, rule)
        for (eid, rule), v in a.trend.items()
        if rank[v.verdict] > rank[a.point[(eid, rule)].verdict]
    ]
    assert by_trend, "the fixture has a warning that only the trend gives"
    labs = _section(html, "labs")
    assert labs.count('<span class="trend-note">by trend</span>') == len(by_trend)
    summary = _text(_section(html, "summary"))
    assert "by trend its results may reach the breach level" in summary
    assert "× 10" in summary  # the crossing, in compute a reader can say


def test_compute_in_scientific_notation(verified: VerificationReport) -> None:
    html = render_html(verified.require(), report=verified)
    text = _text(html)
    sci = r"(?<![0-9a-f])\d+(?:\.\d+)?[eE][+-]?\d+(?![0-9a-f])"  # not inside a hex digest
    assert not re.search(sci, text), re.search(r".{60}" + sci + r".{20}", text)
    assert "× 10" in text
    # No number shown in the body carries more than three significant digits after the point.
    body = _text(html[: html.index('<section id="methodology"')])
    assert not re.search(r"\d\.\d{5,}", body), re.search(r".{40}\d\.\d{5,}.{10}", body)


def test_certificate_listed_after_its_votes() -> None:
    from protocol.entries import PauseCertificateBody, PauseProposalBody, Trigger, VoteBody, pause_proposal_id

    net = synthetic_network(3, 6, pause=False)
    a0 = verify_bundle(net.bundle()).require().analysis
    res, rule = next(
        (r, rule)
        for r in a0.results
        for rule in a0.policy.rules
        if a0.point.get((r.id, rule.id)) is not None and a0.point[(r.id, rule.id)].verdict == "breach"
    )
    trigger = Trigger(result=res.id, lab=res.lab, rule=rule.id, policy_digest=a0.policy.digest)
    pid = pause_proposal_id(trigger)
    labs = sorted(net.writers)
    proposal = net.publish(
        labs[0],
        "pause_proposal",
        PauseProposalBody(
            proposal_id=pid,
            trigger=trigger,
            observed=a0.point[(res.id, rule.id)].bound,
            level=rule.breach_level,
        ),
    )
    votes = [
        net.publish(lab, "vote", VoteBody(proposal_id=pid, action="pause", decision="pause")) for lab in labs
    ]
    # Published in the same second as the last vote, by a lab that sorts before the last voter:
    # by time and name alone it would be listed before a vote it carries.
    cert = net.publish(
        labs[0],
        "pause_certificate",
        PauseCertificateBody(
            proposal_id=pid,
            action="pause",
            roster_version=1,
            proposal=proposal.envelope,
            votes=[v.envelope for v in votes],
        ),
        minutes=0,
    )
    assert cert.statement.issued_at == votes[-1].statement.issued_at and cert.lab < votes[-1].lab
    report = verify_bundle(net.bundle())
    html = render_html(report.require(), report=report)
    timeline = _section(html, "timeline")
    order = re.findall(r'<li class="k-([a-z_]+)">.*?href="#(e-[0-9a-f]{16})"', timeline, flags=re.S)
    ids = [anchor for _, anchor in order]
    at = {f"e-{e.entry_id[:16]}": i for i, e in enumerate([proposal, *votes, cert])}
    positions = [ids.index(anchor) for anchor in at]
    assert positions == sorted(positions), order
    # Times are shown to the second, in UTC.
    assert re.search(r"<time datetime=\"[^\"]+\">\d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} UTC</time>", timeline)


def test_training_halt_recorded_by_each_gate_is_shown_with_its_step(net: Any, verified: VerificationReport) -> None:
    """Each lab's gate signed a halt record into its feed: the report says where each lab's
    training halted, the step linked to the signed record."""
    vb = verified.require()
    html = render_html(vb, report=verified)
    assert len(vb.analysis.halts) == len(vb.chain.current.roster.labs)
    for lab, note in vb.analysis.halts.items():
        step = note.statement.body.text.split()[4].rstrip(":")  # "training halted at step N: …"
        anchor = f"e-{note.entry_id[:16]}"
        assert re.search(rf'training halted at step <a class="num" href="#{anchor}"[^>]*>{int(step):,}</a>', html), lab
    assert "no halt recorded" not in html


def test_edited_halt_record_claim_fails_verify(net: Any) -> None:
    b = net.bundle()
    fields = []
    for fc in b.claims.fields:
        if "/body/text" in fc.values:
            fc = fc.model_copy(update={"values": {**fc.values, "/body/text": "training halted at step 1: edited"}})
        fields.append(fc)
    forged = b.model_copy(update={"claims": Claims(fields=fields, verdicts=b.claims.verdicts, tallies=b.claims.tallies)})
    report = verify_bundle(forged)
    assert not report.ok and any("/body/text" in r for r in report.failures())
