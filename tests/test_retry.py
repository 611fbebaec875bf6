"""The one retry policy (dersync.retry): its waits, its limits, Retry-After, and stopping."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from dersync.retry import RetryPolicy, Stopped, parse_retry_after
from dersync.settings import Settings

NOW = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)


def policy(retries: int | None = 3, *, jitter: bool = True, seed: int = 3) -> RetryPolicy:
    return RetryPolicy(initial=0.5, maximum=8.0, retries=retries, jitter=jitter, rng=random.Random(seed))


class Flaky(Exception):
    def __init__(self, retry_after: float | None = None) -> None:
        super().__init__("flaky")
        self.retry_after = retry_after


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
    jittered = policy()
    for n in range(1, 12):
        ceiling = min(8.0, 0.5 * 2 ** (n - 1))
        waits = [jittered.delay(n) for _ in range(200)]
        assert all(0 <= w <= ceiling for w in waits)
        assert max(waits) > ceiling / 2  # spread over the range, not pinned at zero


def test_without_jitter_the_wait_is_the_ceiling() -> None:
    """`retry_jitter = false` waits exactly the exponential ceiling (for operators who want it)."""
    assert [policy(jitter=False).delay(n) for n in (1, 2, 3, 4, 5, 6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]


@pytest.mark.parametrize(("hint", "expected"), [(3.0, 3.0), (60.0, 8.0)])
def test_backoff_honours_retry_after_up_to_the_operators_ceiling(hint: float, expected: float) -> None:
    """A usable Retry-After replaces the jittered wait, capped by retry_backoff_max_seconds."""
    assert policy().delay(1, retry_after=hint) == expected


@pytest.mark.parametrize("hint", [0.0, -1.0, None])
def test_backoff_ignores_unusable_hints(hint: float | None) -> None:
    """A zero or negative hint falls back to jittered backoff (never a wait above the ceiling)."""
    assert 0 <= policy().delay(2, retry_after=hint) <= 1.0


def test_the_policy_is_built_from_the_settings() -> None:
    """Initial and maximum wait, retries and jitter all come from the one settings object."""
    built = RetryPolicy.from_settings(Settings(retry_backoff_initial_seconds=0.2, retry_backoff_max_seconds=3,
                                               max_retries=4, retry_jitter=False))
    assert (built.initial, built.maximum, built.retries, built.jitter) == (0.2, 3.0, 4, False)
    assert built.with_retries(None).may_retry(10_000)


async def test_run_retries_only_what_it_is_told_and_gives_up_with_the_last_failure() -> None:
    """`run` repeats an attempt that raised a retriable error, at most `retries` times, then
    raises that error; any other error passes through at once."""
    calls: list[int] = []
    quick = RetryPolicy(initial=0.001, maximum=0.002, retries=2)

    async def always_flaky() -> None:
        calls.append(1)
        raise Flaky()

    with pytest.raises(Flaky):
        await quick.run(always_flaky, retry_on=(Flaky,))
    assert len(calls) == 3

    async def broken() -> None:
        calls.append(2)
        raise ValueError("not retriable")

    with pytest.raises(ValueError):
        await quick.run(broken, retry_on=(Flaky,))
    assert calls.count(2) == 1


async def test_run_waits_as_the_failure_asks_and_reports_each_retry() -> None:
    """A failure carrying `retry_after` sets the wait (capped); `on_retry` hears each retry."""
    seen: list[tuple[int, float]] = []
    attempts = iter([Flaky(retry_after=0.01), Flaky(retry_after=99.0)])

    async def twice_flaky() -> str:
        failure = next(attempts, None)
        if failure is not None:
            raise failure
        return "done"

    capped = RetryPolicy(initial=0.001, maximum=0.02, retries=5)
    result = await capped.run(twice_flaky, retry_on=(Flaky,), on_retry=lambda n, _exc, wait: seen.append((n, wait)))
    assert result == "done" and seen == [(1, 0.01), (2, 0.02)]


async def test_run_stops_at_once_when_asked_even_mid_attempt() -> None:
    """With a stop event, an attempt under way is abandoned the moment it is set and `Stopped`
    is raised (the daemon's wait for its first token ends promptly on SIGTERM)."""
    stop = asyncio.Event()
    started = asyncio.Event()

    async def hangs() -> None:
        started.set()
        await asyncio.Event().wait()

    until_stopped = RetryPolicy(initial=0.001, maximum=0.002, retries=None)
    running = asyncio.create_task(until_stopped.run(hangs, retry_on=(Flaky,), stop=stop))
    await started.wait()
    stop.set()
    with pytest.raises(Stopped):
        await running
