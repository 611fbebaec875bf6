"""Evidence that a hostile day loses nothing and duplicates nothing.

One table of scenarios (id, simulator switches, client settings, what else happens during the
first pass, and the evidence that the scenario really happened). Each runs the same mixed batch
(clean records, records AEMO flags, records AEMO rejects, records local validation rejects)
through repeated sync passes against the simulator until nothing is due, as the daemon would,
and then demands the same outcome:

* every record the store calls synced is at the simulator exactly as in the store, and after
  every pass (a record is never marked synced that is not at AEMO);
* no NMI or installation created twice, no connection or device registered twice;
* every rejection recorded exactly once (one open exception per NMI, level, code and equipment),
  and no exception for a clean record;
* the settled store sends nothing more.

Disturbances are triggered by what the pass has done (records finished, requests served,
connections refused), never by fixed sleeps; the helper `Run.until` polls a condition.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from dersync.aemo.client import AemoClient
from dersync.errors import DersyncError, StoreUnavailable
from dersync.mock import Simulator
from dersync.settings import Enumerations, Settings
from dersync.store import Store
from dersync.sync import SyncEngine
from dersync.testing import connection, installation, load, nmi_details, nmi_for, read_back, wait_for

RECORDS = 50
MAX_PASSES = 20
#: The simulator's switches when a scenario is over (the last check runs against a calm AEMO).
CALM = dict(fault_rate=0.0, oauth_fault_rate=0.0, rate_limit_per_minute=6000, retry_after_seconds=None,
            token_lifetime_seconds=3599)


# --- the batch ---------------------------------------------------------------------------------


@dataclass
class Batch:
    items: list[dict[str, Any]]
    synced: set[str]  # at AEMO in full when the scenario is over
    inst_rejected: set[str]  # NMI details at AEMO, the installation never
    exceptions: list[tuple[Any, ...]]  # (nmi, part, level, code, field, nspConnectionId, nspDeviceId)


def mixed_batch() -> Batch:
    """Fifty records: 35 clean, 5 AEMO flags (2023, stored Conditional), 5 AEMO refuses (422,
    1006: an equipment type configured locally but unknown to AEMO) and 5 local validation
    refuses (a capacity sent as a string)."""
    batch = Batch([], set(), set(), [])
    for i in range(RECORDS):
        nmi = nmi_for(i)
        inst = installation(nmi)
        if i % 10 == 3:
            inst = installation(nmi, approvedCapacity="10")
            batch.inst_rejected.add(nmi)
            batch.exceptions.append((nmi, "installation", "local", "LOCAL", "approvedCapacity", None, None))
        elif i % 10 == 6:
            inst = installation(nmi, connections=[connection(f"C-{nmi}-1", maker=("Acme Solar", "X-1000"))])
            batch.synced.add(nmi)
            batch.exceptions.append((nmi, "installation", "second", "2023", None, f"C-{nmi}-1", None))
        elif i % 10 == 8:
            inst = installation(nmi, connections=[connection(f"C-{nmi}-1", equipment_type="Fuel Cell")])
            batch.inst_rejected.add(nmi)
            batch.exceptions.append((nmi, "installation", "first", "1006", None, None, None))
        else:
            batch.synced.add(nmi)
        batch.items.append({"nmiDetails": nmi_details(nmi), "installation": inst})
    batch.exceptions.sort(key=repr)
    return batch


def enumerations_with_fuel_cell() -> Enumerations:
    enumerations = Enumerations()
    enumerations.equipment_types.append("Fuel Cell")  # configured locally, unknown to AEMO
    return enumerations


# --- one scenario run ----------------------------------------------------------------------------


@dataclass
class Run:
    """A scenario in progress: the simulator, the store, the current client and what happened."""

    sim: Simulator
    store: Store
    settings: Settings
    backend: str
    client: AemoClient | None = None
    passes: int = 0
    last_pass_attempts: int = 0
    pass_over: bool = False  # the current pass has returned (or raised)
    errors: list[BaseException] = field(default_factory=list)  # what passes stopped with
    transport: Counter[str] = field(default_factory=Counter)  # client transport stats, all passes
    notes: dict[str, Any] = field(default_factory=dict)  # what disturbances observed

    async def until(self, condition: Callable[[], Any], what: str, deadline: float = 60.0) -> None:
        """Poll `condition` (a function, or one returning an awaitable) until it holds."""
        await wait_for(condition, what, deadline, interval=0.002)

    async def one_pass(self) -> None:
        self.passes += 1
        self.pass_over = False
        try:
            async with AemoClient(self.settings) as client:
                self.client = client
                try:
                    await client.check_credentials()
                    await SyncEngine(self.settings, self.store, client).run_pass()
                finally:
                    self.last_pass_attempts = client.pacer.acquired  # every HTTP attempt, answered or not
                    stats = client.transport.stats
                    for name in ("refused", "timeouts", "dropped", "throttled", "retries"):
                        self.transport[name] += getattr(stats, name)
                    self.transport["token_refreshes"] += client.tokens.refreshes
        except DersyncError as exc:  # judged by the scenario's `pass_may_fail`
            self.errors.append(exc)
        finally:
            self.pass_over = True


Disturbance = Callable[[Run], Awaitable[None]]


# --- disturbances (each runs beside the first pass and ends once that pass is over) --------------


async def restart_simulator(run: Run) -> None:
    """AEMO goes away mid-pass and comes back once the client has been refused a few times."""
    await run.until(lambda: len(run.sim.state.installations) >= 10, "ten installations are at AEMO")
    await run.sim.stop()
    await run.until(lambda: run.pass_over or (run.client is not None and run.client.transport.stats.refused >= 3),
                    "the client has been refused")
    run.notes["refused_while_down"] = run.client.transport.stats.refused if run.client else 0
    await run.sim.start()


async def oauth_outage(run: Run) -> None:
    """AEMO's token endpoint answers 500 to everything for a while, in the middle of the pass."""
    await run.until(lambda: len(run.sim.state.installations) >= 10, "ten installations are at AEMO")
    run.sim.config.oauth_fault_rate = 1.0
    await run.until(lambda: run.pass_over or run.sim.state.faults["oauth_500"] >= 12, "token fetches have failed")
    run.sim.config.oauth_fault_rate = 0.0


def aemo_window_moves_on_after(throttled: int) -> Disturbance:
    """For the whole run: AEMO's 60 s throttle window moves on (the simulator's clock jumps a
    minute) after every `throttled` answers of 429, so a low rate limit gives bursts of 429s
    without the test waiting whole minutes."""

    async def mover(run: Run) -> None:
        seen = 0
        while True:
            await run.until(lambda s=seen: run.sim.state.throttled_total >= s + throttled, "429s were answered",
                            deadline=float("inf"))
            seen = run.sim.state.throttled_total
            run.sim.clock.advance(60)

    return mover


class StoreLock:
    """Another process holding the store's write lock: SQLite BEGIN IMMEDIATE from a second
    connection, PostgreSQL LOCK TABLE der_record IN EXCLUSIVE MODE (reads still go through)."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self._sqlite: sqlite3.Connection | None = None
        self._pg: Any = None
        self._tx: Any = None

    async def acquire(self) -> None:
        url = make_url(self.run.settings.database_url)
        if self.run.backend == "sqlite":
            self._sqlite = sqlite3.connect(url.database, timeout=60, isolation_level=None, check_same_thread=False)
            await asyncio.to_thread(self._sqlite.execute, "BEGIN IMMEDIATE")
        else:
            import asyncpg

            self._pg = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False))
            self._tx = self._pg.transaction()
            await self._tx.start()
            await self._pg.execute("LOCK TABLE der_record IN EXCLUSIVE MODE")

    async def writer_waiting(self) -> bool:
        """A store write is queued behind this lock right now."""
        if self._sqlite is not None:
            # The store runs one SQLite write at a time; while this lock is held, a write in
            # progress is one waiting in SQLite's busy handler.
            return self.run.store._write_turn is not None and self.run.store._write_turn.locked()
        return bool(await self._pg.fetchval(
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'der_record'::regclass"))

    async def release(self) -> None:
        if self._sqlite is not None:
            await asyncio.to_thread(self._sqlite.execute, "ROLLBACK")
            self._sqlite.close()
        else:
            await self._tx.rollback()
            await self._pg.close()


async def lock_store_briefly(run: Run) -> None:
    """The store is locked by another writer mid-pass until a store write is waiting behind it."""
    await run.until(lambda: len(run.sim.state.installations) >= 10, "ten installations are at AEMO")
    lock = StoreLock(run)
    await lock.acquire()
    try:
        await run.until(lock.writer_waiting, "a store write waits behind the lock")
        run.notes["writer_waited"] = True
    finally:
        await lock.release()


async def lock_store_past_busy_timeout(run: Run) -> None:
    """The store is locked mid-pass for longer than the pass may wait for it."""
    await run.until(lambda: len(run.sim.state.installations) >= 10, "ten installations are at AEMO")
    lock = StoreLock(run)
    await lock.acquire()
    try:
        await run.until(lambda: run.pass_over, "the pass has stopped")
    finally:
        await lock.release()


async def drop_store_connections(run: Run) -> None:
    """PostgreSQL restarts under the pass: every connection of the store is terminated."""
    import asyncpg

    await run.until(lambda: len(run.sim.state.installations) >= 10, "ten installations are at AEMO")
    url = make_url(run.settings.database_url)
    admin = await asyncpg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False))
    try:
        killed = await admin.fetch("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                   "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    finally:
        await admin.close()
    run.notes["connections_dropped"] = len(killed)


# --- the table -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    id: str
    sim: dict[str, Any] = field(default_factory=dict)  # SimulatorConfig switches for the run
    client: dict[str, Any] = field(default_factory=dict)  # Settings overrides
    disturbance: Disturbance | None = None  # runs beside the first pass
    background: Disturbance | None = None  # runs beside every pass
    evidence: Callable[[Run], bool] = lambda run: True  # the hostile thing really happened
    pass_may_fail: tuple[type[DersyncError], ...] = ()  # a pass may stop with these, and only these
    backends: tuple[str, ...] = ("sqlite", "postgres")


#: A pass that crosses several token lifetimes: a client budget of 2400/min (40/s) makes the
#: 100-odd requests of the first pass take at least 2.4 s, so 1 s tokens expire at least twice
#: during it; no refresh margin, so requests also meet tokens that expired on the way.
SLOW_CLIENT = dict(rate_limit_per_minute=2400, token_refresh_margin_seconds=0)

SCENARIOS = [
    Scenario(
        "5xx-and-drops-15pct",
        sim=dict(fault_rate=0.15, fault_kinds=("500", "503", "drop", "drop_after_apply")),
        evidence=lambda run: min(run.sim.state.faults[k] for k in ("500", "503", "drop", "drop_after_apply")) > 0,
    ),
    Scenario(
        "timeouts-15pct",
        sim=dict(fault_rate=0.15, fault_kinds=("slow",), slow_fault_seconds=1.0),
        client=dict(request_timeout_seconds=0.25),
        evidence=lambda run: run.transport["timeouts"] > 0 and run.sim.state.faults["slow"] > 0,
    ),
    Scenario(
        "429-bursts-without-retry-after",
        sim=dict(rate_limit_per_minute=12),
        background=aemo_window_moves_on_after(6),
        evidence=lambda run: run.transport["throttled"] > 0 and run.sim.state.throttled_total > 0,
    ),
    Scenario(
        "429-bursts-with-retry-after",
        sim=dict(rate_limit_per_minute=25, retry_after_seconds=1.0),
        client=dict(retry_backoff_max_seconds=1.0),  # so the hint is honoured, not capped
        background=aemo_window_moves_on_after(4),
        evidence=lambda run: run.transport["throttled"] > 0,
    ),
    Scenario(
        "token-expires-every-second",
        sim=dict(token_lifetime_seconds=1),
        client=SLOW_CLIENT,
        evidence=lambda run: run.sim.state.token_issued_total >= 3,
    ),
    Scenario(
        "oauth-endpoint-down-for-a-while",
        sim=dict(token_lifetime_seconds=1),
        client=SLOW_CLIENT,
        disturbance=oauth_outage,
        evidence=lambda run: run.sim.state.faults["oauth_500"] >= 6,
    ),
    Scenario(
        "oauth-endpoint-flaky",
        sim=dict(token_lifetime_seconds=1, oauth_fault_rate=0.4),
        client=SLOW_CLIENT,
        evidence=lambda run: run.sim.state.faults["oauth_500"] > 0,
    ),
    Scenario(
        "simulator-restarted-mid-pass",
        sim=dict(latency_seconds=0.002),
        disturbance=restart_simulator,
        evidence=lambda run: run.notes.get("refused_while_down", 0) > 0,
    ),
    Scenario(
        "store-locked-briefly",
        disturbance=lock_store_briefly,
        evidence=lambda run: run.notes.get("writer_waited", False),
    ),
    Scenario(
        "store-locked-past-busy-timeout",
        client=dict(sqlite_busy_timeout_seconds=0.2),
        disturbance=lock_store_past_busy_timeout,
        pass_may_fail=(StoreUnavailable,),
        evidence=lambda run: any("database is locked" in str(e) for e in run.errors),
        backends=("sqlite",),
    ),
    Scenario(
        "store-connections-dropped",
        disturbance=drop_store_connections,
        pass_may_fail=(StoreUnavailable,),
        evidence=lambda run: run.notes.get("connections_dropped", 0) > 0,
        backends=("postgres",),
    ),
]


# --- the test ------------------------------------------------------------------------------------


async def open_exceptions(store: Store) -> list[tuple[Any, ...]]:
    rows = await store.list_exceptions(open_only=True)
    found = [(r["nmi"], r["part"], r["level"], r["code"], r["field"], r["nspConnectionId"], r["nspDeviceId"])
             for r in rows]
    return sorted(found, key=repr)


async def settle(run: Run, scenario: Scenario) -> None:
    """Passes until nothing is due (as the daemon would run them), the disturbance beside the
    first; after every pass, whatever the store calls synced is at AEMO exactly as stored."""
    tasks: list[asyncio.Task[None]] = []
    if scenario.background is not None:
        tasks.append(asyncio.create_task(scenario.background(run)))
    disturbance = asyncio.create_task(scenario.disturbance(run)) if scenario.disturbance else None
    try:
        while run.passes < MAX_PASSES:
            await run.one_pass()
            if disturbance is not None:
                await disturbance  # it ends once the first pass is over
                disturbance = None
            report = await read_back(run.store, run.sim.state)
            assert report.ok, (f"after pass {run.passes}", report)
            if (await run.store.status())["due"] == 0:
                return
    finally:
        for task in tasks + ([disturbance] if disturbance is not None else []):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
async def test_hostile_day_loses_nothing_and_duplicates_nothing(
    scenario: Scenario, make_settings: Callable[..., Settings], simulator: Simulator, database_url: str
) -> None:
    """Under the scenario's faults, repeated passes end with every valid record at AEMO exactly as
    in the store (and no record ever marked synced that AEMO does not hold as stored), no NMI,
    installation, connection or device registered twice, every rejection recorded as exactly
    one open exception, a pass stopping only with a clear one-line store error, and a settled
    store that sends nothing more."""
    backend = "sqlite" if database_url.startswith("sqlite") else "postgres"
    if backend not in scenario.backends:
        pytest.skip(f"{scenario.id} applies to {' and '.join(scenario.backends)} only")
    settings = make_settings(enumerations=enumerations_with_fuel_cell(), **scenario.client)
    store = await Store.open(settings.database_url, busy_timeout_seconds=settings.sqlite_busy_timeout_seconds)
    try:
        batch = mixed_batch()
        await load(store, batch.items)
        for name, value in scenario.sim.items():
            setattr(simulator.config, name, value)
        run = Run(simulator, store, settings, backend)

        await settle(run, scenario)

        assert all(isinstance(e, scenario.pass_may_fail) for e in run.errors), run.errors
        assert all(len(str(e).splitlines()) == 1 for e in run.errors), run.errors
        assert scenario.evidence(run), (f"{scenario.id} did not happen", run.notes, run.transport,
                                        dict(simulator.state.faults))
        status = await store.status()
        assert status["due"] == 0, (f"still due after {run.passes} passes", status)
        assert status["records"]["synced"] == len(batch.synced)
        assert status["records"]["rejected"] == len(batch.inst_rejected)
        report = await read_back(store, simulator.state)
        assert report.ok and report.checked == len(batch.synced), report
        state = simulator.state
        for nmi in batch.inst_rejected:
            held = state.nmis.get(nmi)
            assert held is not None and {k: held.get(k) for k in nmi_details(nmi)} == nmi_details(nmi), nmi
            assert nmi not in state.installations and state.creates[nmi] == 0, nmi
        assert await open_exceptions(store) == batch.exceptions

        for name, value in CALM.items():
            setattr(simulator.config, name, value)
        errors = len(run.errors)
        await run.one_pass()
        assert run.last_pass_attempts == 0 and len(run.errors) == errors, run.errors[errors:]
    finally:
        await store.close()
