"""What the daemon puts on /metrics for the alert rules (deploy/prometheus/alerts.yml): its
schedule, how each scheduled pass ended, the store's last successes, and the client
certificate's expiry, with the start-up warning about it.

Real `dersync run` subprocesses (tests/daemon/conftest.py) against the simulator, and the
daemon's own job wrapper driven in-process where a failure has to be provoked (AEMO refusing
the credentials, AEMO failing every read).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dersync.aemo.client import AemoClient
from dersync.daemon.service import Service
from dersync.event_loop import chosen_loop_name
from dersync.mock import Simulator
from dersync.reconcile import reconcile
from dersync.settings import Settings
from dersync.store import Store
from dersync.sync import sync_once
from dersync.testing import http_get, load, nmi_for, record, wait_for
from tests.conftest import CertificateMaker
from tests.daemon.conftest import Cluster, Replica

#: {(sample name, ((label, value), ...)): value}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """/metrics as Prometheus reads it."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def scrape(replica: Replica) -> Samples:
    status, body = await http_get(replica.admin + "/metrics")
    assert status == 200, status
    return parse(body)


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


async def test_a_running_daemon_shows_its_schedule_its_passes_and_its_client_certificate(
    cluster: Cluster, store: Store, client_certificate: CertificateMaker
) -> None:
    """`dersync run` with a client certificate 10 days from its end and a weekly reconciliation:
    it logs `tls.client_cert.expiring` (warning, 10 days left) before it is ready, and /metrics
    shows the sync interval, the longest gap between reconciliations (a week), the certificate's
    notAfter, its first successful sync pass, and no failed pass (both tasks present at 0)."""
    not_after = (datetime.now(UTC) + timedelta(days=10)).replace(microsecond=0)
    cert, key = client_certificate(not_after)
    await load(store, [record(nmi_for(i)) for i in range(3)])
    replica = await cluster.start(DERSYNC_TLS_CLIENT_CERT=str(cert), DERSYNC_TLS_CLIENT_KEY=str(key),
                                  DERSYNC_RECONCILE_CRON="0 2 * * 1")
    await cluster.ready(replica)

    async def synced() -> Samples | None:
        samples = await scrape(replica)
        return samples if sample(samples, "dersync_last_success_timestamp_seconds", task="sync") else None

    samples = await wait_for(synced, "a successful sync pass on /metrics")
    await cluster.stop()

    assert sample(samples, "dersync_sync_interval_seconds") == 0.5
    assert sample(samples, "dersync_reconcile_interval_seconds") == 7 * 86400
    assert sample(samples, "dersync_tls_client_cert_expiry_timestamp_seconds") == not_after.timestamp()
    assert sample(samples, "dersync_job_failures_total", task="sync") == 0
    assert sample(samples, "dersync_job_failures_total", task="reconcile") == 0
    assert sample(samples, "dersync_leader") == 1
    assert sample(samples, "process_start_time_seconds") is not None
    events = [e["event"] for e in replica.events()]
    assert events.index("tls.client_cert.expiring") < events.index("daemon.ready")
    [warning] = [e for e in replica.events() if e["event"] == "tls.client_cert.expiring"]
    assert (warning["level"], warning["days_left"], warning["path"]) == ("warning", 10.0, str(cert))
    [ready] = [e for e in replica.events() if e["event"] == "daemon.ready"]
    assert ready["event_loop"] == chosen_loop_name()


async def test_a_replica_shows_the_last_successful_reconciliation_in_the_store(
    cluster: Cluster, store: Store, settings: Settings
) -> None:
    """A reconciliation run by hand before the daemon started is the daemon's last successful
    reconciliation on /metrics (from the store's log of passes): a replica that has not
    reconciled itself, such as a standby that just took over, does not look a day late."""
    await load(store, [record(nmi_for(i)) for i in range(3)])
    await sync_once(settings, store)
    async with AemoClient(settings) as client:
        await reconcile(settings, store, client, repair=False)
    finished = (await store.status())["last_reconcile"]["finished_at"]
    finished = finished if finished.tzinfo else finished.replace(tzinfo=UTC)

    replica = await cluster.start()  # reconciles at 02:00 only
    await cluster.ready(replica)
    samples = await scrape(replica)
    await cluster.stop()

    assert sample(samples, "dersync_last_success_timestamp_seconds", task="reconcile") == finished.timestamp()
    assert sample(samples, "dersync_last_duration_seconds", task="reconcile") is None


@pytest.fixture
async def service(make_settings: Callable[..., Settings], store: Store) -> AsyncIterator[Callable[..., Any]]:
    """`await service(**settings)`: a daemon `Service` on the test store with an open AEMO
    client, as `dersync run` wires them (without the scheduler, which would run on its clock)."""
    clients: list[AemoClient] = []

    async def make(**overrides: Any) -> Service:
        built = Service(make_settings(**overrides))
        client = AemoClient(built.settings)
        await client.__aenter__()
        clients.append(client)
        built.store, built.client, built.metrics.client = store, client, client
        return built

    try:
        yield make
    finally:
        for client in clients:
            await client.__aexit__(None, None, None)


def failures(service: Service) -> Samples:
    samples = parse(service.metrics.render().decode())
    return {key: value for key, value in samples.items()
            if key[0] in ("dersync_job_failures_total", "dersync_last_failure_timestamp_seconds",
                          "dersync_last_success_timestamp_seconds")}


async def test_a_sync_pass_aemo_refuses_the_credentials_for_counts_as_failed(
    service: Callable[..., Any], store: Store
) -> None:
    """A scheduled sync pass that stops because AEMO refuses the client secret is a failed pass:
    `dersync_job_failures_total{task="sync"}` goes to 1 and its time is shown; no success."""
    await load(store, [record(nmi_for(0))])
    daemon = await service(client_secret="not-the-secret")
    before = datetime.now(UTC).timestamp()

    await daemon._as_job("sync", daemon.sync_job)()

    shown = failures(daemon)
    assert shown[("dersync_job_failures_total", (("task", "sync"),))] == 1
    assert shown[("dersync_job_failures_total", (("task", "reconcile"),))] == 0
    assert shown[("dersync_last_failure_timestamp_seconds", (("task", "sync"),))] >= before
    assert ("dersync_last_success_timestamp_seconds", (("task", "sync"),)) not in shown


async def test_a_reconciliation_that_could_not_read_aemo_counts_as_failed_until_one_succeeds(
    service: Callable[..., Any], store: Store, settings: Settings, simulator: Simulator
) -> None:
    """A reconciliation whose reads AEMO kept failing (500) ends "failed" in the store without an
    error: it counts as a failed pass (what DersyncReconcileFailed fires on). The next one, with
    AEMO answering, succeeds after it, which is what clears that alert."""
    await load(store, [record(nmi_for(i)) for i in range(3)])
    await sync_once(settings, store)
    daemon = await service()
    simulator.config.fault_kinds = ("500",)
    simulator.config.fault_rate = 1.0

    await daemon._as_job("reconcile", daemon.reconcile_job)()
    failed = failures(daemon)
    simulator.config.fault_rate = 0.0
    await daemon._as_job("reconcile", daemon.reconcile_job)()
    recovered = failures(daemon)

    assert (await store.status())["last_reconcile"]["status"] == "ok"
    assert failed[("dersync_job_failures_total", (("task", "reconcile"),))] == 1
    assert ("dersync_last_success_timestamp_seconds", (("task", "reconcile"),)) not in failed
    assert recovered[("dersync_job_failures_total", (("task", "reconcile"),))] == 1
    assert (recovered[("dersync_last_success_timestamp_seconds", (("task", "reconcile"),))]
            > recovered[("dersync_last_failure_timestamp_seconds", (("task", "reconcile"),))])
