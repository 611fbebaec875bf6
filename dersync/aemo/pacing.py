"""How fast to call AEMO: the request budget shared by both APIs.

AEMO allows 6000 requests per minute across the DER Register APIs and answers 429 beyond it; the
simulator (and possibly AEMO's gateway) counts over a *sliding* 60 s window. aiolimiter's
`AsyncLimiter(max_rate, period)` is a leaky bucket whose burst equals `max_rate` and which starts
empty, so `AsyncLimiter(6000, 60)` admits 6000 requests at once and ~12,000 in the first minute.

`Pacer` therefore uses a *small* bucket. With `P` = per_minute:

* burst `b = max(1, P / 600)`: a tenth of a second's worth at full rate (10 for 6000/min), and at
  least one request so that `acquire()` is always possible;
* leak rate `r = (P - b) / (60 + SEND_JITTER_SECONDS)` per second.

A leaky bucket admits at most `b + r * T` requests in any interval of length `T` (at most `b` of
capacity can be unused at the interval's start, and `r * T` leaks out during it). So any 60 s
window sees at most `b + 60 r < P`; and because requests reach AEMO a little after `acquire()`
returns (a few ms on an idle connection), the bound still holds at AEMO's end as long as
acquire-to-arrival delays differ by less than `SEND_JITTER_SECONDS` within a window:
`b + r * (60 + SEND_JITTER_SECONDS) = P`. Any 1 s window sees at most `b + r ~ P/60 + P/600`,
well under `P/30` for P >= 60. Sustained throughput is `60 r / P = (1 - b/P) * 60 / 60.25`, which
is 0.994 of P at 6000/min (and at least 0.98 of P for any P >= 64).

The budget is per process; one `Pacer` must be shared by every client in the process (sync and
reconciliation), which `AemoClient(settings, pacer=...)` allows.
"""

from __future__ import annotations

import math

from aiolimiter import AsyncLimiter

#: Seconds of bucket capacity (the burst is this much traffic at full rate).
BUCKET_SECONDS = 0.1
#: Allowance for requests reaching AEMO slightly after `acquire()` returned.
SEND_JITTER_SECONDS = 0.25
WINDOW_SECONDS = 60.0


def pacing_parameters(per_minute: int) -> tuple[float, float]:
    """(burst, rate per second) for a budget of `per_minute`; see the module docstring."""
    if per_minute < 1:
        raise ValueError("per_minute must be at least 1")
    burst = max(1.0, per_minute * BUCKET_SECONDS / WINDOW_SECONDS)
    rate = (per_minute - burst) / (WINDOW_SECONDS + SEND_JITTER_SECONDS)
    if rate <= 0:  # per_minute == 1: one request, then one a minute at most
        rate = 1.0 / (WINDOW_SECONDS + SEND_JITTER_SECONDS)
    return burst, rate


def worst_case_in_window(per_minute: int, seconds: float) -> int:
    """The most requests the pacer can admit in any interval of `seconds`: `floor(b + r * T)`."""
    burst, rate = pacing_parameters(per_minute)
    return math.floor(burst + rate * seconds + 1e-9)


class Pacer:
    """The request budget shared by both AEMO APIs: at most `per_minute` in any 60 s window."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self.burst, self.rate_per_second = pacing_parameters(per_minute)
        # An AsyncLimiter(max_rate=b, period=b/r) leaks r per second and bursts b.
        self._limiter = AsyncLimiter(self.burst, self.burst / self.rate_per_second)
        #: Requests admitted so far (for tests and metrics).
        self.acquired = 0

    async def acquire(self) -> None:
        """Wait until one more request fits the budget (every attempt, retries included)."""
        await self._limiter.acquire()
        self.acquired += 1

    def __repr__(self) -> str:
        return f"Pacer(per_minute={self.per_minute}, burst={self.burst:g}, rate={self.rate_per_second:.3f}/s)"
