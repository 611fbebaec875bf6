"""Prometheus metrics: what admins graph and alert on.

Counters that the transport already keeps (requests by API, method and status; 429s; retries;
token refreshes) are read from it at scrape time rather than counted twice; gauges about the
store (records by state, open exceptions, drift findings) are refreshed from the store just
before each scrape. Each service owns its own registry, so tests can run several side by side.

The compliance gauges are the exception: judging every AC connection reads the whole store, too
much for every scrape at hundreds of thousands of connections, so they show the latest
`refresh_compliance` (the daemon's job, on a schedule) and are absent until the first one.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from dersync.aemo.client import AemoClient

if TYPE_CHECKING:
    from dersync.compliance import ComplianceCounts
    from dersync.settings import Settings
    from dersync.store import Store

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


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


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.client: AemoClient | None = None
        self.registry.register(_TransportCollector(self))
        self.records = Gauge("dersync_records", "Records in the store by sync state", ["state"], registry=self.registry)
        self.due = Gauge("dersync_records_due", "Records due for the next pass", registry=self.registry)
        self.open_exceptions = Gauge("dersync_open_exceptions", "Open validation exceptions by level", ["level"],
                                     registry=self.registry)
        self.drift = Gauge("dersync_drift_findings", "Findings of the latest reconciliation by kind", ["kind"],
                           registry=self.registry)
        self.last_success = Gauge("dersync_last_success_timestamp_seconds",
                                  "Unix time of the last successful run by job", ["job"], registry=self.registry)
        self.last_duration = Gauge("dersync_last_duration_seconds", "Duration of the last successful run by job",
                                   ["job"], registry=self.registry)
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

    def job_succeeded(self, job: str, finished_at: float, seconds: float) -> None:
        self.last_success.labels(job=job).set(finished_at)
        self.last_duration.labels(job=job).set(seconds)

    def update_from_status(self, status: dict[str, Any]) -> None:
        for state, count in status["records"].items():
            self.records.labels(state=state).set(count)
        self.due.set(status["due"])
        for level, count in status["open_exceptions"].items():
            self.open_exceptions.labels(level=level).set(count)
        for kind, count in (status.get("drift") or {}).items():
            self.drift.labels(kind=kind).set(count)

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
