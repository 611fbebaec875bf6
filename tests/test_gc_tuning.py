"""Long-running processes settle the garbage collector once start-up is done: what start-up
built is frozen out of its sight and gen-0 collections are spaced out (see dersync.gc_tuning)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from dersync.gc_tuning import GEN0_THRESHOLD, settle_after_start_up


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_gc")
def test_start_up_objects_are_frozen_and_gen0_spaced_out() -> None:
    _, gen1, gen2 = gc.get_threshold()

    settle_after_start_up()

    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (GEN0_THRESHOLD, gen1, gen2)
