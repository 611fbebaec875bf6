"""What a reconcile pass reports: findings of drift between the store and AEMO, and the counts.

Kinds:

* `missing_at_aemo`: the store holds a valid part (NMI details or installation) AEMO does not.
* `different_at_aemo`: AEMO holds the part, but some fields or equipment differ (`fields`).
* `orphan_at_aemo`: AEMO holds an installation for an NMI the store has no installation for.
* `conditional_at_aemo`: AEMO holds equipment at installation stage Conditional (second-level
  validation); `fields` lists which connections and devices.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from dersync.vocabulary import DriftKind, Part
from dersync.wording import plural


@dataclass(frozen=True)
class DriftFinding:
    """One drift finding for one part of one NMI.

    `fields` lists the differences as `{"path", "store", "aemo"}` (paths in AEMO's spelling);
    `repairable` says whether pushing the store's version would remove the finding.
    """

    nmi: str
    kind: DriftKind
    part: Part
    fields: list[dict[str, Any]] = field(default_factory=list)
    detail: str = ""
    repairable: bool = False

    def as_row(self) -> dict[str, Any]:
        return {"nmi": self.nmi, "kind": self.kind, "part": self.part, "detail": self.detail,
                "fields": self.fields, "repairable": self.repairable}


@dataclass
class ReconcileReport:
    """The outcome of one reconcile pass."""

    pass_id: int | None = None
    status: str = "running"
    records: int = 0
    compared: int = 0
    skipped_invalid: int = 0
    skipped_rejected: int = 0
    unread: int = 0
    swept: int = 0
    marked_due: int = 0
    requests: int = 0
    seconds: float = 0.0
    findings: list[DriftFinding] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        found = Counter(f.kind for f in self.findings)
        return {kind.value: found.get(kind, 0) for kind in DriftKind}

    def as_dict(self) -> dict[str, Any]:
        return {
            "records": self.records, "compared": self.compared, "skipped_invalid": self.skipped_invalid,
            "skipped_rejected": self.skipped_rejected, "unread": self.unread, "swept": self.swept,
            **self.counts, "marked_due": self.marked_due, "requests": self.requests, "seconds": self.seconds,
        }

    def line(self) -> str:
        c = self.counts
        return (f"{plural(self.compared, 'record')} compared: {c['missing_at_aemo']} missing at AEMO, "
                f"{c['different_at_aemo']} different, {c['orphan_at_aemo']} orphan, "
                f"{c['conditional_at_aemo']} Conditional; {self.marked_due} marked due for repair; "
                f"{self.skipped_invalid} invalid locally, {self.skipped_rejected} rejected by AEMO, "
                f"{self.unread} unread; {plural(self.requests, 'request')}, {self.seconds} s")
