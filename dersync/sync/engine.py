"""One sync pass: store → plan → validate → send → record outcome.

Records stream from the store in NMI order, a batch at a time. Per batch: plan and validate
locally (no HTTP for unchanged or invalid records), learn what AEMO already holds with one
batched GET per 100 NMIs where the store is not sure, note that writes are about to go out, then
push each record (NMI details before its installation) with bounded concurrency. The next batch
is prepared while the current one sends, so the request budget never idles at a batch boundary.
Outcomes are recorded a few dozen records per transaction, with the requests that led to them
(the ledger): each record's state, exceptions and ids land together, and a crash before they
land leaves the record due with its attempt noted, so the next pass asks AEMO what arrived
before writing again. Records whose requests failed retriably get a few more rounds at the end
of the pass and otherwise stay due for the next one; they are never marked synced.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from dersync.aemo.client import AemoClient
from dersync.aemo.sent import CURRENT_PASS
from dersync.errors import LeaseLost, PayloadTooLarge, RetriableError, StoreUnavailable
from dersync.leadership import Leadership, LeaseTiming
from dersync.retry import RetryPolicy
from dersync.settings import Settings
from dersync.store import Fence, IdMap, PartOutcome, RecordOutcome, Store, StoredRecord, ValidationException
from dersync.store.equipment import EquipmentId, id_map, ids_from_installation
from dersync.store.passes import OpenPass
from dersync.sync import answers
from dersync.sync.payload import missing_ids, removed_in_store, with_aemo_ids, with_decommissioned
from dersync.sync.plan import PartNotSent, PartToSend, RecordPlan, plan_record
from dersync.sync.summary import PassSummary
from dersync.vocabulary import Part, PassKind, PassStatus, RemovedEquipment, Result, SyncState

log = structlog.get_logger("dersync.sync")
#: The standard library logger under `log`: asked first, so that a pass at WARNING does not build
#: (and bind a structlog proxy for) a `sync.record` event per record only to drop it.
_RECORD_EVENTS = logging.getLogger("dersync.sync")

#: Batches prepared ahead of the one sending: one is enough for the budget never to idle while
#: a batch is planned, looked up and marked, and keeps memory to two batches.
LOOKAHEAD_BATCHES = 1
#: Records new to the store a pass looks up before it trusts that such records are new at AEMO.
LOOKUP_PROBE = 200

Progress = Callable[[int, int], None]


@dataclass
class AemoView:
    """What this pass knows of one NMI at AEMO before writing: whether it holds each part, and
    the equipment it holds (ids, stage, status) as its latest answer showed it."""

    nmi_at_aemo: bool | None
    inst_at_aemo: bool | None
    held: list[EquipmentId] = field(default_factory=list)

    @property
    def ids(self) -> IdMap:
        return id_map(self.held)


class SyncEngine:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        client: AemoClient,
        *,
        progress: Progress | None = None,
        stop: asyncio.Event | None = None,
        retry_rounds: int = 2,
        leadership: Leadership | None = None,
    ) -> None:
        """`leadership` (the sender lease this process holds) is checked before every batch, and
        its generation fences every write of sync state; without one (library use, tests) the
        caller vouches that no other process sends."""
        self.settings = settings
        self.store = store
        self.client = client
        self.progress = progress
        self.stop = stop or asyncio.Event()
        self.retry_rounds = retry_rounds
        self.leadership = leadership
        #: The generation this pass sends under, fixed at its start: a pass never writes under
        #: a later generation of the same process (another process may have led in between).
        self._fence: Fence | None = None
        self._pass_id: int | None = None
        self._probed = 0  # records new to the store looked up at AEMO this pass
        self._held_elsewhere = 0  # of them (or of refused creates) AEMO already held
        self._limit = asyncio.Semaphore(settings.concurrency)
        self._unrecorded: list[RecordOutcome] = []
        self._recording = asyncio.Lock()

    async def run_pass(self) -> PassSummary:
        """Push every due record once; returns the counts. Fatal errors propagate."""
        summary = PassSummary(started=time.monotonic())
        requests_before = _request_counts(self.client)

        def finished(opened: OpenPass) -> dict[str, Any]:
            summary.finish(_request_counts(self.client), requests_before)
            log.info("sync.pass.finished", pass_id=opened.id, status=opened.status, **summary.as_dict())
            return summary.as_dict()

        async with self.store.recorded_pass(PassKind.SYNC, finished) as opened:
            # Requests this pass sends (in its tasks too) are the pass's in the ledger.
            self._pass_id = opened.id
            belongs = CURRENT_PASS.set(opened.id)
            try:
                summary.due = await self.store.count_due()
                log.info("sync.pass.started", pass_id=opened.id, due=summary.due)
                if self.leadership is not None:
                    self._fence = self.leadership.fence
                await self._push_all(self.store.due_batches(self.settings.store_batch_size), summary)
                await self._retry_rounds(summary)
                opened.status = PassStatus.INTERRUPTED if self.stop.is_set() else PassStatus.OK
            finally:
                CURRENT_PASS.reset(belongs)
                await self._store_the_rest_of_the_ledger()
        return summary

    async def _store_the_rest_of_the_ledger(self) -> None:
        """Requests with no outcome to ride with (a last lookup, a pass cut short) go on their own."""
        sent = self.client.take_sent(self._pass_id)
        try:
            await self.store.append_ledger(sent)
        except StoreUnavailable as exc:
            self.client.put_back_sent(sent)
            log.warning("sync.ledger.deferred", requests=len(sent), error=str(exc))

    def _may_go_on(self) -> bool:
        """Before each batch: not stopped, and still holding the lease the pass started under."""
        if self.stop.is_set():
            return False
        if self.leadership is None:
            return True
        held = self.leadership.may_send() and self._fence == self.leadership.fence
        if not held:
            log.warning("sync.pass.lease_lost", replica=self.leadership.replica_id,
                        generation=None if self._fence is None else self._fence.generation)
            self.stop.set()
        return held

    async def _retry_rounds(self, summary: PassSummary) -> None:
        """Records whose requests failed retriably get a few more rounds, waiting as the one
        retry policy says between rounds (a struggling AEMO gets a moment); then they stay due."""
        policy = RetryPolicy.from_settings(self.settings).with_retries(self.retry_rounds)
        for round_ in range(1, self.retry_rounds + 1):
            pending = sorted(summary.take_retry())
            if not pending or not self._may_go_on() or not await policy.pause(round_, stop=self.stop):
                summary.restore_retry(pending)
                return
            summary.retry_rounds += 1
            await self._push_all(self._records_of(pending), summary, counted=True)

    async def _records_of(self, nmis: Sequence[str]) -> AsyncIterator[list[StoredRecord]]:
        """Fresh copies of these records, a batch at a time (a retry round re-reads what it retries)."""
        size = self.settings.store_batch_size
        for start in range(0, len(nmis), size):
            yield await self.store.load_records(nmis[start : start + size])

    # --- one batch -----------------------------------------------------------------------------

    async def _push_all(self, batches: AsyncIterator[list[StoredRecord]], summary: PassSummary, *,
                        counted: bool = False) -> None:
        """Push batch after batch, preparing the next (planned, looked up, marked) while the current
        one is still sending, so that the request budget never idles at a batch boundary. At most
        two batches are under way. Whatever was learned is recorded even if the work stops on an
        error; a fatal error stops the work with that error itself."""
        try:
            async with asyncio.TaskGroup() as group:
                sending: deque[list[asyncio.Task[None]]] = deque()
                async for batch in batches:
                    if not self._may_go_on():
                        break
                    sending.append(await self._start(batch, summary, group, counted))
                    if len(sending) > LOOKAHEAD_BATCHES:
                        await _all_done(sending.popleft())
        except BaseExceptionGroup as failures:
            # A record's push failed fatally (the store went away, AEMO refused our credentials):
            # the pass stops with that error itself, not a group the CLI and daemon cannot read.
            await self._flush_after_failure(summary)
            raise _first_error(failures) from None
        except BaseException:
            await self._flush_after_failure(summary)
            raise
        await self._flush(summary)

    async def _flush_after_failure(self, summary: PassSummary) -> None:
        waiting = len(self._unrecorded)
        try:
            await self._flush(summary)
        except Exception as exc:  # the original error is the one to report
            log.warning("sync.record.failed", records=waiting, error=str(exc))

    async def _start(self, batch: Sequence[StoredRecord], summary: PassSummary, group: asyncio.TaskGroup,
                     counted: bool) -> list[asyncio.Task[None]]:
        """Plan one batch, record what needs no request, learn what AEMO holds where the store is
        not sure, note the attempts, and hand each record to be pushed (in `group`, paced by the
        concurrency limit): the pushes that are started."""
        plans = [plan_record(record, self.settings) for record in batch]
        if not counted:
            summary.records += len(plans)
        for plan in plans:
            if not plan.sends:
                quiet = [answers.without_http(part) for part in plan.parts if isinstance(part, PartNotSent)]
                await self._record(plan, quiet, summary)
        loud = [plan for plan in plans if plan.sends]
        if not loud or self.stop.is_set():
            return []
        try:
            views = await self._views(loud)
            if views is None:  # AEMO could not be read: nothing can be sent safely
                for plan in loud:
                    await self._record(plan, [answers.retry_later(part) for part in plan.parts], summary)
                return []
            await self.store.mark_attempts([plan.nmi for plan in loud], fence=self._fence)
        except LeaseLost as exc:
            # Nothing more is sent; pushes already under way finish and are recorded if the store
            # still takes them. These records stay due for the holder.
            log.warning("sync.pass.lease_lost", error=str(exc))
            self.stop.set()
            return []
        return [group.create_task(self._push_guarded(plan, views[plan.nmi], summary)) for plan in loud]

    async def _views(self, plans: Sequence[RecordPlan]) -> dict[str, AemoView] | None:
        """What AEMO holds for these NMIs, reading AEMO only where the store is not sure."""
        known = await self.store.load_equipment([plan.nmi for plan in plans])
        views = {
            plan.nmi: AemoView(plan.record.nmi_at_aemo, plan.record.inst_at_aemo, known.get(plan.nmi, []))
            for plan in plans
        }
        unsure = [plan.nmi for plan in plans if self._unsure(plan, views[plan.nmi])]
        if not unsure:
            return views
        try:
            held = await self.client.installation.find(unsure)
        except RetriableError as exc:
            log.warning("sync.lookup.failed", nmis=len(unsure), error=str(exc))
            return None
        new = [nmi for nmi in unsure if views[nmi].inst_at_aemo is not True]
        self._count_probe(len(new), sum(1 for nmi in new if nmi in held))
        for nmi in unsure:
            installation = held.get(nmi)
            view = views[nmi]
            if installation is None:
                view.inst_at_aemo = False
                continue
            view.inst_at_aemo = view.nmi_at_aemo = True
            view.held = ids_from_installation(installation)
        return views

    def _unsure(self, plan: RecordPlan, view: AemoView) -> bool:
        """Whether a lookup can change what is sent for this record."""
        if plan.record.attempt_started_at is not None:
            return True  # an earlier write may have landed without its outcome being recorded
        installation = plan.installation
        new_nmi = isinstance(plan.nmi_details, PartToSend) and view.nmi_at_aemo is not True
        new_installation = isinstance(installation, PartToSend) and view.inst_at_aemo is not True
        if new_nmi or new_installation:
            return self._lookups_pay()  # AEMO may hold it already, registered elsewhere
        return isinstance(installation, PartToSend) and missing_ids(installation.payload, view.ids)

    def _lookups_pay(self) -> bool:
        """Looking up records the store knows nothing about pays only where AEMO holds some of
        them (registered through its portal, or before dersync): after LOOKUP_PROBE of them found
        none, the pass stops looking (a create AEMO refuses is asked about instead, one GET), and
        starts again as soon as one turns out to be held."""
        return self._held_elsewhere > 0 or self._probed < LOOKUP_PROBE

    def _count_probe(self, looked_up: int, held: int) -> None:
        paying = self._lookups_pay()
        self._probed += looked_up
        self._held_elsewhere += held
        if paying and not self._lookups_pay():
            log.info("sync.lookups.paused", looked_up=self._probed,
                     reason="AEMO held none of the records new to the store; a refused create is asked about")

    # --- one record ----------------------------------------------------------------------------

    async def _push_guarded(self, plan: RecordPlan, view: AemoView, summary: PassSummary) -> None:
        async with self._limit:
            if self.stop.is_set():
                return  # left due; the attempt mark makes the next pass check AEMO first
            parts = await self._push(plan, view, summary)
        await self._record(plan, parts, summary)

    async def _push(self, plan: RecordPlan, view: AemoView, summary: PassSummary) -> list[PartOutcome]:
        summary.sent += 1
        nmi_part = plan.nmi_details
        if isinstance(nmi_part, PartToSend):
            nmi_outcome = await self._attempt(nmi_part, lambda: self._send_nmi(plan, nmi_part, view, summary))
        else:
            nmi_outcome = answers.without_http(nmi_part)
        if nmi_outcome.result == Result.SYNCED:
            view.nmi_at_aemo = True
        inst_part = plan.installation
        if not isinstance(inst_part, PartToSend):
            return [nmi_outcome, answers.without_http(inst_part)]
        if view.nmi_at_aemo is not True and nmi_outcome.result == Result.RETRY:
            return [nmi_outcome, answers.retry_later(inst_part)]
        if view.nmi_at_aemo is not True and nmi_outcome.result == Result.REJECTED:
            return [nmi_outcome, answers.blocked(inst_part, plan.nmi)]
        inst_outcome = await self._attempt(inst_part, lambda: self._send_installation(plan, inst_part, view, summary))
        return [nmi_outcome, inst_outcome]

    async def _attempt(self, part: PartToSend, send: Callable[[], Awaitable[PartOutcome]]) -> PartOutcome:
        try:
            return await send()
        except PayloadTooLarge as exc:
            return answers.too_large(part, str(exc))
        except LeaseLost:
            # Not sent (the lease is gone): the record stays due, its attempt mark kept, and the
            # holder reads AEMO before writing it. Siblings in flight finish and are recorded.
            self.stop.set()
            return answers.retry_later(part)
        except RetriableError as exc:
            log.warning("sync.part.retry_later", part=part.part, error=str(exc), status=exc.status,
                        transactionId=exc.transaction_id)
            return answers.retry_later(part)

    async def _send_nmi(self, plan: RecordPlan, part: PartToSend, view: AemoView, summary: PassSummary) -> PartOutcome:
        payload = part.payload
        api = self.client.nmi
        if view.nmi_at_aemo is None and plan.record.attempt_started_at is not None:
            view.nmi_at_aemo = (await api.get(plan.nmi)).status == 200
        if view.nmi_at_aemo:
            response, operation = await api.update(plan.nmi, payload), "update"
            if response.status == 404:
                response, operation = await api.create(payload), "create"
        else:
            response, operation = await api.create(payload), "create"
            if response.status in (409, 422) and (await api.get(plan.nmi)).status == 200:
                # A question before a rejection: registered outside dersync, or by an earlier
                # attempt whose answer was lost. AEMO holds it, so update it instead.
                self._count_probe(0, 1)
                view.nmi_at_aemo = True
                response, operation = await api.update(plan.nmi, payload), "update"
        summary.count_write(Part.NMI, operation, response)
        return answers.from_response(part, response, sent=payload)

    async def _send_installation(self, plan: RecordPlan, part: PartToSend, view: AemoView,
                                 summary: PassSummary) -> PartOutcome:
        payload = part.payload
        api = self.client.installation
        if view.inst_at_aemo:
            body, found = await self._with_removed_equipment(plan, with_aemo_ids(payload, view.ids), view)
            response = await api.update(plan.nmi, body)
            if response.status != 404:
                summary.count_write(Part.INSTALLATION, "update", response)
                return answers.from_response(part, response, sent=body, local=found)
        response = await api.create(payload)
        if response.status in (409, 422) and (held := await self._held_installation(plan.nmi)) is not None:
            # AEMO refused the create because it already holds the installation (registered
            # outside dersync, or an earlier attempt landed unrecorded): update it instead, with
            # AEMO's ids for the equipment it holds, rather than storing a false rejection.
            self._count_probe(0, 1)
            view.inst_at_aemo = True
            view.held = ids_from_installation(held)
            body, found = await self._with_removed_equipment(plan, with_aemo_ids(payload, view.ids), view, held)
            response = await api.update(plan.nmi, body)
            summary.count_write(Part.INSTALLATION, "update", response)
            return answers.from_response(part, response, sent=body, local=found)
        summary.count_write(Part.INSTALLATION, "create", response)
        return answers.from_response(part, response, sent=payload)

    async def _with_removed_equipment(self, plan: RecordPlan, body: dict[str, Any], view: AemoView,
                                      held_at_aemo: dict[str, Any] | None = None
                                      ) -> tuple[dict[str, Any], list[ValidationException]]:
        """Equipment AEMO holds that the store no longer lists: reported as open exceptions, or
        decommissioned at AEMO by this write (AEMO's copy of it read first, one GET), as the
        removed_equipment setting says. AEMO has no DELETE; left alone it would stay active."""
        settings = self.settings
        removed = removed_in_store(body, view.held, settings.decommissioned_status)
        if not removed:
            return body, []
        if settings.removed_equipment == RemovedEquipment.REPORT:
            hint = "DERSYNC_REMOVED_EQUIPMENT=report: nothing is sent for it; restore it in the store, or set " \
                   f"decommission to have it marked {settings.decommissioned_status!r} at AEMO"
            return body, [answers.removed_in_store(item, hint) for item in removed]
        held_at_aemo = held_at_aemo or await self._held_installation(plan.nmi)
        if held_at_aemo is None:
            return body, []
        log.info("sync.equipment.decommissioning", nmi=plan.nmi, status=settings.decommissioned_status,
                 equipment=[f"{item.nsp_connection_id}/{item.nsp_device_id}".rstrip("/") for item in removed])
        return with_decommissioned(body, held_at_aemo, removed, settings.decommissioned_status), []

    async def _held_installation(self, nmi: str) -> dict[str, Any] | None:
        """AEMO's current installation for `nmi` (one GET), or None when it holds none."""
        response = await self.client.installation.get(nmi)
        if response.status == 200 and isinstance(response.data, dict):
            return response.data
        return None

    # --- recording -----------------------------------------------------------------------------

    #: Outcomes per store transaction. Statement round trips, not rows, bound the pass's speed;
    #: a crash costs at most this many (plus those in flight) re-checks at AEMO next pass.
    RECORD_EVERY = 50

    async def _record(self, plan: RecordPlan, parts: Iterable[PartOutcome], summary: PassSummary) -> None:
        self._unrecorded.append(RecordOutcome(plan.nmi, plan.record.revision, tuple(parts)))
        if len(self._unrecorded) >= self.RECORD_EVERY and not self._recording.locked():
            await self._flush(summary)

    async def _flush(self, summary: PassSummary) -> None:
        """Record what is waiting in one transaction, then count and log it as recorded."""
        async with self._recording:
            waiting, self._unrecorded = self._unrecorded, []
            # Every request whose outcome is recorded here was sent before it: taking all of
            # the pass's requests now puts each in the same transaction as its outcome, or earlier.
            sent = self.client.take_sent(self._pass_id)
            try:
                await self.store.record_outcomes(waiting, fence=self._fence, sent=sent)
            except LeaseLost as exc:
                # Another process leads now and owns these records: they stay due with their
                # attempt noted, and it reads AEMO before writing them again. What was sent is
                # a fact whoever leads: the ledger keeps it.
                log.warning("sync.outcomes.refused", records=len(waiting), reason=str(exc))
                self.stop.set()
                await self.store.append_ledger(sent)
                return
            except BaseException:
                self.client.put_back_sent(sent)
                raise
        for outcome in waiting:
            self._recorded(outcome, summary)

    def _recorded(self, outcome: RecordOutcome, summary: PassSummary) -> None:
        summary.count_outcome(outcome)
        if outcome.state == SyncState.RETRY:
            summary.retry.add(outcome.nmi)
        else:
            summary.retry.discard(outcome.nmi)
        if _RECORD_EVENTS.isEnabledFor(logging.INFO) and any(
                p.result not in (Result.ABSENT, Result.UNCHANGED) for p in outcome.parts):
            log.info("sync.record", nmi=outcome.nmi, state=outcome.state,
                     parts={str(p.part): str(p.result) for p in outcome.parts if p.result != Result.ABSENT},
                     transactionId=outcome.transaction_id)
        if self.progress is not None:
            self.progress(summary.records_done, summary.due)


async def _all_done(tasks: Sequence[asyncio.Task[None]]) -> None:
    """Wait for a batch's pushes (their errors are the task group's to raise)."""
    if tasks:
        await asyncio.wait(tasks)


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first_error(first) if isinstance(first, BaseExceptionGroup) else first


def _request_counts(client: AemoClient) -> dict[str, int]:
    stats = client.stats()
    return {"requests": stats.requests, "throttled": stats.throttled, "retries": stats.retries,
            "token_refreshes": stats.token_refreshes}


async def sync_once(
    settings: Settings,
    store: Store,
    *,
    progress: Progress | None = None,
    stop: asyncio.Event | None = None,
) -> PassSummary:
    """Hold the sender lease, open a client, prove the credentials, and run one pass (the CLI's
    and demo's entry). Raises `SenderElsewhere` when a live process (the daemon) holds the lease.

    Credentials are proved up front only when something is due: a pass over unchanged records
    costs AEMO nothing, not even a token.
    """
    settings.require_aemo()
    leadership = Leadership(store, LeaseTiming.for_failover(settings.failover_seconds))
    await leadership.acquire()
    try:
        async with AemoClient(settings, guard=leadership.check) as client:
            if await store.count_due() > 0:
                await client.check_credentials()
            engine = SyncEngine(settings, store, client, progress=progress, stop=stop, leadership=leadership)
            return await engine.run_pass()
    finally:
        await leadership.stop()
