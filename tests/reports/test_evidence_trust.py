"""Evidence a regulator can trust: each test is named after a finding of trying to be fooled.

Real signed histories (protocol only, or real NodeHomes through the CLI), real Chromium
where a PDF is printed. No mocks.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from synthetic import SyntheticNetwork, synthetic_network

from node.cli import main
from protocol.canonical import entry_id, parse_time
from protocol.entries import PauseCertificateBody
from protocol.envelope import Envelope
from protocol.roster import verify_entry
from reports.analysis import analyse
from reports.bundle import EvidenceBundle, parse_bundle, verify_bundle
from reports.claims import derive_claims
from reports.render import render_html, write_report


def _chromium() -> None:
    from reports.errors import BrowserMissingError
    from reports.pdf import chromium_path

    try:
        chromium_path()
    except BrowserMissingError:
        if os.environ.get("TRIPWIRE_REQUIRE_BROWSER") or os.environ.get("CI"):
            raise
        pytest.skip("headless Chromium is not installed (run scripts/ensure-chromium.sh)")


def _report(home: Path, out: Path, *extra: str) -> int:
    return main(["report", "--home", str(home), "--out", str(out), "--audience", "regulator", *extra])


# --- state as of generation -----------------------------------------------------------------


def test_report_windowed_after_pause_says_paused(net: SyntheticNetwork) -> None:
    cert = next(e for e in net.entries if e.kind == "pause_certificate")
    last = max(parse_time(e.statement.issued_at) for e in net.entries)
    since = last + timedelta(minutes=1)  # after everything: the window shows no events at all
    assert parse_time(cert.statement.issued_at) < since

    windowed = net.bundle(since=since)
    report = verify_bundle(windowed)
    assert report.ok, report.failures()
    vb = report.require()
    assert vb.analysis.status == "paused"
    # The certificate and what it rests on travel with the bundle although they predate the window.
    assert cert.entry_id in {e.entry_id for e in vb.entries}
    assert len(windowed.entries) < len(net.bundle().entries)

    html = render_html(vb, report=report)
    assert "Status: PAUSED" in html and "NORMAL" not in html.split("<main>")[0]
    assert "the status is the network's state as of" in html


def test_windowed_bundle_cannot_drop_the_pause_it_rests_on(net: SyntheticNetwork) -> None:
    # Cutting the certificate's lab back to an entry before the window still fails: the
    # node signed where each run starts.
    cert = next(e for e in net.entries if e.kind == "pause_certificate")
    since = max(parse_time(e.statement.issued_at) for e in net.entries) + timedelta(minutes=1)
    doc = json.loads(net.bundle(since=since).to_json_bytes())
    ids = [entry_id(Envelope.parse(env).payload_bytes()) for env in doc["entries"]]
    i = ids.index(cert.entry_id)
    _drop(doc, net, [i])
    report = verify_bundle(parse_bundle(doc))
    assert not report.ok
    complete = next(c for c in report.checks if c.name == "complete feeds")
    assert complete.status == "fail" and cert.lab in complete.summary


# --- omission ---------------------------------------------------------------------------------


def _drop(doc: dict[str, Any], net: SyntheticNetwork, indexes: list[int]) -> None:
    """Remove entries (and their proofs) and recompute the unsigned claims, as a forger would."""
    for i in sorted(indexes, reverse=True):
        del doc["entries"][i]
        del doc["proofs"][i]
    kept = [verify_entry(Envelope.parse(env), net.chain) for env in doc["entries"]]
    doc["claims"] = derive_claims(analyse(net.chain, net.policy, kept)).model_dump(mode="json")


def _lab_indexes(doc: dict[str, Any], lab: str) -> list[tuple[int, int]]:
    """(index in entries, seq) of ``lab``'s entries."""
    out = []
    for i, env in enumerate(doc["entries"]):
        st = json.loads(Envelope.parse(env).payload_bytes())
        if st["lab"] == lab:
            out.append((i, st["seq"]))
    return out


def _cut_tail(doc: dict[str, Any], lab: str) -> tuple[list[int], list[int]]:
    mine = _lab_indexes(doc, lab)
    return [mine[-1][0]], [mine[-1][1]]


def _cut_middle(doc: dict[str, Any], lab: str) -> tuple[list[int], list[int]]:
    mine = _lab_indexes(doc, lab)
    i, seq = mine[len(mine) // 2]
    return [i], [seq]


def _cut_lab(doc: dict[str, Any], lab: str) -> tuple[list[int], list[int]]:
    mine = _lab_indexes(doc, lab)
    return [i for i, _ in mine], [s for _, s in mine]


CUTS: list[Callable[[dict[str, Any], str], tuple[list[int], list[int]]]] = [_cut_tail, _cut_middle, _cut_lab]


@pytest.mark.parametrize("cut", CUTS, ids=["tail-cut", "middle-entry", "whole-lab"])
def test_bundle_with_entry_removed_fails_verify(
    cut: Callable[[dict[str, Any], str], tuple[list[int], list[int]]],
    bundle: EvidenceBundle,
    net: SyntheticNetwork,
) -> None:
    # The lab that published the pause certificate: its tail is the certificate itself.
    lab = next(e.lab for e in net.entries if e.kind == "pause_certificate")
    doc = json.loads(bundle.to_json_bytes())
    indexes, seqs = cut(doc, lab)
    _drop(doc, net, indexes)
    report = verify_bundle(parse_bundle(doc))
    assert not report.ok and report.verified is None
    complete = next(c for c in report.checks if c.name == "complete feeds")
    assert complete.status == "fail"
    text = " ".join(complete.failures)
    assert f"lab {lab!r}: entries missing at seq" in text
    expected = str(seqs[0]) if len(seqs) == 1 else f"{seqs[0]}–{seqs[-1]}"
    assert expected in text
    # Everything else a forger controls passes: only completeness catches the omission.
    assert {c.name for c in report.checks if c.status == "fail"} <= {"complete feeds", "feed chains"}


def test_a_forged_heads_statement_fails(bundle: EvidenceBundle, net: SyntheticNetwork) -> None:
    doc = json.loads(bundle.to_json_bytes())
    other = synthetic_network(3, 2, seed=5).bundle()
    doc["heads"] = other.heads.to_dict()
    report = verify_bundle(parse_bundle(doc))
    complete = next(c for c in report.checks if c.name == "complete feeds")
    assert complete.status == "fail" and "another network" in complete.summary


# --- reports bound to their evidence ----------------------------------------------------------


def test_edited_number_in_html_fails_verify(
    node_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    assert _report(node_home / "lab-a", out, "--no-pdf") == 0
    genesis = str(node_home / "genesis.json")
    capsys.readouterr()
    assert main(["verify", str(out), "--roster", genesis]) == 0
    printed = capsys.readouterr().out
    assert "report html" in printed and "FAIL" not in printed

    html = (out / "report.html").read_text(encoding="utf-8")
    evidence = json.loads((out / "evidence.json").read_text(encoding="utf-8"))
    value = next(
        v
        for fc in evidence["claims"]["fields"]
        for p, v in fc["values"].items()
        if p.endswith("/training_flop")
    )
    # Change one displayed number in the document (the footer's digest still matches).
    anchor = 'class="num"'
    at = html.index(anchor)
    close = html.index("</a>", at)
    start = html.rindex(">", at, close) + 1
    edited = html[:start] + "9" + html[start:]
    assert edited != html and value
    (out / "report.html").write_text(edited, encoding="utf-8")
    for target in (out, out / "report.html"):
        assert main(["verify", str(target), "--roster", genesis]) == 3
        printed = capsys.readouterr().out
        assert "report html" in printed and "FAIL" in printed


def test_verify_pdf_checks_the_pdf(node_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _chromium()
    from reports.bundle import load_bundle
    from reports.pdf import print_pdf

    out = tmp_path / "report"
    assert _report(node_home / "lab-a", out) == 0
    genesis = str(node_home / "genesis.json")
    capsys.readouterr()
    assert main(["verify", str(out / "report.pdf"), "--roster", genesis]) == 0
    printed = capsys.readouterr().out
    assert "report pdf" in printed and "FAIL" not in printed

    # A PDF printed from an edited report (one number changed) is refused.
    result = verify_bundle(load_bundle(out / "evidence.json"))
    from reports.binding import expected_html

    printable = expected_html(result, (out / "evidence.json").read_bytes(), for_print=True)
    marker = "Status: "
    assert marker in printable
    forged_html = tmp_path / "forged.html"
    forged_html.write_text(printable.replace(marker, "Status (edited): ", 1), encoding="utf-8")
    print_pdf(forged_html, out / "report.pdf")
    assert main(["verify", str(out / "report.pdf"), "--roster", genesis]) == 3
    printed = capsys.readouterr().out
    assert "report pdf" in printed and "FAIL" in printed

    # A file that is neither evidence nor a report is named, with what to pass.
    junk = tmp_path / "notes.bin"
    junk.write_bytes(b"\x89\xff\x00 not a report")
    assert main(["verify", str(junk)]) == 3
    err = " ".join(capsys.readouterr().err.split())
    assert "not an evidence bundle or a report" in err and "report folder" in err


# --- pinning ---------------------------------------------------------------------------------


def test_roster_export_is_accepted_by_verify_roster(
    node_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    assert _report(node_home / "lab-b", out, "--no-pdf") == 0
    genesis = tmp_path / "genesis.json"
    assert main(["roster", "export", "--home", str(node_home / "lab-b"), "--out", str(genesis)]) == 0
    capsys.readouterr()
    assert main(["verify", str(out / "evidence.json"), "--roster", str(genesis), "--require-pin"]) == 0
    printed = capsys.readouterr()
    assert "genesis matches the trusted roster" in printed.out and "warning" not in printed.err

    # `roster show --json` output pins by the network id it names.
    assert main(["roster", "show", "--home", str(node_home / "lab-b"), "--json"]) == 0
    shown = tmp_path / "shown.json"
    shown.write_text(capsys.readouterr().out, encoding="utf-8")
    assert main(["verify", str(out), "--roster", str(shown)]) == 0
    assert "genesis matches the trusted roster" in capsys.readouterr().out

    # A roster version that does not exist is a one-line error.
    assert main(["roster", "export", "--home", str(node_home / "lab-b"), "--out", str(genesis), "--version", "9"]) == 2
    assert "--version 9" in capsys.readouterr().err


def test_verify_without_pin_warns_and_require_pin_fails(
    node_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    assert _report(node_home / "lab-a", out, "--no-pdf") == 0
    capsys.readouterr()
    assert main(["verify", str(out)]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "warning" in err and "trusts the roster inside the bundle" in err
    assert main(["verify", str(out), "--require-pin"]) == 2
    assert "--require-pin" in capsys.readouterr().err


# --- resilience ------------------------------------------------------------------------------


def test_invalid_certificate_is_flagged_not_fatal() -> None:
    net = synthetic_network(3, 4, seed=11)
    good = next(e for e in net.entries if e.kind == "pause_certificate")
    body = good.statement.body
    assert isinstance(body, PauseCertificateBody)
    # A lab publishes a certificate carrying one vote only: below quorum, so invalid.
    bad = net.publish(good.lab, "pause_certificate", body.model_copy(update={"votes": body.votes[:1]}))
    report = verify_bundle(net.bundle())
    assert report.ok, report.failures()
    certs = next(c for c in report.checks if c.name == "certificates")
    assert certs.status == "pass" and "flagged" in certs.summary and bad.entry_id[:16] in certs.summary
    vb = report.require()
    assert vb.analysis.status == "paused"  # the valid certificate still counts
    assert any(f.entry_id == bad.entry_id for f in vb.analysis.flagged)
    html = render_html(vb, report=report)
    assert "Flagged entries (not counted)" in html and "invalid-certificate" in html


# --- CLI manners ------------------------------------------------------------------------------


def test_report_out_existing_folder_refused_then_overwritten_whole(
    node_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    assert _report(node_home / "lab-a", out, "--no-pdf") == 0
    stale = out / "report.pdf"
    stale.write_bytes(b"%PDF-1.4 an old report")
    capsys.readouterr()
    assert _report(node_home / "lab-a", out, "--no-pdf") == 2
    err = " ".join(capsys.readouterr().err.split())  # the console wraps long lines
    assert "already exists: pass --overwrite" in err and "Traceback" not in err
    assert stale.exists()

    assert _report(node_home / "lab-a", out, "--no-pdf", "--overwrite") == 0
    assert {p.name for p in out.iterdir()} == {"report.html", "evidence.json"}
    assert not any(p.name.startswith(".report") for p in tmp_path.iterdir())

    a_file = tmp_path / "file.txt"
    a_file.write_text("x", encoding="utf-8")
    assert _report(node_home / "lab-a", a_file, "--no-pdf", "--overwrite") == 2
    assert "is a file, not a folder" in " ".join(capsys.readouterr().err.split())


def test_write_report_renders_the_same_bytes_twice(verified: Any, tmp_path: Path) -> None:
    a = write_report(verified.require(), tmp_path / "a", report=verified, pdf=False)
    b = write_report(verified.require(), tmp_path / "b", report=verified, pdf=False)
    assert a.html.read_bytes() == b.html.read_bytes()


def test_a_pdf_equal_to_the_fresh_print_but_its_dates_passes_without_text_extraction() -> None:
    from reports.binding import same_pdf_but_dates

    def pdf(created: bytes, modified: bytes, shown: bytes = b"(Status: paused) Tj") -> bytes:
        return (b"%PDF-1.4\n1 0 obj\n<</Producer (Skia/PDF m156)\n/CreationDate (D:" + created
                + b"+00'00')\n/ModDate (D:" + modified + b"+00'00')>>\nendobj\n2 0 obj\n<<>>stream\n"
                + shown + b"\nendstream\nendobj\n%%EOF\n")

    printed = pdf(b"20261207113913", b"20261207113913")
    assert same_pdf_but_dates(pdf(b"20261207113834", b"20261207113834"), printed)
    # Any other byte is a difference (then the texts are compared, as before).
    assert not same_pdf_but_dates(pdf(b"20261207113834", b"20261207113834", b"(Status: edited) Tj"), printed)
    # The date spans must hold dates in the given file too, and the lengths must agree.
    assert not same_pdf_but_dates(printed.replace(b"/ModDate (D:20261207113913+00'00')", b"/ModDate (X:20261207113913+00'00')"), printed)
    assert not same_pdf_but_dates(pdf(b"2026120711383", b"20261207113834"), printed)
    # A print without exactly those two dates is not taken on bytes.
    undated = printed.replace(b"/ModDate", b"/Modified")
    assert not same_pdf_but_dates(undated, undated)
