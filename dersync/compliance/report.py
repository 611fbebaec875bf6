"""The compliance view: every AC connection in the store judged against its deadline, streamed.

Records come from the store a batch at a time with their connections' first acceptances and open
blocking exceptions (`Store.installation_facts`), so memory stays flat however many connections
the store holds; the summary and the metric counts are counters.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from dersync.compliance.rules import ConnectionSeen, DeadlineRules, connections_of
from dersync.store import FirstAcceptance, InstallationFacts, Store
from dersync.vocabulary import ComplianceState, values

#: Records per read of the store.
BATCH_SIZE = 1000


@dataclass(frozen=True)
class ComplianceRow:
    nmi: str
    nsp_connection_id: str | None
    commissioning_date: date | None
    deadline: date | None
    state: ComplianceState
    acceptance: FirstAcceptance | None
    #: The code of the open exception that keeps the connection from being accepted, if any.
    blocking_exception: str | None
    days_left: int | None

    def as_row(self) -> dict[str, Any]:
        """The pinned fields first (nmi, nspConnectionId, commissioningDate, deadline, acceptedAt,
        state, blockingException), then daysLeft, acceptedBy (the rule) and transactionId."""
        accepted = self.acceptance
        return {
            "nmi": self.nmi,
            "nspConnectionId": self.nsp_connection_id,
            "commissioningDate": self.commissioning_date,
            "deadline": self.deadline,
            "acceptedAt": accepted.accepted_at if accepted else None,
            "state": self.state,
            "blockingException": self.blocking_exception,
            "daysLeft": self.days_left,
            "acceptedBy": accepted.rule if accepted else None,
            "transactionId": accepted.transaction_id if accepted else None,
        }


@dataclass(frozen=True)
class Selection:
    """Which rows a report shows: commissioning dates from `start` to `end` (both included; a
    connection without one is left out when either is given) and one state."""

    start: date | None = None
    end: date | None = None
    state: ComplianceState | None = None

    def __contains__(self, row: ComplianceRow) -> bool:
        if self.state is not None and row.state != self.state:
            return False
        if self.start is None and self.end is None:
            return True
        day = row.commissioning_date
        return day is not None and (self.start is None or day >= self.start) and (self.end is None or day <= self.end)


@dataclass
class Summary:
    """Counts of the rows shown, by state and by month of commissioning."""

    by_state: Counter[str] = field(default_factory=Counter)
    by_month: dict[str | None, Counter[str]] = field(default_factory=dict)

    def add(self, row: ComplianceRow) -> None:
        self.by_state[row.state] += 1
        month = row.commissioning_date.strftime("%Y-%m") if row.commissioning_date else None
        self.by_month.setdefault(month, Counter())[row.state] += 1

    def as_dict(self) -> dict[str, Any]:
        """`byState`: every state (0 when none); `byMonth`: one entry per month of commissioning
        (YYYY-MM; null for connections without a date, last) with every state and the total."""
        months = sorted(self.by_month, key=lambda month: (month is None, month or ""))
        return {
            "byState": {state: self.by_state[state] for state in values(ComplianceState)},
            "byMonth": [{"month": month, **{state: self.by_month[month][state] for state in values(ComplianceState)},
                         "total": sum(self.by_month[month].values())} for month in months],
        }


def judge_installation(facts: InstallationFacts, rules: DeadlineRules, today: date) -> list[ComplianceRow]:
    """One row per AC connection of one stored installation (none when its JSON is unreadable)."""
    try:
        installation = json.loads(facts.installation)
    except ValueError:
        return []
    if not isinstance(installation, dict):
        return []
    return [_judge(facts, seen, rules, today) for seen in connections_of(installation)]


def _judge(facts: InstallationFacts, seen: ConnectionSeen, rules: DeadlineRules, today: date) -> ComplianceRow:
    acceptance = facts.acceptances.get(seen.nsp_connection_id) if seen.nsp_connection_id is not None else None
    judgement = rules.judge(seen.commissioning_date, acceptance.accepted_at if acceptance else None, today)
    return ComplianceRow(
        nmi=facts.nmi, nsp_connection_id=seen.nsp_connection_id, commissioning_date=seen.commissioning_date,
        deadline=judgement.deadline, state=judgement.state, acceptance=acceptance,
        blocking_exception=None if acceptance else _blocking(facts.blocking, seen.nsp_connection_id),
        days_left=judgement.days_left,
    )


def _blocking(open_exceptions: Sequence[tuple[str | None, str]], nsp_connection_id: str | None) -> str | None:
    """The open exception naming this connection, else any of the installation's: AEMO accepts
    or rejects an installation whole, so another connection's problem blocks this one too."""
    for named, code in open_exceptions:
        if named is not None and named == nsp_connection_id:
            return code
    return open_exceptions[0][1] if open_exceptions else None


async def compliance_rows(store: Store, rules: DeadlineRules, today: date, selection: Selection = Selection(),
                          *, batch_size: int = BATCH_SIZE) -> AsyncIterator[list[ComplianceRow]]:
    """The selected rows in NMI order (connections in record order), a batch at a time."""
    async for batch in store.installation_facts(batch_size):
        rows = [row for facts in batch for row in judge_installation(facts, rules, today) if row in selection]
        if rows:
            yield rows


@dataclass(frozen=True)
class ComplianceCounts:
    """What the metrics show: connections by state (every state), and those due soon."""

    by_state: dict[str, int]
    due_soon: int
    today: date


async def compliance_counts(store: Store, rules: DeadlineRules, now: datetime, *,
                            batch_size: int = BATCH_SIZE) -> ComplianceCounts:
    """Count every connection in the store by state (one streamed read of the store)."""
    today = rules.today(now)
    by_state: Counter[str] = Counter()
    due_soon = 0
    async for batch in store.installation_facts(batch_size):
        for facts in batch:
            for row in judge_installation(facts, rules, today):
                by_state[row.state] += 1
                due_soon += rules.due_soon(row.days_left)
    return ComplianceCounts({state: by_state[state] for state in values(ComplianceState)}, due_soon, today)
