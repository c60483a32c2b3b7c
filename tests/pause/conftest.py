"""Pause tests: make ``pausekit`` importable and close every home a test opened."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
