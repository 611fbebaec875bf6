"""`dersync run` as operators run it: a real subprocess, the simulator, the admin endpoints."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from dersync.mock import Simulator, SimulatorConfig
from dersync.store import Store
from dersync.testing import (
    as_environment,
    free_port,
    http_get,
    load,
    nmi_for,
    read_back,
    record,
    wait_for,
)
from tests.conftest import PARTICIPANT

DEADLINE_SECONDS = 60


@pytest.fixture
def sim_config() -> SimulatorConfig:
    return SimulatorConfig(participant_id=PARTICIPANT, seed=3, latency_seconds=0.01)


@pytest.fixture
async def daemon(database_url: str, simulator: Simulator, tmp_path: Path) -> AsyncIterator[dict[str, Any]]:
    port = free_port()
    env = {
        **os.environ,
        **as_environment(simulator.client_settings()),
        "DERSYNC_DATABASE_URL": database_url,
        "DERSYNC_SYNC_INTERVAL_SECONDS": "0.5",
        "DERSYNC_ADMIN_BIND": f"127.0.0.1:{port}",
        "DERSYNC_LOG_FORMAT": "json",
        "DERSYNC_CONCURRENCY": "4",
        "DERSYNC_STORE_BATCH_SIZE": "20",
        "DERSYNC_SHUTDOWN_GRACE_SECONDS": "20",
    }
    log_path = tmp_path / "daemon.log"
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "dersync", "run", env=env, cwd=tmp_path, stdout=log_file,
            stderr=asyncio.subprocess.STDOUT
        )
        try:
            yield {"process": process, "admin": f"http://127.0.0.1:{port}", "log": log_path,
                   "database_url": database_url}
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


async def test_daemon_syncs_records_fed_while_running_and_reports_metrics(
    daemon: dict[str, Any], store: Store, simulator: Simulator
) -> None:
    """Records written to the store while the daemon runs arrive at AEMO on the next scheduled
    pass; /healthz, /readyz and /metrics answer with real values."""
    await wait_for(lambda: _status_is(daemon["admin"] + "/readyz", 200), "readiness")
    await load(store, [record(nmi_for(i)) for i in range(5)])
    await wait_for(lambda: len(simulator.state.installations) == 5, "first records at AEMO")
    await load(store, [record(nmi_for(i)) for i in range(5, 8)])
    await wait_for(lambda: len(simulator.state.installations) == 8, "later records at AEMO")

    assert (await http_get(daemon["admin"] + "/healthz"))[0] == 200
    await wait_for(lambda: _metrics_show(daemon["admin"], 'dersync_records{state="synced"} 8.0'), "metrics")
    _status, metrics = await http_get(daemon["admin"] + "/metrics")
    assert 'dersync_aemo_requests_total{api="installation",method="POST",status="201"}' in metrics
    assert "dersync_last_success_timestamp_seconds" in metrics
    assert 'dersync_compliance_connections{state="overdue"}' in metrics  # refreshed at start


async def test_sigterm_mid_pass_exits_0_with_nothing_half_recorded(
    daemon: dict[str, Any], store: Store, simulator: Simulator
) -> None:
    """SIGTERM during a pass: in-flight requests finish and are recorded, the process exits 0, and
    every record is either synced (and at AEMO as in the store) or still due."""
    await load(store, [record(nmi_for(i)) for i in range(150)])
    await wait_for(lambda: len(simulator.state.installations) >= 10, "the pass to be under way")
    daemon["process"].send_signal(signal.SIGTERM)
    code = await asyncio.wait_for(daemon["process"].wait(), timeout=DEADLINE_SECONDS)

    assert code == 0
    status = await store.status()
    assert status["records"]["synced"] + status["due"] == 150
    report = await read_back(store, simulator.state)
    assert report.ok, report
    log = daemon["log"].read_text()
    assert '"event": "daemon.stopped"' in log
    assert simulator.config.client_secret not in log


async def _status_is(url: str, expected: int) -> bool:
    return (await http_get(url))[0] == expected


async def _metrics_show(admin: str, line: str) -> bool:
    return line in (await http_get(admin + "/metrics"))[1]


async def test_sigterm_while_waiting_for_the_first_token_stops_at_once_and_says_so(
    database_url: str, simulator: Simulator, tmp_path: Path
) -> None:
    """A daemon whose OAuth endpoint cannot be reached keeps trying (not ready) until stopped;
    SIGTERM then ends the wait at once: no further token attempt after `daemon.stopping`, exit
    0, and the `daemon.stopped` line the README promises."""
    env = {
        **os.environ,
        **as_environment(simulator.client_settings()),
        "DERSYNC_OAUTH_TOKEN_URL": f"http://127.0.0.1:{free_port()}/oauth/v1/token",  # nothing listens
        "DERSYNC_DATABASE_URL": database_url,
        "DERSYNC_ADMIN_BIND": f"127.0.0.1:{free_port()}",
        "DERSYNC_LOG_FORMAT": "json",
        "DERSYNC_RETRY_BACKOFF_INITIAL_SECONDS": "0.2",
        "DERSYNC_RETRY_BACKOFF_MAX_SECONDS": "2",
    }
    log_path = tmp_path / "daemon.log"
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "dersync", "run", env=env, cwd=tmp_path, stdout=log_file,
            stderr=asyncio.subprocess.STDOUT)
    try:
        await wait_for(lambda: '"aemo.token.retry"' in log_path.read_text(), "a failed token attempt")
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), timeout=DEADLINE_SECONDS)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    events = [json.loads(line)["event"] for line in log_path.read_text().splitlines() if line.startswith("{")]
    assert code == 0
    stopping = events.index("daemon.stopping")
    assert "aemo.token.retry" not in events[stopping:], events[stopping:]
    assert events[-1] == "daemon.stopped", events[-5:]


async def test_readiness_follows_the_token_a_replica_actually_holds(
    database_url: str, simulator: Simulator, tmp_path: Path
) -> None:
    """Every replica keeps its token fresh (a standby too, so it can take over at once), and
    /readyz says what it really holds: when tokens lapse and AEMO's OAuth endpoint cannot issue
    a new one, it answers 503 with `"token": "none"`; once the endpoint is back, 200 again."""
    simulator.config.token_lifetime_seconds = 3
    env = {
        **os.environ,
        **as_environment(simulator.client_settings()),
        "DERSYNC_DATABASE_URL": database_url,
        "DERSYNC_ADMIN_BIND": f"127.0.0.1:{free_port()}",
        "DERSYNC_LOG_FORMAT": "json",
        "DERSYNC_TOKEN_REFRESH_MARGIN_SECONDS": "1",
        "DERSYNC_RETRY_BACKOFF_INITIAL_SECONDS": "0.05",
        "DERSYNC_RETRY_BACKOFF_MAX_SECONDS": "0.2",
        "DERSYNC_MAX_RETRIES": "1",
    }
    admin = "http://127.0.0.1:" + env["DERSYNC_ADMIN_BIND"].rpartition(":")[2]
    with (tmp_path / "daemon.log").open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "dersync", "run", env=env, cwd=tmp_path, stdout=log_file,
            stderr=asyncio.subprocess.STDOUT)
    try:
        await wait_for(lambda: _status_is(admin + "/readyz", 200), "readiness")
        issued = simulator.state.token_issued_total
        await wait_for(lambda: simulator.state.token_issued_total >= issued + 2, "tokens renewed while idle")
        assert await _status_is(admin + "/readyz", 200)

        simulator.config.oauth_fault_rate = 1.0  # AEMO's OAuth endpoint answers 500 from now on
        await wait_for(lambda: _status_is(admin + "/readyz", 503), "readiness lost with the token")
        _status, body = await http_get(admin + "/readyz")
        assert json.loads(body)["token"] == "none", body

        simulator.config.oauth_fault_rate = 0.0
        await wait_for(lambda: _status_is(admin + "/readyz", 200), "readiness back with a new token")
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), timeout=DEADLINE_SECONDS)


async def test_a_hand_run_sync_beside_the_daemon_is_refused(
    daemon: dict[str, Any], simulator: Simulator, store: Store, tmp_path: Path
) -> None:
    """`dersync sync` run by hand while the daemon holds the sender lease does not send beside
    it: it exits 1 saying another process is sending, and the daemon's work is untouched."""
    await wait_for(lambda: _status_is(daemon["admin"] + "/readyz", 200), "readiness")
    env = {**os.environ, **as_environment(simulator.client_settings()), "DERSYNC_DATABASE_URL": daemon["database_url"],
           "DERSYNC_LOG_FORMAT": "json", "DERSYNC_FAILOVER_SECONDS": "3"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dersync", "sync", env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=DEADLINE_SECONDS)
    assert process.returncode == 1, (stdout, stderr)
    assert b"another dersync process" in stderr and b"is sending to AEMO" in stderr, stderr


async def test_a_replica_that_has_not_looked_at_the_lease_is_starting_and_not_ready(
    database_url: str, simulator: Simulator
) -> None:
    """Before its first look at the sender lease a replica does not know its role: /readyz says
    "starting" and not ready, never "standby" for the replica about to lead."""
    from dersync.daemon import Service
    from dersync.leadership import Leadership, LeaseTiming
    from dersync.settings import Settings

    settings = Settings(**{"participant_id": PARTICIPANT, **simulator.client_settings(), "database_url": database_url})
    service = Service(settings)
    service.store = await Store.open(settings.database_url)
    try:
        service.leadership = Leadership(service.store, LeaseTiming.for_failover(settings.failover_seconds))
        ready, details = await service.readiness()
        assert (ready, details["role"]) == (False, "starting")
        await service.leadership.start(background=False)
        _ready, details = await service.readiness()
        assert details["role"] == "leader"
        await service.leadership.stop()
    finally:
        await service.store.close()
