"""AEMO's 6000-requests-per-minute limit, enforced strictly.

AEMO documents only "6000 requests per minute ... 429 Too Many Requests", not the algorithm. The
simulator takes the strictest reading a client could meet: a sliding 60 s window over *accepted*
requests, so no half-open interval ``(t - 60 s, t]`` may ever hold more than the limit. A client
that bursts at the top of each minute fails here even if a fixed-window gateway would let it pass.
Rejected (429) requests do not enter the window. Amortised O(1): one deque of timestamps.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

WINDOW_SECONDS = 60.0


class SlidingWindowThrottle:
    """Admit a request iff the window would then hold at most ``limit`` requests."""

    def __init__(self, limit: int, clock: Callable[[], float], window: float = WINDOW_SECONDS) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._stamps: deque[float] = deque()
        #: Largest number of accepted requests any window has held.
        self.max_in_window = 0

    def _prune(self, now: float) -> None:
        edge = now - self.window
        stamps = self._stamps
        while stamps and stamps[0] <= edge:
            stamps.popleft()

    def try_acquire(self) -> bool:
        """Record and admit one request, or refuse it (nothing recorded) when over the limit."""
        now = self._clock()
        self._prune(now)
        if self.limit > 0 and len(self._stamps) >= self.limit:
            return False
        self._stamps.append(now)
        self.max_in_window = max(self.max_in_window, len(self._stamps))
        return True

    def in_window(self) -> int:
        self._prune(self._clock())
        return len(self._stamps)

    def seconds_until_free(self) -> float:
        """How long until the oldest request leaves the window (0 when there is room)."""
        now = self._clock()
        self._prune(now)
        if self.limit <= 0 or len(self._stamps) < self.limit:
            return 0.0
        return max(0.0, self._stamps[0] + self.window - now)
