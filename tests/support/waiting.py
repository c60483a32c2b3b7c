"""Waiting for a condition, never for a guessed amount of time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_until(pred: Callable[[], Any], timeout: float, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll ``pred`` until it returns something truthy and return that; fail after ``timeout``.

    ``timeout`` bounds a hang, it is not a speed expectation: give it room for a loaded
    machine. The predicate is checked once more at the deadline, so a condition that came
    true while the poller slept still passes.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
