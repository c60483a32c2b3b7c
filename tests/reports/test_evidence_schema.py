"""The published evidence schema is current, and real bundles validate against it."""

from __future__ import annotations

import json

from reports.bundle import EvidenceBundle
from reports.schema import SCHEMA_PATH, schema_text


def test_published_schema_is_current() -> None:
    assert SCHEMA_PATH.read_text(encoding="utf-8") == schema_text(), "run: python -m reports.schema"


def test_a_bundle_matches_the_published_schema(bundle: EvidenceBundle) -> None:
    import jsonschema  # a declared test dependency: missing, the test must fail, not skip
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.validate(json.loads(bundle.to_json_bytes()), schema)
