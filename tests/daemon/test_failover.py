"""High availability and crash safety of `dersync run`, with real processes and kill -9.

Several replicas may share one PostgreSQL store: exactly one (the holder of an advisory lock)
pushes and reconciles, and a standby takes over when the leader dies. A kill -9 may land anywhere
in a pass, including after AEMO applied a create and before its answer reached the service; the
store must still end exactly as AEMO holds it, with nothing created twice. The single SQLite
process, killed and restarted, must end the same way.

Kills are placed two ways. From inside the simulator (`KillTrap`): the moment a create has been
applied to the register, before its answer leaves, so the write reached AEMO and the replica never
learns that it did. And by polling at an arbitrary moment of a pass. The leader to kill is found
through `/readyz` (`role`).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import asyncpg
import pytest
from sqlalchemy import select

from dersync.mock import Simulator, SimulatorConfig
from dersync.mock.state import RegisterState
from dersync.store import Store
from dersync.store.equipment import ids_from_installation
from dersync.store.tables import equipment_id
from dersync.testing import as_environment, free_port, http_get, load, nmi_for, read_back, record, wait_for

from tests.conftest import PARTICIPANT

DEADLINE_SECONDS = 60
RECORDS = 200
FAILOVER_SECONDS = 3.0
#: The product promises a takeover within DERSYNC_FAILOVER_SECONDS of the leader's death. The
#: tests allow as much again plus 2 s for a busy 2-core box: they pin that a standby took over,
#: not how fast.
TAKEOVER_LIMIT_SECONDS = 2 * FAILOVER_SECONDS + 2
#: The request budget of every replica (DERSYNC_RATE_LIMIT_PER_MINUTE). The simulator does not
#: enforce a limit in these tests (it only measures), so exceeding the budget would show.
BUDGET_PER_MINUTE = 3000
#: (how, count): "installation"/"nmi" = trap the count-th next create of that kind (1 = the next);
#: "poll" = kill when the simulator has seen `count` more installations, whatever is in flight.
KILLS = (("installation", 20), ("poll", 15), ("nmi", 1))
#: A sync interval far longer than the failover setting (the defaults are 300 s and 30 s).
LONG_INTERVAL_SECONDS = 120

POSTGRES_ONLY = pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def sim_config() -> SimulatorConfig:
    """Latency makes a pass long enough to be interrupted; no simulator limit, so the budget
    check below measures what the replicas sent rather than what the simulator let through."""
    return SimulatorConfig(participant_id=PARTICIPANT, seed=4, latency_seconds=0.01, rate_limit_per_minute=0)


# --- polling ----------------------------------------------------------------------------------


# --- replicas ---------------------------------------------------------------------------------


@dataclass
class Replica:
    """One `dersync run` subprocess with its admin endpoint and its JSON log file."""

    name: str
    process: asyncio.subprocess.Process
    admin: str
    log: Path
    killed_at: float | None = None

    @property
    def running(self) -> bool:
        return self.process.returncode is None and self.killed_at is None

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed or released by the process itself."""
        self.killed_at = time.monotonic()
        os.kill(self.process.pid, signal.SIGKILL)

    async def role(self) -> str | None:
        """`role` from /readyz (leader or standby), or None while it does not answer."""
        status, body = await http_get(self.admin + "/readyz")
        if status not in (200, 503):
            return None
        return json.loads(body).get("role")

    async def leader_gauge(self) -> float | None:
        status, body = await http_get(self.admin + "/metrics")
        found = re.search(r"^dersync_leader (\S+)$", body, re.MULTILINE) if status == 200 else None
        return float(found.group(1)) if found else None

    def events(self) -> list[dict[str, Any]]:
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                found.append(event)
        return found

    def logged(self, name: str) -> bool:
        return any(event.get("event") == name for event in self.events())

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-15:])


class Cluster:
    """The replicas of one test; whatever still runs at the end is killed."""

    def __init__(self, env: dict[str, str], folder: Path) -> None:
        self.env = env
        self.folder = folder
        self.replicas: list[Replica] = []

    async def start(self, **env: str) -> Replica:
        name = f"replica-{len(self.replicas) + 1}"
        port = free_port()
        log = self.folder / f"{name}.log"
        with log.open("wb") as log_file:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "dersync", "run", cwd=self.folder, stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                env={**self.env, "DERSYNC_ADMIN_BIND": f"127.0.0.1:{port}", **env},
            )
        replica = Replica(name, process, f"http://127.0.0.1:{port}", log)
        self.replicas.append(replica)
        return replica

    def running(self) -> list[Replica]:
        return [r for r in self.replicas if r.running]

    async def ready(self, replica: Replica) -> None:
        """Wait for `daemon.ready` in its log (not /readyz, which would also set its gauges)."""
        await wait_for(lambda: replica.logged("daemon.ready") or replica.process.returncode is not None,
                       f"{replica.name} to be ready")
        assert replica.process.returncode is None, f"{replica.name} exited:\n{replica.tail()}"

    async def leader(self, deadline: float = DEADLINE_SECONDS) -> Replica:
        """The one running replica whose /readyz says leader (waits until there is exactly one)."""

        async def one_leader() -> Replica | None:
            running = self.running()
            roles = await asyncio.gather(*(r.role() for r in running))
            leaders = [r for r, role in zip(running, roles) if role == "leader"]
            assert len(leaders) <= 1, f"two leaders at once: {[r.name for r in leaders]}"
            return leaders[0] if leaders else None

        return await wait_for(one_leader, "a leader", deadline)

    async def stop(self) -> None:
        """SIGTERM every running replica; each must exit 0."""
        running = self.running()
        for replica in running:
            replica.process.send_signal(signal.SIGTERM)
        for replica in running:
            code = await asyncio.wait_for(replica.process.wait(), timeout=DEADLINE_SECONDS)
            assert code == 0, f"{replica.name} exited {code}:\n{replica.tail()}"

    async def close(self) -> None:
        for replica in self.replicas:
            if replica.process.returncode is None:
                replica.process.kill()
                await replica.process.wait()


@pytest.fixture
async def cluster(database_url: str, simulator: Simulator, tmp_path: Path) -> AsyncIterator[Cluster]:
    env = {
        **os.environ,
        **as_environment(simulator.client_settings()),
        "DERSYNC_DATABASE_URL": database_url,
        "DERSYNC_SYNC_INTERVAL_SECONDS": "0.5",
        "DERSYNC_FAILOVER_SECONDS": str(FAILOVER_SECONDS),
        "DERSYNC_CONCURRENCY": "4",
        "DERSYNC_STORE_BATCH_SIZE": "25",
        "DERSYNC_RATE_LIMIT_PER_MINUTE": str(BUDGET_PER_MINUTE),
        "DERSYNC_RETRY_BACKOFF_INITIAL_SECONDS": "0.05",
        "DERSYNC_RETRY_BACKOFF_MAX_SECONDS": "0.5",
        "DERSYNC_SHUTDOWN_GRACE_SECONDS": "20",
        "DERSYNC_LOG_FORMAT": "json",
        # Successful GETs are logged at DEBUG; every answer's transactionId attributes it to a replica.
        "DERSYNC_LOG_LEVEL": "DEBUG",
    }
    cluster = Cluster(env, tmp_path)
    try:
        yield cluster
    finally:
        await cluster.close()


# --- placing kills ----------------------------------------------------------------------------


class KillTrap:
    """Kills a replica from inside the simulator right after a create was applied to the register
    and before AEMO's answer leaves: the create reached AEMO, the replica never learns it did."""

    def __init__(self, state: RegisterState) -> None:
        self.armed: tuple[str, int, Replica] | None = None
        #: (kind, nmi, monotonic time) of every create that was answered by a kill.
        self.hits: list[tuple[str, str, float]] = []
        for kind, name in (("installation", "create_installation"), ("nmi", "create_nmi")):
            setattr(state, name, self._wrap(kind, getattr(state, name)))

    def _wrap(self, kind: str, create: Callable[..., Any]) -> Callable[..., Any]:
        def create_then_maybe_kill(body: dict[str, Any], *args: Any) -> Any:
            result = create(body, *args)
            if self.armed is not None and self.armed[0] == kind:
                _, remaining, replica = self.armed
                if remaining > 1:
                    self.armed = (kind, remaining - 1, replica)
                else:
                    self.armed = None
                    replica.kill()
                    self.hits.append((kind, body["nmi"], time.monotonic()))
            return result

        return create_then_maybe_kill

    def arm(self, kind: str, count: int, replica: Replica) -> None:
        self.armed = (kind, count, replica)


async def kill_during_pass(how: str, count: int, leader: Replica, simulator: Simulator, trap: KillTrap) -> None:
    """Kill the leader as `how` says (see KILLS) and wait until it is gone."""
    if how == "poll":
        target = len(simulator.state.installations) + count
        await wait_for(lambda: len(simulator.state.installations) >= target, f"{count} more installations")
        leader.kill()
    else:
        trap.arm(how, count, leader)
        await wait_for(lambda: leader.killed_at is not None, f"{leader.name}'s {how} create number {count}")
    code = await asyncio.wait_for(leader.process.wait(), timeout=DEADLINE_SECONDS)
    assert code == -signal.SIGKILL
    assert len(simulator.state.installations) < RECORDS, "the kill came after the pass had finished"


# --- the end state ----------------------------------------------------------------------------


async def all_synced(store: Store) -> bool:
    status = await store.status()
    return status["records"]["synced"] == RECORDS and status["due"] == 0


async def assert_store_matches_aemo(store: Store, simulator: Simulator, trap: KillTrap) -> None:
    """Every record at AEMO exactly as in the store, each created once, nothing refused or
    duplicated, AEMO's ids remembered, and the budget kept."""
    state = simulator.state
    report = await read_back(store, state)
    assert report.ok and report.checked == RECORDS, report
    everything = {nmi_for(i) for i in range(RECORDS)}
    assert set(state.installations) == everything and set(state.nmis) == everything
    assert set(state.creates.values()) == {1} and set(state.nmi_creates.values()) == {1}
    # A second POST for an NMI AEMO already holds is refused (422, codes 1001/1002) rather than
    # counted as a create: there must be none.
    refused = {route: state.count(route=route, status=422) for route in ("nmi_create", "installation_create")}
    assert refused == {"nmi_create": 0, "installation_create": 0}, refused
    # The ids recorded with each outcome are the ones AEMO assigned (same transaction as the state).
    async with store.engine.connect() as connection:
        rows = await connection.execute(select(equipment_id.c.nmi, equipment_id.c.nsp_connection_id,
                                               equipment_id.c.nsp_device_id, equipment_id.c.aemo_id))
        stored = {(nmi, conn, dev, aemo_id) for nmi, conn, dev, aemo_id in rows}
    held = {(nmi, e.nsp_connection_id, e.nsp_device_id, e.aemo_id)
            for nmi, inst in state.installations.items() for e in ids_from_installation(inst)}
    assert stored == held
    # Each create a kill interrupted after AEMO applied it was followed by a PUT, not a second POST.
    route_after_kill = {"installation": "installation_update", "nmi": "nmi_update"}
    for kind, nmi, killed_at in trap.hits:
        assert any(route == route_after_kill[kind] and path.endswith("/" + nmi) and at > killed_at
                   for at, _method, path, route, status, _txid in state.request_log), (kind, nmi)
    assert state.max_requests_in_any_window <= BUDGET_PER_MINUTE, state.max_requests_in_any_window
    # The whole run is shorter than 60 s, so also hold it to the pacer's promise for any second
    # (at most 1/30 of the budget): two replicas sending at once would break it.
    assert most_in_any_second(state) <= BUDGET_PER_MINUTE / 30
    assert state.throttled_total == 0


def most_in_any_second(state: RegisterState) -> int:
    """The most NMI and Installation API requests the simulator served within any 1 s."""
    times = sorted(at for at, _method, _path, route, _status, _txid in state.request_log if route != "oauth_token")
    most, start = 0, 0
    for end, at in enumerate(times):
        while times[start] <= at - 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


def senders(cluster: Cluster, state: RegisterState) -> dict[str, tuple[float, float]]:
    """Per replica, the first and last moment the simulator served one of its API requests (the
    replica logs every answer's transactionId; the simulator logs when it served each)."""
    served = {txid: at for at, _method, _path, route, _status, txid in state.request_log if route != "oauth_token"}
    spans = {}
    for replica in cluster.replicas:
        times = [served[e["transactionId"]] for e in replica.events()
                 if e.get("event") == "aemo.response" and e.get("transactionId") in served]
        if times:
            spans[replica.name] = (min(times), max(times))
    return spans


# --- the tests --------------------------------------------------------------------------------


@POSTGRES_ONLY
async def test_two_replicas_survive_repeated_kill_9_of_the_leader(
    cluster: Cluster, simulator: Simulator, store: Store
) -> None:
    """Two replicas on one PostgreSQL store: exactly one leads (/readyz role, /metrics
    dersync_leader); each time the leader is killed with SIGKILL mid-pass (after AEMO applied an
    installation create, at an arbitrary moment, after AEMO applied an NMI create) the standby
    takes over within the failover setting (plus a margin) and finishes the work. At the end every
    record is at AEMO exactly as in the store, no NMI or equipment was created twice, interrupted
    creates were checked and PUT instead of re-POSTed, only one replica ever sent at a time, and the
    request budget was kept."""
    first, second = await cluster.start(), await cluster.start()
    await cluster.ready(first)
    await cluster.ready(second)
    # /metrics alone says who leads (scraped before /readyz was ever asked), and /readyz agrees.
    gauges = {r.name: await r.leader_gauge() for r in (first, second)}
    leader = await cluster.leader()
    standby = second if leader is first else first
    assert gauges == {leader.name: 1.0, standby.name: 0.0}
    assert await standby.role() == "standby"
    assert leader.logged("leader.acquired") and standby.logged("leader.standby")

    await load(store, [record(nmi_for(i)) for i in range(RECORDS)])
    trap = KillTrap(simulator.state)
    takeovers = []
    for how, count in KILLS:
        leader = await cluster.leader()
        [standby] = [r for r in cluster.running() if r is not leader]
        await kill_during_pass(how, count, leader, simulator, trap)
        successor = await cluster.leader(deadline=TAKEOVER_LIMIT_SECONDS + 2)
        assert leader.killed_at is not None
        takeovers.append(time.monotonic() - leader.killed_at)
        assert successor is standby and takeovers[-1] <= TAKEOVER_LIMIT_SECONDS, takeovers
        assert await successor.leader_gauge() == 1.0
        await wait_for(lambda: successor.logged("leader.acquired"), "leader.acquired in the new leader's log")
        replacement = await cluster.start()  # two replicas again
        await cluster.ready(replacement)
        assert await replacement.role() == "standby" and await replacement.leader_gauge() == 0.0

    await wait_for(lambda: all_synced(store), "every record synced")
    final_leader = await cluster.leader()
    await cluster.stop()
    assert final_leader.logged("leader.released")

    await assert_store_matches_aemo(store, simulator, trap)
    assert [kind for kind, _nmi, _at in trap.hits] == ["installation", "nmi"]
    # Only the leader sends: the replicas' sending spans never overlap, and replicas that never
    # led sent nothing (so two replicas do not double the request budget).
    spans = sorted(senders(cluster, simulator.state).values())
    assert all(earlier[1] < later[0] for earlier, later in zip(spans, spans[1:])), spans
    leaders = {r.name for r in cluster.replicas if r.logged("leader.acquired")}
    assert set(senders(cluster, simulator.state)) <= leaders
    assert not any(r.logged("leader.lost") for r in cluster.replicas)


@POSTGRES_ONLY
async def test_standby_resumes_the_dead_leaders_pass_at_takeover_not_at_its_next_interval(
    cluster: Cluster, simulator: Simulator, store: Store
) -> None:
    """With a sync interval far longer than the failover setting (as with the defaults, 300 s
    against 30 s), a standby taking over from a leader killed mid-pass starts pushing the records
    left due at once (within the failover setting plus a margin), not at its next scheduled pass;
    the work then ends as if nothing had happened."""
    await load(store, [record(nmi_for(i)) for i in range(RECORDS)])
    trap = KillTrap(simulator.state)
    replicas = [await cluster.start(DERSYNC_SYNC_INTERVAL_SECONDS=str(LONG_INTERVAL_SECONDS)) for _ in range(2)]
    for replica in replicas:
        await cluster.ready(replica)
    leader = await cluster.leader()
    await kill_during_pass("installation", 1, leader, simulator, trap)
    at_kill = len(simulator.state.installations)
    # The dead leader had at most CONCURRENCY - 1 other creates in flight; more are the successor's.
    await wait_for(lambda: len(simulator.state.installations) >= at_kill + 4, "the successor to resume the work",
                   deadline=TAKEOVER_LIMIT_SECONDS + 2)

    await wait_for(lambda: all_synced(store), "every record synced")
    await cluster.stop()
    await assert_store_matches_aemo(store, simulator, trap)


@POSTGRES_ONLY
async def test_leader_that_loses_its_lock_stops_its_pass_at_once(
    cluster: Cluster, simulator: Simulator, store: Store, database_url: str
) -> None:
    """When the leader's lock connection dies while the leader lives (a network cut to the
    database, here pg_terminate_backend), its pass stops taking records at once, as on SIGTERM:
    between `leader.lost` and its next `leader.acquired` it writes no more than the records it
    had in flight, so it cannot push beside a standby that took over; once it leads again the
    work ends as if nothing had happened."""
    concurrency = int(cluster.env["DERSYNC_CONCURRENCY"])
    await load(store, [record(nmi_for(i)) for i in range(RECORDS)])
    replica = await cluster.start()
    await cluster.ready(replica)
    await wait_for(lambda: len(simulator.state.installations) >= 10, "the pass to be under way")

    admin = await asyncpg.connect(database_url)
    try:
        cut = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory' "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
    finally:
        await admin.close()
    assert cut == 1
    assert len(simulator.state.installations) < RECORDS, "the cut came after the pass had finished"
    await wait_for(lambda: all_synced(store), "every record synced")
    await cluster.stop()

    events = replica.events()
    lost = next(i for i, e in enumerate(events) if e.get("event") == "leader.lost")
    back = next(i for i, e in enumerate(events) if i > lost and e.get("event") == "leader.acquired")
    halted = next(e for e in events[lost:] if e.get("event") == "sync.pass.finished")
    assert halted["status"] == "interrupted", [
        (e.get("event"), e.get("status"), e.get("method")) for e in events[lost - 5:lost + 30]
        if e.get("event") != "aemo.response" or e.get("method") != "GET"]
    writes = [e for e in events[lost:back] if e.get("event") == "aemo.response" and e.get("method") in ("POST", "PUT")]
    assert len(writes) <= 2 * concurrency, writes
    report = await read_back(store, simulator.state)
    assert report.ok and report.checked == RECORDS, report


@SQLITE_ONLY
async def test_single_sqlite_process_survives_repeated_kill_9(
    cluster: Cluster, simulator: Simulator, store: Store
) -> None:
    """The one SQLite process, killed with SIGKILL mid-pass (after AEMO applied an installation
    create, at an arbitrary moment, after AEMO applied an NMI create) and restarted each time, ends
    with every record at AEMO exactly as in the store, no NMI or equipment created twice, the
    interrupted creates checked and PUT instead of re-POSTed, and the request budget kept."""
    await load(store, [record(nmi_for(i)) for i in range(RECORDS)])
    trap = KillTrap(simulator.state)
    current = await cluster.start()
    for how, count in KILLS:
        await cluster.ready(current)
        assert await current.role() == "leader"
        await kill_during_pass(how, count, current, simulator, trap)
        current = await cluster.start()

    await wait_for(lambda: all_synced(store), "every record synced")
    await cluster.stop()

    await assert_store_matches_aemo(store, simulator, trap)
    assert [kind for kind, _nmi, _at in trap.hits] == ["installation", "nmi"]


#: Fresh-deployment starts to try; without serialised migrations nearly every one fails.
MIGRATION_ROUNDS = 5
MIGRATING_REPLICAS = 4
#: What every `dersync run` does first: open the store, which migrates it. The process answers
#: each "go" line on stdin with one start, so that all of them migrate at the same moment.
OPEN_STORE = """
import asyncio, sys
from dersync.settings import Settings
from dersync.store import Store

url = Settings(database_url=sys.argv[1]).database_url

async def open_store():
    store = await Store.open(url)
    await store.close()

print("ready", flush=True)
for _go in sys.stdin:
    try:
        asyncio.run(open_store())
        print("migrated", flush=True)
    except Exception as exc:
        print("failed:", exc, flush=True)
"""


@POSTGRES_ONLY
async def test_replicas_started_together_on_an_empty_store_all_migrate_it(database_url: str, tmp_path: Path) -> None:
    """Replicas started at the same moment against an empty PostgreSQL store (a fresh deployment
    of two or more) all migrate it and come up; none fails on another's half-created schema."""
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", OPEN_STORE, database_url, cwd=tmp_path, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        for _ in range(MIGRATING_REPLICAS)
    ]

    async def answers() -> list[str]:
        """One line from each process, in order."""
        lines = []
        for process in processes:
            assert process.stdout is not None
            lines.append((await asyncio.wait_for(process.stdout.readline(), DEADLINE_SECONDS)).decode().strip())
        return lines

    try:
        assert await answers() == ["ready"] * MIGRATING_REPLICAS
        for attempt in range(MIGRATION_ROUNDS):
            if attempt:  # empty the store again
                connection = await asyncpg.connect(database_url)
                try:
                    await connection.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
                finally:
                    await connection.close()
            for process in processes:
                process.stdin.write(b"go\n")  # type: ignore[union-attr]
            assert await answers() == ["migrated"] * MIGRATING_REPLICAS, f"start number {attempt + 1}"
    finally:
        for process in processes:
            process.kill()
            await process.wait()
