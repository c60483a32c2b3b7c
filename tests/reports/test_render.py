"""Rendering: only claimed numbers, every link resolves, peer strings are inert data."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import pytest

from reports.bundle import VerificationReport, verify_bundle
from reports.claims import Claims
from reports.errors import RenderError
from reports.fixtures import HOSTILE_NAMES, synthetic_network
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
    from reports.fixtures import synthetic_network as build

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
