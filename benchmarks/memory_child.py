"""One memory measurement in a fresh process: `python benchmarks/memory_child.py N`.

Loads N new records into a fresh SQLite store, runs one pass against a simulator process with
AEMO's limit lifted, and prints the peak RSS of this process as JSON.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.run import UNTHROTTLED, SimulatorProcess, loaded_store, rss_mb
from dersync import event_loop


async def measure(count: int) -> dict[str, float]:
    from dersync.logs import configure_logging
    from dersync.settings import Settings
    from dersync.sync import sync_once

    configure_logging(Settings(log_level="WARNING", log_format="console"))  # as benchmarks/run.py
    with tempfile.TemporaryDirectory() as tmp, SimulatorProcess(rate_limit=10**9) as sim:
        async with loaded_store(sim, tmp, count, **UNTHROTTLED) as (settings, store):
            after_load = rss_mb()
            started = time.monotonic()
            summary = await sync_once(settings, store)
            seconds = time.monotonic() - started
    return {"records": count, "peak_rss_mb": round(rss_mb(), 1), "rss_after_load_mb": round(after_load, 1),
            "pass_seconds": round(seconds, 1), "created": summary.created}


if __name__ == "__main__":
    print(json.dumps(event_loop.run(measure(int(sys.argv[1])))))
