"""The counts a pass reports: what admins read in the log line, `dersync status` and the demo."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from dersync.aemo.responses import AemoResponse
from dersync.store import RecordOutcome
from dersync.vocabulary import Level, Part, Result, SyncState
from dersync.wording import plural


@dataclass
class PassSummary:
    """Counts of one pass. `records`, `sent`, `unchanged`, `synced`, `rejected_*`,
    `flagged_conditional` and `left_due` count records; `created` and `updated` count successful
    writes (an NMI record and an installation are two writes), split by API in `nmi_*` and
    `installations_*`."""

    started: float = field(default_factory=time.monotonic)
    due: int = 0
    records: int = 0
    records_done: int = 0
    sent: int = 0
    created: int = 0
    updated: int = 0
    nmi_created: int = 0
    nmi_updated: int = 0
    installations_created: int = 0
    installations_updated: int = 0
    unchanged: int = 0
    synced: int = 0
    rejected_local: int = 0
    rejected_schema: int = 0
    rejected_first: int = 0
    flagged_conditional: int = 0
    left_due: int = 0
    retry_rounds: int = 0
    requests: int = 0
    throttled: int = 0
    retries: int = 0
    token_refreshes: int = 0
    seconds: float = 0.0
    retry: set[str] = field(default_factory=set, repr=False)

    def count_write(self, part: Part, operation: str, response: AemoResponse) -> None:
        if not response.ok:
            return
        prefix = "nmi" if part == Part.NMI else "installations"
        verb = "created" if operation == "create" else "updated"
        setattr(self, verb, getattr(self, verb) + 1)
        key = f"{prefix}_{verb}"
        setattr(self, key, getattr(self, key) + 1)

    def count_outcome(self, outcome: RecordOutcome) -> None:
        if outcome.nmi not in self.retry:
            self.records_done += 1
        quiet = {p.result for p in outcome.parts} <= {Result.UNCHANGED, Result.ABSENT}
        if quiet:
            self.unchanged += 1
        levels = {e.level for p in outcome.parts for e in p.exceptions}
        if outcome.state == SyncState.SYNCED and not quiet:
            self.synced += 1
        if outcome.state == SyncState.REJECTED:
            if Level.FIRST in levels:
                self.rejected_first += 1
            elif Level.SCHEMA in levels:
                self.rejected_schema += 1
            else:
                self.rejected_local += 1
        if Level.SECOND in levels:
            self.flagged_conditional += 1

    def take_retry(self) -> set[str]:
        taken, self.retry = self.retry, set()
        return taken

    def restore_retry(self, nmis: list[str]) -> None:
        self.retry.update(nmis)

    def finish(self, after: dict[str, int], before: dict[str, int]) -> None:
        self.left_due = len(self.retry)
        for key in ("requests", "throttled", "retries", "token_refreshes"):
            setattr(self, key, after[key] - before[key])
        self.seconds = round(time.monotonic() - self.started, 3)

    def as_dict(self) -> dict[str, Any]:
        return {
            "due": self.due, "records": self.records, "sent": self.sent, "created": self.created,
            "updated": self.updated, "nmi_created": self.nmi_created, "nmi_updated": self.nmi_updated,
            "installations_created": self.installations_created,
            "installations_updated": self.installations_updated, "unchanged": self.unchanged, "synced": self.synced,
            "rejected_local": self.rejected_local, "rejected_schema": self.rejected_schema,
            "rejected_first": self.rejected_first, "flagged_conditional": self.flagged_conditional,
            "left_due": self.left_due, "retry_rounds": self.retry_rounds, "requests": self.requests,
            "throttled": self.throttled, "retries": self.retries,
            "token_refreshes": self.token_refreshes, "seconds": self.seconds,
        }

    def line(self) -> str:
        """The one-line summary printed at the end of a pass."""
        d = self.as_dict()
        return (
            f"{plural(d['records'], 'record')}: NMI details {d['nmi_created']} created / {d['nmi_updated']} updated, "
            f"installations {d['installations_created']} created / {d['installations_updated']} updated, "
            f"{d['unchanged']} unchanged, rejected {d['rejected_local']} local / "
            f"{d['rejected_schema']} schema / {d['rejected_first']} first level, "
            f"{d['flagged_conditional']} flagged Conditional, {d['left_due']} left due; "
            f"{plural(d['requests'], 'request')}, {d['throttled']} throttled, {d['seconds']} s"
        )
