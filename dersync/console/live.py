"""The pass running now, as the overview shows it live: records done of those due, requests per
minute against the budget, 429s and retries. The daemon reports its jobs here (`started`,
`progress`, `finished`); the counts come from the one AEMO client's own statistics, read by
difference from the pass's start, as the pass summary reads them."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dersync.aemo.client import ClientStats

#: Requests per minute are measured over about this many seconds (the budget's own window).
RATE_WINDOW_SECONDS = 60.0


@dataclass
class _Job:
    kind: str
    started: float
    started_at: datetime
    baseline: ClientStats | None
    done: int = 0
    due: int | None = None
    #: (monotonic time, requests so far): one sample at least a window old is kept as the base.
    samples: deque[tuple[float, int]] = field(default_factory=deque)


class LiveJobs:
    """What this process is doing now (a sync pass, a reconciliation), for the overview."""

    def __init__(self, stats: Callable[[], ClientStats | None], budget_per_minute: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._stats = stats
        self.budget_per_minute = budget_per_minute
        self._clock = clock
        self._jobs: dict[str, _Job] = {}
        self._last_sample = 0.0

    def started(self, kind: str) -> None:
        now = self._clock()
        stats = self._stats()
        job = _Job(kind, now, datetime.now(UTC), stats)
        job.samples.append((now, 0))
        self._jobs[kind] = job

    def progress(self, done: int, due: int) -> None:
        """The sync engine's progress callback (called once per recorded record)."""
        job = self._jobs.get("sync")
        if job is None:
            return
        job.done, job.due = done, due
        now = self._clock()
        if now - self._last_sample >= 1.0:
            self._last_sample = now
            self._sample(job, now)

    def finished(self, kind: str) -> None:
        self._jobs.pop(kind, None)

    def _requests(self, job: _Job) -> tuple[int, int, int]:
        stats = self._stats()
        if stats is None or job.baseline is None:
            return 0, 0, 0
        return (stats.requests - job.baseline.requests, stats.throttled - job.baseline.throttled,
                stats.retries - job.baseline.retries)

    def _sample(self, job: _Job, now: float) -> None:
        requests, _throttled, _retries = self._requests(job)
        job.samples.append((now, requests))
        while len(job.samples) > 2 and job.samples[1][0] <= now - RATE_WINDOW_SECONDS:
            job.samples.popleft()

    def snapshot(self) -> list[dict[str, Any]]:
        """The jobs running now, with their live counts."""
        now = self._clock()
        shown = []
        for job in list(self._jobs.values()):
            self._sample(job, now)
            requests, throttled, retries = self._requests(job)
            base_time, base_requests = job.samples[0]
            span = now - base_time
            rate = (requests - base_requests) / span * 60 if span >= 1.0 else None
            shown.append({"kind": job.kind, "started": job.started_at, "seconds": round(now - job.started, 1),
                          "done": job.done, "due": job.due, "requests": requests, "throttled": throttled,
                          "retries": retries, "requestsPerMinute": None if rate is None else round(rate),
                          "budgetPerMinute": self.budget_per_minute})
        return shown
