"""How reports write numbers, times, compute and peer text: plain-language formatters that
never reorder or execute peer-supplied strings (each is escaped and isolated in ``<bdi>``)."""

from __future__ import annotations

import math
import re
from datetime import date
from decimal import Decimal
from functools import lru_cache
from typing import Any

from markupsafe import Markup, escape

from protocol.canonical import parse_time
from protocol.policy import Rule

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
    m = re.fullmatch(r"(-?)([0-9]+(?:\.[0-9]+)?)[eE]\+?(-?[0-9]+)", text)
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


_TIME = re.compile(r"([0-9]{4}-[0-9]{2}-[0-9]{2})T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?Z")


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
