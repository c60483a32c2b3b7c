"""Write the published OpenAPI document: ``python -m node.api.openapi [PATH]``
(default ``specs/openapi.json``; a test checks the committed copy is current)."""

from __future__ import annotations

import sys
from pathlib import Path

from node.api.app import openapi_json

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "specs" / "openapi.json"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else DEFAULT_PATH
    path.write_text(openapi_json(), encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
