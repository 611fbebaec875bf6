"""Reconciliation: read back what AEMO holds for every record and report (and repair) drift.

One pass streams every record with content from the store (due or not) in NMI order, validates
it as the sync pass would, reads AEMO's copies with batched `GET /installation?nmi=A,B,...` (100
NMIs a request, so about N/100 requests for N installations) and compares field by field
(`compare.py`). Findings go to table `drift_finding` under the pass (`sync_pass`, kind
"reconcile"); with `repair`, records that are missing or different at AEMO are made due with
their sync hashes forgotten, so the next sync pass pushes the store's version.

What is expected at AEMO: a part (NMI details, installation) that is valid locally and whose
current content is not the version AEMO rejected. Parts invalid locally or rejected by AEMO are
not expected there (their exceptions say why) and are skipped; so is an installation whose NMI
details AEMO rejected (it cannot be registered before its NMI).

NMI details (the frugal choice): AEMO holds no installation without its NMI record, so when the
batched GET returns an installation, the NMI record is taken as present and its fields are not
read (that would cost one `GET /nmi-details/{nmi}` per NMI, i.e. N requests instead of N/100).
`GET /nmi-details/{nmi}` is sent only for records whose NMI details are expected at AEMO while
AEMO holds no installation for the NMI (then the request is needed to know whether the NMI record
exists at all, and its fields are compared for free). `nmi_details=True` compares the NMI details
of every record (one request each): for an occasional deep check, not the nightly run.

Orphans: the Installation API can only be asked with a filter (an NMI list, a stage, an equipment
or device type, a commissioning date range), so there is no "list everything AEMO holds for this
participant". An orphan can therefore be found (a) among the NMIs the store knows: a record with
NMI details but no installation, for which AEMO returns an installation; and (b) with an optional
sweep by filter (`sweep=[{"installationStage": "Conditional"}]`): every installation AEMO returns
whose NMI the store holds no installation for. Sweeping both stages (`Confirmed` and
`Conditional`) covers every installation that has a stage, at about one request per 100
installations at AEMO; pages are handled one at a time (flat memory), through the Installation
API's `sweep`.
Orphans are only reported, never
deleted or repaired: AEMO's API has no delete, and the store does not own them.

Conditional: equipment AEMO holds at installation stage Conditional (second-level validation),
reported per record; pushing the same data again would not change it, so it is not repaired.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from dersync.aemo.client import AemoClient
from dersync.aemo.installation_api import RepeatedPage
from dersync.aemo.sent import CURRENT_PASS
from dersync.errors import LeaseLost, RetriableError
from dersync.models import check_record
from dersync.reconcile.compare import (
    compare_installation,
    compare_nmi_details,
    conditional_equipment,
    removed_entry,
    repairable,
)
from dersync.reconcile.findings import DriftFinding, ReconcileReport
from dersync.settings import Settings
from dersync.store import Store, StoredRecord
from dersync.store.passes import OpenPass
from dersync.vocabulary import DriftKind, Part, PassKind, PassStatus, RemovedEquipment
from dersync.wording import plural

log = structlog.get_logger("dersync.reconcile")

#: Installations per page when sweeping by filter (AEMO allows 25, 50 or 100).
SWEEP_PAGE_SIZE = 100


@dataclass(frozen=True)
class Expected:
    """One record's parts that AEMO is expected to hold, as validated payloads."""

    nmi: str
    nmi_details: dict[str, Any] | None
    installation: dict[str, Any] | None
    store_has_installation: bool


async def reconcile(
    settings: Settings,
    store: Store,
    client: AemoClient,
    *,
    repair: bool,
    sweep: Sequence[Mapping[str, str]] = (),
    nmi_details: bool = False,
    stop: asyncio.Event | None = None,
) -> ReconcileReport:
    """One reconcile pass; returns the report (its findings are also in `drift_finding`).

    `client` is an open `AemoClient`. A batch AEMO could not be read (retries exhausted) is
    counted as `unread` and the pass goes on; the pass is then recorded as failed. Fatal errors
    (credentials, client bugs) propagate after the pass is recorded.
    """
    return await Reconciler(settings, store, client, repair=repair, sweep=sweep,
                            nmi_details=nmi_details, stop=stop).run()


class Reconciler:
    def __init__(self, settings: Settings, store: Store, client: AemoClient, *, repair: bool,
                 sweep: Sequence[Mapping[str, str]] = (), nmi_details: bool = False,
                 stop: asyncio.Event | None = None) -> None:
        self.settings = settings
        self.store = store
        self.client = client
        self.repair = repair
        self.sweep = [dict(filters) for filters in sweep]
        self.deep_nmi = nmi_details
        self.stop = stop or asyncio.Event()
        self.report = ReconcileReport()
        self._orphans: set[str] = set()
        self._limit = asyncio.Semaphore(settings.concurrency)
        lookup_batch = settings.lookup_batch_size
        #: Records compared per round: a multiple of AEMO's 100 NMIs per request (no half-empty GETs).
        self._chunk = max(lookup_batch, settings.store_batch_size // lookup_batch * lookup_batch)

    async def run(self) -> ReconcileReport:
        report = self.report
        started = time.monotonic()
        requests_before = _requests(self.client)

        def finished(opened: OpenPass) -> dict[str, Any]:
            report.status = opened.status
            report.requests = _requests(self.client) - requests_before
            report.seconds = round(time.monotonic() - started, 3)
            log.info("reconcile.pass.finished", pass_id=opened.id, status=opened.status, error=opened.error,
                     **report.as_dict())
            return report.as_dict()

        async with self.store.recorded_pass(PassKind.RECONCILE, finished) as opened:
            report.pass_id = opened.id
            log.info("reconcile.pass.started", pass_id=opened.id, repair=self.repair, sweep=self.sweep,
                     nmi_details=self.deep_nmi)
            belongs = CURRENT_PASS.set(opened.id)  # the pass's requests, in the ledger
            try:
                await self._compare_all()
                if not self.stop.is_set():
                    await self._deleted_from_store()
                for filters in self.sweep:
                    if self.stop.is_set():
                        break
                    await self._sweep(filters)
            except LeaseLost as exc:
                # Another process holds the sender lease now: nothing more is read from AEMO.
                log.warning("reconcile.pass.lease_lost", pass_id=opened.id, error=str(exc))
                self.stop.set()
            finally:
                CURRENT_PASS.reset(belongs)
                await self._store_sent()
            if self.stop.is_set():
                opened.status = PassStatus.INTERRUPTED
            elif report.unread:
                opened.error = f"{plural(report.unread, 'record')} could not be read at AEMO"
            else:
                opened.status = PassStatus.OK
        return report

    async def _compare_all(self) -> None:
        """Every stored record against AEMO, in rounds of whole batched GETs."""
        pending: list[Expected] = []
        async for batch in self.store.record_batches(self.settings.store_batch_size):
            if self.stop.is_set():
                return
            self.report.records += len(batch)
            pending.extend(e for e in (self._expected(r) for r in batch) if e is not None)
            while len(pending) >= self._chunk and not self.stop.is_set():
                await self._compare(pending[: self._chunk])
                pending = pending[self._chunk :]
        if pending and not self.stop.is_set():
            await self._compare(pending)

    # --- what the store expects at AEMO ------------------------------------------------------------

    def _expected(self, record: StoredRecord) -> Expected | None:
        checked = check_record(record.nmi, record.nmi_details, record.installation,
                               self.settings.enumerations, self.settings.max_payload_bytes)
        invalid = rejected = False
        details = installation = None
        nmi_rejected = False
        if checked.nmi_details is not None:
            if not checked.nmi_details.valid:
                invalid = True
            elif checked.nmi_details.content_hash == record.nmi_rejected_hash:
                rejected = nmi_rejected = True
            else:
                details = checked.nmi_details.payload
        if checked.installation is not None:
            if not checked.installation.valid:
                invalid = True
            elif checked.installation.content_hash == record.inst_rejected_hash:
                rejected = True
            elif nmi_rejected and record.nmi_at_aemo is not True:
                rejected = True  # blocked: AEMO cannot hold it before the NMI record
            else:
                installation = checked.installation.payload
        self.report.skipped_invalid += invalid
        self.report.skipped_rejected += rejected and not invalid
        if details is None and installation is None:
            return None
        return Expected(record.nmi, details, installation, record.installation is not None)

    # --- one round of comparisons -----------------------------------------------------------------

    async def _compare(self, expected: Sequence[Expected]) -> None:
        nmis = [e.nmi for e in expected]
        try:
            held = await self.client.installation.find(nmis)
        except RetriableError as exc:
            self.report.unread += len(nmis)
            log.warning("reconcile.lookup.failed", nmis=len(nmis), first=nmis[0], error=str(exc))
            return
        # Connections AEMO holds that have no first acceptance on record yet (accepted before
        # dersync recorded acceptances, or registered elsewhere) get AEMO's own creation date.
        await self.store.record_held_at_aemo({nmi: held[nmi] for nmi in nmis if nmi in held})
        known_ids = await self.store.load_ids([e.nmi for e in expected if e.installation and e.nmi in held])
        findings: list[DriftFinding] = []
        nmi_reads: list[Expected] = []
        for item in expected:
            found = held.get(item.nmi)
            findings.extend(self._installation_findings(item, found, known_ids.get(item.nmi, {})))
            if item.nmi_details is not None and (found is None or self.deep_nmi):
                nmi_reads.append(item)
        unread: set[str] = set()
        results = await asyncio.gather(*(self._nmi_findings(item, unread) for item in nmi_reads))
        for extra in results:
            findings.extend(extra)
        self.report.compared += len(expected) - len(unread)
        self.report.unread += len(unread)
        await self._record(sorted(findings, key=lambda f: (f.nmi, f.part, f.kind)))

    def _installation_findings(self, item: Expected, held: Mapping[str, Any] | None,
                               ids: Mapping[tuple[str, str], int]) -> list[DriftFinding]:
        if item.installation is None:
            if held is not None and not item.store_has_installation:
                self._orphans.add(item.nmi)
                return [_orphan(item.nmi, held, "the store holds NMI details but no installation for it")]
            return []
        if held is None:
            return [DriftFinding(item.nmi, DriftKind.MISSING_AT_AEMO, Part.INSTALLATION,
                            detail="AEMO holds no installation for this NMI", repairable=True)]
        findings = []
        diffs = compare_installation(item.installation, held, dict(ids))
        removed = [d for d in diffs if removed_entry(d)]
        diffs = [d for d in diffs if not removed_entry(d)]
        active = [d for d in removed if not self._decommissioned(d["aemo"])]
        if active:
            findings.append(self._removed_finding(item.nmi, active))
        if diffs:
            fixable = any(repairable(d) for d in diffs)
            detail = fields_differ(len(diffs))
            if not all(repairable(d) for d in diffs):
                detail += ("; AEMO holds values or equipment the store does not send, which a push "
                           "cannot remove (AEMO's PUT updates or adds): resolve them with AEMO")
            findings.append(DriftFinding(item.nmi, DriftKind.DIFFERENT_AT_AEMO, Part.INSTALLATION, diffs, detail,
                                         fixable))
        conditional = conditional_equipment(held)
        if conditional:
            findings.append(DriftFinding(
                item.nmi, DriftKind.CONDITIONAL_AT_AEMO, Part.INSTALLATION, conditional,
                f"AEMO holds {plural(len(conditional), 'connection or device', 'connections or devices')} at stage "
                "Conditional (second-level validation); see "
                f"`dersync exceptions list --level second --nmi {item.nmi}`"))
        return findings

    def _decommissioned(self, entry: Mapping[str, Any]) -> bool:
        status = entry.get("status")
        return isinstance(status, str) and status.strip().lower() == self.settings.decommissioned_status.lower()

    def _removed_finding(self, nmi: str, removed: list[dict[str, Any]]) -> DriftFinding:
        """Equipment AEMO still holds active that the store's record no longer lists: the
        lifecycle case, named with what the removed_equipment setting does about it."""
        what = plural(len(removed), "connection or device", "connections or devices")
        if self.settings.removed_equipment == RemovedEquipment.DECOMMISSION:
            then = (f"DERSYNC_REMOVED_EQUIPMENT=decommission: the next write for this NMI marks it "
                    f"{self.settings.decommissioned_status!r} at AEMO" + (" (made due now)" if self.repair else ""))
        else:
            then = ("DERSYNC_REMOVED_EQUIPMENT=report: an open REMOVED_IN_STORE exception, nothing is sent "
                    "(restore it in the store, or decommission it)")
        return DriftFinding(nmi, DriftKind.ORPHAN_AT_AEMO, Part.INSTALLATION, removed,
                            f"removed in the store: AEMO holds {what} the store's record no longer lists; {then}",
                            repairable=self.settings.removed_equipment == RemovedEquipment.DECOMMISSION)

    async def _deleted_from_store(self) -> None:
        """NMIs AEMO held at dersync's last answer whose record was deleted from the store: reported,
        never acted on automatically (the equipment stays as AEMO holds it)."""
        gone = await self.store.nmis_deleted_from_store()
        await self._record([
            DriftFinding(nmi, DriftKind.ORPHAN_AT_AEMO, Part.INSTALLATION, [],
                         "deleted from the store: dersync registered this NMI at AEMO, and its record is gone "
                         "from der_record; AEMO still holds it. Reported only, never acted on automatically")
            for nmi in gone if nmi not in self._orphans])
        self._orphans.update(gone)

    async def _nmi_findings(self, item: Expected, unread: set[str]) -> list[DriftFinding]:
        assert item.nmi_details is not None
        async with self._limit:
            try:
                response = await self.client.nmi.get(item.nmi)
            except RetriableError as exc:
                log.warning("reconcile.nmi_lookup.failed", nmi=item.nmi, error=str(exc))
                unread.add(item.nmi)
                return []
        if response.status == 404:
            return [DriftFinding(item.nmi, DriftKind.MISSING_AT_AEMO, Part.NMI,
                                 detail="AEMO holds no NMI record for this NMI", repairable=True)]
        if not response.ok or not isinstance(response.data, Mapping):
            log.warning("reconcile.nmi_lookup.unexpected", nmi=item.nmi, status=response.status,
                        transactionId=response.transaction_id)
            unread.add(item.nmi)
            return []
        diffs = compare_nmi_details(item.nmi_details, response.data)
        if not diffs:
            return []
        return [DriftFinding(item.nmi, DriftKind.DIFFERENT_AT_AEMO, Part.NMI, diffs, fields_differ(len(diffs)),
                        any(repairable(d) for d in diffs))]

    # --- sweeping for orphans ---------------------------------------------------------------------

    async def _sweep(self, filters: dict[str, str]) -> None:
        """Page through AEMO's installations matching `filters` (no NMI list), a page at a time."""
        described = "&".join(f"{k}={v}" for k, v in sorted(filters.items()))
        try:
            async for page in self.client.installation.sweep(filters, page_size=SWEEP_PAGE_SIZE):
                if self.stop.is_set():
                    return
                await self._orphans_on(page, described)
        except RetriableError as exc:
            log.warning("reconcile.sweep.failed", filters=described, error=str(exc))
            self.report.unread += 1
        except RepeatedPage as exc:
            log.warning("reconcile.sweep.repeated_page", filters=described, error=str(exc))

    async def _orphans_on(self, page: Sequence[Mapping[str, Any]], described: str) -> None:
        held = {str(item["nmi"]): item for item in page if item.get("nmi")}
        self.report.swept += len(held)
        chunk = sorted(nmi for nmi in held if nmi not in self._orphans)
        known = await self.store.with_installation(chunk)
        await self._record([
            _orphan(nmi, held[nmi], f"found by sweeping {described}; the store holds no installation for it")
            for nmi in chunk if nmi not in known
        ])
        self._orphans.update(nmi for nmi in chunk if nmi not in known)

    # --- recording and repair ---------------------------------------------------------------------

    async def _store_sent(self) -> None:
        """The pass's requests so far, into the ledger (after each round and at the end)."""
        await self.store.append_ledger(self.client.take_sent(self.report.pass_id))

    async def _record(self, findings: Sequence[DriftFinding]) -> None:
        await self._store_sent()
        if not findings:
            return
        assert self.report.pass_id is not None
        await self.store.save_drift(self.report.pass_id, [f.as_row() for f in findings])
        self.report.findings.extend(findings)
        for finding in findings:
            log.info("reconcile.finding", nmi=finding.nmi, kind=finding.kind, part=finding.part,
                     fields=[d["path"] for d in finding.fields[:20]], repairable=finding.repairable)
        if not self.repair:
            return
        for part in Part:
            gone = sorted({f.nmi for f in findings if f.kind == DriftKind.MISSING_AT_AEMO and f.part == part})
            if gone:
                await self.store.note_not_at_aemo(gone, part)
        due = sorted({f.nmi for f in findings if f.repairable and f.kind in (
            DriftKind.MISSING_AT_AEMO, DriftKind.DIFFERENT_AT_AEMO, DriftKind.ORPHAN_AT_AEMO)})
        if due:
            self.report.marked_due += await self.store.mark_due(due, forget_synced=True)
            log.info("reconcile.repair.marked_due", records=len(due))


def _orphan(nmi: str, held: Mapping[str, Any], why: str) -> DriftFinding:
    connections = [c for c in held.get("acConnections") or [] if isinstance(c, Mapping)]
    fields = [
        {"path": f"acConnections[nspConnectionId={c.get('nspConnectionId')}]", "store": None,
         "aemo": {k: c.get(k) for k in ("connectionId", "equipmentType", "installationStage") if c.get(k) is not None}
         | {"devices": len(c.get("devices") or [])}}
        for c in connections
    ]
    return DriftFinding(nmi, DriftKind.ORPHAN_AT_AEMO, Part.INSTALLATION, fields,
                        f"AEMO holds an installation ({plural(len(connections), 'AC connection')}) for this NMI: "
                        f"{why}; reported only, never changed")


def fields_differ(count: int) -> str:
    """`1 field differs at AEMO`, `3 fields differ at AEMO`."""
    return f"{plural(count, 'field')} {'differs' if count == 1 else 'differ'} at AEMO"


def _requests(client: AemoClient) -> int:
    return client.stats().requests
