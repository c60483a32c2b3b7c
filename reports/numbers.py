"""The claim guard: the only way a report prints a number is as a claim the verified bundle
makes, linked to the signed document it comes from (:class:`Numbers`)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from markupsafe import Markup, escape

from protocol.entries import (
    halt_step,
)
from reports.analysis import (
    TEXT_PTR,
)
from reports.bundle import VerifiedBundle
from reports.errors import RenderError
from reports.formatting import VERDICT_TEXT, _anchor, fmt_dec, fmt_flop


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
