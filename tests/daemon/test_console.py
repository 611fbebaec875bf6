"""The console as `dersync run` serves it: a real daemon subprocess whose first operator comes
from DERSYNC_ADMIN_PASSWORD, whose probes stay open, and whose re-drive is sent at once by its
own next pass through its one AEMO client."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from dersync.mock import Simulator, SimulatorConfig
from dersync.store import Store
from dersync.testing import as_environment, free_port, http_get, load, nmi_for, record, wait_for
from tests.conftest import PARTICIPANT

ADMIN_PASSWORD = "secret-from-a-file-77"
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def sim_config(request: pytest.FixtureRequest) -> SimulatorConfig:
    """A slow AEMO for tests that need a pass to be under way for a while (`indirect`)."""
    return SimulatorConfig(participant_id=PARTICIPANT, seed=5, latency_seconds=getattr(request, "param", 0.0))


@pytest.fixture
def daemon_settings() -> dict[str, str]:
    """DERSYNC_* variables a test adds to its daemon's."""
    return {}


@pytest.fixture
async def daemon(database_url: str, simulator: Simulator, tmp_path: Path,
                 daemon_settings: dict[str, str]) -> AsyncIterator[dict[str, Any]]:
    """`dersync run` with a long sync interval (only its first pass and a re-drive's make it
    send) and the admin password in its setting (tests/test_settings.py reads it from a secret
    file)."""
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("DERSYNC_")},
           **as_environment(simulator.client_settings()), "DERSYNC_PARTICIPANT_ID": PARTICIPANT,
           "DERSYNC_DATABASE_URL": database_url, "DERSYNC_SYNC_INTERVAL_SECONDS": "3600",
           "DERSYNC_ADMIN_BIND": f"127.0.0.1:{port}", "DERSYNC_LOG_FORMAT": "json",
           "DERSYNC_ADMIN_PASSWORD": ADMIN_PASSWORD, **daemon_settings}
    log_path = tmp_path / "daemon.log"
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(sys.executable, "-m", "dersync", "run", env=env, cwd=tmp_path,
                                                       stdout=log_file, stderr=asyncio.subprocess.STDOUT)
        try:
            yield {"admin": f"http://127.0.0.1:{port}", "log": log_path, "process": process}
        finally:
            if process.returncode is None:
                process.terminate()
                await asyncio.wait_for(process.wait(), 60)


async def call(url: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": aiohttp.encode_basic_auth("admin", ADMIN_PASSWORD)}
    async with (aiohttp.ClientSession() as http,
                http.request(method, url, json=body, headers=headers, allow_redirects=False) as response):
        text = await response.text()
        return response.status, json.loads(text) if text.startswith(("{", "[")) else text


async def test_the_daemon_serves_the_console_and_sends_a_redrive_at_once(
    daemon: dict[str, Any], store: Store, simulator: Simulator
) -> None:
    """DERSYNC_ADMIN_PASSWORD makes user admin an operator; /healthz, /readyz and /metrics stay
    open while pages need a user; a re-drive through the API is sent by the leader's next pass
    at once (not an hour later), each NMI once; the password is in no log line."""
    await load(store, [record(nmi_for(i)) for i in range(4)])
    admin = daemon["admin"]
    await wait_for(lambda: _ok(admin + "/readyz"), "readiness")
    await wait_for(lambda: len(simulator.state.installations) == 4, "the first pass's records at AEMO")
    for path in ("/healthz", "/readyz", "/metrics"):
        assert (await http_get(admin + path))[0] == 200
    status, _body = await http_get(admin + "/api/v1/summary")
    assert status == 401
    async with (aiohttp.ClientSession() as http, http.get(admin + "/", allow_redirects=False) as response):
        assert response.status == 303

    status, summary = await call(admin + "/api/v1/summary")
    assert status == 200 and summary["records"]["synced"] == 4
    await wait_for(lambda: _no_pass_running(store), "the first pass to finish")
    simulator.state.reset_counters()
    status, answer = await call(admin + "/api/v1/redrive", "POST", {"nmis": [nmi_for(1), nmi_for(2)],
                                                                    "reason": "checking the console"})
    assert status == 200 and answer["count"] == 2 and answer["passRequested"] is True

    def sent() -> list[tuple[str, str]]:
        return sorted((r.method, r.path.rsplit("/", 1)[-1]) for r in simulator.state.request_log
                      if r.method == "PUT")

    await wait_for(lambda: len(sent()) == 4, "the re-driven records at AEMO")
    assert sent() == sorted([("PUT", nmi_for(1)), ("PUT", nmi_for(1)), ("PUT", nmi_for(2)), ("PUT", nmi_for(2))])
    status, page = await call(admin + f"/api/v1/nmis/{nmi_for(1)}")
    assert page["actions"][0]["actor"] == "admin" and page["actions"][0]["reason"] == "checking the console"

    daemon["process"].terminate()
    assert await asyncio.wait_for(daemon["process"].wait(), 60) == 0
    log = daemon["log"].read_text()
    assert '"event": "console.admin_user"' in log and ADMIN_PASSWORD not in log


@pytest.mark.parametrize("sim_config", [0.05], indirect=True)
@pytest.mark.parametrize("daemon_settings", [{"DERSYNC_CONCURRENCY": "1", "DERSYNC_STORE_BATCH_SIZE": "10"}])
async def test_a_redrive_during_a_pass_is_sent_by_the_pass_that_follows_it(
    daemon: dict[str, Any], store: Store, simulator: Simulator
) -> None:
    """A record re-driven while a pass runs, after that pass has already sent it, is sent again by
    another pass right after (not at the next scheduled interval, an hour later)."""
    await load(store, [record(nmi_for(i)) for i in range(40)])
    first = nmi_for(0)
    await wait_for(lambda: first in simulator.state.installations, "the first record at AEMO")
    assert len(simulator.state.installations) < 40  # the pass is still going
    status, answer = await call(daemon["admin"] + "/api/v1/redrive", "POST", {"nmis": [first]})
    assert status == 200 and answer["passRequested"] is True

    def puts() -> int:
        return sum(1 for r in simulator.state.request_log if r.method == "PUT" and r.path.endswith(first))

    await wait_for(lambda: puts() == 2, "the re-driven record sent again", deadline=90)
    assert len(simulator.state.installations) == 40


async def _ok(url: str) -> bool:
    return (await http_get(url))[0] == 200


async def _no_pass_running(store: Store) -> bool:
    return not (await store.console_overview())["running"]
