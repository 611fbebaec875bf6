"""Fixtures for the AEMO simulator tests: a running simulator and a raw HTTP helper."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from dersync.mock import Simulator, SimulatorConfig, run_simulator

from .helpers import Api


@pytest.fixture
def sim_config(request: pytest.FixtureRequest) -> SimulatorConfig:
    """Config for the ``sim`` fixture; parametrize ``sim_config`` indirectly with a dict."""
    return SimulatorConfig(**getattr(request, "param", {}))


@pytest.fixture
async def sim(sim_config: SimulatorConfig) -> AsyncIterator[Simulator]:
    async with run_simulator(sim_config) as s:
        yield s


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(auto_decompress=True) as s:
        yield s


@pytest.fixture
async def api(sim: Simulator, session: aiohttp.ClientSession) -> Api:
    return Api(sim, session)
