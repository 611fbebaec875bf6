"""Throttling (strict sliding 60 s window) and seeded fault injection."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from dersync.mock import Simulator, SimulatorConfig, run_simulator
from dersync.mock.throttle import SlidingWindowThrottle

from .helpers import NMI_A, NMI_B, Api, installation


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_sliding_window_is_strict() -> None:
    """No half-open 60 s window may hold more than the limit, even across a minute boundary."""
    clock = FakeClock()
    th = SlidingWindowThrottle(3, clock)
    assert [th.try_acquire() for _ in range(4)] == [True, True, True, False]
    clock.t += 59.9
    assert not th.try_acquire()  # a fixed-window limiter might allow this one
    assert th.seconds_until_free() == pytest.approx(0.1)
    clock.t += 0.1
    assert th.try_acquire()
    assert th.max_in_window == 3


@pytest.mark.parametrize("sim_config", [{"rate_limit_per_minute": 5}], indirect=True)
async def test_throttle_429_past_limit(api: Api, sim: Simulator) -> None:
    """The 6th API call inside 60 s is 429 (no Retry-After by default); the window frees up as time passes."""
    await api.token()
    statuses = [(await api.call("GET", api.nmi_url(f"/{NMI_A}"))).status for _ in range(7)]
    assert statuses == [404] * 5 + [429] * 2
    r = await api.call("GET", api.inst_url(f"/{NMI_A}"))  # both APIs share one window
    assert r.status == 429 and "Retry-After" not in r.headers
    assert r.body["errors"][0]["code"] == "429"
    assert await api.fetch_token()  # OAuth is not throttled
    assert sim.state.throttled_total == 3
    assert sim.state.max_requests_in_any_window == 5
    sim.clock.advance(60)
    assert (await api.call("GET", api.nmi_url(f"/{NMI_A}"))).status == 404
    assert sim.state.max_requests_in_any_window == 5
    assert sim.state.count(status=429) == 3


@pytest.mark.parametrize("sim_config", [{"rate_limit_per_minute": 1, "retry_after_seconds": 2.5}], indirect=True)
async def test_throttle_retry_after_when_configured(api: Api) -> None:
    """retry_after_seconds adds a Retry-After header (whole seconds, rounded up) to 429 answers."""
    await api.call("GET", api.nmi_url(f"/{NMI_A}"))
    r = await api.call("GET", api.nmi_url(f"/{NMI_A}"))
    assert r.status == 429 and r.headers["Retry-After"] == "3"


@pytest.mark.parametrize(
    ("sim_config", "status"),
    [({"fault_rate": 1.0, "fault_kinds": ("500",)}, 500), ({"fault_rate": 1.0, "fault_kinds": ("503",)}, 503)],
    indirect=["sim_config"],
)
async def test_fault_status(api: Api, sim: Simulator, status: int) -> None:
    """500/503 faults answer with the documented error body and do not apply the change."""
    r = await api.create_nmi(NMI_A)
    assert r.status == status and r.body["errors"][0]["code"] == str(status)
    assert not sim.state.nmis and sim.state.faults[str(status)] == 1


@pytest.mark.parametrize(
    ("sim_config", "applied"),
    [({"fault_rate": 1.0, "fault_kinds": ("drop",)}, False),
     ({"fault_rate": 1.0, "fault_kinds": ("drop_after_apply",)}, True)],
    indirect=["sim_config"],
    ids=["drop", "drop_after_apply"],
)
async def test_fault_drop(api: Api, sim: Simulator, applied: bool) -> None:
    """A dropped connection gives the client no answer; drop_after_apply has applied the change anyway."""
    with pytest.raises(aiohttp.ClientError):
        await api.create_nmi(NMI_A)
    assert (NMI_A in sim.state.nmis) is applied
    assert sim.state.count(route="nmi_create", status=0) == 1


@pytest.mark.parametrize(
    "sim_config", [{"fault_rate": 1.0, "fault_kinds": ("slow",), "slow_fault_seconds": 60}], indirect=True
)
async def test_fault_slow_applies_then_answers_late(api: Api, sim: Simulator) -> None:
    """A "slow" fault applies the change at once but holds the answer back for
    slow_fault_seconds, so a client with a shorter timeout gives up on a write AEMO made."""
    answer = asyncio.create_task(api.create_nmi(NMI_A))
    try:
        while NMI_A not in sim.state.nmis:  # poll: the write lands before the answer
            assert not answer.done(), answer
            await asyncio.sleep(0.01)
        assert not answer.done()
        assert sim.state.faults["slow"] == 1
    finally:
        answer.cancel()


async def _statuses(session: aiohttp.ClientSession, seed: int) -> list[int]:
    async with run_simulator(SimulatorConfig(fault_rate=0.5, fault_kinds=("500", "503"), seed=seed)) as sim:
        api = Api(sim, session)
        return [(await api.call("GET", api.nmi_url(f"/{NMI_B}"))).status for _ in range(20)]


async def test_faults_are_seeded(session: aiohttp.ClientSession) -> None:
    """The same seed gives the same fault sequence; roughly fault_rate of calls fail."""
    first = await _statuses(session, 7)
    second = await _statuses(session, 7)
    assert first == second
    assert 3 <= sum(s in (500, 503) for s in first) <= 17
    assert set(first) <= {404, 500, 503}


@pytest.mark.parametrize("sim_config", [{"fault_rate": 1.0, "fault_kinds": ("500",), "rate_limit_per_minute": 2}],
                         indirect=True)
async def test_throttle_before_faults(api: Api, sim: Simulator) -> None:
    """Throttling is decided before fault injection: a throttled call is 429, not a fault."""
    statuses = [(await api.create_installation(installation(NMI_A))).status for _ in range(3)]
    assert statuses == [500, 500, 429]


@pytest.mark.parametrize("sim_config", [{"outage_after_requests": 2, "outage_seconds": 180}], indirect=True)
async def test_outage_answers_503_for_its_window_then_recovers(api: Api, sim: Simulator,
                                                              session: aiohttp.ClientSession) -> None:
    """After the configured number of admitted API calls, every call is 503 (nothing applied) for
    outage_seconds by the simulator's clock, whatever arrives meanwhile; OAuth stays up; then
    AEMO answers again. /_sim/counters says when the outage began and ends."""
    assert (await api.call("GET", api.nmi_url(f"/{NMI_B}"))).status == 404
    assert (await api.call("GET", api.nmi_url(f"/{NMI_B}"))).status == 404
    r = await api.create_nmi(NMI_A)
    assert r.status == 503 and r.body["errors"][0]["code"] == "503"
    assert [(await api.call("GET", api.nmi_url(f"/{NMI_B}"))).status for _ in range(3)] == [503] * 3
    assert await api.fetch_token()
    assert not sim.state.nmis and sim.state.faults["outage_503"] == 4
    async with session.get(sim.url + "/_sim/counters") as response:
        counters = await response.json()
    assert counters["outage"]["ends"] - counters["outage"]["started"] == 180
    assert counters["faults"] == {"outage_503": 4} and counters["nmis"] == 0
    sim.clock.advance(179.9)
    assert (await api.call("GET", api.nmi_url(f"/{NMI_B}"))).status == 503
    sim.clock.advance(0.1)
    assert (await api.create_nmi(NMI_A)).status == 201
    assert NMI_A in sim.state.nmis
