"""The published OpenAPI document is current, no generated request gets a 5xx, and every
answer matches the response schema the document declares for it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
import schemathesis
from http_nodes import ThreadedNode
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from node.api.app import openapi_document, openapi_json
from node.net.auth import sign_request

SPEC = Path(__file__).resolve().parents[2] / "specs" / "openapi.json"


def test_committed_openapi_document_is_current() -> None:
    assert SPEC.read_text(encoding="utf-8") == openapi_json(), (
        "specs/openapi.json is stale: run `python -m node.api.openapi`"
    )


def test_every_v1_route_documents_problem_responses() -> None:
    doc = openapi_document()
    for path, ops in doc["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for op in ops.values():
            assert "401" in op["responses"], f"{path} does not document 401"
            assert "application/problem+json" in op["responses"]["401"]["content"], path


class _Sign(requests.auth.AuthBase):
    """Sign each generated request with a roster key, so fuzzing reaches the handlers."""

    def __init__(self, key) -> None:
        self.key = key

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        body = r.body.encode() if isinstance(r.body, str) else r.body
        r.headers.update(sign_request(self.key, r.method or "GET", r.url or "", body or None))
        return r


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from node.home.netsetup import create_network
    from node.net.process import free_ports

    homes = create_network(tmp_path_factory.mktemp("fuzz"), ["alpha", "beta"], ports=free_ports(2))
    alpha, beta = homes
    alpha.config = alpha.config.model_copy(
        update={"server": alpha.config.server.model_copy(update={"rate_limit_per_minute": 1_000_000})}
    )
    for i in range(3):
        alpha.publish("note", {"text": f"n{i}"})
    with ThreadedNode(alpha) as node:
        yield node, beta
    for h in homes:
        h.close()


schema = schemathesis.openapi.from_dict(json.loads(SPEC.read_text(encoding="utf-8")))


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_generated_requests_never_get_a_server_error(case, served) -> None:
    node, beta = served
    response = case.call(base_url=node.url, auth=_Sign(beta.key), timeout=10)
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text[:500]}"
    # The routes' response models are the contract: the body must match its declared schema.
    case.validate_response(response, checks=[response_schema_conformance, content_type_conformance])
    if response.status_code >= 400:
        ctype = {k.lower(): v for k, v in response.headers.items()}["content-type"]
        ctype = ctype[0] if isinstance(ctype, list) else ctype
        assert ctype.startswith("application/problem+json"), (case.method, case.formatted_path, ctype)
        assert response.json()["code"]
