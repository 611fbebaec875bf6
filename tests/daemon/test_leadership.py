"""Exactly one sender, whatever happens to the leader: it hangs, loses its network to the store,
has its sessions terminated, or the store restarts under it.

Two real `dersync run` replicas share a real PostgreSQL store and push to the simulator, which
enforces the replicas' own budget as a strict 60 s window (so two senders at once would show as
429s) and logs which process sent each request (its User-Agent). Each test ends with a full read
back: every record at AEMO exactly as in the store, created once, no equipment duplicated, no 429.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from dersync.mock import Simulator, SimulatorConfig
from dersync.settings import Settings
from dersync.store import Store
from dersync.testing import load, nmi_for, record, wait_for
from tests.conftest import PARTICIPANT
from tests.daemon.conftest import (
    BUDGET_PER_MINUTE,
    FAILOVER_SECONDS,
    Cluster,
    NetworkCut,
    PrivateServer,
    Replica,
    all_synced,
    api_requests,
    assert_one_sender_at_a_time,
    assert_store_matches_aemo,
    cluster_environment,
    sender_pid,
)

RECORDS = 400
#: How long a hang or a cut lasts: three times the failover setting, as the issue measured it.
OUTAGE_SECONDS = 3 * FAILOVER_SECONDS
#: The promise is a takeover within the failover setting of the leader's last renewal; the tests
#: allow a few seconds more for noticing on a busy 2-core box (they pin that it happens).
TAKEOVER_LIMIT_SECONDS = FAILOVER_SECONDS + 3
TERMINATIONS = 30

POSTGRES_ONLY = pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)


@pytest.fixture
def sim_config() -> SimulatorConfig:
    """The simulator enforces the replicas' budget: a second sender would be answered 429."""
    return SimulatorConfig(participant_id=PARTICIPANT, seed=7, latency_seconds=0.01,
                           rate_limit_per_minute=BUDGET_PER_MINUTE)


async def role_is(replica: Replica, role: str) -> bool:
    return await replica.role() == role


def first_request_after(simulator: Simulator, replica: Replica, moment: float) -> Callable[[], float | None]:
    """When the simulator answered `replica`'s first request after `moment` (None until it did)."""

    def find() -> float | None:
        return next((s.at for s in api_requests(simulator.state) if s.at > moment and sender_pid(s) == replica.pid),
                    None)

    return find


async def leader_and_standby(cluster: Cluster, leader_env: dict[str, str] | None = None) -> tuple[Replica, Replica]:
    """Start one replica, wait until it leads, then start a second that must stand by."""
    leader = await cluster.start(**(leader_env or {}))
    await cluster.ready(leader)
    await wait_for(lambda: role_is(leader, "leader"), f"{leader.name} to lead")
    standby = await cluster.start()
    await cluster.ready(standby)
    assert await standby.role() == "standby"
    return leader, standby


async def under_way(simulator: Simulator, installations: int = 40) -> None:
    await wait_for(lambda: len(simulator.state.installations) >= installations, "the pass to be under way")
    assert len(simulator.state.installations) < RECORDS, "the pass finished before the fault"


async def outage(started: float, end: Callable[[], object]) -> None:
    """Let the fault last OUTAGE_SECONDS from `started` (its length, not a synchronisation), then end it."""
    await asyncio.sleep(max(0.0, started + OUTAGE_SECONDS - time.monotonic()))
    end()


async def takeover(simulator: Simulator, successor: Replica, fault_at: float) -> float:
    """Wait until `successor` leads and its first request reaches AEMO; seconds after the fault."""
    await wait_for(lambda: role_is(successor, "leader"), f"{successor.name} to take over",
                   deadline=TAKEOVER_LIMIT_SECONDS + 5)
    first_push = await wait_for(first_request_after(simulator, successor, fault_at),
                                f"{successor.name}'s first request", deadline=TAKEOVER_LIMIT_SECONDS + 5)
    return float(first_push) - fault_at


def assert_silent_after(simulator: Simulator, deposed: Replica, successor: Replica, fault_at: float) -> None:
    """No request from the deposed leader reached AEMO after the successor's first one."""
    first_push = first_request_after(simulator, successor, fault_at)()
    assert first_push is not None
    late = [s for s in api_requests(simulator.state) if sender_pid(s) == deposed.pid and s.at >= first_push]
    assert late == [], late


@POSTGRES_ONLY
async def test_hung_leader_is_replaced_and_sends_nothing_new_when_it_wakes(
    cluster: Cluster, simulator: Simulator, store: Store
) -> None:
    """A leader frozen mid-pass (SIGSTOP, as a hung VM or a stuck event loop) for three times
    the failover setting is replaced: the standby leads and pushes within the failover setting
    (plus a few seconds to notice). Woken (SIGCONT), the old leader sends no new request, logs
    `leader.lost` and stands by; the work ends with every record at AEMO once, nothing
    duplicated, no 429."""
    await load(store, [record(nmi_for(i)) for i in range(RECORDS)])
    leader, standby = await leader_and_standby(cluster)
    await under_way(simulator)

    leader.freeze()
    frozen_at = time.monotonic()
    took = await takeover(simulator, standby, frozen_at)
    assert took <= TAKEOVER_LIMIT_SECONDS, took
    await outage(frozen_at, leader.thaw)
    await wait_for(lambda: leader.logged("leader.lost"), "the woken leader to log leader.lost")
    await wait_for(lambda: role_is(leader, "standby"), "the woken leader to stand by")

    await wait_for(lambda: all_synced(store, RECORDS), "every record synced")
    await cluster.stop()
    assert_silent_after(simulator, leader, standby, frozen_at)
    assert_one_sender_at_a_time(cluster, simulator.state)
    await assert_store_matches_aemo(store, simulator, RECORDS)
    print(f"hung leader: standby pushed {took:.2f} s after the freeze")


@POSTGRES_ONLY
async def test_leader_cut_off_from_postgresql_is_replaced_and_silent(
    cluster: Cluster, simulator: Simulator, store: Store, network_cut: tuple[NetworkCut, str]
) -> None:
    """A leader whose network to PostgreSQL stops forwarding (connections stay open, bytes are
    held: no reset, no error) cannot renew its lease, so it stops sending when the lease runs out
    by its own clock; the standby takes over within the failover setting (plus a few seconds).
    When the network mends, the old leader's held writes are refused by the store (stale
    generation), it logs `leader.lost` and stands by; nothing is duplicated at AEMO."""
    cut, through_cut = network_cut
    await load(store, [record(nmi_for(i)) for i in range(RECORDS)])
    leader, standby = await leader_and_standby(cluster, {"DERSYNC_DATABASE_URL": through_cut})
    await under_way(simulator)

    cut.cut()
    cut_at = time.monotonic()
    took = await takeover(simulator, standby, cut_at)
    assert took <= TAKEOVER_LIMIT_SECONDS, took
    await outage(cut_at, cut.mend)
    await wait_for(lambda: leader.logged("leader.lost"), "the cut-off leader to log leader.lost")
    await wait_for(lambda: role_is(leader, "standby"), "the cut-off leader to stand by")

    await wait_for(lambda: all_synced(store, RECORDS), "every record synced")
    await cluster.stop()
    assert_silent_after(simulator, leader, standby, cut_at)
    assert_one_sender_at_a_time(cluster, simulator.state)
    await assert_store_matches_aemo(store, simulator, RECORDS)
    print(f"cut-off leader: standby pushed {took:.2f} s after the cut")


async def terminate_sessions(database_url: str, replica: Replica) -> int:
    """pg_terminate_backend every session of `replica` (its application_name names its pid)."""
    admin = await asyncpg.connect(database_url)
    try:
        return int(await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name LIKE $1", f"dersync % pid {replica.pid}"))
    finally:
        await admin.close()


@POSTGRES_ONLY
async def test_leaders_sessions_terminated_at_random_moments_never_make_two_senders(
    cluster: Cluster, simulator: Simulator, store: Store, database_url: str
) -> None:
    """An administrator's pg_terminate_backend (or a network blip) ending the leader's database
    sessions at random moments, again and again through a pass, never lets two replicas send:
    the lease is a row, not a session, so the leader reconnects and renews, and if a renewal
    window is missed it stops sending before a standby may claim. No request of one replica is
    answered between two of another's, nothing is duplicated, no 429."""
    await load(store, [record(nmi_for(i)) for i in range(RECORDS)])
    await leader_and_standby(cluster)
    await under_way(simulator, 20)
    rng = random.Random(13)
    hits = 0
    for _ in range(TERMINATIONS):
        if len(simulator.state.installations) >= RECORDS:
            break
        await asyncio.sleep(rng.uniform(0.05, 0.4))  # a random moment of the pass (the fault's timing)
        leaders = [r for r in cluster.running() if await r.role() == "leader"]
        for leader in leaders:
            hits += await terminate_sessions(database_url, leader) > 0
    assert hits >= 10, hits

    await wait_for(lambda: all_synced(store, RECORDS), "every record synced")
    await cluster.stop()
    runs = assert_one_sender_at_a_time(cluster, simulator.state)
    await assert_store_matches_aemo(store, simulator, RECORDS)
    print(f"{hits} terminations; sending runs: {runs}")


@pytest.mark.postgres
async def test_postgresql_restart_mid_pass_resumes_when_the_store_is_back(
    simulator: Simulator, private_postgres: PrivateServer, tmp_path: Path
) -> None:
    """PostgreSQL restarted in the middle of a pass (stopped for a few seconds, then started):
    nothing is sent without a valid lease meanwhile, the push resumes within the failover
    setting (plus a few seconds) of the store being back, by whichever replica then holds the
    lease, even with a sync interval of minutes, and the work ends with everything at AEMO once."""
    environment = cluster_environment(private_postgres.url, simulator)
    environment["DERSYNC_SYNC_INTERVAL_SECONDS"] = "120"  # resuming must not wait for the next interval
    cluster = Cluster(environment, tmp_path)
    store = await Store.open(Settings(database_url=private_postgres.url).database_url)
    try:
        await load(store, [record(nmi_for(i)) for i in range(RECORDS)])
        await leader_and_standby(cluster)
        await under_way(simulator)

        await asyncio.to_thread(private_postgres.stop)
        down_at = time.monotonic()
        await asyncio.sleep(2.0)  # the length of the outage
        await asyncio.to_thread(private_postgres.start)
        back_at = time.monotonic()
        resumed = await wait_for(lambda: next((s.at for s in api_requests(simulator.state) if s.at > back_at), None),
                                 "the push to resume", deadline=TAKEOVER_LIMIT_SECONDS + 5)
        assert resumed - back_at <= TAKEOVER_LIMIT_SECONDS, resumed - back_at

        await wait_for(lambda: all_synced(store, RECORDS), "every record synced")
        await cluster.stop()
        assert_one_sender_at_a_time(cluster, simulator.state)
        await assert_store_matches_aemo(store, simulator, RECORDS)
        print(f"store down {back_at - down_at:.2f} s; push resumed {resumed - back_at:.2f} s after it was back")
    finally:
        await cluster.close()
        await store.close()
