"""The sender lease protocol (dersync.leadership) against a real store, with clocks the test moves.

Each process gets its own clock (as two machines have), so the tests can freeze one, let time
pass for another, and check who may send when, without sleeping. The store is a real SQLite file
or PostgreSQL database, so the compare-and-swap statements are the ones production runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from dersync.aemo.client import AemoClient
from dersync.errors import LeaseLost, SenderElsewhere
from dersync.leadership import Leadership, LeaseTiming
from dersync.mock import Simulator
from dersync.settings import Settings
from dersync.store import RecordOutcome, Store
from dersync.testing import api_requests, load, nmi_for, record

FAILOVER = 9.0
TIMING = LeaseTiming.for_failover(FAILOVER)


class Clock:
    """A process's boot clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def process(store: Store, name: str) -> tuple[Leadership, Clock]:
    clock = Clock()
    return Leadership(store, TIMING, clock=clock, replica_id=name), clock


async def start(lead: Leadership) -> None:
    """As the daemon starts it, but the test ticks the loop."""
    await lead.start(background=False)


@pytest.fixture
async def holder_and_standby(store: Store) -> AsyncIterator[tuple[Leadership, Clock, Leadership, Clock]]:
    holder, holder_clock = process(store, "holder")
    standby, standby_clock = process(store, "standby")
    await start(holder)
    await start(standby)
    yield holder, holder_clock, standby, standby_clock


def test_timing_derivation_keeps_senders_apart_and_failover_inside_the_setting() -> None:
    """From the failover setting F: renew every F/9 (at least every F/3, as promised), a lease of
    F/3 (two missed renewals tolerated), and a standby that claims only after seeing the lease
    unchanged for lease + margin. So a claim comes at least `margin` after the holder stopped
    sending by its own clock, and at most 8F/15 after the holder's last renewal (inside F)."""
    for failover in (1.0, 3.0, 10.0, 30.0, 120.0):
        timing = LeaseTiming.for_failover(failover)
        assert timing.renew_every <= failover / 3
        assert timing.lease >= 3 * timing.renew_every - 1e-9
        assert timing.lapse_after_silence - timing.lease == pytest.approx(timing.margin) and timing.margin > 0
        assert timing.worst_takeover == pytest.approx(8 * failover / 15) and timing.worst_takeover < failover


async def test_first_process_takes_a_free_lease_and_the_second_stands_by(
    holder_and_standby: tuple[Leadership, Clock, Leadership, Clock],
) -> None:
    """The first process to look claims the lease at once (generation 1) and may send; the
    second sees it held and may not, however long it looks while the holder renews."""
    holder, holder_clock, standby, standby_clock = holder_and_standby
    assert holder.may_send() and holder.generation == 1 and holder.role == "leader"
    assert not standby.may_send() and standby.generation is None
    for _ in range(10):
        holder_clock.advance(TIMING.renew_every)
        standby_clock.advance(TIMING.renew_every)
        await holder.tick()
        await standby.tick()
        assert holder.may_send() and not standby.may_send()


async def test_a_silent_holder_is_replaced_only_after_its_own_lease_ran_out(
    holder_and_standby: tuple[Leadership, Clock, Leadership, Clock],
) -> None:
    """When the holder stops renewing (hung, cut off), it stops sending `lease` after its last
    renewal by its own clock, and the standby claims only `lease + margin` after it first saw
    that renewal: never while the holder may still send."""
    holder, holder_clock, standby, standby_clock = holder_and_standby
    await standby.tick()  # sees the holder's last renewal now
    step = TIMING.poll / 2
    while not standby.may_send():
        holder_clock.advance(step)
        standby_clock.advance(step)
        await standby.tick()
        assert not (holder.may_send() and standby.may_send()), "two senders"
    assert not holder.may_send()
    assert standby.generation == 2


async def test_a_woken_holder_learns_it_lost_and_never_sends_again(
    holder_and_standby: tuple[Leadership, Clock, Leadership, Clock],
) -> None:
    """A holder frozen past its lease (its clock jumps on waking) may not send even before it
    asks the store; its next renewal fails (the standby claimed), it calls `on_lost` and stands by."""
    holder, holder_clock, standby, standby_clock = holder_and_standby
    lost: list[bool] = []
    holder.on_lost = lambda: lost.append(True)
    await standby.tick()
    standby_clock.advance(TIMING.lapse_after_silence)
    await standby.tick()
    assert standby.may_send()

    holder_clock.advance(3 * FAILOVER)  # it was stopped for three times the failover setting
    assert not holder.may_send()
    with pytest.raises(LeaseLost):
        holder.check()
    await holder.tick()
    assert lost == [True] and holder.generation is None and holder.role == "standby"
    assert standby.may_send()


async def test_a_renewal_that_lands_in_time_keeps_the_standby_out(
    holder_and_standby: tuple[Leadership, Clock, Leadership, Clock],
) -> None:
    """A standby's claim is a compare-and-swap on what it saw: a renewal that landed after its
    look makes the claim fail, so a slow but live holder is never deposed."""
    holder, holder_clock, standby, standby_clock = holder_and_standby
    await standby.tick()
    standby_clock.advance(TIMING.lapse_after_silence)
    holder_clock.advance(TIMING.renew_every)
    await holder.tick()  # renews between the standby's look and its claim
    await standby.tick()
    assert holder.may_send() and not standby.may_send()


async def test_a_standby_with_a_shorter_setting_judges_the_lease_by_the_holders_rule(store: Store) -> None:
    """Processes may run with different failover settings (a daemon at 30 s, a hand-run command
    at 3 s). The row carries the holder's own lapse rule, so a standby with a shorter setting
    does not claim a lease its holder may still be sending under."""
    holder, holder_clock = process(store, "slow-holder")
    await start(holder)
    quick = Leadership(store, LeaseTiming.for_failover(1.0), clock=(quick_clock := Clock()), replica_id="quick")
    await quick.start(background=False)
    quick_clock.advance(TIMING.lapse_after_silence * 0.9)  # long past its own rule, inside the holder's
    holder_clock.advance(TIMING.lapse_after_silence * 0.9)
    await quick.tick()
    assert not quick.may_send()
    quick_clock.advance(TIMING.lapse_after_silence * 0.2)
    holder_clock.advance(TIMING.lapse_after_silence * 0.2)
    await quick.tick()
    assert quick.may_send() and not holder.may_send()


async def test_release_at_a_clean_stop_lets_a_standby_claim_at_once(
    holder_and_standby: tuple[Leadership, Clock, Leadership, Clock],
) -> None:
    """A holder stopped cleanly hands the lease back; a standby claims it at its next look, with
    no wait for a lapse."""
    holder, _holder_clock, standby, _standby_clock = holder_and_standby
    await holder.stop()
    assert not holder.may_send()
    await standby.tick()
    assert standby.may_send() and standby.generation == 2


async def test_a_holder_cut_off_past_its_lease_takes_back_what_nobody_claimed(
    holder_and_standby: tuple[Leadership, Clock, Leadership, Clock],
) -> None:
    """A holder whose renewals failed past its lease (the store restarted) stops sending; if no
    one claimed meanwhile, its next renewal succeeds and it leads again under the same
    generation, announcing it (`on_acquired`) so that the work resumes at once."""
    holder, holder_clock, _standby, _standby_clock = holder_and_standby
    acquired: list[bool] = []
    holder.on_acquired = lambda: acquired.append(True)
    holder_clock.advance(TIMING.lease + 0.1)
    assert not holder.may_send()
    await holder.tick()
    assert holder.may_send() and holder.generation == 1 and acquired == [True]


async def test_the_store_refuses_writes_under_a_stale_generation(
    holder_and_standby: tuple[Leadership, Clock, Leadership, Clock], store: Store
) -> None:
    """Once another process claimed the lease, the old holder's outcome writes and attempt marks
    are refused (`LeaseLost`) and change nothing; the new holder's go through."""
    holder, _holder_clock, standby, standby_clock = holder_and_standby
    await load(store, [record(nmi_for(1))])
    stale = holder.fence
    await standby.tick()
    standby_clock.advance(TIMING.lapse_after_silence)
    await standby.tick()
    assert stale is not None and standby.fence is not None

    outcome = RecordOutcome(nmi_for(1), 1, ())
    with pytest.raises(LeaseLost):
        await store.record_outcomes([outcome], fence=stale)
    with pytest.raises(LeaseLost):
        await store.mark_attempts([nmi_for(1)], fence=stale)
    [before] = await store.load_records([nmi_for(1)])
    assert before.sync_state == "pending" and before.attempt_started_at is None
    await store.record_outcomes([outcome], fence=standby.fence)
    [after] = await store.load_records([nmi_for(1)])
    assert after.sync_state == "synced"


async def test_a_one_shot_command_refuses_to_send_beside_a_live_holder(store: Store) -> None:
    """`acquire` (what `dersync sync` does) raises `SenderElsewhere` when the holder is seen
    renewing, instead of sending beside it."""
    timing = LeaseTiming.for_failover(1.0)
    daemon = Leadership(store, timing, replica_id="daemon")
    await daemon.start()
    try:
        assert daemon.may_send()
        command = Leadership(store, timing, replica_id="command")
        with pytest.raises(SenderElsewhere, match="daemon"):
            await asyncio.wait_for(command.acquire(), timeout=10)
        assert not command.may_send()
    finally:
        await daemon.stop()


async def test_nothing_reaches_aemo_once_the_lease_ran_out(
    settings: Settings, store: Store, simulator: Simulator
) -> None:
    """The transport asks the lease before every request: once it ran out by the process's
    clock, a request raises `LeaseLost` and the simulator receives nothing."""
    lead, clock = process(store, "sender")
    await start(lead)
    async with AemoClient(settings, guard=lead.check) as client:
        assert (await client.nmi.get(nmi_for(1))).status == 404
        sent = api_requests(simulator.state)
        clock.advance(TIMING.lease)
        with pytest.raises(LeaseLost):
            await client.nmi.get(nmi_for(1))
    assert api_requests(simulator.state) == sent
