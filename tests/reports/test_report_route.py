"""GET /v1/reports/latest on real uvicorn, with signed requests (no HTTP fakes)."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
from http_nodes import ThreadedNode

from node.api import reports_route
from node.home import NodeHome
from reports.bundle import parse_bundle, verify_bundle


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_members_get_the_latest_report_and_strangers_do_not(node_home: Path) -> None:
    home = NodeHome.open(node_home / "lab-a")
    try:
        with ThreadedNode(home, port=_free_port()) as node:
            node.app.include_router(reports_route.router)
            with node.client(home.key, home.lab) as client:
                status, headers, body = client.request(
                    "GET", "/v1/reports/latest", params={"audience": "regulator"}
                )
                assert status == 200, body[:500]
                assert headers["content-type"].startswith("text/html")
                assert "default-src 'none'" in headers["content-security-policy"]
                assert b"Regulator edition" in body and b"<script" not in body
                status, _, evidence = client.request("GET", "/v1/reports/latest", params={"format": "json"})
                assert status == 200
                assert verify_bundle(parse_bundle(__import__("json").loads(evidence))).ok
            anonymous = httpx.get(f"{node.url}/v1/reports/latest", timeout=30)
            assert anonymous.status_code == 401
    finally:
        home.close()


def test_invalid_certificate_in_a_feed_does_not_break_the_report(node_home: Path, tmp_path: Path) -> None:
    """One bad certificate entry (here: naming a roster version nobody holds) is flagged in
    the report, never a 422: the report and its evidence still come back and verify."""
    import json
    import shutil

    from protocol.entries import PauseCertificateBody

    root = tmp_path / "copy"
    shutil.copytree(node_home, root)
    home = NodeHome.open(root / "lab-a")
    try:
        some = home.store.entries(kind="eval_result")[0].envelope
        bad = PauseCertificateBody(
            proposal_id="ab" * 32, action="pause", roster_version=9, proposal=some, votes=[some]
        )
        cert_id = home.publish("pause_certificate", bad)
        with ThreadedNode(home, port=_free_port()) as node:
            node.app.include_router(reports_route.router)
            with node.client(home.key, home.lab) as client:
                status, _, body = client.request("GET", "/v1/reports/latest", params={"audience": "regulator"})
                assert status == 200, body[:500]
                assert cert_id[:16].encode() in body
                status, _, evidence = client.request("GET", "/v1/reports/latest", params={"format": "json"})
                assert status == 200, evidence[:500]
                report = verify_bundle(parse_bundle(json.loads(evidence)))
                assert report.ok, [c for c in report.checks if not c.ok]
    finally:
        home.close()
