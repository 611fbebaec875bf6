"""`dersync run`: the long-running service.

One asyncio process. At start it checks the configuration (one line per problem), migrates the
store, starts the admin endpoints and fetches a token before it calls itself ready. APScheduler
then runs the sync pass every `sync_interval_seconds` and reconciliation on `reconcile_cron`;
neither job overlaps itself, missed runs coalesce into one, and both share one AEMO client and
so one request budget. On SIGTERM/SIGINT it stops taking new work, lets in-flight requests
finish within `shutdown_grace_seconds`, records their outcomes, logs one summary line and exits 0.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from dersync.admin import AdminServer, Metrics
from dersync.admin.certificates import check_client_certificate
from dersync.aemo.client import AemoClient
from dersync.console import Console, LiveJobs, Runtime
from dersync.errors import AuthError, ConfigError, RetriableError
from dersync.event_loop import running_loop_name
from dersync.leadership import Leadership, LeaseTiming
from dersync.retry import RetryPolicy, Stopped
from dersync.settings import Settings
from dersync.store import Store, passes, utcnow
from dersync.sync import SyncEngine
from dersync.vocabulary import PassKind, PassStatus

log = structlog.get_logger("dersync.daemon")

#: How far before a pass's start re-drives are looked at again after it (clocks of other hosts).
REDRIVE_MARGIN = timedelta(minutes=5)
#: How often the ledger job runs, and how much it prunes per run (batches of rows).
LEDGER_JOB_SECONDS = 600
LEDGER_PRUNE_BATCH = 1000
LEDGER_PRUNE_BATCHES_PER_RUN = 20
#: How often the compliance gauges are recomputed from the store (a full pass over the records).
COMPLIANCE_JOB_SECONDS = 600


class Service:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stopping = asyncio.Event()
        #: Set to halt the sync pass under way (shutdown or lost leadership); a new one per pass.
        self.halt_pass = asyncio.Event()
        self.metrics = Metrics()
        # What "late" means for each job, so the alerting rules need no copy of the schedule.
        self.metrics.sync_interval.value = settings.sync_interval_seconds
        self.metrics.reconcile_interval.value = longest_gap_seconds(
            CronTrigger.from_crontab(settings.reconcile_cron, timezone=settings.zone), datetime.now(UTC))
        self.store: Store | None = None
        self.client: AemoClient | None = None
        self.leadership: Leadership | None = None
        self.admin: AdminServer | None = None
        #: AEMO refused the credentials (not ready until a later fetch succeeds).
        self.credentials_refused = False
        self.totals: Counter[str] = Counter()
        #: Until stopped: the daemon keeps trying (its first token, a failed sync pass).
        self.retry_policy = RetryPolicy.from_settings(settings).with_retries(None)
        self.scheduler: AsyncIOScheduler | None = None
        self._sync_failures = 0
        #: A pass was asked for (a re-drive) while one ran: run another as soon as it ends.
        self._pass_again = False
        self._jobs: set[asyncio.Task[Any]] = set()
        self._started = time.monotonic()
        #: The jobs running now, as the console's overview shows them live.
        self.live = LiveJobs(lambda: self.client.stats() if self.client is not None else None,
                             settings.rate_limit_per_minute)

    # --- lifecycle -----------------------------------------------------------------------------

    async def run(self) -> int:
        self._check_configuration()
        check_client_certificate(self.settings, self.metrics)
        self._install_signal_handlers()
        self.store = await Store.open(self.settings.database_url,
                                      busy_timeout_seconds=self.settings.sqlite_busy_timeout_seconds)
        self.leadership = Leadership(self.store, LeaseTiming.for_failover(self.settings.failover_seconds))
        try:
            self.admin = AdminServer(self.settings.admin_host, self.settings.admin_port, self.metrics,
                                     self.readiness, self.status, console=await self._console(),
                                     ssl_context=self.settings.admin_tls)
            await self.admin.start()
            # Every NMI and Installation API request first asks the sender lease (token requests
            # do not: a standby keeps its token fresh so that it is ready to take over).
            async with AemoClient(self.settings, guard=self.leadership.check) as client:
                self.client = client
                self.metrics.client = client
                if await self._first_token(client):
                    await self._serve(self.leadership)
        finally:
            await self.leadership.stop()  # after the drain: nothing is in flight any more
            if self.admin is not None:
                await self.admin.stop()
            await self.store.close()
        log.info("daemon.stopped", uptime_seconds=round(time.monotonic() - self._started, 1), **self.totals)
        return 0

    async def _serve(self, leadership: Leadership) -> None:
        """Lead or stand by, run the schedules until asked to stop, then let work drain."""
        await leadership.start()
        self.scheduler = scheduler = self._scheduler()
        scheduler.start()
        # A standby that takes over syncs at once: the old leader may have stopped mid-pass,
        # and the next scheduled pass may be an interval (minutes) away.
        leadership.on_acquired = lambda: scheduler.modify_job("sync", next_run_time=datetime.now(UTC))
        # A leader that lost the lease stops its pass as on SIGTERM: nothing more is sent (the
        # transport's guard sees to that), answers in flight are recorded if the store takes them.
        leadership.on_lost = lambda: self.halt_pass.set()
        log.info("daemon.ready", sync_interval_seconds=self.settings.sync_interval_seconds,
                 reconcile_cron=self.settings.reconcile_cron, timezone=self.settings.timezone,
                 admin=f"{self.settings.admin_host}:{self.admin.port if self.admin else '?'}",
                 replica=leadership.replica_id, role=leadership.role, event_loop=running_loop_name())
        await self.stopping.wait()
        scheduler.shutdown(wait=False)
        await self._drain()

    async def _console(self) -> Console | None:
        """The operator console on the admin app (unless switched off), lent this process's
        role, token state, its one AEMO client and a way to ask for a pass now."""
        if not self.settings.admin_console:
            return None
        assert self.store is not None
        runtime = Runtime(role=lambda: self.leadership.role if self.leadership is not None else "starting",
                          replica=lambda: self.leadership.replica_id if self.leadership is not None else None,
                          token_state=self._token_state, client=lambda: self.client, live=self.live,
                          pass_soon=self.pass_soon)
        console = Console(self.settings, self.store, runtime)
        await console.ensure_admin_user()
        return console

    def pass_soon(self) -> bool:
        """Run the sync pass now rather than at the next interval (re-driven or unparked records
        wait no longer than a pass); only the leader passes, so False on a standby."""
        if (self.scheduler is None or self.stopping.is_set() or self.leadership is None
                or not self.leadership.may_send()):
            return False
        if any(task.get_name() == "sync" for task in self._jobs):
            # The pass under way may already be past these records (it reads in NMI order):
            # another one follows it, rather than the scheduler's next interval.
            self._pass_again = True
        else:
            self.scheduler.modify_job("sync", next_run_time=datetime.now(UTC))
        return True

    def _check_configuration(self) -> None:
        """What the daemon needs beyond what every command checks (`Settings` did the rest)."""
        problems = self.settings.problems_for_aemo()
        if problems:
            raise ConfigError(problems)

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig.name)

    def request_stop(self, reason: str = "requested") -> None:
        if not self.stopping.is_set():
            log.info("daemon.stopping", reason=reason, in_flight_jobs=len(self._jobs))
            self.stopping.set()
            self.halt_pass.set()

    async def _first_token(self, client: AemoClient) -> bool:
        """Fetch a token before declaring readiness, retrying (as the one retry policy says) until
        stopped; refused credentials are fatal. False when stopped first."""

        def unavailable(_retry: int, exc: BaseException, wait: float) -> None:
            log.warning("daemon.token.unavailable", error=str(exc), retry_in_seconds=round(wait, 3))

        try:
            await self.retry_policy.run(client.check_credentials, retry_on=(RetriableError,), stop=self.stopping,
                                        on_retry=unavailable)
        except Stopped:
            return False
        return True

    def _scheduler(self) -> AsyncIOScheduler:
        zone = ZoneInfo(self.settings.timezone)
        scheduler = AsyncIOScheduler(timezone=zone)
        common = {"max_instances": 1, "coalesce": True}
        scheduler.add_job(self._as_job("sync", self.sync_job),
                          IntervalTrigger(seconds=self.settings.sync_interval_seconds),
                          id="sync", next_run_time=datetime.now(UTC),
                          misfire_grace_time=max(1, int(self.settings.sync_interval_seconds)), **common)
        scheduler.add_job(self._as_job("reconcile", self.reconcile_job),
                          CronTrigger.from_crontab(self.settings.reconcile_cron, timezone=zone), id="reconcile",
                          misfire_grace_time=3600, **common)
        scheduler.add_job(self._as_job("ledger", self.ledger_job), IntervalTrigger(seconds=LEDGER_JOB_SECONDS),
                          id="ledger", misfire_grace_time=LEDGER_JOB_SECONDS, **common)
        # Every replica, leader or standby, keeps a valid token (a cached one costs no request),
        # so that readiness is true and a standby can take over without waiting for one.
        scheduler.add_job(self.token_job,
                          IntervalTrigger(seconds=max(1.0, self.settings.token_refresh_margin_seconds / 2)),
                          id="token", misfire_grace_time=60, **common)
        # Every replica refreshes the compliance gauges (it only reads the store), so that a
        # scrape of any replica shows them.
        scheduler.add_job(self.compliance_job, IntervalTrigger(seconds=COMPLIANCE_JOB_SECONDS), id="compliance",
                          next_run_time=datetime.now(UTC), misfire_grace_time=COMPLIANCE_JOB_SECONDS, **common)
        return scheduler

    async def compliance_job(self) -> None:
        assert self.store is not None
        try:
            counts = await self.metrics.refresh_compliance(self.store, self.settings)
        except Exception as exc:
            log.warning("daemon.compliance.failed", error=str(exc))
            return
        log.info("compliance.refreshed", due_soon=counts.due_soon, **counts.by_state)

    async def token_job(self) -> None:
        assert self.client is not None
        try:
            await self.client.check_credentials()
            self.credentials_refused = False
        except AuthError as exc:
            self.credentials_refused = True
            log.error("daemon.token.refused", error=str(exc))
        except RetriableError as exc:
            log.warning("daemon.token.unavailable", error=str(exc))

    def _as_job(self, name: str, body: Callable[[], Awaitable[str | None]]) -> Callable[[], Awaitable[None]]:
        """Wrap a job so shutdown can wait for it and one failure never kills the scheduler.

        A job that runs a pass returns how it ended (a `PassStatus`): ok counts as a success on
        /metrics, failed (an error, or a pass the store records as failed) as a failure, and an
        interrupted pass (shutdown, lost leadership) as neither. A job with no pass of its own
        (the ledger) returns None: having run is its success."""

        async def job() -> None:
            if self.stopping.is_set():
                return
            if self.leadership is not None and not self.leadership.may_send():
                return
            task = asyncio.current_task()
            assert task is not None
            task.set_name(name)
            self._jobs.add(task)
            started = time.monotonic()
            try:
                outcome = await body()
                while name == "sync" and self._pass_again and not self.stopping.is_set() and self._may_send():
                    self._pass_again = False  # asked for during that pass (a re-drive): one more now
                    outcome = await body()
                if outcome in (None, PassStatus.OK):
                    self.metrics.job_succeeded(name, time.time(), time.monotonic() - started)
                elif outcome == PassStatus.FAILED:
                    self.metrics.job_failed(name, time.time())
                if name == "sync":
                    self._sync_failures = 0
            except AuthError as exc:
                self.credentials_refused = True
                self.metrics.job_failed(name, time.time())
                log.error(f"daemon.{name}.failed", error=str(exc))
            except asyncio.CancelledError:
                log.warning(f"daemon.{name}.cancelled")
            except Exception as exc:
                self.metrics.job_failed(name, time.time())
                log.error(f"daemon.{name}.failed", error=str(exc), error_type=type(exc).__name__)
                if name == "sync":
                    self._sync_again_soon()
            finally:
                self._jobs.discard(task)

        job.__name__ = name
        return job

    def _may_send(self) -> bool:
        return self.leadership is None or self.leadership.may_send()

    def _sync_again_soon(self) -> None:
        """A pass that failed (the store or AEMO briefly away) is tried again as the retry policy
        says, not an interval (minutes) later: the work resumes soon after the outage ends."""
        if self.scheduler is None or self.stopping.is_set():
            return
        self._sync_failures += 1
        wait = self.retry_policy.delay(self._sync_failures)
        job = self.scheduler.get_job("sync")
        soon = datetime.now(UTC) + timedelta(seconds=wait)
        if job is not None and job.next_run_time is not None and job.next_run_time > soon:
            self.scheduler.modify_job("sync", next_run_time=soon)
            log.info("daemon.sync.retry_scheduled", retry=self._sync_failures, in_seconds=round(wait, 3))

    async def _drain(self) -> None:
        """Let in-flight jobs finish (they stop taking new records), then cancel what is left."""
        if not self._jobs:
            return
        _done, pending = await asyncio.wait(set(self._jobs), timeout=self.settings.shutdown_grace_seconds)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
            log.warning("daemon.grace.exceeded", cancelled_jobs=len(pending))

    # --- jobs ----------------------------------------------------------------------------------

    async def sync_job(self) -> str:
        assert self.store is not None and self.client is not None
        self.halt_pass = asyncio.Event()
        if self.stopping.is_set():
            self.halt_pass.set()
        engine = SyncEngine(self.settings, self.store, self.client, stop=self.halt_pass, leadership=self.leadership,
                            progress=self.live.progress)
        started = datetime.now(UTC)
        self.live.started("sync")
        try:
            summary = await engine.run_pass()
        finally:
            self.live.finished("sync")
        # Re-drives that met a record in flight (console, API or CLI, from any host: hence the
        # margin) are applied again, and another pass sends those records.
        if await self.store.redrive_again(since=started - REDRIVE_MARGIN) and not self.stopping.is_set():
            self._pass_again = True
        self.totals["passes"] += 1
        for key in ("created", "updated", "rejected_local", "rejected_schema", "rejected_first", "requests"):
            self.totals[key] += getattr(summary, key)
        # As the engine records it: a pass told to stop ends "interrupted".
        return PassStatus.INTERRUPTED if self.halt_pass.is_set() else PassStatus.OK

    async def ledger_job(self) -> None:
        """Store requests sent outside any pass, and prune the ledger past its retention, a few
        small batches per run (a backlog is worked off over several runs, never holding the
        store for long or delaying a pass)."""
        assert self.store is not None and self.client is not None
        await self.store.append_ledger(self.client.take_sent(None))
        now = utcnow()
        rows_before = now - timedelta(days=self.settings.ledger_retention_days)
        bodies_before = now - timedelta(days=self.settings.ledger_body_retention_days)
        rows = bodies = 0
        for _ in range(LEDGER_PRUNE_BATCHES_PER_RUN):
            deleted, dropped = await self.store.prune_ledger(rows_before=rows_before, bodies_before=bodies_before,
                                                             batch_size=LEDGER_PRUNE_BATCH)
            rows, bodies = rows + deleted, bodies + dropped
            if not deleted and not dropped:
                break
            await asyncio.sleep(0)  # other work (a pass) gets the store between batches
        if rows or bodies:
            log.info("ledger.pruned", rows=rows, bodies=bodies, rows_before=rows_before.isoformat(),
                     bodies_before=bodies_before.isoformat())

    async def reconcile_job(self) -> str:
        from dersync.reconcile.reconciler import reconcile

        assert self.store is not None and self.client is not None
        self.live.started("reconcile")
        try:
            report = await reconcile(self.settings, self.store, self.client, repair=self.settings.reconcile_repair)
        finally:
            self.live.finished("reconcile")
        self.totals["reconciliations"] += 1
        return report.status

    # --- admin views ---------------------------------------------------------------------------

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        details: dict[str, Any] = {}
        ready = True
        try:
            assert self.store is not None
            await self.store.ping()
            details["store"] = "ok"
        except Exception as exc:
            ready = False
            details["store"] = f"unavailable: {exc}"
        details["token"] = self._token_state()
        # Until its first look at the sender lease a replica does not know its role: it is
        # "starting" (not ready), never a "standby" that is about to lead.
        role = self.leadership.role if self.leadership is not None else "starting"
        ready = ready and details["token"] == "ok" and role != "starting"
        details["role"] = role
        if self.leadership is not None:
            details["replica"] = self.leadership.replica_id
        self.metrics.leader.set(1 if role == "leader" else 0)
        return ready, details

    def _token_state(self) -> str:
        if self.credentials_refused:
            return "refused"
        if self.client is not None and self.client.tokens.has_valid_token:
            return "ok"
        return "none"

    async def status(self) -> dict[str, Any]:
        """The store's status, and its last successful reconciliation (for /metrics)."""
        assert self.store is not None
        status = await self.store.status()
        async with self.store.transaction() as connection:
            status["last_successful_reconcile"] = await passes.last_pass(connection, PassKind.RECONCILE,
                                                                         successful=True)
        return status


#: How far ahead `longest_gap_seconds` looks, and how many runs it reads at most.
GAP_HORIZON = timedelta(days=400)
GAP_RUNS = 1000


def longest_gap_seconds(trigger: CronTrigger, now: datetime) -> float:
    """The longest time between two consecutive runs of `trigger` from `now` on, over the next
    `GAP_HORIZON` (at most `GAP_RUNS` runs), in the trigger's zone (so with what daylight saving
    does to it): a day for `0 2 * * *`, three days for `0 2 * * 1-5`, a week for `0 2 * * 1`. A
    schedule that runs less than twice in that horizon gets the horizon itself."""
    longest = 0.0
    previous: datetime | None = None
    end = now + GAP_HORIZON
    for _ in range(GAP_RUNS):
        fire = trigger.get_next_fire_time(previous, previous or now)
        if fire is None or fire > end:
            break
        if previous is not None:
            longest = max(longest, (fire - previous).total_seconds())
        previous = fire
    return longest or GAP_HORIZON.total_seconds()
