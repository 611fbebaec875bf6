"""The event loop every dersync command runs on: uvloop where it is installed (a dependency on
Linux and macOS, so in the container), asyncio's own loop elsewhere.

Why: a pass is a stream of small HTTP requests, and the loop's own work per request (scheduling
callbacks, futures, the socket reads and writes) was about a quarter of the client's CPU in the
profile of a headroom pass (benchmarks/results/2026-12-03T124626Z-profile.md: asyncio 10%, socket
calls ~14%). uvloop does the same work in C (libuv); its loop is a drop-in for asyncio's, so
aiohttp, asyncpg and aiosqlite run on it unchanged. The benchmarks call `run` too, so that they
measure what operators run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop constructor, or None (asyncio's default) where uvloop is not installed."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def chosen_loop_name() -> str:
    """"uvloop" or "asyncio": the loop `run` starts here."""
    return "asyncio" if loop_factory() is None else "uvloop"


def running_loop_name() -> str:
    """"uvloop" or "asyncio": the loop this coroutine runs on (the daemon logs it when ready)."""
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on the chosen loop (Ctrl-C cancels `main` and raises KeyboardInterrupt,
    as asyncio.run does)."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
