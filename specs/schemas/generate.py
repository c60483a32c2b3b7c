"""Write the JSON Schemas of Tripwire's wire messages, generated from ``protocol/`` models.

Run ``python specs/schemas/generate.py`` after changing a model;
``tests/protocol/test_schemas.py`` regenerates in memory and fails when a file is stale.
The models are the source of truth (spec §9): a schema check is necessary, not
sufficient — canonical bytes, signatures and the cross-field rules (ids, thresholds)
are checked by the procedures of spec §4–§7.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE.parents[1]) not in sys.path:
    sys.path.insert(0, str(HERE.parents[1]))

from pydantic import BaseModel  # noqa: E402

from protocol.entries import BODY_MODELS, PauseCertificateBody, Statement  # noqa: E402
from protocol.envelope import Envelope  # noqa: E402
from protocol.feed import EquivocationProof  # noqa: E402
from protocol.merkle import Checkpoint  # noqa: E402
from protocol.pausestate import PauseStateStatement  # noqa: E402
from protocol.policy import policy_json_schema  # noqa: E402
from protocol.roster import Roster  # noqa: E402

DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _schemas() -> dict[str, tuple[type[BaseModel], str]]:
    out: dict[str, tuple[type[BaseModel], str]] = {
        "statement": (Statement, "Feed statement: the canonical payload of an entry envelope (spec §4.1)."),
        "envelope": (Envelope, "DSSE v1 envelope as it travels on the wire (spec §3.1)."),
        "roster": (Roster, "Roster statement: the payload of a roster envelope (spec §7.1)."),
        "equivocation-proof": (EquivocationProof, "Portable proof that a lab signed two entries at one seq (spec §4.4)."),
        "certificate": (PauseCertificateBody, "Pause or resume certificate: proposal plus vote envelopes (spec §6.5)."),
        "checkpoint": (Checkpoint, "Signed checkpoint of a node's accepted-entry log (spec §5.5)."),
        "pause-state": (PauseStateStatement, "Pause-state statement a node signs for a training gate's poll (spec §6.9)."),
    }
    for kind, model in BODY_MODELS.items():
        out[f"body-{kind.replace('_', '-')}"] = (model, f"Body of a {kind!r} entry (spec §6).")
    return out


def schema_files() -> dict[str, bytes]:
    """Every generated schema file, by file name."""
    files: dict[str, bytes] = {}
    for name, (model, description) in _schemas().items():
        schema: dict[str, Any] = {
            "$schema": DIALECT,
            "$id": f"{name}.schema.json",
            **model.model_json_schema(mode="validation"),
        }
        schema["description"] = description
        files[f"{name}.schema.json"] = (json.dumps(schema, indent=2, sort_keys=True) + "\n").encode()
    # The policy file's schema (spec §8) is written by protocol.policy itself.
    files["policy.schema.json"] = (json.dumps(policy_json_schema(), indent=2, sort_keys=True) + "\n").encode()
    return files


def main() -> None:
    for name, data in schema_files().items():
        (HERE / name).write_bytes(data)
    print(f"wrote {len(schema_files())} schemas")


if __name__ == "__main__":
    main()
