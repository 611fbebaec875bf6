"""The garbage collector's settings for processes that run for long: the daemon (`dersync run`),
a sync pass (`dersync sync`) and the simulator (`dersync mock-aemo`).

Each request allocates a few hundred container objects (headers, futures, dicts of the body),
so with CPython's default gen-0 threshold (700) a collection runs every few requests, and each
older-generation collection walks every object start-up left behind (modules, pydantic schemas,
SQLAlchemy metadata), which live as long as the process. The profile of a headroom pass put
7.5% of the client's CPU in the collector (benchmarks/results/2026-12-03T124626Z-profile.md).
Freezing what start-up built moves it out of the collector's sight; a higher gen-0 threshold
collects the short-lived request objects in fewer, equally cheap passes. Reference counting
still frees nearly everything at once: only cyclic garbage waits longer.
"""

from __future__ import annotations

import gc

#: Allocations between gen-0 collections (CPython's default is 700).
GEN0_THRESHOLD = 50_000


def settle_after_start_up() -> None:
    """Collect once, freeze what survives (it lives as long as the process) and space gen-0
    collections out. Call after the process's imports and set-up, before its main work."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
