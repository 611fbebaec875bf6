"""The Pacer's guarantees and the retry-wait arithmetic, without real time.

Pacing is measured on a virtual-clock event loop (see conftest): every acquisition is stamped
with the loop's virtual time, and the stamps are counted over sliding windows. No sleeps, no
timing assertions; the real-time measurement against the simulator is a benchmark elsewhere.
"""

from __future__ import annotations

import asyncio
import random
from bisect import bisect_right
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from dersync.aemo import AemoClient, Pacer, backoff_wait, parse_retry_after
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


# --- Retry-After and backoff -----------------------------------------------------------------------

NOW = datetime(2026, 11, 1, 12, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("5", 5.0),
        (" 2.5 ", 2.5),
        ("0", None),
        ("-3", None),
        ("soon", None),
        ("", None),
        (None, None),
        ("nan", None),
        ("inf", None),
        (format_datetime(NOW + timedelta(seconds=30), usegmt=True), 30.0),
        (format_datetime(NOW - timedelta(seconds=30), usegmt=True), None),
        ("Sun, 99 Foo 2026 25:61:00 GMT", None),
    ],
)
def test_retry_after_accepts_seconds_and_http_dates_and_treats_the_rest_as_no_hint(
    header: str | None, expected: float | None
) -> None:
    """Retry-After: delta-seconds or an HTTP date in the future is a hint; 0, negative, past or
    unparseable values are no hint (falling back to backoff avoids an instant-retry loop)."""
    assert parse_retry_after(header, now=NOW) == expected


def test_backoff_is_full_jitter_exponential_and_capped() -> None:
    """Without a hint, retry n waits uniformly in [0, min(max, initial * 2**(n-1))]."""
    rng = random.Random(3)
    for n in range(1, 12):
        ceiling = min(8.0, 0.5 * 2 ** (n - 1))
        waits = [backoff_wait(n, initial=0.5, maximum=8.0, rng=rng) for _ in range(200)]
        assert all(0 <= w <= ceiling for w in waits)
        assert max(waits) > ceiling / 2  # spread over the range, not pinned at zero


@pytest.mark.parametrize(("hint", "expected"), [(3.0, 3.0), (60.0, 8.0)])
def test_backoff_honours_retry_after_up_to_the_operators_ceiling(hint: float, expected: float) -> None:
    """A usable Retry-After replaces the jittered wait, capped by retry_backoff_max_seconds."""
    assert backoff_wait(1, initial=0.5, maximum=8.0, retry_after=hint) == expected


@pytest.mark.parametrize("hint", [0.0, -1.0, None])
def test_backoff_ignores_unusable_hints(hint: float | None) -> None:
    """A zero or negative hint falls back to jittered backoff (never a wait above the ceiling)."""
    rng = random.Random(1)
    assert 0 <= backoff_wait(2, initial=0.5, maximum=8.0, retry_after=hint, rng=rng) <= 1.0
