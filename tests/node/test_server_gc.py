"""The serving process keeps the cyclic garbage collector off the ingest path."""

from __future__ import annotations

import gc

from node.api.server import _tune_gc


def test_tune_gc_freezes_startup_objects_and_collects_young_objects_less_often() -> None:
    before = gc.get_threshold()
    try:
        _tune_gc()
        assert gc.get_freeze_count() > 10_000  # the imported stack is out of the collector's sight
        assert gc.get_threshold()[0] >= 20_000
        assert gc.get_threshold()[1:] == before[1:]
        # Cycles created afterwards are still collected.
        a: list[object] = []
        a.append(a)
        del a
        assert gc.collect() >= 1
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
