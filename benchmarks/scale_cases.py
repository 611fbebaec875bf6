"""The scale benchmarks (issue 12): stores of `--sizes` records on each of `--stores`.

Each prepares its stores with `benchmarks/scale.py` (bulk inserts, PostgreSQL COPY) and reports
the set-up's own time beside what it measures. How long they take on 2 cores (set-up included,
both stores): see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import scale
from benchmarks.run import (
    ROOT,
    Result,
    SimulatorProcess,
    benchmark,
    child_env,
    fresh_database,
)

#: A store this size (or larger) is "1M" in the issue's sense.
TARGET_IDLE_SECONDS = 2.0
TARGET_PEAK_RSS_MB = 150.0
#: "Flat" peak RSS: the largest size's peak at most this much above the smallest's.
FLAT_GROWTH = 1.10


def _size(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 and n % 1_000_000 == 0 else f"{n // 1000}k"


@benchmark
async def scale_setup(args: argparse.Namespace) -> Result:
    """How fast the scale benchmarks prepare their stores: new records, synced records (with AEMO's
    equipment ids), validation exceptions; and that the change trigger still works on the rows."""
    texts, details, worst = [], {}, 0.0
    for kind in args.stores:
        for size in args.sizes:
            with tempfile.TemporaryDirectory() as tmp:
                async with fresh_database(kind, tmp, args.postgres_url) as url:
                    new = await scale.load_new(url, size)
                async with fresh_database(kind, tmp + "/synced", args.postgres_url) as url:
                    synced = await scale.load_synced(url, size)
                    exceptions = await scale.load_exceptions(url, args.exceptions, size)
                    trigger = await _trigger_marks_changed_rows_due(url)
            worst = max(worst, new.seconds, synced.seconds)
            texts.append(f"{kind} {_size(size)}: new {new.seconds:.1f} s ({new.per_second:,.0f} rows/s), synced "
                         f"{synced.seconds:.1f} s (+ ids, {synced.per_second:,.0f} rows/s), "
                         f"{args.exceptions:,} exceptions {exceptions.seconds:.1f} s"
                         + ("" if trigger else ", TRIGGER BROKEN"))
            details[f"{kind}_{size}"] = {"new_seconds": round(new.seconds, 2),
                                         "synced_seconds": round(synced.seconds, 2), "synced_rows": synced.rows,
                                         "exceptions_seconds": round(exceptions.seconds, 2), "trigger_ok": trigger}
    ok = worst <= 600 and all(d["trigger_ok"] for d in details.values())
    return Result("scale_setup", "; ".join(texts), "minutes, not hours (<= 10 min per store of 1M); the change "
                  "trigger marks an edited row due", "met" if ok else "NOT met", details)


async def _trigger_marks_changed_rows_due(url: str) -> bool:
    """An ETL edit of a bulk-loaded synced row makes it due with its revision bumped; rewriting
    the same content does not (migration 0001's trigger, on both stores)."""
    from sqlalchemy import select, update

    from dersync.store import Store
    from dersync.store.tables import der_record
    from dersync.testing import installation, nmi_for

    store = await Store.open(scale._async_url(url))
    try:
        first, second = nmi_for(0), nmi_for(1)
        async with store.transaction() as connection:
            same = (await connection.execute(select(der_record.c.installation).where(der_record.c.nmi == second)))
            await connection.execute(update(der_record).where(der_record.c.nmi == second)
                                     .values(installation=same.scalar_one()))
            await connection.execute(update(der_record).where(der_record.c.nmi == first).values(
                installation=json.dumps(installation(first, approvedCapacity=12.0))))
        async with store.transaction() as connection:
            rows = {nmi: (due, revision) for nmi, due, revision in await connection.execute(
                select(der_record.c.nmi, der_record.c.due, der_record.c.revision)
                .where(der_record.c.nmi.in_([first, second])))}
    finally:
        await store.close()
    return rows == {first: (True, 2), second: (False, 1)}


@benchmark
async def scale_import(args: argparse.Namespace) -> Result:
    """Records per second importing an N-line JSON Lines file (`dersync import`'s code path)."""
    from dersync.samples import sample_records, write_jsonl
    from dersync.store import Store
    from dersync.store.importer import import_file

    texts, details = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            path = Path(tmp) / f"records-{size}.jsonl"
            started = time.monotonic()
            write_jsonl(path, sample_records(size, seed=7))
            written = time.monotonic() - started
            size_mb = path.stat().st_size / 1e6
            for kind in args.stores:
                async with fresh_database(kind, tmp, args.postgres_url) as url:
                    store = await Store.open(scale._async_url(url))
                    try:
                        started = time.monotonic()
                        report = await import_file(store, path)
                        seconds = time.monotonic() - started
                    finally:
                        await store.close()
                rate = report.stored / seconds
                texts.append(f"{kind} {_size(size)}: {rate:,.0f} records/s ({seconds:.1f} s)")
                details[f"{kind}_{size}"] = {"records": report.stored, "seconds": round(seconds, 2),
                                             "per_second": round(rate), "file_mb": round(size_mb, 1),
                                             "file_written_seconds": round(written, 1)}
            path.unlink()
    return Result("scale_import", "; ".join(texts) + " (files of `dersync.samples` records, ~1.5 KB a line)",
                  "(no target: reported, at each size)", "reported", details)


@benchmark
async def scale_idle(args: argparse.Namespace) -> Result:
    """A pass over N records unchanged since AEMO accepted them: seconds and requests (median of 3)."""
    from dersync.store import Store
    from dersync.sync import sync_once

    texts, details, ok = [], {}, True
    for kind in args.stores:
        for size in args.sizes:
            with tempfile.TemporaryDirectory() as tmp, SimulatorProcess() as sim:
                async with fresh_database(kind, tmp, args.postgres_url) as url:
                    setup = await scale.load_synced(url, size)
                    settings = sim.settings(url)
                    store = await Store.open(settings.database_url)
                    try:
                        before = (await sim.counters())["requests_total"]
                        runs = []
                        for _ in range(3):
                            started = time.monotonic()
                            await sync_once(settings, store)
                            runs.append(time.monotonic() - started)
                        requests = (await sim.counters())["requests_total"] - before
                    finally:
                        await store.close()
            seconds = statistics.median(runs)
            ok = ok and seconds <= TARGET_IDLE_SECONDS and requests == 0
            texts.append(f"{kind} {_size(size)}: {seconds:.2f} s, {requests} requests")
            details[f"{kind}_{size}"] = {"seconds": round(seconds, 3), "runs": [round(r, 3) for r in runs],
                                         "requests": requests, "setup_seconds": round(setup.seconds, 1)}
    return Result("scale_idle", "; ".join(texts), f"<= {TARGET_IDLE_SECONDS:g} s and zero requests at each size",
                  "met" if ok else "NOT met", details)


#: (store, size) -> the child's first pass and reconciliation, shared by the two benchmarks below.
_PASSES: dict[tuple[str, int], dict[str, Any]] = {}


async def _first_pass(kind: str, size: int, args: argparse.Namespace) -> dict[str, Any]:
    """A first pass over `size` new records with the limit lifted, then a reconciliation, in a
    fresh child process (benchmarks/scale_child.py) against a simulator process."""
    if (kind, size) in _PASSES:
        return _PASSES[(kind, size)]
    with tempfile.TemporaryDirectory() as tmp, SimulatorProcess(rate_limit=10**9) as sim:
        async with fresh_database(kind, tmp, args.postgres_url) as url:
            setup = await scale.load_new(url, size)
            sim_cpu = sim.cpu_seconds()
            done = await asyncio.to_thread(
                subprocess.run, [sys.executable, str(Path(__file__).with_name("scale_child.py")), url, str(size),
                                 sim.url], check=True, capture_output=True, text=True, cwd=ROOT, env=child_env())
            result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
            counters = await sim.counters()
            result.update(setup_seconds=round(setup.seconds, 1),
                          simulator_cpu_ms_per_push=round((sim.cpu_seconds() - sim_cpu) / size * 1000, 3),
                          simulator_peak_rss_mb=round(sim.peak_rss_mb(), 1),
                          duplicate_creates=counters["duplicate_creates"] + counters["duplicate_nmi_creates"])
    _PASSES[(kind, size)] = result
    return result


@benchmark
async def scale_first_pass(args: argparse.Namespace) -> Result:
    """Peak RSS and rate of a first pass over N new records with the limit lifted (each in a fresh
    process), for growing N."""
    texts, details, ok = [], {}, True
    for kind in args.stores:
        peaks = []
        for size in args.sizes:
            result = await _first_pass(kind, size, args)
            peaks.append(result["peak_rss_mb"])
            texts.append(f"{kind} {_size(size)}: peak RSS {result['peak_rss_mb']:.0f} MB, {result['per_second']:.0f}/s "
                         f"({result['pass_seconds']:.0f} s), client CPU {result['client_cpu_ms_per_push']:.2f} ms/push")
            details[f"{kind}_{size}"] = result
        growth = peaks[-1] / peaks[0]
        ok = ok and max(peaks) <= TARGET_PEAK_RSS_MB and growth <= FLAT_GROWTH
        texts[-1] += f" (x{growth:.2f} from {_size(args.sizes[0])})"
    return Result("scale_first_pass", "; ".join(texts),
                  f"peak RSS <= {TARGET_PEAK_RSS_MB:g} MB and flat (x{FLAT_GROWTH:g} at most) from the smallest "
                  "size to the largest", "met" if ok else "NOT met", details)


@benchmark
async def scale_reconcile(args: argparse.Namespace) -> Result:
    """Requests a reconciliation of N installations needs (after the first pass), its time and
    its compare step's own time."""
    texts, details, ok = [], {}, True
    for kind in args.stores:
        for size in args.sizes:
            result = await _first_pass(kind, size, args)
            requests, allowed = result["reconcile_requests"], size / 100 + 10
            ok = ok and requests <= allowed and result["reconcile_unread"] == 0
            texts.append(f"{kind} {_size(size)}: {requests:,} requests (allowed {allowed:,.0f}), "
                         f"{result['reconcile_seconds']:.1f} s, compare step {result['compare_seconds']:.1f} s, "
                         f"{result['reconcile_findings']} findings")
            details[f"{kind}_{size}"] = {k: v for k, v in result.items() if k.startswith(("reconcile", "compare"))}
    return Result("scale_reconcile", "; ".join(texts), "<= N/100 + 10 requests; the compare step's time reported",
                  "met" if ok else "NOT met", details)


#: `dersync` commands timed by scale_status, as an admin runs them (output to a pipe).
CLI_COMMANDS: tuple[tuple[str, ...], ...] = (
    ("--version",),
    ("status",),
    ("status", "--format", "json"),
    ("exceptions", "list", "--nmi", "8001000007"),
    ("exceptions", "list", "--open", "--level", "schema", "--format", "csv"),
    ("exceptions", "list", "--format", "json"),
    ("exceptions", "list", "--format", "csv"),
    ("exceptions", "list"),
)


@benchmark
async def scale_status(args: argparse.Namespace) -> Result:
    """`status` and `exceptions list` with `--exceptions` validation exceptions in a store of N
    records: the store calls in this process and the commands as an admin runs them."""
    texts, details = [], {}
    for kind in args.stores:
        for size in args.sizes:
            with tempfile.TemporaryDirectory() as tmp:
                async with fresh_database(kind, tmp, args.postgres_url) as url:
                    setup = await scale.load_synced(url, size, rejected_every=50, due_every=100)
                    setup_exceptions = await scale.load_exceptions(url, args.exceptions, size)
                    await scale.load_history(url, size)
                    calls = await _store_calls(url)
                    commands = {" ".join(command): await asyncio.to_thread(_command_seconds, command, url, tmp,
                                                                           args.cli_timeout)
                                for command in CLI_COMMANDS}
            shown = {name: _shown(result) for name, result in commands.items()}
            texts.append(
                f"{kind} {_size(size)}: store.status() {calls['status']:.2f} s, list all {calls['list_all']:.2f} s; "
                f"`status` {shown['status']}, `exceptions list --nmi` {shown['exceptions list --nmi 8001000007']}, "
                f"`exceptions list` (table) {shown['exceptions list']}, json {shown['exceptions list --format json']}"
                f" (start-up alone {shown['--version']})")
            details[f"{kind}_{size}"] = {"store_calls_seconds": {k: round(v, 3) for k, v in calls.items()},
                                         "commands": commands, "setup_seconds": round(setup.seconds, 1),
                                         "exceptions_setup_seconds": round(setup_exceptions.seconds, 1)}
    return Result("scale_status", "; ".join(texts), f"(no figure in the issue: reported, {args.exceptions:,} "
                  "exceptions, 1% of records due, 2% rejected)", "reported", details)


async def _store_calls(url: str) -> dict[str, float]:
    """Median seconds of the store calls behind `status` and `exceptions list`, in this process."""
    from dersync.store import Store

    store = await Store.open(scale._async_url(url))
    try:
        return {
            "status": await _median_seconds(store.status),
            "list_all": await _median_seconds(store.list_exceptions),
            "list_nmi": await _median_seconds(lambda: store.list_exceptions(nmi="8001000007")),
            "list_open_schema": await _median_seconds(lambda: store.list_exceptions(open_only=True, level="schema")),
        }
    finally:
        await store.close()


async def _median_seconds(call: Any, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        started = time.monotonic()
        await call()
        times.append(time.monotonic() - started)
    return statistics.median(times)


def _command_seconds(command: tuple[str, ...], url: str, folder: str, timeout: float,
                     runs: int = 3) -> dict[str, Any]:
    """Wall time of `dersync COMMAND` (median of `runs`; once when it takes over 20 s), its output
    going to a pipe as a script's would, and the bytes it printed; `seconds` is None when it had
    not finished after `timeout` seconds (then it was stopped)."""
    env = child_env(DERSYNC_DATABASE_URL=url, DERSYNC_LOG_LEVEL="WARNING")
    times, printed = [], 0
    for _ in range(runs):
        started = time.monotonic()
        try:
            done = subprocess.run([sys.executable, "-m", "dersync", *command], env=env, cwd=folder,
                                  capture_output=True, check=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            return {"seconds": None, "timed_out_after": timeout, "bytes": len(exc.stdout or b"")}
        times.append(time.monotonic() - started)
        printed = len(done.stdout)
        if times[-1] > 20:
            break
    return {"seconds": round(statistics.median(times), 2), "bytes": printed}


def _shown(result: dict[str, Any]) -> str:
    seconds = result["seconds"]
    return f"> {result['timed_out_after']:.0f} s (stopped)" if seconds is None else f"{seconds:.1f} s"
