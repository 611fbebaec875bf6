"""The one retry policy: how long to wait before trying again, and when to give up.

Built from the settings (`RetryPolicy.from_settings`): exponential backoff from
`retry_backoff_initial_seconds` doubling up to `retry_backoff_max_seconds`, with full jitter
unless `retry_jitter` is off, at most `max_retries` retries after the first attempt, and a
server's usable `Retry-After` preferred to the computed wait (capped at the maximum, so one
header cannot stall a pass). Every place dersync tries again uses it:

* each request to AEMO's NMI and Installation APIs (`aemo.transport`, whose failure table says
  which failures are retried at all);
* fetching an OAuth token (`aemo.auth`);
* the rounds at the end of a sync pass for records whose requests failed retriably
  (`sync.engine`, two rounds);
* the daemon's wait for its first token, and its next sync pass after a failed one
  (`daemon.service`, until stopped).

Full jitter (uniform in `[0, ceiling]`) spreads concurrent retries out instead of synchronising
them. A `Retry-After` of 0, a negative or an unparseable value is no hint: an instant-retry
loop on `Retry-After: 0` is a known trap.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from dersync.settings import Settings

T = TypeVar("T")

#: Called before each wait: (retry number, the failure, seconds it will wait).
OnRetry = Callable[[int, BaseException, float], None]


class Stopped(Exception):
    """Raised by `RetryPolicy.run` when its stop event was set before an attempt succeeded."""


@dataclass(frozen=True)
class RetryPolicy:
    initial: float
    maximum: float
    #: Retries allowed after the first attempt; None: until stopped.
    retries: int | None
    jitter: bool = True
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(initial=settings.retry_backoff_initial_seconds, maximum=settings.retry_backoff_max_seconds,
                   retries=settings.max_retries, jitter=settings.retry_jitter)

    def with_retries(self, retries: int | None) -> RetryPolicy:
        """The same waits with another limit (the pass's rounds; the daemon's until-stopped)."""
        return replace(self, retries=retries)

    def may_retry(self, retries_done: int) -> bool:
        return self.retries is None or retries_done < self.retries

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `retry` (1 for the first retry)."""
        if retry_after is not None and retry_after > 0:
            return min(retry_after, self.maximum)
        ceiling = min(self.maximum, self.initial * 2 ** max(0, retry - 1))
        return self.rng.uniform(0, ceiling) if self.jitter else ceiling

    async def pause(self, retry: int, *, retry_after: float | None = None,
                    stop: asyncio.Event | None = None) -> bool:
        """Wait before retry `retry`; False (at once) if `stop` is set meanwhile."""
        return await _slept(self.delay(retry, retry_after), stop)

    async def run(self, attempt: Callable[[], Awaitable[T]], *, retry_on: tuple[type[BaseException], ...],
                  stop: asyncio.Event | None = None, on_retry: OnRetry | None = None) -> T:
        """Call `attempt` until it returns, raises something not in `retry_on`, or the retries run
        out (the last failure is raised). With `stop`, an attempt under way is abandoned as soon
        as it is set, and `Stopped` is raised."""
        retry = 0
        while True:
            try:
                return await _until(attempt(), stop)
            except retry_on as exc:
                if not self.may_retry(retry):
                    raise
                retry += 1
                wait = self.delay(retry, getattr(exc, "retry_after", None))
                if on_retry is not None:
                    on_retry(retry, exc, wait)
                if not await _slept(wait, stop):
                    raise Stopped("stopped while waiting to retry") from exc


async def _until(awaitable: Awaitable[T], stop: asyncio.Event | None) -> T:
    if stop is None:
        return await awaitable
    if stop.is_set():
        if asyncio.iscoroutine(awaitable):
            awaitable.close()
        raise Stopped("stopped before the attempt")
    work = asyncio.ensure_future(awaitable)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({work, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if not work.done():
        work.cancel()
        raise Stopped("stopped during the attempt")
    return work.result()


async def _slept(seconds: float, stop: asyncio.Event | None) -> bool:
    if stop is None:
        await asyncio.sleep(seconds)
        return True
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return True
    return False


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP date), else None.

    0, negative, non-finite and unparseable values are "no hint": the caller falls back to its
    own backoff rather than retrying at once.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    seconds: float | None
    try:
        seconds = float(text)
    except ValueError:
        seconds = _seconds_until_http_date(text, now)
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        return None
    return seconds


def _seconds_until_http_date(text: str, now: datetime | None) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return (when - now).total_seconds()
