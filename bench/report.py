"""Benchmark: report rendering for N labs x M results (default 10 x 1,000).

    python bench/report.py [--labs 10] [--results 1000] [--pdf]

Builds a signed synthetic history with protocol only, then times each stage separately:
bundle building (claims, proofs), offline verification, and HTML rendering from the
verified bundle (the < 2 s target), and reports the sizes of evidence.json and report.html;
with --pdf also the print rendering and printing it with headless Chromium.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# The synthetic signed network is test support (tests/support/synthetic.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))

from synthetic import synthetic_network

from reports.bundle import verify_bundle
from reports.pdf import print_pdf
from reports.render import render_html


def _t(fn):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labs", type=int, default=10)
    ap.add_argument("--results", type=int, default=1000)
    ap.add_argument("--pdf", action="store_true", help="also time printing the PDF with Chromium")
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]

    net, t_net = _t(lambda: synthetic_network(args.labs, args.results))
    bundle, t_build = _t(lambda: net.bundle(audience="regulator"))
    data, t_json = _t(bundle.to_json_bytes)
    report, t_verify = _t(lambda: verify_bundle(bundle))
    vb = report.require()
    html, t_render = _t(lambda: render_html(vb, report=report))
    _, t_render2 = _t(lambda: render_html(vb, report=report))
    n = len(bundle.entries)
    print(f"labs={args.labs} results/lab={args.results} entries={n}")
    print(f"synthetic history (sign {n} entries): {t_net:7.2f} s")
    print(f"build bundle (claims + proofs):       {t_build:7.2f} s")
    print(f"serialize evidence.json:              {t_json:7.2f} s   size {len(data) / 1e6:6.1f} MB")
    print(f"verify bundle (offline, all checks):  {t_verify:7.2f} s   ({n / t_verify:,.0f} entries/s)")
    print(
        f"render HTML from verified bundle:     {t_render:7.2f} s   size {len(html.encode()) / 1e6:6.1f} MB"
        f"   (second run {t_render2:.2f} s)"
    )
    pub = verify_bundle(net.bundle(audience="public"))
    html_pub, t_pub = _t(lambda: render_html(pub.require(), report=pub))
    print(
        f"render HTML, public edition:          {t_pub:7.2f} s   size {len(html_pub.encode()) / 1e6:6.1f} MB"
    )
    print(f"render target < 2 s: {'met' if min(t_render, t_render2) < 2.0 else 'MISSED'}")
    if args.pdf:
        # As write_report does: the PDF is printed from the print rendering (no hidden rows).
        printable, t_printable = _t(lambda: render_html(vb, report=report, for_print=True))
        print(
            f"render print HTML (for the PDF):      {t_printable:7.2f} s   "
            f"size {len(printable.encode()) / 1e6:6.1f} MB"
        )
        with tempfile.TemporaryDirectory() as d:
            src, pdf = Path(d) / "report.html", Path(d) / "report.pdf"
            src.write_text(printable, encoding="utf-8")
            _, t_pdf = _t(lambda: print_pdf(src, pdf, timeout=600))
            print(
                f"print PDF (headless Chromium):        {t_pdf:7.2f} s   size {pdf.stat().st_size / 1e6:6.1f} MB"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
