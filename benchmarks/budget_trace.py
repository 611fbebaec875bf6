"""Where an initial load at 6000/min loses the request budget: a timeline of one pass.

    python benchmarks/budget_trace.py                     # 10,000 new records, SQLite, 6000/min
    python benchmarks/budget_trace.py --records 3000 --store postgresql --postgres-url postgresql://...

Runs one pass as `initial_load` does (default settings, the simulator's strict window) with the
engine's steps timed from outside (wrappers installed on the classes; no product code changes):
every request the pacer admits, and per batch when the store handed it over, planning, the id
load, the existence lookups, the attempt mark, the sends, and the last outcomes' flush.

The pacer admits at most r = (6000 - 10) / 60.25 = 99.4 requests a second (benchmarks: pacing
0.994). Budget lost in an interval of T seconds in which n requests were admitted is T - n / r.
Prints the loss at the start (before the first request), at each batch boundary (from the last
request of one batch to the first write of the next, with what the engine did meanwhile), within
batches, and at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import scale
from benchmarks.run import SimulatorProcess, fresh_database
from dersync import event_loop

AEMO_LIMIT = 6000


class Trace:
    def __init__(self) -> None:
        self.events: list[tuple[float, str, Any]] = []

    def mark(self, name: str, detail: Any = None) -> None:
        self.events.append((time.monotonic(), name, detail))

    def wrap(self, owner: Any, attribute: str, name: str) -> None:
        """Mark `name.start` / `name.end` around every call of the coroutine `owner.attribute`."""
        original = getattr(owner, attribute)

        async def wrapped(*args: Any, **kwargs: Any) -> Any:
            self.mark(name + ".start")
            try:
                return await original(*args, **kwargs)
            finally:
                self.mark(name + ".end")

        setattr(owner, attribute, wrapped)


def instrument(trace: Trace) -> None:
    from dersync.aemo.installation_api import InstallationApi
    from dersync.aemo.pacing import Pacer
    from dersync.store import Store
    from dersync.sync.engine import SyncEngine

    acquire = Pacer.acquire

    async def admitted(self: Pacer) -> None:
        await acquire(self)
        trace.mark("admit")

    Pacer.acquire = admitted  # type: ignore[method-assign]
    due_batches = Store.due_batches

    def batches(self: Store, batch_size: int) -> AsyncIterator[list[Any]]:
        async def timed() -> AsyncIterator[list[Any]]:
            trace.mark("fetch.start")
            async for batch in due_batches(self, batch_size):
                trace.mark("fetch.end", len(batch))
                yield batch
                trace.mark("fetch.start")
            trace.mark("fetch.end", 0)

        return timed()

    Store.due_batches = batches  # type: ignore[method-assign]
    trace.wrap(SyncEngine, "_push_batch", "batch")
    trace.wrap(SyncEngine, "_views", "views")
    trace.wrap(SyncEngine, "_flush", "flush")
    trace.wrap(Store, "load_ids", "load_ids")
    trace.wrap(Store, "mark_attempts", "mark")
    trace.wrap(InstallationApi, "find", "lookup")
    import dersync.sync.engine as engine_module

    plan_record: Callable[..., Any] = engine_module.plan_record

    def planned(record: Any, settings: Any) -> Any:
        if record is first_of_batch[0]:
            trace.mark("plan.start")
        plan = plan_record(record, settings)
        if record is first_of_batch[1]:
            trace.mark("plan.end")
        return plan

    first_of_batch: list[Any] = [None, None]
    original_batch = SyncEngine._push_batch

    async def push_batch(self: SyncEngine, batch: Any, summary: Any, counted: bool) -> None:
        first_of_batch[:] = [batch[0], batch[-1]] if batch else [None, None]
        await original_batch(self, batch, summary, counted)

    SyncEngine._push_batch = push_batch  # type: ignore[method-assign]
    engine_module.plan_record = planned  # type: ignore[assignment]


def analyse(trace: Trace, rate: float) -> dict[str, Any]:
    events = trace.events
    admits = [t for t, name, _ in events if name == "admit"]
    start = next(t for t, name, _ in events if name == "pass.start")
    end = next(t for t, name, _ in events if name == "pass.end")

    def lost(a: float, b: float) -> float:
        n = sum(1 for t in admits if a < t <= b)
        return (b - a) - n / rate

    starts = [t for t, name, _ in events if name == "batch.start"]
    ends = [t for t, name, _ in events if name == "batch.end"]
    marks = [t for t, name, _ in events if name == "mark.end"]
    first_writes, last_admits = [], []
    for a, b in zip(starts, ends, strict=True):
        mark_end = next((t for t in marks if a <= t <= b), a)
        first_writes.append(next((t for t in admits if mark_end < t <= b), b))
        last_admits.append(max((t for t in admits if a <= t <= b), default=b))
    # [start, first write of batch 0], then per batch [first write, last admission] and
    # [last admission, next batch's first write], then [last admission, end]: a partition.
    boundaries = []
    for k in range(len(starts) - 1):
        last, nxt_start = last_admits[k], starts[k + 1]
        span = [(t, name) for t, name, _ in events if last <= t <= ends[k + 1]]

        def first(name: str, after: float, span: list[tuple[float, str]] = span) -> float:
            return next((t for t, n in span if n == name and t >= after), after)

        boundaries.append({
            "lost": lost(last, first_writes[k + 1]),
            "tail": ends[k] - last,  # the batch's last answers and the flush after the last admission
            "fetch": first("fetch.end", ends[k]) - first("fetch.start", ends[k]),
            "plan": first("plan.end", nxt_start) - first("plan.start", nxt_start),
            "load_ids": first("load_ids.end", nxt_start) - first("load_ids.start", nxt_start),
            "lookup": first("lookup.end", nxt_start) - first("lookup.start", nxt_start),
            "mark": first("mark.end", nxt_start) - first("mark.start", nxt_start),
            "to_first_write": first_writes[k + 1] - first("mark.end", nxt_start),
        })
    within = sum(lost(first_writes[k], last_admits[k]) for k in range(len(starts)))
    first_admit, last_admit = first_writes[0], last_admits[-1]
    return {
        "records_admitted": len(admits), "pass_seconds": end - start, "batches": len(starts),
        "lost_total": lost(start, end),
        "lost_start": lost(start, first_admit),
        "lost_end": lost(last_admit, end),
        "lost_boundaries": sum(b["lost"] for b in boundaries),
        "lost_within_batches": within,
        "boundaries": boundaries,
    }


async def run(args: argparse.Namespace) -> str:
    from dersync.logs import configure_logging
    from dersync.settings import Settings
    from dersync.store import Store
    from dersync.sync import sync_once

    configure_logging(Settings(log_level="WARNING", log_format="console"))
    trace = Trace()
    instrument(trace)
    with tempfile.TemporaryDirectory() as tmp, SimulatorProcess(rate_limit=AEMO_LIMIT) as sim:
        async with fresh_database(args.store, tmp, args.postgres_url) as url:
            await scale.load_new(url, args.records)
            settings = sim.settings(url)
            store = await Store.open(settings.database_url)
            try:
                trace.mark("pass.start")
                summary = await sync_once(settings, store)
                trace.mark("pass.end")
            finally:
                await store.close()
        counters = await sim.counters()
    from dersync.aemo.pacing import pacing_parameters

    _burst, rate = pacing_parameters(AEMO_LIMIT)
    found = analyse(trace, rate)
    minimum = 2 * args.records / (AEMO_LIMIT / 60)
    b = found["boundaries"]

    def avg(key: str) -> float:
        return statistics.mean(x[key] for x in b) if b else 0.0

    lines = [
        f"## Budget timeline of an initial load: {args.records:,} new records, {args.store}, 6000/min",
        "",
        f"Pass {found['pass_seconds']:.1f} s = {found['pass_seconds'] / minimum:.4f} x the minimum ({minimum:.0f} s); "
        f"{found['records_admitted']:,} requests admitted ({counters['throttled_total']} x 429); "
        f"{summary.records:,} records in {found['batches']} batches. The pacer's own rate (0.994 of 6000/min) "
        f"costs {minimum / 0.99417 - minimum:.1f} s of that by design.",
        "",
        "| where the budget idled | seconds lost | share of the loss |",
        "|---|---|---|",
    ]
    for key, label in (("lost_start", "before the first write (lease, token, count, first batch read, planned, "
                                      "looked up, marked)"),
                       ("lost_boundaries", f"at the {len(b)} batch boundaries"),
                       ("lost_within_batches", "within batches (sends below the pacer's rate)"),
                       ("lost_end", "after the last request (last answers, flush, pass record)")):
        lines.append(f"| {label} | {found[key]:.2f} | {found[key] / max(found['lost_total'], 1e-9):.0%} |")
    lines += [f"| total (pass time minus admitted / rate) | {found['lost_total']:.2f} | |", "",
              "At a batch boundary, on average (seconds; the lookups' own requests use budget, so 'lost' is less "
              "than the steps' sum):", "",
              "| lost | last answers + flush | read next batch | plan | load ids | lookups | mark | to first write |",
              "|---|---|---|---|---|---|---|---|",
              f"| {avg('lost'):.3f} | {avg('tail'):.3f} | {avg('fetch'):.3f} | {avg('plan'):.3f} | "
              f"{avg('load_ids'):.3f} | {avg('lookup'):.3f} | {avg('mark'):.3f} | {avg('to_first_write'):.3f} |", ""]
    if args.json:
        lines += ["```json", json.dumps({k: v for k, v in found.items() if k != "boundaries"}, indent=1), "```"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--store", default="sqlite", choices=("sqlite", "postgresql"))
    parser.add_argument("--postgres-url", default=os.environ.get("DERSYNC_TEST_POSTGRES_URL"))
    parser.add_argument("--json", action="store_true", help="also print the totals as JSON")
    parser.add_argument("--output", help="also write the summary to this file")
    args = parser.parse_args()
    text = event_loop.run(run(args))
    print(text)
    if args.output:
        Path(args.output).write_text(text)


if __name__ == "__main__":
    main()
