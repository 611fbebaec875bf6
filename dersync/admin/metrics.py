"""Prometheus metrics: what admins graph and alert on.

Counters that the transport already keeps (requests by API, method and status; 429s; retries;
token refreshes) are read from it at scrape time rather than counted twice; gauges about the
store (records by state, open exceptions, drift findings) are refreshed from the store just
before each scrape. Each service owns its own registry, so tests can run several side by side.

The compliance gauges are the exception: judging every AC connection reads the whole store, too
much for every scrape at hundreds of thousands of connections, so they show the latest
`refresh_compliance` (the daemon's job, on a schedule) and are absent until the first one.

The jobs' label is `task`, not `job`: Prometheus attaches its own `job` label (the scrape job) to
every series and would rename a scraped one to `exported_job`, where no rule would look for it.
The alerting rules in deploy/prometheus/alerts.yml use these names; tests/deploy/test_alerts.py
checks that each name they use is one this module exposes.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Gauge, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from dersync.aemo.client import AemoClient

if TYPE_CHECKING:
    from dersync.compliance import ComplianceCounts
    from dersync.settings import Settings
    from dersync.store import Store

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: The daemon's scheduled jobs that do work, the values of the `task` label.
TASKS = ("sync", "reconcile", "ledger")


class _OptionalGauge(Collector):
    """An unlabelled gauge with no sample until it is given a value: a known value or none, never
    a 0 that would read as a real one (an interval of 0, a certificate that expired in 1970)."""

    def __init__(self, name: str, documentation: str) -> None:
        self.name, self.documentation = name, documentation
        self.value: float | None = None

    def collect(self) -> Iterable[Any]:
        family = GaugeMetricFamily(self.name, self.documentation)
        if self.value is not None:
            family.add_metric([], self.value)
        return [family]


class _TransportCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Any]:
        client = self.metrics.client
        requests = CounterMetricFamily("dersync_aemo_requests", "Requests to AEMO by API, method and status",
                                       labels=["api", "method", "status"])
        throttled = CounterMetricFamily("dersync_aemo_throttled", "Requests AEMO answered with 429")
        retries = CounterMetricFamily("dersync_aemo_retries", "Requests retried after a retriable failure")
        refreshes = CounterMetricFamily("dersync_token_refreshes", "OAuth tokens fetched")
        if client is not None:
            stats = client.stats()
            for (api, method, status), count in sorted(stats.requests_by.items(), key=str):
                requests.add_metric([str(api), str(method), str(status)], count)
            throttled.add_metric([], stats.throttled)
            retries.add_metric([], stats.retries)
            refreshes.add_metric([], stats.token_refreshes)
        return [requests, throttled, retries, refreshes]


class _JobFailuresCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterable[Any]:
        failures = CounterMetricFamily("dersync_job_failures",
                                       "Scheduled runs by task that failed (an error, or a pass the store records "
                                       "as failed); the next run tries again", labels=["task"])
        for task, count in self.metrics.job_failures.items():
            failures.add_metric([task], count)
        return [failures]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.client: AemoClient | None = None
        self.registry.register(_TransportCollector(self))
        self.records = Gauge("dersync_records", "Records in the store by sync state", ["state"], registry=self.registry)
        self.due = Gauge("dersync_records_due", "Records due for the next pass", registry=self.registry)
        self.parked = Gauge("dersync_records_parked", "Records parked by a person: sync passes skip them",
                            registry=self.registry)
        self.open_exceptions = Gauge("dersync_open_exceptions", "Open validation exceptions by level", ["level"],
                                     registry=self.registry)
        self.drift = Gauge("dersync_drift_findings", "Findings of the latest reconciliation by kind", ["kind"],
                           registry=self.registry)
        self.last_success = Gauge("dersync_last_success_timestamp_seconds",
                                  "Unix time the last successful run of each task ended: this process's own or, for "
                                  "sync and reconcile, a later pass in the store's log of passes (another replica's, "
                                  "a hand-run command's)", ["task"], registry=self.registry)
        self.last_duration = Gauge("dersync_last_duration_seconds",
                                   "Duration of this process's last successful run by task", ["task"],
                                   registry=self.registry)
        self.last_failure = Gauge("dersync_last_failure_timestamp_seconds",
                                  "Unix time this process's last failed run by task ended", ["task"],
                                  registry=self.registry)
        #: Failed passes by task, each present (at 0) from the start, so that Prometheus sees the
        #: first failure as an increase rather than as a new series.
        self.job_failures = dict.fromkeys(TASKS, 0)
        self.registry.register(_JobFailuresCollector(self))
        self.sync_interval = _OptionalGauge(
            "dersync_sync_interval_seconds", "Seconds between scheduled sync passes (DERSYNC_SYNC_INTERVAL_SECONDS)")
        self.reconcile_interval = _OptionalGauge(
            "dersync_reconcile_interval_seconds",
            "Longest time between two scheduled reconciliations (DERSYNC_RECONCILE_CRON in DERSYNC_TIMEZONE, over "
            "the next year)")
        self.client_cert_expiry = _OptionalGauge(
            "dersync_tls_client_cert_expiry_timestamp_seconds",
            "Unix time the configured TLS client certificate (DERSYNC_TLS_CLIENT_CERT) expires, as read at start")
        for optional in (self.sync_interval, self.reconcile_interval, self.client_cert_expiry):
            self.registry.register(optional)
        # process_start_time_seconds (the rules' stand-in before a first success), memory, CPU, fds.
        ProcessCollector(registry=self.registry)
        self.leader = Gauge("dersync_leader", "1 when this replica is the one that pushes and reconciles",
                            registry=self.registry)
        self.ready = Gauge("dersync_ready", "1 when the store is reachable and a valid token is held",
                           registry=self.registry)
        self.compliance = Gauge("dersync_compliance_connections",
                                "AC connections by compliance state against their submission deadline "
                                "(as of the last refresh)", ["state"], registry=self.registry)
        self.due_soon = Gauge("dersync_compliance_due_soon",
                              "AC connections not yet accepted whose deadline is within DERSYNC_DEADLINE_WARNING_DAYS "
                              "business days", registry=self.registry)
        self.compliance_refreshed = Gauge("dersync_compliance_refreshed_timestamp_seconds",
                                          "Unix time the compliance gauges were last computed", registry=self.registry)
        #: When each task last succeeded: by this process, and by any process as the store says.
        self._own_success: dict[str, float] = {}
        self._stored_success: dict[str, float] = {}

    def job_succeeded(self, task: str, finished_at: float, seconds: float) -> None:
        self._own_success[task] = finished_at
        self._show_last_success(task)
        self.last_duration.labels(task=task).set(seconds)

    def job_failed(self, task: str, finished_at: float) -> None:
        self.job_failures[task] = self.job_failures.get(task, 0) + 1
        self.last_failure.labels(task=task).set(finished_at)

    def _show_last_success(self, task: str) -> None:
        known = [when for when in (self._own_success.get(task), self._stored_success.get(task)) if when is not None]
        if known:
            self.last_success.labels(task=task).set(max(known))

    def update_from_status(self, status: dict[str, Any]) -> None:
        for state, count in status["records"].items():
            self.records.labels(state=state).set(count)
        self.due.set(status["due"])
        self.parked.set(status.get("parked", 0))
        for level, count in status["open_exceptions"].items():
            self.open_exceptions.labels(level=level).set(count)
        for kind, count in (status.get("drift") or {}).items():
            self.drift.labels(kind=kind).set(count)
        # The store's log of passes knows the passes of every process on the store: after a
        # restart or a failover this replica's gauge shows the real age of the last success.
        for task in TASKS:
            finished = _finished_at(status.get(f"last_successful_{task}"))
            if finished is not None:
                self._stored_success[task] = finished
                self._show_last_success(task)

    def update_compliance(self, counts: ComplianceCounts, at: float) -> None:
        """Show a compliance count (every state is present: a state with none reads 0)."""
        for state, count in counts.by_state.items():
            self.compliance.labels(state=state).set(count)
        self.due_soon.set(counts.due_soon)
        self.compliance_refreshed.set(at)

    async def refresh_compliance(self, store: Store, settings: Settings,
                                 now: datetime | None = None) -> ComplianceCounts:
        """Judge every connection in the store now (one streamed read) and show the counts."""
        from dersync.compliance import DeadlineRules, compliance_counts

        now = now or datetime.now(UTC)
        counts = await compliance_counts(store, DeadlineRules.from_settings(settings), now)
        self.update_compliance(counts, now.timestamp())
        return counts

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _finished_at(passed: dict[str, Any] | None) -> float | None:
    """A pass row's end as Unix time (the store keeps UTC; SQLite hands it back without a zone)."""
    finished = (passed or {}).get("finished_at")
    if not isinstance(finished, datetime):
        return None
    return (finished if finished.tzinfo is not None else finished.replace(tzinfo=UTC)).timestamp()
