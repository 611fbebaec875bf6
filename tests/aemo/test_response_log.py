"""Which AEMO answers `aemo.response` logs at which level, as the README's log table says: a
successful GET at debug, a successful write or a 4xx other than 429 at info, 429 and 5xx at
warning; no answer at all is `aemo.no_response` at warning."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from dersync.aemo import AemoClient
from dersync.errors import RetriableError
from dersync.mock import SimulatorConfig, run_simulator
from dersync.testing import connection, installation, nmi_details, nmi_for

from .conftest import PARTICIPANT, build_settings

README = Path(__file__).parents[2] / "README.md"


def levels(logs: list[dict[str, Any]]) -> list[tuple[str, int | None, str]]:
    return [(e["method"], e["status"], e["log_level"]) for e in logs if e["event"].startswith("aemo.")
            and e["event"] != "aemo.token.fetched"]


async def test_answers_are_logged_at_the_levels_the_readme_gives(client: AemoClient) -> None:
    """GET 200 debug; GET 404, POST 201 and a 422 rejection info; and the README says so."""
    with capture_logs() as logs:
        await client.installation.find([nmi_for(0)])
        await client.nmi.get(nmi_for(0))
        await client.nmi.create(nmi_details(nmi_for(0)))
        await client.installation.create(installation(nmi_for(0), connections=[
            connection(f"C-{nmi_for(0)}-1", equipment_type="Fuel Cell")]))
    assert levels(logs) == [("GET", 200, "debug"), ("GET", 404, "info"), ("POST", 201, "info"),
                            ("POST", 422, "info")]
    readme = " ".join(README.read_text().split())
    assert "`debug` for a successful GET, `info` for a successful write and for a 4xx other than 429" in readme
    assert "`warning` for 429 and 5xx" in readme


@pytest.mark.parametrize(("config", "status"), [
    ({"fault_rate": 1.0, "fault_kinds": ("503",)}, 503),
    ({"rate_limit_per_minute": 1}, 429),
])
async def test_throttling_and_server_errors_are_warnings(config: dict[str, Any], status: int) -> None:
    """A 503 or a 429 is a warning (the simulator refuses every try, so the retries run out)."""
    async with (run_simulator(SimulatorConfig(participant_id=PARTICIPANT, seed=1, **config)) as sim,
                AemoClient(build_settings(sim, max_retries=1)) as client):
        with capture_logs() as logs, pytest.raises(RetriableError):
            await client.nmi.get(nmi_for(1))
            await client.nmi.get(nmi_for(2))
    assert ("GET", status, "warning") in levels(logs)
