"""The submission ledger's benchmarks (issue 10): what the ledger costs a sync pass, and whether
`dersync ledger export` streams a large ledger in flat memory.

`ledger_headroom` is the headroom benchmark (installation pushes per second with AEMO's limit
lifted) run with and without the ledger, interleaved (with, without, with, ...), each pass in a
fresh store and simulator. "Without" is `ledger_off()`: a switch that exists only here, in the
benchmark's client process, because an operator must never be able to turn the system of record
off.

`ledger_export` bulk-loads `--sizes` ledger rows into each store (SQLite executemany,
PostgreSQL COPY, as `benchmarks/scale.py` does for records) and runs `dersync ledger export` as a
subprocess, as an auditor would, for each format: its peak RSS (VmHWM, polled), rows per second,
and whether the output parses into as many rows as were loaded.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks import scale
from benchmarks.run import (
    ROOT,
    UNTHROTTLED,
    Result,
    SimulatorProcess,
    benchmark,
    child_env,
    fresh_database,
    loaded_store,
    process_cpu_seconds,
)

#: The issue's bound on what the ledger may cost a pass's throughput.
MAX_COST = 0.05
#: "Flat" peak RSS: the largest size's peak at most this much above the smallest's (as scale_*).
FLAT_GROWTH = 1.10
#: Installation records per headroom pass (as `headroom`).
HEADROOM_RECORDS = 6000
FORMATS = ("jsonl", "csv")


# --- the switch ---------------------------------------------------------------------------------


@contextmanager
def ledger_off() -> Iterator[None]:
    """For the benchmark only: the client does none of the ledger's work while this is open.

    What the ledger costs a pass, and what this removes (patched in this process, restored after):

    * `Transport._keep`: building a `SentRequest` per HTTP attempt (the answer time, the pass id,
      the codes tuple) and holding it in the transport's `SentLog` until the engine takes it;
    * `SentBody.of`: the body's SHA-256 (kept only for the ledger) and, when requests go
      uncompressed, the gzip of the body (the ledger's copy); with `compress_requests` (the
      default) the gzip is the wire's and stays;
    * `ledger.append`: the executemany INSERT in each outcome transaction, and the rows stored on
      their own at the end of a pass;
    * `compliance._answered_at`: first acceptances reading answer times back from the ledger
      (without a ledger there is nothing to read: the time the answer was read stands in).

    Left in (too small to matter, and they would need copies of product code to remove): the
    send time taken before each request and the list of answer codes.
    """
    from dersync.aemo import transport
    from dersync.aemo.sent import SentBody
    from dersync.store import compliance, ledger

    saved = (transport.Transport._keep, SentBody.__dict__["of"], ledger.append, compliance._answered_at)
    transport.Transport._keep = _keep_nothing  # type: ignore[method-assign]
    SentBody.of = classmethod(_wire_only)  # type: ignore[method-assign, assignment]
    ledger.append = _append_nothing
    compliance._answered_at = _read_nothing
    try:
        yield
    finally:
        transport.Transport._keep, ledger.append = saved[0], saved[2]  # type: ignore[method-assign]
        SentBody.of = saved[1]  # type: ignore[method-assign]
        compliance._answered_at = saved[3]


def _keep_nothing(self: Any, *args: Any, **kwargs: Any) -> None:
    """`Transport._keep` without the ledger: nothing kept."""


def _wire_only(cls: Any, raw: bytes, *, compress: bool) -> Any:
    """`SentBody.of` without the ledger: the body as it goes on the wire, no hash, no copy."""
    if compress:
        return cls(gzip.compress(raw, compresslevel=6), {"Content-Encoding": "gzip"}, "", b"")
    return cls(raw, {}, "", b"")


async def _append_nothing(connection: Any, requests: Any) -> None:
    """`ledger.append` without the ledger: no INSERT."""


async def _read_nothing(connection: Any, exchanges: Any) -> dict[tuple[str, str], Any]:
    """`compliance._answered_at` without the ledger: no rows to read."""
    return {}


# --- ledger_headroom ----------------------------------------------------------------------------


@benchmark
async def ledger_headroom(args: argparse.Namespace) -> Result:
    """Headroom with and without the ledger, interleaved, each store: pushes per second, the
    client's CPU per push, and the ledger rows each pass left (the switch's check)."""
    texts, ok = [], True
    details: dict[str, Any] = {"records": HEADROOM_RECORDS, "code": _code_checked()}
    for kind in args.stores:
        runs: dict[str, list[dict[str, float]]] = {"with": [], "without": []}
        for repeat in range(args.headroom_repeat):
            # ABBA order: whatever the first pass of a pair leaves behind (PostgreSQL's dirty
            # pages and autovacuum, the page cache) falls on each variant equally often.
            for variant in (("with", "without") if repeat % 2 == 0 else ("without", "with")):
                runs[variant].append(await _pass(kind, args.postgres_url, ledger=variant == "with"))
        if not any(w["left_due"] == 0 == wo["left_due"] for w, wo in zip(runs["with"], runs["without"], strict=True)):
            ok = False
            texts.append(f"{kind}: no complete pair of passes (each left records due)")
            details[kind] = {"runs": runs}
            continue
        summary = _compare(runs)
        ok = ok and summary["cost"] <= MAX_COST and summary["switch_ok"]
        texts.append(_describe(kind, summary))
        details[kind] = {**summary, "runs": runs}
    return Result("ledger_headroom", "; ".join(texts),
                  f"ledger costs <= {MAX_COST:.0%} of headroom throughput, each store",
                  "met" if ok else "NOT met", details)


async def _pass(kind: str, postgres_url: str | None, *, ledger: bool) -> dict[str, float]:
    """One headroom pass in a fresh store and simulator, with the ledger or without it."""
    from sqlalchemy import func, select

    from dersync.gc_tuning import settle_after_start_up
    from dersync.store.tables import ledger_entry
    from dersync.sync import sync_once

    with tempfile.TemporaryDirectory() as tmp, SimulatorProcess(rate_limit=10**9) as sim:
        async with loaded_store(sim, tmp, HEADROOM_RECORDS, store=kind, postgres_url=postgres_url,
                                **UNTHROTTLED) as (settings, store):
            settle_after_start_up()  # as `dersync sync` does once its store is open
            with _ledger(ledger):
                cpu, started = process_cpu_seconds(), time.monotonic()
                summary = await sync_once(settings, store)
                seconds = time.monotonic() - started
                cpu = process_cpu_seconds() - cpu
            async with store.transaction() as connection:
                rows = (await connection.execute(select(func.count()).select_from(ledger_entry))).scalar_one()
    return {"seconds": round(seconds, 2), "per_second": round(HEADROOM_RECORDS / seconds, 1),
            "client_cpu_ms_per_push": round(cpu / HEADROOM_RECORDS * 1000, 3), "ledger_rows": rows,
            "left_due": summary.left_due}


@contextmanager
def _ledger(on: bool) -> Iterator[None]:
    if on:
        yield
        return
    with ledger_off():
        yield


def _compare(runs: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """Medians of each variant over complete pairs, and the median of the pairs' own ratios
    (with / without, run back to back: robust to the load other work puts on the machine
    drifting during the run). A pass that left records due (the lease check timed out under
    load and the pass stopped) makes its pair incomplete: it is reported, not counted."""
    pairs = [(w, wo) for w, wo in zip(runs["with"], runs["without"], strict=True)
             if w["left_due"] == 0 and wo["left_due"] == 0]
    if not pairs:
        raise RuntimeError("no complete pair of passes")
    median = {v: {k: statistics.median(pair[i][k] for pair in pairs) for k in ("per_second", "client_cpu_ms_per_push")}
              for i, v in enumerate(("with", "without"))}
    paired = statistics.median(w["per_second"] / wo["per_second"] for w, wo in pairs)
    paired_cpu = statistics.median(w["client_cpu_ms_per_push"] / wo["client_cpu_ms_per_push"] for w, wo in pairs)
    ratio = median["with"]["per_second"] / median["without"]["per_second"]
    # Every pushed record's two writes are in the ledger with it on, none with it off.
    switch_ok = all(w["ledger_rows"] >= 2 * HEADROOM_RECORDS and wo["ledger_rows"] == 0 for w, wo in pairs)
    return {"per_second_with": median["with"]["per_second"], "per_second_without": median["without"]["per_second"],
            "ratio": round(ratio, 4), "cost": round(1 - ratio, 4), "paired_ratio": round(paired, 4),
            "client_cpu_ms_per_push_with": median["with"]["client_cpu_ms_per_push"],
            "client_cpu_ms_per_push_without": median["without"]["client_cpu_ms_per_push"],
            "paired_cpu_ratio": round(paired_cpu, 4), "complete_pairs": len(pairs),
            "incomplete_pairs": len(runs["with"]) - len(pairs), "switch_ok": switch_ok}


def _describe(kind: str, s: dict[str, Any]) -> str:
    return (f"{kind} {s['per_second_with']:.0f}/s with, {s['per_second_without']:.0f}/s without: ratio "
            f"{s['ratio']:.3f} (cost {s['cost']:+.1%}), paired {s['paired_ratio']:.3f}; client CPU "
            f"{s['client_cpu_ms_per_push_with']:.2f} vs {s['client_cpu_ms_per_push_without']:.2f} ms/push (paired "
            f"{s['paired_cpu_ratio']:.3f}); {s['complete_pairs']} pairs"
            + (f" ({s['incomplete_pairs']} incomplete left out)" if s["incomplete_pairs"] else "")
            + ("" if s["switch_ok"] else "; SWITCH CHECK FAILED"))


def _code_checked() -> dict[str, str]:
    """Where the code measured comes from: this process's dersync and a child's (they must be
    the checkout beside the benchmarks, not an installed copy)."""
    import dersync

    child = subprocess.run([sys.executable, "-c", "import dersync; print(dersync.__file__)"], env=child_env(),
                           cwd="/", capture_output=True, text=True, check=True).stdout.strip()
    here = str(Path(dersync.__file__).resolve())
    if not (here.startswith(str(ROOT)) and child.startswith(str(ROOT))):
        raise RuntimeError(f"not measuring the code beside the benchmarks ({ROOT}): {here}, child {child}")
    return {"client": here, "child": child}


# --- ledger_export ------------------------------------------------------------------------------

LEDGER_COLUMNS = ("sent_at", "answered_at", "nmi", "part", "method", "path", "status", "error", "transaction_id",
                  "codes", "attempt", "pass_id", "body_sha256", "body")
#: The first day of the loaded ledger (rows are spread over `SPREAD_DAYS` from its start, UTC).
FIRST_DAY = date(2026, 6, 1)
SPREAD_DAYS = 30


def ledger_rows(count: int) -> Iterator[tuple[Any, ...]]:
    """Rows as a pass leaves them: per record an NMI details POST and an installation POST (real
    bodies, gzip-compressed, with their hashes), every 50th installation rejected with codes,
    every 500th request unanswered, spread evenly over `SPREAD_DAYS` days."""
    from dersync.testing import installation, nmi_details, nmi_for

    bodies = {part: _packed(body) for part, body in (("nmi", nmi_details(nmi_for(0))),
                                                   ("installation", {"data": installation(nmi_for(0))}))}
    start = datetime.combine(FIRST_DAY, datetime.min.time(), tzinfo=UTC)
    step = timedelta(days=SPREAD_DAYS) / max(count, 1)
    for index in range(count):
        part = "nmi" if index % 2 == 0 else "installation"
        sha, body = bodies[part]
        sent = start + step * index
        rejected = part == "installation" and index % 100 == 1
        unanswered = index % 500 == 499
        status = None if unanswered else 422 if rejected else 201
        yield (sent, None if unanswered else sent + timedelta(milliseconds=40), nmi_for(index // 2), part, "POST",
               "/nmi-details" if part == "nmi" else "/installation", status,
               "timed out: TimeoutError" if unanswered else None, None if unanswered else f"tx-{index:09d}",
               json.dumps(["1012", "2023"] if rejected else []), 1, 1 + index // 12_000, sha, body)


def _packed(body: Any) -> tuple[str, bytes]:
    raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.sha256(raw).hexdigest(), gzip.compress(raw, compresslevel=6)


@benchmark
async def ledger_export(args: argparse.Namespace) -> Result:
    """`dersync ledger export` over ledgers of `--sizes` rows, each store and format: peak
    RSS, rows per second, and the output counted back."""
    texts, ok = [], True
    details: dict[str, Any] = {"code": _code_checked()}
    for kind in args.stores:
        measured: dict[str, dict[int, dict[str, Any]]] = {fmt: {} for fmt in FORMATS}
        for size in args.sizes:
            with tempfile.TemporaryDirectory() as tmp:
                async with fresh_database(kind, tmp, args.postgres_url) as url:
                    await scale.create_schema(url)
                    loaded = await _load(url, size)
                    for fmt in FORMATS:
                        measured[fmt][size] = {**_export(url, fmt, size, Path(tmp)),
                                               "load_seconds": round(loaded.seconds, 1)}
        for fmt, by_size in measured.items():
            flat = _flat(by_size)
            counted = all(m["rows_out"] == size for size, m in by_size.items())
            ok = ok and flat and counted
            texts.append(f"{kind} {fmt}: " + ", ".join(
                f"{_size(size)} {m['peak_rss_mb']:.0f} MB {m['rows_per_second']:,.0f} rows/s"
                for size, m in by_size.items()) + ("" if flat else " NOT FLAT") + ("" if counted else " ROWS MISSING"))
            details[f"{kind}_{fmt}"] = {str(size): m for size, m in by_size.items()}
    return Result("ledger_export", "; ".join(texts),
                  f"peak RSS flat from the smallest to the largest size (<= {FLAT_GROWTH:.2f} x), every row out",
                  "met" if ok else "NOT met", details)


async def _load(url: str, size: int) -> scale.Timed:
    return await scale.timed(lambda: scale.insert(url, "ledger_entry", LEDGER_COLUMNS, ledger_rows(size)))


def _export(url: str, fmt: str, size: int, folder: Path) -> dict[str, Any]:
    """Run `dersync ledger export` over the whole ledger into a file; its peak RSS, time and rows."""
    out = folder / f"export.{fmt}"
    first, last = FIRST_DAY - timedelta(days=1), FIRST_DAY + timedelta(days=SPREAD_DAYS)
    command = [sys.executable, "-m", "dersync", "ledger", "export", "--from", first.isoformat(),
               "--to", last.isoformat(), "--format", fmt]
    env = child_env(DERSYNC_DATABASE_URL=url, DERSYNC_LOG_LEVEL="WARNING")
    with out.open("wb") as sink:
        started = time.monotonic()
        process = subprocess.Popen(command, env=env, cwd=folder, stdout=sink, stderr=subprocess.PIPE)
        peak = _poll_peak_rss_mb(process)
        seconds = time.monotonic() - started
        stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
    if process.returncode != 0:
        raise RuntimeError(f"ledger export failed ({process.returncode}): {stderr[-2000:]}")
    rows = _count_rows(out, fmt)
    out.unlink()
    return {"peak_rss_mb": round(peak, 1), "seconds": round(seconds, 2), "rows_out": rows,
            "rows_per_second": round(rows / seconds)}


def _poll_peak_rss_mb(process: subprocess.Popen[bytes], every: float = 0.02) -> float:
    """The child's VmHWM, read until it exits (the last reading before exit: the peak so far,
    which only grows)."""
    peak = 0.0
    while process.poll() is None:
        try:
            with open(f"/proc/{process.pid}/status", encoding="ascii") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]) / 1024)
        except OSError:
            pass
        time.sleep(every)
    return peak


def _count_rows(path: Path, fmt: str) -> int:
    """Rows in an export, each parsed (a JSON object per line, or a CSV row under the header)."""
    with path.open(encoding="utf-8", newline="") as handle:
        if fmt == "jsonl":
            return sum(1 for line in handle if isinstance(json.loads(line), dict))
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != _export_fields():
            raise AssertionError(f"unexpected CSV header {reader.fieldnames}")
        return sum(1 for row in reader if json.loads(row["codes"]) is not None)


def _export_fields() -> tuple[str, ...]:
    from dersync.cli.ledger import EXPORT_FIELDS

    return EXPORT_FIELDS


def _flat(by_size: dict[int, dict[str, Any]]) -> bool:
    sizes = sorted(by_size)
    return bool(by_size[sizes[-1]]["peak_rss_mb"] <= FLAT_GROWTH * by_size[sizes[0]]["peak_rss_mb"])


def _size(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 and n % 1_000_000 == 0 else f"{n // 1000}k"
