"""A first pass and a reconciliation in a fresh process, for the scale benchmarks:

    python benchmarks/scale_child.py DATABASE_URL RECORDS SIMULATOR_URL

The store at DATABASE_URL already holds RECORDS new records (`benchmarks/scale.py`, loaded by
the parent, so that the set-up's memory is not this process's); the simulator at SIMULATOR_URL
runs with AEMO's limit lifted. Prints one JSON line: the pass's time, its peak RSS (VmHWM), the
client's CPU, then the reconciliation's requests, time, the compare step's own time and its
peak RSS (VmHWM restarted after the pass).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.run import UNTHROTTLED, process_cpu_seconds, reset_peak_rss, rss_mb, simulator_settings
from dersync import event_loop


async def measure(url: str, count: int, simulator_url: str) -> dict[str, Any]:
    from dersync.aemo.client import AemoClient
    from dersync.logs import configure_logging
    from dersync.reconcile.reconciler import Expected, Reconciler
    from dersync.settings import Settings
    from dersync.store import Store, StoredRecord
    from dersync.sync import sync_once

    class TimedReconciler(Reconciler):
        """The reconciler, timing its compare step: validating each stored record into what AEMO
        should hold (`_expected`) and comparing it field by field with AEMO's copy."""

        compare_seconds = 0.0

        def _expected(self, record: StoredRecord) -> Expected | None:
            started = time.perf_counter()
            try:
                return super()._expected(record)
            finally:
                self.compare_seconds += time.perf_counter() - started

        def _installation_findings(self, item: Expected, held: Mapping[str, Any] | None,
                                   ids: Mapping[tuple[str, str], int]) -> list[Any]:
            started = time.perf_counter()
            try:
                return super()._installation_findings(item, held, ids)
            finally:
                self.compare_seconds += time.perf_counter() - started

    configure_logging(Settings(log_level="WARNING", log_format="console"))  # as benchmarks/run.py
    settings = simulator_settings(simulator_url, url, **UNTHROTTLED)
    store = await Store.open(settings.database_url)
    try:
        before = rss_mb()
        cpu, started = process_cpu_seconds(), time.monotonic()
        summary = await sync_once(settings, store)
        seconds, cpu = time.monotonic() - started, process_cpu_seconds() - cpu
        result: dict[str, Any] = {
            "records": count, "pass_seconds": round(seconds, 1), "per_second": round(count / seconds, 1),
            "peak_rss_mb": round(rss_mb(), 1), "rss_before_pass_mb": round(before, 1),
            "client_cpu_ms_per_push": round(cpu / count * 1000, 3), "created": summary.created,
            "left_due": summary.left_due, "pass_requests": summary.requests,
        }
        result["reconcile_rss_reset"] = reset_peak_rss()
        async with AemoClient(settings) as client:
            reconciler = TimedReconciler(settings, store, client, repair=False)
            started = time.monotonic()
            report = await reconciler.run()
            result.update(reconcile_seconds=round(time.monotonic() - started, 2),
                          reconcile_requests=report.requests, reconcile_compared=report.compared,
                          reconcile_findings=len(report.findings), reconcile_unread=report.unread,
                          compare_seconds=round(reconciler.compare_seconds, 2),
                          reconcile_peak_rss_mb=round(rss_mb(), 1))
    finally:
        await store.close()
    return result


if __name__ == "__main__":
    print(json.dumps(event_loop.run(measure(sys.argv[1], int(sys.argv[2]), sys.argv[3]))))
