"""Write specs/schemas/evidence.schema.json from the bundle model.

Run ``python -m reports.schema`` after changing :class:`reports.bundle.EvidenceBundle`;
tests/reports/test_evidence_schema.py fails when the file is stale. The schema checks
shape only; what a bundle proves is checked by the procedure of specs/evidence.md §4.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from reports.bundle import evidence_json_schema

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "specs" / "schemas" / "evidence.schema.json"


def schema_text() -> str:
    schema = evidence_json_schema()
    schema["description"] = (
        "Tripwire evidence bundle (evidence.json), format tripwire-evidence/1: see specs/evidence.md."
    )
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> int:
    SCHEMA_PATH.write_text(schema_text(), encoding="utf-8")
    print(f"wrote {SCHEMA_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
