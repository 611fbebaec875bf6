"""The benchmarks themselves (registered into benchmarks/run.py)."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.run import (
    CLIENT_ID,
    CLIENT_SECRET,
    PARTICIPANT,
    ROOT,
    UNTHROTTLED,
    Result,
    SimulatorProcess,
    benchmark,
    loaded_store,
    process_cpu_seconds,
    rss_mb,
)

AEMO_LIMIT = 6000


def _api_requests(state: dict) -> int:
    return sum(n for _m, route, _s, n in state["counters"]["requests_by_route"] if route != "oauth_token")


@benchmark
async def pacing(args: argparse.Namespace) -> Result:
    """Sustained requests per minute against the simulator's strict 60 s window at 6000/min."""
    from dersync.sync import sync_once

    records = int(args.pacing_seconds * AEMO_LIMIT / 60 / 2) + 300  # ~2 requests per new record
    with tempfile.TemporaryDirectory() as tmp, SimulatorProcess(rate_limit=AEMO_LIMIT) as sim:
        async with loaded_store(sim, tmp, records, concurrency=32) as (settings, store):
            started = time.monotonic()
            summary = await sync_once(settings, store)
            seconds = time.monotonic() - started
        state = await sim.state()
    api = _api_requests(state)
    best_window = state["counters"]["max_requests_in_any_window"]
    throttled = state["counters"]["throttled_total"]
    fraction = best_window / AEMO_LIMIT
    average = api / seconds * 60 / AEMO_LIMIT
    ok = fraction >= 0.98 and throttled == 0 and best_window <= AEMO_LIMIT
    return Result(
        "pacing", f"{fraction:.3f} of 6000/min in the busiest 60 s ({best_window} requests), "
                  f"{average:.3f} averaged over {seconds:.0f} s, {throttled} x 429",
        ">= 0.98, never over 6000 in any 60 s, zero 429", "met" if ok else "NOT met",
        {"records": records, "api_requests": api, "seconds": round(seconds, 1), "best_window": best_window,
         "throttled": throttled, "left_due": summary.left_due},
    )


@benchmark
async def headroom(args: argparse.Namespace) -> Result:
    """Installation pushes per second with the limit lifted, beside a naive sequential baseline,
    on each store; and the client's own CPU time per push (this process alone: the simulator
    runs in its own)."""
    records = 6000
    runs: dict[str, list[dict[str, float]]] = {}
    for kind in args.stores:
        runs[kind] = [await _headroom_pass(kind, records, args.postgres_url) for _ in range(args.headroom_repeat)]
    with SimulatorProcess(rate_limit=10**9) as sim:
        baseline = await asyncio.to_thread(_naive_baseline, sim.url, 1000, start=900_000)
        floor = await _aiohttp_floor(sim, records, start=800_000)
    details: dict[str, object] = {"records": records, "baseline_per_second": round(baseline, 1),
                                  "aiohttp_alone": floor}
    texts, rates = [], []
    for kind, passes in runs.items():
        rate = statistics.median(p["per_second"] for p in passes)
        cpu = statistics.median(p["client_cpu_ms_per_push"] for p in passes)
        sim_cpu = statistics.median(p["simulator_cpu_ms_per_push"] for p in passes)
        low, high = min(p["per_second"] for p in passes), max(p["per_second"] for p in passes)
        rates.append(rate)
        texts.append(f"{kind} {rate:.0f}/s (runs {low:.0f}-{high:.0f}; ratio {rate / baseline:.1f}x), "
                     f"client CPU {cpu:.2f} ms/push (simulator {sim_cpu:.2f})")
        details[kind] = {"per_second": round(rate, 1), "client_cpu_ms_per_push": round(cpu, 3),
                         "simulator_cpu_ms_per_push": round(sim_cpu, 3), "runs": passes}
    return Result(
        "headroom", "installations/s (each: NMI POST + installation POST + store writes), median of "
                    f"{args.headroom_repeat}: " + "; ".join(texts) + f"; naive sequential `requests` {baseline:.0f}/s; "
                    f"aiohttp alone (the same two POSTs, nothing else) {floor['per_second']:.0f}/s, "
                    f"client CPU {floor['client_cpu_ms_per_push']:.2f} ms/push "
                    f"(simulator {floor['simulator_cpu_ms_per_push']:.2f})",
        ">= 1,000/s on 2 cores, each store (AEMO allows 100 requests/s)",
        "met" if rates and min(rates) >= 1000 else "NOT met", details,
    )


async def _headroom_pass(kind: str, records: int, postgres_url: str | None) -> dict[str, float]:
    """One pass over `records` new records with the limit lifted, in a fresh store and simulator."""
    from dersync.gc_tuning import settle_after_start_up
    from dersync.sync import sync_once

    with tempfile.TemporaryDirectory() as tmp, SimulatorProcess(rate_limit=10**9) as sim:
        async with loaded_store(sim, tmp, records, store=kind, postgres_url=postgres_url,
                                **UNTHROTTLED) as (settings, store):
            settle_after_start_up()  # as `dersync sync` does once its store is open
            cpu, sim_cpu, started = process_cpu_seconds(), sim.cpu_seconds(), time.monotonic()
            await sync_once(settings, store)
            seconds = time.monotonic() - started
            cpu, sim_cpu = process_cpu_seconds() - cpu, sim.cpu_seconds() - sim_cpu
    return {"seconds": round(seconds, 2), "per_second": round(records / seconds, 1),
            "client_cpu_ms_per_push": round(cpu / records * 1000, 3),
            "simulator_cpu_ms_per_push": round(sim_cpu / records * 1000, 3)}


@benchmark
async def initial_load(args: argparse.Namespace) -> Result:
    """A first load of N new installations at AEMO's 6000/min against the simulator's strict
    rolling window, as a new user would run it (default settings): the pass's time against the
    physical minimum of 2N requests at 6000/min, 429s, the busiest 60 s and the lookups' share."""
    from dersync.gc_tuning import settle_after_start_up
    from dersync.sync import sync_once

    count = args.initial_records
    minimum = 2 * count / (AEMO_LIMIT / 60)
    texts, details, ok = [], {}, True
    for kind in args.stores:
        with tempfile.TemporaryDirectory() as tmp, SimulatorProcess(rate_limit=AEMO_LIMIT) as sim:
            async with loaded_store(sim, tmp, count, store=kind, postgres_url=args.postgres_url) as (settings, store):
                settle_after_start_up()  # as `dersync sync` does once its store is open
                cpu, started = process_cpu_seconds(), time.monotonic()
                summary = await sync_once(settings, store)
                seconds = time.monotonic() - started
                cpu = process_cpu_seconds() - cpu
            counters = await sim.counters()
        api = _api_requests_of(counters)
        lookups = sum(n for _m, route, _s, n in counters["requests_by_route"] if route == "installation_list")
        throttled, busiest = counters["throttled_total"], counters["max_requests_in_any_window"]
        ratio = seconds / minimum
        ok = ok and ratio <= 1.015 and throttled == 0 and busiest <= AEMO_LIMIT and summary.left_due == 0
        texts.append(f"{kind} {ratio:.3f} x minimum ({seconds:.1f} s / {minimum:.0f} s), {api:,} requests "
                     f"({api / seconds * 60 / AEMO_LIMIT:.3f} of the budget sustained), {throttled} x 429, "
                     f"busiest 60 s {busiest}, lookups {lookups} (1 in {api / max(lookups, 1):.0f})")
        details[kind] = {"records": count, "seconds": round(seconds, 1), "minimum_seconds": minimum,
                         "ratio": round(ratio, 4), "api_requests": api, "lookups": lookups,
                         "throttled": throttled, "busiest_window": busiest, "left_due": summary.left_due,
                         "client_cpu_seconds": round(cpu, 1)}
    return Result("initial_load", "; ".join(texts),
                  "<= 1.015 x minimum (2N requests at 6000/min), zero 429, never over 6000 in any 60 s",
                  "met" if ok else "NOT met", details)


def _api_requests_of(counters: dict) -> int:
    return sum(n for _m, route, _s, n in counters["requests_by_route"] if route != "oauth_token")


#: The simulator's routes the raw clients below (no dersync) send to, as dersync's settings aim at them.
_TOKEN_PATH = "/oauth/v1/token?grant_type=client_credentials"
_PUSH_PATHS = ("/wem/v1/der-register/nmi-details", "/v2/der-register/installation")


def _token_request() -> dict[str, Any]:
    """The keyword arguments of a client-credentials token POST (`requests` and aiohttp alike)."""
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    return {"headers": {"Authorization": f"Basic {basic}"}, "data": {"grant_type": "client_credentials"}}


def _api_headers(token_body: dict[str, Any]) -> dict[str, str]:
    """AEMO's request headers for the token in `token_body` (AEMO's spelling or the standard one)."""
    from dersync.aemo.auth import standard_token_body

    token = standard_token_body(token_body)["access_token"]
    return {"Authorization": f"Bearer {token}", "X-initiatingParticipantID": PARTICIPANT, "X-market": "WEM"}


async def _aiohttp_floor(sim: SimulatorProcess, count: int, start: int) -> dict[str, float]:
    """What the HTTP client alone costs this process per installation push, and what the
    simulator costs its own: the two POSTs dersync sends per new record (the same headers, gzip
    bodies built beforehand, one session with dersync's connector limit, answers read and parsed),
    and nothing else: no store, plan, validation, pacing or ledger. With aiohttp, dersync's client
    CPU per push cannot come below this, and on 2 cores shared with the simulator no client can
    push faster than 2 / (this + the simulator's CPU per push)."""
    import gzip

    import aiohttp

    from dersync.testing import installation, nmi_details, nmi_for

    concurrency = UNTHROTTLED["concurrency"]
    pushes = []
    for index in range(start, start + count):
        nmi = nmi_for(index)
        pushes.append([gzip.compress(json.dumps(body, separators=(",", ":")).encode(), compresslevel=6)
                       for body in (nmi_details(nmi), {"data": installation(nmi)})])
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency),
                                     cookie_jar=aiohttp.DummyCookieJar()) as session:
        async with session.post(sim.url + _TOKEN_PATH, **_token_request()) as answer:
            headers = {**_api_headers(await answer.json()), "Content-Type": "application/json",
                       "Accept": "application/json", "Content-Encoding": "gzip"}
        urls = tuple(sim.url + path for path in _PUSH_PATHS)
        work = iter(pushes)
        statuses: Counter[int] = Counter()

        async def worker() -> None:
            for bodies in work:
                for url, body in zip(urls, bodies, strict=True):
                    async with session.post(url, data=body, headers=headers) as answer:
                        json.loads(await answer.read())
                        statuses[answer.status] += 1

        cpu, sim_cpu, started = process_cpu_seconds(), sim.cpu_seconds(), time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.monotonic() - started
        cpu, sim_cpu = process_cpu_seconds() - cpu, sim.cpu_seconds() - sim_cpu
    if set(statuses) != {201}:
        raise RuntimeError(f"aiohttp floor: the simulator answered {dict(statuses)}, not only 201 Created")
    return {"per_second": round(count / seconds, 1), "client_cpu_ms_per_push": round(cpu / count * 1000, 3),
            "simulator_cpu_ms_per_push": round(sim_cpu / count * 1000, 3)}


def _naive_baseline(url: str, count: int, start: int) -> float:
    """What a first script would do: one call at a time with `requests`, no store, no checks."""
    import requests

    from dersync.testing import installation, nmi_details, nmi_for

    session = requests.Session()
    headers = _api_headers(session.post(url + _TOKEN_PATH, **_token_request()).json())
    nmi_url, installation_url = (url + path for path in _PUSH_PATHS)
    started = time.monotonic()
    for index in range(start, start + count):
        nmi = nmi_for(index)
        session.post(nmi_url, json=nmi_details(nmi), headers=headers).raise_for_status()
        session.post(installation_url, json={"data": installation(nmi)}, headers=headers).raise_for_status()
    return count / (time.monotonic() - started)


@benchmark
async def idle(args: argparse.Namespace) -> Result:
    """A pass over N records that have not changed since AEMO accepted them."""
    from sqlalchemy import update

    from dersync.models import check_record
    from dersync.settings import Enumerations
    from dersync.store.tables import der_record
    from dersync.sync import sync_once
    from dersync.testing import installation, nmi_details, nmi_for

    count = args.records
    with tempfile.TemporaryDirectory() as tmp, SimulatorProcess() as sim:
        async with loaded_store(sim, tmp, count) as (settings, store):
            # Bring the store to the state a completed pass leaves: every record synced, nothing due.
            async with store.transaction() as connection:
                for index in range(count):
                    nmi = nmi_for(index)
                    check = check_record(nmi, json.dumps(nmi_details(nmi)), json.dumps(installation(nmi)),
                                         Enumerations(), 10_000_000)
                    await connection.execute(update(der_record).where(der_record.c.nmi == nmi).values(
                        due=False, sync_state="synced", nmi_synced_hash=check.nmi_details.content_hash,
                        inst_synced_hash=check.installation.content_hash, nmi_at_aemo=True, inst_at_aemo=True))
            before = await sim.state()
            started = time.monotonic()
            await sync_once(settings, store)
            seconds = time.monotonic() - started
            after = await sim.state()
    requests = after["counters"]["requests_total"] - before["counters"]["requests_total"]
    ok = seconds < 5 and requests == 0
    return Result("idle", f"{seconds:.2f} s and {requests} HTTP requests for {count:,} unchanged records",
                  "< 5 s, zero requests", "met" if ok else "NOT met",
                  {"records": count, "seconds": round(seconds, 3), "requests": requests})


@benchmark
async def memory(args: argparse.Namespace) -> Result:
    """Peak RSS of a pass over N new records, for growing N (each N in a fresh process)."""
    sizes = [int(n) for n in args.memory_sizes.split(",")]
    peaks = {}
    for size in sizes:
        output = subprocess.run([sys.executable, str(Path(__file__).with_name("memory_child.py")), str(size)],
                                check=True, capture_output=True, text=True, cwd=ROOT).stdout
        peaks[size] = json.loads(output.strip().splitlines()[-1])
    worst = max(p["peak_rss_mb"] for p in peaks.values())
    growth = peaks[sizes[-1]]["peak_rss_mb"] / peaks[sizes[0]]["peak_rss_mb"]
    text = ", ".join(f"{n:,}: {p['peak_rss_mb']:.0f} MB" for n, p in peaks.items())
    return Result("memory", f"peak RSS {text} (x{growth:.2f} from smallest to largest)",
                  "< 200 MB, flat as N grows", "met" if worst < 200 and growth < 1.5 else "NOT met",
                  {str(n): p for n, p in peaks.items()})


@benchmark
async def reconcile(args: argparse.Namespace) -> Result:
    """Requests reconciliation needs for N installations."""
    from dersync.aemo.client import AemoClient
    from dersync.reconcile.reconciler import reconcile as run_reconcile
    from dersync.sync import sync_once

    count = 2000
    with tempfile.TemporaryDirectory() as tmp, SimulatorProcess(rate_limit=10**9) as sim:
        async with loaded_store(sim, tmp, count, **UNTHROTTLED) as (settings, store):
            await sync_once(settings, store)
            before = _api_requests(await sim.state())
            async with AemoClient(settings) as client:
                await run_reconcile(settings, store, client, repair=False)
            used = _api_requests(await sim.state()) - before
    return Result("reconcile", f"{used} requests for {count:,} installations ({used / count * 100:.2f} per 100)",
                  "about N/100", "met" if used <= count / 100 * 1.1 + 2 else "NOT met",
                  {"installations": count, "requests": used})


@benchmark
async def import_rate(args: argparse.Namespace) -> Result:
    """Records per second imported from an N-line JSON Lines file."""
    from dersync.samples import sample_records, write_jsonl
    from dersync.store import Store
    from dersync.store.importer import import_file

    count = args.records
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "records.jsonl"
        write_jsonl(path, sample_records(count, seed=7))
        from dersync.settings import Settings

        store = await Store.open(Settings(database_url=f"sqlite:///{tmp}/bench.db").database_url)
        started = time.monotonic()
        report = await import_file(store, path)
        seconds = time.monotonic() - started
        await store.close()
        size_mb = path.stat().st_size / 1e6
    return Result("import", f"{report.stored / seconds:,.0f} records/s ({count:,} lines, {size_mb:.0f} MB, "
                            f"{seconds:.1f} s; benchmark process peak RSS so far {rss_mb():.0f} MB)",
                            "(no target: reported)", "reported",
                  {"records": report.stored, "seconds": round(seconds, 2), "file_mb": round(size_mb, 1)})


@benchmark
async def outage(args: argparse.Namespace) -> Result:
    """Catch-up after an outage: AEMO answers 503 for `--outage-seconds` (180) in the middle of an
    initial load of `--initial-records` (10,000) new installations at 6000/min, then recovers.
    The daemon (`dersync run`, default settings) runs until nothing is due; the simulator's
    counters are read twice a second to see when sending resumed at full budget."""
    count, outage_seconds = args.initial_records, args.outage_seconds
    minimum = 2 * count / (AEMO_LIMIT / 60)
    allowed = 1.05 * (minimum + outage_seconds)
    texts, details, ok = [], {}, True
    for kind in args.stores:
        result = await _outage_run(kind, count, outage_seconds, args.postgres_url)
        total, resumed = result["seconds"], result["resumed_after_recovery_seconds"]
        met = (total is not None and total <= allowed and resumed is not None and resumed <= 30
               and result["duplicate_creates"] == 0 and result["throttled"] == 0)
        ok = ok and met
        texts.append(
            f"{kind}: " + (f"done in {total:.0f} s = {total / (minimum + outage_seconds):.3f} x (minimum + outage)"
                           if total is not None else f"NOT done after {result['gave_up_after_seconds']:.0f} s "
                           f"({result['left_due']:,} still due)")
            + f", full budget {'again ' + format(resumed, '.0f') + ' s' if resumed is not None else 'never again'} "
              f"after recovery, {result['passes']} passes, {result['duplicate_creates']} duplicate creates, "
              f"{result['outage_503']:,} x 503, {result['throttled']} x 429")
        details[kind] = result
    return Result("outage", "; ".join(texts),
                  f"full budget within 30 s of recovery, zero duplicate creates, total <= 1.05 x (minimum "
                  f"{minimum:.0f} s + outage {outage_seconds:.0f} s) = {allowed:.0f} s",
                  "met" if ok else "NOT met", details)


async def _outage_run(kind: str, count: int, outage_seconds: float, postgres_url: str | None) -> dict[str, object]:
    from benchmarks import scale
    from benchmarks.run import child_env, free_port, fresh_database
    from dersync.store import Store

    minimum = 2 * count / (AEMO_LIMIT / 60)
    # Give up after the daemon's next scheduled pass (default interval 300 s) had time to finish.
    deadline = 2 * (minimum + outage_seconds) + 300 + 120
    with tempfile.TemporaryDirectory() as tmp, SimulatorProcess(
            rate_limit=AEMO_LIMIT, extra=("--outage-after-requests", str(count),
                                          "--outage-seconds", str(outage_seconds))) as sim:
        async with fresh_database(kind, tmp, postgres_url) as url:
            await scale.load_new(url, count)
            store = await Store.open(scale._async_url(url))
            log_path = Path(tmp) / "daemon.log"
            env = child_env(
                DERSYNC_DATABASE_URL=url, DERSYNC_OAUTH_TOKEN_URL=sim.url + "/oauth/v1/token",
                DERSYNC_NMI_API_URL=sim.url + "/wem/v1/der-register",
                DERSYNC_INSTALLATION_API_URL=sim.url + "/v2/der-register", DERSYNC_CLIENT_ID=CLIENT_ID,
                DERSYNC_CLIENT_SECRET=CLIENT_SECRET, DERSYNC_PARTICIPANT_ID=PARTICIPANT,
                DERSYNC_ADMIN_BIND=f"127.0.0.1:{free_port()}", DERSYNC_LOG_FORMAT="json",
                DERSYNC_RECONCILE_CRON="0 2 1 1 *")
            series: list[tuple[float, int, int]] = []  # (monotonic, answered API requests, 503s)
            with log_path.open("wb") as daemon_log:
                started = time.monotonic()
                daemon = subprocess.Popen([sys.executable, "-m", "dersync", "run"], env=env, cwd=tmp,
                                          stdout=daemon_log, stderr=subprocess.STDOUT)
                finished: float | None = None
                due = count
                try:
                    while time.monotonic() - started < deadline:
                        await asyncio.sleep(0.5)
                        counters = await sim.counters()
                        answered = sum(n for _m, route, status, n in counters["requests_by_route"]
                                       if route != "oauth_token" and status not in (429, 503))
                        series.append((time.monotonic(), answered, counters["faults"].get("outage_503", 0)))
                        due = await store.count_due()
                        if due == 0:
                            finished = time.monotonic()
                            break
                finally:
                    daemon.terminate()
                    daemon.wait(timeout=60)
                    await store.close()
            counters = await sim.counters()
            daemon_log_text = log_path.read_text(errors="replace")
    first_request = next((t for t, answered, _ in series if answered), started)
    ends = counters["outage"]["ends"]
    return {
        "records": count, "minimum_seconds": minimum, "outage_seconds": outage_seconds,
        "seconds": None if finished is None else round(finished - started, 1),
        "seconds_from_first_request": None if finished is None else round(finished - first_request, 1),
        "gave_up_after_seconds": None if finished is not None else round(deadline),
        "left_due": due,
        "outage_started_after_seconds": None if counters["outage"]["started"] is None
        else round(counters["outage"]["started"] - started, 1),
        "resumed_after_recovery_seconds": _resumed(series, ends),
        "outage_503": counters["faults"].get("outage_503", 0),
        "throttled": counters["throttled_total"], "busiest_window": counters["max_requests_in_any_window"],
        "api_requests": _api_requests_of(counters), "installations": counters["installations"],
        "duplicate_creates": counters["duplicate_creates"] + counters["duplicate_nmi_creates"],
        **_daemon_passes(daemon_log_text),
        "rate_per_10_seconds": _rates(series, started),
    }


def _resumed(series: list[tuple[float, int, int]], ends: float | None, window: float = 10.0) -> float | None:
    """Seconds from the end of the outage to the start of the first `window` after it in which
    AEMO answered (other than 503/429) at least 95% of the budget's rate; None if never."""
    if ends is None:
        return None
    needed = 0.95 * AEMO_LIMIT / 60 * window
    for i, (at, answered, _) in enumerate(series):
        if at < ends:
            continue
        later = next(((t, a) for t, a, _ in series[i:] if t >= at + window), None)
        if later is not None and (later[1] - answered) / (later[0] - at) * window >= needed:
            return round(at - ends, 1)
    return None


def _rates(series: list[tuple[float, int, int]], started: float) -> list[list[float]]:
    """(seconds since start, requests answered per second) every 10 s: the shape of the run."""
    rows, last = [], None
    for at, answered, refused in series:
        if last is None or at - last[0] >= 10:
            if last is not None:
                rows.append([round(at - started), round((answered - last[1]) / (at - last[0]), 1),
                             round((refused - last[2]) / (at - last[0]), 1)])
            last = (at, answered, refused)
    return rows


def _daemon_passes(text: str) -> dict[str, object]:
    """The daemon's passes from its JSON log: each pass's counts, and the warnings by event."""
    passes: list[dict[str, object]] = []
    warnings: Counter[str] = Counter()
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "sync.pass.finished":
            passes.append({k: event.get(k) for k in ("status", "records", "created", "left_due", "retry_rounds",
                                                     "requests", "retries", "seconds")})
        if event.get("level") in ("warning", "error"):
            warnings[event.get("event", "?")] += 1
    return {"passes": len(passes), "pass_summaries": passes, "warnings": dict(warnings)}
