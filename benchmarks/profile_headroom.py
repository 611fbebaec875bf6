"""Where a headroom pass spends the client's time: a profile grouped as issue 12 asks.

    python benchmarks/profile_headroom.py                       # py-spy, SQLite, 10,000 records
    python benchmarks/profile_headroom.py --store postgresql --postgres-url postgresql://...
    python benchmarks/profile_headroom.py --profiler cprofile   # function table (main thread only)
    python benchmarks/profile_headroom.py --from-raw stacks.txt # group an earlier py-spy capture

One pass over N new records with AEMO's limit lifted, as the `headroom` benchmark runs it (the
simulator in its own process, so only the client is profiled). With py-spy (`pip install
py-spy`; the default) this process samples itself from just before the pass to just after it,
every thread (aiosqlite runs SQLite in a worker thread) with native frames, and each sample is
put in one group by its innermost frame that names one (self), and counted once for every group
any of its frames names (inclusive): JSON, hashing, validation (pydantic), gzip, store round
trips, HTTP (aiohttp), logging, asyncio and pacing, dersync's own code, other. cProfile sees only
the main thread and slows Python calls more than C calls; its table names the functions.

Prints a Markdown summary (and writes it with `--output`).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.ledger_cases import ledger_off
from benchmarks.run import UNTHROTTLED, SimulatorProcess, loaded_store, process_cpu_seconds
from dersync import event_loop

#: (group, substrings of a frame "function (file:line)"), first match wins. dersync's helpers that
#: wrap a C call (hashlib, json) are named, since without native frames they are the innermost one.
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("garbage collector", ("gc_collect",)),
    ("hashing", ("hashlib", "libcrypto", "sha256", "content_hash (", "openssl_")),
    ("gzip", ("gzip.py", "zlib", "libz.", "deflate", "crc32")),
    ("JSON", ("json/", "_json", "orjson", "ijson", "canonical_json (", "json_response")),
    ("validation (pydantic)", ("pydantic", "dersync/models/")),
    ("store round trips", ("sqlalchemy", "aiosqlite", "asyncpg", "sqlite3", "libsqlite", "dersync/store/")),
    ("HTTP (aiohttp, sockets)", ("aiohttp", "yarl", "multidict", "propcache", "http/", "email/", "urllib/",
                                 "socket.py", "ssl.py", "_SelectorSocketTransport", "send (libc", "recv (libc",
                                 "_socket.socket")),
    ("logging", ("structlog", "logging/", "dersync/logs.py")),
    ("asyncio and pacing", ("asyncio/", "selectors.py", "aiolimiter", "_asyncio")),
    ("dersync (engine, transport, plan, answers)", ("dersync/",)),
)
#: Groups whose inclusive share means something (asyncio and dersync are on almost every stack).
LEAF_GROUPS = ("garbage collector", "hashing", "gzip", "JSON", "validation (pydantic)", "store round trips",
               "HTTP (aiohttp, sockets)", "logging")
#: A thread whose every sample belongs to one group: aiosqlite runs each SQLite call in its own.
THREAD_GROUPS = (("_connection_worker_thread", "store round trips"),)
#: Native functions that wait (for a lock, the GIL, a condition, the kernel): not CPU.
WAITING = ("pthread_cond_timedwait", "pthread_cond_wait", "sem_wait", "sem_timedwait", "epoll_wait", "take_gil",
           "PyThread_acquire_lock_timed", "__futex", "futex_wait")
_FRAME = re.compile(r"^(?P<function>.*?) \((?P<where>[^()]*)\)$")


def _waiting_lines() -> tuple[str, ...]:
    """Python lines that block a worker thread on its queue: py-spy counts them as active here."""
    import inspect

    import aiosqlite.core

    lines, first = inspect.getsourcelines(aiosqlite.core._connection_worker_thread)
    found = [f"_connection_worker_thread (aiosqlite/core.py:{first + i})" for i, line in enumerate(lines)
             if "tx.get()" in line]
    import concurrent.futures.thread as executor

    lines, first = inspect.getsourcelines(executor._worker)
    found += [f"_worker (concurrent/futures/thread.py:{first + i})" for i, line in enumerate(lines)
              if "work_queue.get(block=True)" in line]
    return (*found, "EpollSelector.select (selectors.py:")


def idle(frames: list[str], waiting_lines: tuple[str, ...]) -> bool:
    """A sample of a thread that waits rather than computes."""
    python = [f for f in frames if ".py:" in f]
    if python and any(python[-1].endswith(line + ")") or line in python[-1] for line in waiting_lines):
        return True
    innermost = frames.index(python[-1]) if python else -1
    return any(any(w in frame for w in WAITING) for frame in frames[innermost + 1:])


def group_of(frame: str) -> str | None:
    for name, needles in GROUPS:
        if any(needle in frame for needle in needles):
            return name
    return None


def summarise(raw: str) -> tuple[dict[str, int], dict[str, int], int, int, Counter[str], Counter[str]]:
    """(self samples by group, inclusive samples by group, busy samples, idle samples left out,
    self by function, inclusive by function) from py-spy's raw output (one `thread;frame;...
    count` line per distinct stack)."""
    waiting_lines = _waiting_lines()
    self_groups: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    self_functions: Counter[str] = Counter()
    inclusive_functions: Counter[str] = Counter()
    total = idle_samples = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        parts = stack.split(";")
        thread = parts[0] if parts[0].startswith("thread (") else ""
        frames = [f for f in parts if f and not f.startswith(("thread (", "process "))]
        if idle(frames, waiting_lines):
            idle_samples += count
            continue
        total += count
        groups = [group_of(frame) for frame in frames]
        leaf = next((g for g in reversed(groups) if g is not None), "other")
        for needle, name in THREAD_GROUPS:
            if needle in thread:
                leaf = name
                groups.append(name)
        self_groups[leaf] += count
        for name in {g for g in groups if g is not None}:
            inclusive[name] += count
        python = [f for f in frames if ".py:" in f]
        self_functions[_short(frames[-1] if frames else "?")] += count
        if python and python[-1] != frames[-1]:
            self_functions["(innermost Python frame) " + _short(python[-1])] += count
        for name in {_short(frame) for frame in frames}:
            inclusive_functions[name] += count
    return dict(self_groups), dict(inclusive), total, idle_samples, self_functions, inclusive_functions


def _short(frame: str) -> str:
    """`function (package/file.py)`: the path shortened to its package-relative part, no line."""
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    where = match["where"]
    for marker in ("site-packages/", "lib/python3.11/", "wt-perf/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{match['function']} ({where.rpartition(':')[0] or where})"


#: Frames on (nearly) every stack, left out of the inclusive table.
_EVERYWHERE = ("Runner.run ", "BaseEventLoop.run", "BaseEventLoop._run_once ", "Handle._run ", "task_step",
               "<module> ", "Thread._bootstrap", "Thread.run ", "thread_run ", "run (asyncio", "main (", "0x",
               "_PyEval", "PyObject_", "_PyObject", "cfunction_", "method_vectorcall", "context_run",
               "_PyFunction", "PyVectorcall", "Py_RunMain", "pymain_", "__libc_start", "_start ", "clone",
               "start_thread", "_connection_worker_thread ", "_worker (concurrent", "WorkItem.run ")


def markdown(raw: str, heading: str, top: int = 25) -> str:
    self_groups, inclusive, total, idle_samples, self_functions, inclusive_functions = summarise(raw)
    lines = [heading, "", f"{total:,} busy samples over all threads ({idle_samples:,} samples of threads waiting "
             "on a queue, a lock, the GIL or epoll left out). Self: the sample's innermost frame that names a "
             "group; inclusive: any frame on the stack does.", "",
             "| group | self | inclusive |", "|---|---|---|"]
    for name in [g for g, _ in GROUPS] + ["other"]:
        own = self_groups.get(name, 0)
        incl = f"{inclusive.get(name, 0) / total:.1%}" if name in LEAF_GROUPS and total else "-"
        lines.append(f"| {name} | {own / max(total, 1):.1%} | {incl} |")
    lines += ["", f"Top {top} functions by self samples (native frames included):", "",
              "| self | function |", "|---|---|"]
    lines += [f"| {n / max(total, 1):.1%} | `{f}` |" for f, n in self_functions.most_common(top)]
    lines += ["", f"Top {top} functions by inclusive samples (frames on nearly every stack left out):", "",
              "| inclusive | function |", "|---|---|"]
    shown = [(f, n) for f, n in inclusive_functions.most_common(top * 4) if not f.startswith(_EVERYWHERE)][:top]
    lines += [f"| {n / max(total, 1):.1%} | `{f}` |" for f, n in shown]
    return "\n".join(lines) + "\n"


def cprofile_tables(profile: cProfile.Profile, main_cpu: float, other_cpu: float, top: int = 30) -> str:
    """The main thread's CPU by group (cProfile's own time per function, timed by the thread's CPU
    clock), then its top functions by self and cumulative time."""
    stats = pstats.Stats(profile)
    by_group: Counter[str] = Counter()
    for (filename, _line, function), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        by_group[group_of(f"{function} ({filename})") or "other"] += tottime
    measured = sum(by_group.values())
    out = [f"Main thread CPU {main_cpu:.1f} s (cProfile accounts for {measured:.1f} s); other threads (aiosqlite's "
           f"worker, the token fetch) {other_cpu:.1f} s.", "",
           "| group (main thread, cProfile self time) | share |", "|---|---|"]
    names = [g for g, _ in GROUPS if g != "garbage collector"] + ["other"]
    out += [f"| {name} | {by_group.get(name, 0.0) / max(measured, 1e-9):.1%} |" for name in names]
    out += ["", "(cProfile cannot see the garbage collector: its time lands on whichever function allocated.)", ""]
    for key, title in (("tottime", "self (tottime)"), ("cumulative", "cumulative (cumtime)")):
        buffer = io.StringIO()
        pstats.Stats(profile, stream=buffer).strip_dirs().sort_stats(key).print_stats(top)
        text = buffer.getvalue()
        table = text[text.index("   ncalls"):] if "   ncalls" in text else text
        out += [f"cProfile, top {top} by {title} (main thread only, thread CPU clock):", "", "```", table.rstrip(),
                "```", ""]
    return "\n".join(out)


async def run(args: argparse.Namespace) -> str:
    from dersync.gc_tuning import settle_after_start_up
    from dersync.logs import configure_logging
    from dersync.settings import Settings
    from dersync.sync import sync_once

    configure_logging(Settings(log_level="WARNING", log_format="console"))  # as benchmarks/run.py
    with tempfile.TemporaryDirectory() as tmp, SimulatorProcess(rate_limit=10**9) as sim:
        # A profiler slows the event loop several times over; with the default failover (30 s) the
        # sender lease's renewal (due every 3.3 s) then times out and the pass stops half-way.
        async with loaded_store(sim, tmp, args.records, store=args.store, postgres_url=args.postgres_url,
                                failover_seconds=600, **UNTHROTTLED) as (settings, store):
            settle_after_start_up()  # as `dersync sync` does once its store is open
            raw_path = Path(tmp) / "stacks.txt"
            sampler = profile = None
            if args.profiler == "py-spy":
                sampler = subprocess.Popen(
                    [args.py_spy, "record", "--pid", str(os.getpid()), "--rate", str(args.rate), "--format", "raw",
                     "--output", str(raw_path), "--threads", *(["--native"] if args.native else [])],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                time.sleep(1.0)  # let it attach before the pass starts
            else:
                profile = cProfile.Profile(time.thread_time)
            cpu, sim_cpu, started = process_cpu_seconds(), sim.cpu_seconds(), time.monotonic()
            main_cpu = time.thread_time()
            if profile is not None:
                profile.enable()
            with ledger_off() if args.without_ledger else nullcontext():
                summary = await sync_once(settings, store)
            if profile is not None:
                profile.disable()
            main_cpu = time.thread_time() - main_cpu
            seconds = time.monotonic() - started
            cpu, sim_cpu = process_cpu_seconds() - cpu, sim.cpu_seconds() - sim_cpu
            if sampler is not None:
                sampler.send_signal(signal.SIGINT)
                _, errors = sampler.communicate(timeout=120)
                if not raw_path.exists():
                    raise RuntimeError(f"py-spy wrote nothing: {errors.decode(errors='replace')[-500:]}")
                raw = raw_path.read_text()
                if args.keep_raw:
                    Path(args.keep_raw).write_text(raw)
    head = (f"## Profile of a headroom pass: {args.records:,} new records, {args.store}, limit lifted "
            f"({args.profiler}{', native frames' if args.native and args.profiler == 'py-spy' else ''})\n\n"
            f"Pass {seconds:.1f} s ({args.records / seconds:.0f} installations/s under the profiler), client CPU "
            f"{cpu / args.records * 1000:.2f} ms per push, simulator CPU {sim_cpu / args.records * 1000:.2f} ms.\n"
            f"The pass: {summary.line()}\n")
    if profile is not None:
        return head + "\n" + cprofile_tables(profile, main_cpu, cpu - main_cpu, args.top)
    return markdown(raw, head, args.top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--store", default="sqlite", choices=("sqlite", "postgresql"))
    parser.add_argument("--postgres-url", default=os.environ.get("DERSYNC_TEST_POSTGRES_URL"))
    parser.add_argument("--profiler", default="py-spy", choices=("py-spy", "cprofile"))
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy", help="the py-spy executable")
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--native", action=argparse.BooleanOptionalAction, default=True,
                        help="py-spy: C frames too (json, hashlib, zlib, pydantic-core, sqlite)")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--keep-raw", help="py-spy: keep the raw stacks in this file")
    parser.add_argument("--from-raw", help="group an earlier py-spy raw capture instead of running a pass")
    parser.add_argument("--output", help="also write the summary to this file")
    parser.add_argument("--without-ledger", action="store_true",
                        help="profile the pass with the ledger's work switched off (benchmarks/ledger_cases.py)")
    args = parser.parse_args()
    if args.from_raw:
        text = markdown(Path(args.from_raw).read_text(), f"## Profile from {args.from_raw}\n", args.top)
    else:
        text = event_loop.run(run(args))
    print(text)
    if args.output:
        Path(args.output).write_text(text)


if __name__ == "__main__":
    main()
