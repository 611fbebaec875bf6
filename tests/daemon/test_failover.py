"""High availability and crash safety of `dersync run`, with real processes and kill -9.

Several replicas may share one PostgreSQL store: exactly one (the holder of the sender lease)
pushes and reconciles, and a standby takes over when the leader dies. A kill -9 may land anywhere
in a pass, including after AEMO applied a create and before its answer reached the service; the
store must still end exactly as AEMO holds it, with nothing created twice. The single SQLite
process, killed and restarted, must end the same way.

Kills are placed two ways. From inside the simulator (`KillTrap`): the moment a create has been
applied to the register, before its answer leaves, so the write reached AEMO and the replica never
learns that it did. And by polling at an arbitrary moment of a pass. The leader to kill is found
through `/readyz` (`role`). Hangs, network cuts and store restarts are in test_leadership.py.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from dersync.mock import Simulator, SimulatorConfig
from dersync.mock.state import RegisterState
from dersync.store import Store
from dersync.testing import load, nmi_for, record, wait_for
from tests.conftest import PARTICIPANT
from tests.daemon.conftest import (
    DEADLINE_SECONDS,
    FAILOVER_SECONDS,
    Cluster,
    Replica,
    all_synced,
    assert_one_sender_at_a_time,
    assert_store_matches_aemo,
)

#: Enough that work is left for every kill: passes are quick, and an NMI is created before its
#: installation, so the NMI creates run out first.
RECORDS = 400
#: The product promises a takeover within DERSYNC_FAILOVER_SECONDS of the leader's last renewal.
#: The tests allow as much again plus 2 s for a busy 2-core box: they pin that a standby took
#: over, not how fast.
TAKEOVER_LIMIT_SECONDS = 2 * FAILOVER_SECONDS + 2
#: (how, count): "installation"/"nmi" = trap the count-th next create of that kind (1 = the next);
#: "poll" = kill when the simulator has seen `count` more installations, whatever is in flight.
KILLS = (("nmi", 1), ("installation", 20), ("poll", 15))
#: A sync interval far longer than the failover setting (the defaults are 300 s and 30 s).
LONG_INTERVAL_SECONDS = 120

POSTGRES_ONLY = pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def sim_config() -> SimulatorConfig:
    """Latency makes a pass long enough to be interrupted; no simulator limit, so the budget
    check measures what the replicas sent rather than what the simulator let through."""
    return SimulatorConfig(participant_id=PARTICIPANT, seed=4, latency_seconds=0.01, rate_limit_per_minute=0)


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


def assert_killed_creates_were_updated(state: RegisterState, trap: KillTrap) -> None:
    """Each create a kill interrupted after AEMO applied it was followed by a PUT, not a second POST."""
    route_after_kill = {"installation": "installation_update", "nmi": "nmi_update"}
    for kind, nmi, killed_at in trap.hits:
        assert any(s.route == route_after_kill[kind] and s.path.endswith("/" + nmi) and s.at > killed_at
                   for s in state.request_log), (kind, nmi)


# --- the tests --------------------------------------------------------------------------------


@POSTGRES_ONLY
async def test_two_replicas_survive_repeated_kill_9_of_the_leader(
    cluster: Cluster, simulator: Simulator, store: Store
) -> None:
    """Two replicas on one PostgreSQL store: exactly one leads (/readyz role, /metrics
    dersync_leader); each time the leader is killed with SIGKILL mid-pass (after AEMO applied an
    NMI create, after AEMO applied an installation create, at an arbitrary moment) the standby
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
        await wait_for(lambda s=successor: s.logged("leader.acquired"), "leader.acquired in the new leader's log")
        replacement = await cluster.start()  # two replicas again
        await cluster.ready(replacement)
        assert await replacement.role() == "standby" and await replacement.leader_gauge() == 0.0

    await wait_for(lambda: all_synced(store, RECORDS), "every record synced")
    final_leader = await cluster.leader()
    await cluster.stop()
    assert final_leader.logged("leader.released")

    await assert_store_matches_aemo(store, simulator, RECORDS)
    assert_killed_creates_were_updated(simulator.state, trap)
    assert [kind for kind, _nmi, _at in trap.hits] == ["nmi", "installation"]
    # Only the leader sends: one run of requests per leadership, and replicas that never led
    # sent nothing (so two replicas do not double the request budget).
    runs = assert_one_sender_at_a_time(cluster, simulator.state)
    leaders = {r.name for r in cluster.replicas if r.logged("leader.acquired")}
    assert {name for name, _ in runs} <= leaders
    assert not any(r.logged("leader.lost") for r in cluster.replicas)
    print(f"takeover after kill -9: {', '.join(f'{t:.2f} s' for t in takeovers)}")


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

    await wait_for(lambda: all_synced(store, RECORDS), "every record synced")
    await cluster.stop()
    await assert_store_matches_aemo(store, simulator, RECORDS)
    assert_killed_creates_were_updated(simulator.state, trap)


@SQLITE_ONLY
async def test_single_sqlite_process_survives_repeated_kill_9(
    cluster: Cluster, simulator: Simulator, store: Store
) -> None:
    """The one SQLite process, killed with SIGKILL mid-pass (after AEMO applied an installation
    create, at an arbitrary moment, after AEMO applied an NMI create: NMI first) and restarted each time, ends
    with every record at AEMO exactly as in the store, no NMI or equipment created twice, the
    interrupted creates checked and PUT instead of re-POSTed, and the request budget kept."""
    await load(store, [record(nmi_for(i)) for i in range(RECORDS)])
    trap = KillTrap(simulator.state)
    current = await cluster.start()
    for how, count in KILLS:
        await cluster.ready(current)
        # A restart after kill -9 waits for the dead process's lease to lapse before it leads.
        assert await cluster.leader(deadline=TAKEOVER_LIMIT_SECONDS) is current
        await kill_during_pass(how, count, current, simulator, trap)
        current = await cluster.start()

    await wait_for(lambda: all_synced(store, RECORDS), "every record synced")
    await cluster.stop()

    await assert_store_matches_aemo(store, simulator, RECORDS)
    assert_killed_creates_were_updated(simulator.state, trap)
    assert [kind for kind, _nmi, _at in trap.hits] == ["nmi", "installation"]


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
