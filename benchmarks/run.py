"""dersync benchmarks: measured, not asserted. Prints a table and writes benchmarks/results/.

    python benchmarks/run.py                 # all of them (about 10 minutes on 2 cores)
    python benchmarks/run.py pacing idle     # some of them
    python benchmarks/run.py pacing --pacing-seconds 90

Each benchmark reports against the physical or contractual limit (AEMO's 6000 requests/minute,
the issue's targets) and, where it says so, against a naive baseline measured in the same run.
The AEMO simulator runs in a separate process (`dersync mock-aemo`) on loopback, as AEMO would.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from dersync import event_loop

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CLIENT_ID, CLIENT_SECRET, PARTICIPANT = "dersync-demo", "demo-secret", "BENCHNSP"


@dataclass
class Result:
    name: str
    measured: str
    target: str
    verdict: str
    details: dict[str, Any] = field(default_factory=dict)


# --- simulator in its own process ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a child process: this checkout's code first on its path, whatever
    copy of dersync is installed (the benchmarks measure the code beside them)."""
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else ""), **extra}


def process_cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of a process so far (this one, all its threads, by default)."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15)


class SimulatorProcess:
    """`dersync mock-aemo` as a subprocess; its counters are read over /_sim/counters."""

    def __init__(self, *, rate_limit: int = 6000, latency: float = 0.0, extra: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [sys.executable, "-m", "dersync", "mock-aemo", "--port", str(self.port),
                     "--rate-limit", str(rate_limit), "--latency", str(latency), *extra]
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> SimulatorProcess:
        env = child_env(DERSYNC_LOG_LEVEL="WARNING", DERSYNC_LOG_FORMAT="json")
        self.process = subprocess.Popen(self.args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("simulator did not start")

    def __exit__(self, *exc: Any) -> None:
        """Stop the simulator; one holding a million installations (~7 GB) can take longer than
        30 s to exit on SIGTERM, and its register is no longer needed: it is killed then, so that
        the measurement taken before is not lost to a timeout (as a 1M first pass once was)."""
        assert self.process is not None
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    async def state(self) -> dict[str, Any]:
        """The whole register and its counters (small registers only)."""
        async with aiohttp.ClientSession() as session, session.get(self.url + "/_sim/state") as response:
            return await response.json()

    async def counters(self) -> dict[str, Any]:
        """The simulator's counters alone (cheap at any register size)."""
        async with aiohttp.ClientSession() as session, session.get(self.url + "/_sim/counters") as response:
            return await response.json()

    def cpu_seconds(self) -> float:
        assert self.process is not None
        return process_cpu_seconds(self.process.pid)

    def settings(self, database_url: str, **overrides: Any) -> Any:
        return simulator_settings(self.url, database_url, **overrides)

    def peak_rss_mb(self) -> float:
        assert self.process is not None
        return rss_mb(self.process.pid)


def simulator_settings(url: str, database_url: str, **overrides: Any) -> Any:
    """dersync's settings aimed at the simulator at `url`, with the store at `database_url`."""
    from dersync.settings import Settings

    values: dict[str, Any] = dict(
        database_url=database_url,
        oauth_token_url=url + "/oauth/v1/token",
        nmi_api_url=url + "/wem/v1/der-register",
        installation_api_url=url + "/v2/der-register",
        client_id=CLIENT_ID, client_secret=CLIENT_SECRET, participant_id=PARTICIPANT,
        log_level="WARNING", log_format="json",
    )
    values.update(overrides)
    return Settings(**values)


def rss_mb(pid: int | str = "self") -> float:
    """Peak resident set size of a process (this one by default) so far, in MB.

    Linux's VmHWM, not getrusage's ru_maxrss: a child started by fork and exec inherits the
    parent's ru_maxrss, so every memory child reported the benchmark runner's own peak.
    """
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> bool:
    """Start this process's VmHWM again from its current RSS (Linux 4.0+), so that the next
    `rss_mb()` is the peak of what follows; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
            clear.write("5")
    except OSError:
        return False
    return True


#: Client settings with AEMO's limit lifted (the simulator is started with it lifted too).
UNTHROTTLED = {"rate_limit_per_minute": 10**9, "concurrency": 64}


#: The stores benchmarks can run on (`--stores`).
STORES = ("sqlite", "postgresql")


@asynccontextmanager
async def fresh_database(kind: str, folder: str, postgres_url: str | None) -> AsyncIterator[str]:
    """The URL of a new, empty store: a SQLite file in `folder`, or a PostgreSQL database created
    on the server `postgres_url` names (dropped afterwards)."""
    if kind == "sqlite":
        yield f"sqlite:///{folder}/bench.db"
        return
    if kind != "postgresql":
        raise ValueError(f"unknown store {kind!r} (expected one of {', '.join(STORES)})")
    if not postgres_url:
        raise RuntimeError("no PostgreSQL server: give --postgres-url (or set DERSYNC_TEST_POSTGRES_URL)")
    import uuid

    import asyncpg

    name = f"dersync_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield f"{postgres_url.rpartition('/')[0]}/{name}"
    finally:
        admin = await asyncpg.connect(postgres_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@asynccontextmanager
async def loaded_store(sim: SimulatorProcess, folder: str, records: int, *, store: str = "sqlite",
                       postgres_url: str | None = None, **overrides: Any) -> AsyncIterator[tuple[Any, Any]]:
    """(settings aimed at `sim`, a fresh store holding `records` new records): a SQLite file in
    `folder`, or a new PostgreSQL database with `store="postgresql"`."""
    async with fresh_database(store, folder, postgres_url) as url, _opened(sim, url, records, overrides) as opened:
        yield opened


@asynccontextmanager
async def _opened(sim: SimulatorProcess, url: str, records: int,
                  overrides: dict[str, Any]) -> AsyncIterator[tuple[Any, Any]]:
    from dersync.store import Store

    settings = sim.settings(url, **overrides)
    store = await Store.open(settings.database_url)
    try:
        await load_records(store, records)
        yield settings, store
    finally:
        await store.close()


async def load_records(store: Any, count: int, start: int = 0) -> None:
    from dersync.testing import load, nmi_for, record

    batch = []
    for index in range(start, start + count):
        batch.append(record(nmi_for(index)))
        if len(batch) == 1000:
            await load(store, batch)
            batch = []
    if batch:
        await load(store, batch)


BENCHMARKS: dict[str, Callable[[argparse.Namespace], Awaitable[Result]]] = {}


Benchmark = Callable[[argparse.Namespace], Awaitable[Result]]


def benchmark(func: Benchmark) -> Benchmark:
    BENCHMARKS[func.__name__] = func
    return func


def write_results(results: list[Result], command: str, loop: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H%M%SZ")
    machine = (f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
               f"client's event loop {loop}")
    lines = [f"# dersync benchmarks {stamp}", "", f"- machine: {machine}", f"- command: `{command}`", "",
             "| benchmark | measured | target | verdict |", "|---|---|---|---|"]
    lines += [f"| {r.name} | {r.measured} | {r.target} | {r.verdict} |" for r in results]
    lines += ["", "```json", json.dumps({r.name: r.details for r in results}, indent=2, default=str), "```", ""]
    path = RESULTS / f"{stamp}.md"
    path.write_text("\n".join(lines))
    (RESULTS / "latest.md").write_text("\n".join(lines))
    return path


def main() -> None:
    import benchmarks.cases
    import benchmarks.console
    import benchmarks.ledger_cases
    import benchmarks.scale_cases

    del benchmarks.cases, benchmarks.console, benchmarks.ledger_cases, benchmarks.scale_cases  # register them

    # Run as a script this module is __main__; the registry that cases.py filled is the one
    # in the imported `benchmarks.run`.
    from benchmarks.run import BENCHMARKS
    from dersync.logs import configure_logging
    from dersync.settings import Settings

    # Warnings only: a per-request log line would cost more than some of what is measured.
    configure_logging(Settings(log_level="WARNING", log_format="console"))

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default all): {', '.join(BENCHMARKS)}")
    parser.add_argument("--pacing-seconds", type=float, default=90.0)
    parser.add_argument("--records", type=int, default=100_000, help="records for idle/import")
    parser.add_argument("--memory-sizes", default="10000,50000,100000")
    parser.add_argument("--console-records", type=int, default=1_000_000, help="records for console")
    parser.add_argument("--console-exceptions", type=int, default=100_000, help="exceptions for console")
    parser.add_argument("--stores", default=",".join(STORES),
                        help="stores for the benchmarks that run on each (sqlite, postgresql)")
    parser.add_argument("--postgres-url", default=os.environ.get("DERSYNC_TEST_POSTGRES_URL"),
                        help="a PostgreSQL server to create benchmark databases in "
                             "(default: $DERSYNC_TEST_POSTGRES_URL)")
    parser.add_argument("--headroom-repeat", type=int, default=3, help="headroom passes per store (median kept)")
    parser.add_argument("--initial-records", type=int, default=10_000, help="new records for initial_load")
    parser.add_argument("--outage-seconds", type=float, default=180.0, help="outage: how long AEMO answers 503")
    parser.add_argument("--sizes", default="10000,100000",
                        help="store sizes for the scale_* benchmarks (1000000 works too: see benchmarks/README.md)")
    parser.add_argument("--exceptions", type=int, default=100_000, help="validation exceptions for scale_status")
    parser.add_argument("--cli-timeout", type=float, default=120.0,
                        help="scale_status: stop a command still running after this many seconds")
    parser.add_argument("--event-loop", choices=("dersync", "asyncio"), default="dersync",
                        help="the loop this process (the client) runs on: dersync's choice (uvloop where installed, "
                             "as every command) or asyncio's own, to measure what the choice is worth")
    args = parser.parse_args()
    args.stores = [kind.strip() for kind in args.stores.split(",") if kind.strip()]
    args.sizes = [int(size) for size in args.sizes.split(",") if size.strip()]
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)} (known: {', '.join(BENCHMARKS)})")
    names = args.names or list(BENCHMARKS)
    results = []
    for name in names:
        print(f"running {name} ...", flush=True)
        try:
            run = asyncio.run if args.event_loop == "asyncio" else event_loop.run
            result = run(BENCHMARKS[name](args))
        except Exception as exc:
            result = Result(name, f"failed: {type(exc).__name__}: {exc}", "-", "ERROR")
        print(f"  {result.measured}  (target {result.target}: {result.verdict})", flush=True)
        results.append(result)
    loop = "asyncio" if args.event_loop == "asyncio" else event_loop.chosen_loop_name()
    path = write_results(results, "python benchmarks/run.py " + " ".join(sys.argv[1:]), loop)
    print()
    print(path.read_text().split("```json")[0])


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
