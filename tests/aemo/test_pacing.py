"""The Pacer's guarantees, without real time.

Pacing is measured on a virtual-clock event loop (see conftest): every acquisition is stamped
with the loop's virtual time, and the stamps are counted over sliding windows. No sleeps, no
timing assertions; the real-time measurement against the simulator is a benchmark elsewhere.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_right

import pytest

from dersync.aemo import AemoClient, Pacer
from dersync.aemo.pacing import SEND_JITTER_SECONDS, pacing_parameters, worst_case_in_window
from dersync.settings import Settings

from .conftest import VirtualClockLoop

RUN_SECONDS = 180.0


async def _drive(pacer: Pacer, loop: VirtualClockLoop, workers: int, until: float) -> list[float]:
    """`workers` tasks acquire as fast as the pacer allows until virtual time `until`."""
    stamps: list[float] = []

    async def worker() -> None:
        while True:
            await pacer.acquire()
            now = loop.time()
            if now >= until:
                return
            stamps.append(now)

    await asyncio.gather(*(worker() for _ in range(workers)))
    return sorted(stamps)


def _max_in_window(stamps: list[float], seconds: float) -> int:
    """Largest number of stamps in any closed interval [t, t + seconds] (stricter than AEMO's)."""
    return max((bisect_right(stamps, t + seconds) - i for i, t in enumerate(stamps)), default=0)


@pytest.mark.parametrize("per_minute", [60, 100, 600, 6000])
def test_pacer_never_exceeds_the_budget_in_any_window_and_sustains_98_percent(
    virtual_loop: VirtualClockLoop, per_minute: int
) -> None:
    """Over three virtual minutes of saturating demand from many tasks: no 60 s window holds more
    than per_minute requests, no 1 s window more than per_minute/30, the first second holds no
    more than the small bucket (no start-up burst), and throughput is at least 0.98 of the budget."""
    pacer = Pacer(per_minute)
    stamps = virtual_loop.run_until_complete(_drive(pacer, virtual_loop, workers=32, until=RUN_SECONDS))

    assert _max_in_window(stamps, 60.0) <= per_minute
    assert _max_in_window(stamps, 1.0) <= max(1, per_minute / 30)
    assert sum(1 for t in stamps if t <= 1.0) <= pacer.burst + pacer.rate_per_second
    sustained = len(stamps) / (RUN_SECONDS / 60.0)
    assert sustained >= 0.98 * per_minute


def test_aiolimiter_with_a_minute_bucket_would_burst(virtual_loop: VirtualClockLoop) -> None:
    """Why the Pacer exists: AsyncLimiter(6000, 60) lets the whole minute's budget through in
    the first second, and ~12,000 through in the first 60 s window (AEMO allows 6000)."""
    from aiolimiter import AsyncLimiter

    limiter = AsyncLimiter(6000, 60)

    async def admitted_by(seconds: float) -> list[float]:
        stamps = []
        while (now := virtual_loop.time()) <= seconds:
            await limiter.acquire()
            stamps.append(now)
        return stamps

    stamps = virtual_loop.run_until_complete(admitted_by(60.0))
    assert sum(1 for t in stamps if t <= 1.0) >= 6000
    assert len(stamps) > 11_000
    assert _max_in_window(stamps, 60.0) > 6000


@pytest.mark.parametrize("per_minute", [1, 2, 30, 60, 64, 100, 600, 6000, 12000])
def test_pacing_arithmetic_leaves_room_for_send_jitter(per_minute: int) -> None:
    """The documented maths: burst + rate * (60 s + send jitter) <= per_minute, so even requests
    arriving up to SEND_JITTER_SECONDS late cannot fill a window; the burst is at least one
    request (so acquire() is always possible) and a tenth of a second's traffic at most."""
    burst, rate = pacing_parameters(per_minute)
    assert burst >= 1
    assert burst <= max(1.0, per_minute / 600)
    if per_minute > 1:
        assert burst + rate * (60 + SEND_JITTER_SECONDS) <= per_minute + 1e-9
    assert worst_case_in_window(per_minute, 60) <= per_minute
    if per_minute >= 64:
        assert rate * 60 >= 0.98 * per_minute
    if per_minute >= 60:
        assert worst_case_in_window(per_minute, 1) <= per_minute / 30


async def test_one_pacer_is_shared_by_clients_given_it(settings: Settings) -> None:
    """Several clients built with the same Pacer draw on one budget: every request of either
    client passes through it."""
    pacer = Pacer(6000)
    async with AemoClient(settings, pacer=pacer) as one, AemoClient(settings, pacer=pacer) as two:
        await one.nmi.get("8001000001")
        await two.installation.get("8001000001")
    assert one.pacer is two.pacer is pacer
    assert pacer.acquired == 2
