"""Fixtures for the AEMO client tests: the project's simulator over loopback HTTP, settings aimed
at it, a client, and two test aids that stand in for nothing on the network:

* `fault_seed`: a simulator seed whose seeded fault draws give a wanted sequence (e.g. fault,
  then no fault), found with the simulator's own `pick_fault`, so "retried then OK" is
  deterministic;
* `virtual_loop`: an asyncio event loop whose clock jumps straight to the next timer instead of
  sleeping, so the `Pacer` (aiolimiter reads `loop.time()`) can be measured over minutes of
  virtual time without a single real sleep or timing assertion.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import pytest

from dersync.aemo import AemoClient
from dersync.mock import Simulator, SimulatorConfig, run_simulator
from dersync.settings import Settings

PARTICIPANT = "NETOP"


@pytest.fixture
def sim_options() -> dict[str, Any]:
    """Simulator switches; parametrise `sim_options` in a test to change them."""
    return {}


@pytest.fixture
async def sim(sim_options: dict[str, Any]) -> AsyncIterator[Simulator]:
    config = SimulatorConfig(**{"participant_id": PARTICIPANT, "seed": 7, **sim_options})
    async with run_simulator(config) as simulator:
        yield simulator


def build_settings(sim: Simulator, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        participant_id=PARTICIPANT,
        retry_backoff_initial_seconds=0.001,
        retry_backoff_max_seconds=0.005,
        max_retries=3,
        request_timeout_seconds=5.0,
    )
    values.update(sim.client_settings())
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings_for(sim: Simulator) -> Callable[..., Settings]:
    """Settings aimed at `sim` with tiny backoff; keyword arguments override."""
    return lambda **overrides: build_settings(sim, **overrides)


@pytest.fixture
def settings(settings_for: Callable[..., Settings]) -> Settings:
    return settings_for()


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AemoClient]:
    async with AemoClient(settings) as aemo:
        yield aemo


@pytest.fixture
def fault_seed() -> Callable[..., int]:
    """`fault_seed(pattern, rate=...)`: a seed whose fault draws begin with `pattern` (None = no fault)."""

    def find(pattern: Sequence[str | None], *, rate: float = 0.5, kinds: Sequence[str] | None = None) -> int:
        kinds = tuple(kinds or sorted({p for p in pattern if p is not None}))
        for seed in range(10_000):
            probe = Simulator(SimulatorConfig(fault_rate=rate, fault_kinds=kinds, seed=seed))
            if [probe.pick_fault() for _ in pattern] == list(pattern):
                return seed
        raise AssertionError(f"no seed gives {pattern}")

    return find


class _FastForwardSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """Polls real file descriptors without blocking; when nothing is ready and the loop would
    sleep until its next timer, moves the loop's virtual clock there instead."""

    def __init__(self) -> None:
        super().__init__()
        self.loop: VirtualClockLoop | None = None

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or timeout is None or timeout <= 0:
            return ready if ready or timeout is not None else super().select(None)
        assert self.loop is not None
        # A real clock always moves on; a float sum may not (100.0 + 1e-15 == 100.0), so step at
        # least a microsecond, far below anything the tests count.
        self.loop.virtual_now += max(timeout, 1e-6)
        return []


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time: `time()` starts at 0 and jumps to each timer.

    Each reading of the clock also moves it on by `TICK` (as running code takes real time).
    Without that, aiolimiter can schedule a wake-up a rounding error (1e-17 s) ahead, which in
    float arithmetic is "now", and spin for ever on a clock that never moves.
    """

    TICK = 1e-7

    def __init__(self) -> None:
        selector = _FastForwardSelector()
        self.virtual_now = 0.0
        super().__init__(selector)
        selector.loop = self

    def time(self) -> float:
        self.virtual_now += self.TICK
        return self.virtual_now


@pytest.fixture
def virtual_loop() -> Iterator[VirtualClockLoop]:
    loop = VirtualClockLoop()
    try:
        yield loop
    finally:
        loop.close()
