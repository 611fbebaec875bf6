"""What the console needs of the process that serves it (the daemon), kept to plain callables so
that the console owns no scheduler, no lease and no AEMO client of its own."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dersync.aemo.client import AemoClient
from dersync.console.live import LiveJobs


def _nothing() -> bool:
    return False


@dataclass
class Runtime:
    """The serving process's side of the console.

    `client` is the daemon's one AEMO client (its pacer is the one request budget, its guard the
    sender lease: a standby's client refuses to send). `pass_soon` asks the leader to run a sync
    pass now rather than at the next interval (False when this replica cannot: a standby).
    """

    role: Callable[[], str]
    replica: Callable[[], str | None]
    token_state: Callable[[], str]
    client: Callable[[], AemoClient | None]
    live: LiveJobs
    pass_soon: Callable[[], bool] = _nothing
