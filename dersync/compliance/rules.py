"""The deadline arithmetic: pure, and given "today" rather than reading the clock.

The rules (README, "Compliance deadlines"):

* A **business day** is a Monday to Friday (dates in `DERSYNC_TIMEZONE`) that is not a Western
  Australian public holiday in the `holidays` package's calendar (AU, subdivision WA, with the
  substitute days it observes when a holiday falls on a weekend) and not one of
  `DERSYNC_EXTRA_NON_BUSINESS_DAYS`.
* The **deadline** of a connection commissioned on day C is the Nth business day after C
  (N = `DERSYNC_SUBMISSION_DEADLINE_BUSINESS_DAYS`): the commissioning day itself never counts,
  business day or not, and day 1 is the first business day after it. A non-business day inside
  the window is skipped, so each one moves the deadline a business day later; the deadline is
  therefore always a business day, and it is included: an acceptance at any time of the deadline
  day (until midnight in `DERSYNC_TIMEZONE`) is on time.
* The **state**: accepted on or before the deadline day `met`, after it `late`; not accepted,
  `overdue` once today is past the deadline, else `due` with the business days left (today not
  counted, the deadline day counted: 0 on the deadline day itself); no commissioning date,
  `not_applicable`. An acceptance before the commissioning date is `met`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import holidays

from dersync.settings import Settings
from dersync.vocabulary import ComplianceState

#: The holiday calendar: the WEM is Western Australia's market.
COUNTRY, SUBDIVISION = "AU", "WA"
_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


class BusinessCalendar:
    """Weekends, WA public holidays and extra days off; answers are cached (a report asks about
    the same few hundred days for every one of its connections)."""

    def __init__(self, extra_non_business_days: Iterable[date] = ()) -> None:
        self.extra = frozenset(extra_non_business_days)
        self._holidays = holidays.country_holidays(COUNTRY, subdiv=SUBDIVISION)
        self._after: dict[tuple[date, int], date] = {}
        self._between: dict[tuple[date, date], int] = {}

    def is_business_day(self, day: date) -> bool:
        return day.weekday() < 5 and day not in self._holidays and day not in self.extra

    def why_not(self, day: date) -> str | None:
        """Why `day` is no business day (a weekend, the holiday's name, an extra day), or None."""
        if day.weekday() >= 5:
            return "weekend"
        name = self._holidays.get(day)
        if name:
            return str(name)
        return "DERSYNC_EXTRA_NON_BUSINESS_DAYS" if day in self.extra else None

    def business_day_after(self, start: date, count: int) -> date:
        """The `count`-th business day after `start` (`start` itself never counts)."""
        key = (start, count)
        found = self._after.get(key)
        if found is None:
            day, left = start, count
            while left > 0:
                day += timedelta(days=1)
                if self.is_business_day(day):
                    left -= 1
            found = self._after[key] = day
        return found

    def business_days_between(self, after: date, until: date) -> int:
        """Business days d with after < d <= until (0 when `until` is not after `after`)."""
        key = (after, until)
        found = self._between.get(key)
        if found is None:
            found, day = 0, after
            while day < until:
                day += timedelta(days=1)
                found += self.is_business_day(day)
            self._between[key] = found
        return found


@dataclass(frozen=True)
class Judgement:
    state: ComplianceState
    deadline: date | None = None
    #: `due` only: business days left (today not counted, the deadline counted).
    days_left: int | None = None


@dataclass
class DeadlineRules:
    """The deadline rules with the operator's settings."""

    business_days: int
    zone: tzinfo
    calendar: BusinessCalendar = field(default_factory=BusinessCalendar)
    warning_days: int = 5

    @classmethod
    def from_settings(cls, settings: Settings) -> DeadlineRules:
        return cls(business_days=settings.submission_deadline_business_days, zone=ZoneInfo(settings.timezone),
                   calendar=BusinessCalendar(settings.extra_non_business_days),
                   warning_days=settings.deadline_warning_days)

    def today(self, now: datetime) -> date:
        """The date of `now` in the operator's zone (what "today" means for `judge`)."""
        return now.astimezone(self.zone).date()

    def deadline(self, commissioned: date) -> date:
        return self.calendar.business_day_after(commissioned, self.business_days)

    def judge(self, commissioned: date | None, accepted_at: datetime | None, today: date) -> Judgement:
        """The state of a connection commissioned on `commissioned`, first accepted at
        `accepted_at` (None: not accepted), as of `today` (a date in the operator's zone)."""
        if commissioned is None:
            return Judgement(ComplianceState.NOT_APPLICABLE)
        deadline = self.deadline(commissioned)
        if accepted_at is not None:
            on_time = accepted_at.astimezone(self.zone).date() <= deadline
            return Judgement(ComplianceState.MET if on_time else ComplianceState.LATE, deadline)
        if today > deadline:
            return Judgement(ComplianceState.OVERDUE, deadline)
        return Judgement(ComplianceState.DUE, deadline, self.calendar.business_days_between(today, deadline))

    def due_soon(self, days_left: int | None) -> bool:
        """Due (`days_left` not None) within `warning_days` business days (dersync_compliance_due_soon)."""
        return days_left is not None and days_left <= self.warning_days


@dataclass(frozen=True)
class ConnectionSeen:
    """One AC connection of a stored installation, as compliance needs it."""

    nsp_connection_id: str | None
    commissioning_date: date | None


def commissioning_date(value: Any) -> date | None:
    """A `commissioningDate` (YYYY-MM-DD) as a date; None when absent or no such date (local
    validation reports a malformed one)."""
    if not isinstance(value, str) or not _ISO_DAY.fullmatch(value):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def connections_of(installation: Mapping[str, Any]) -> list[ConnectionSeen]:
    """The AC connections of an installation (the store's `installation` object), in its order;
    entries that are not objects are skipped."""
    connections = installation.get("acConnections")
    if not isinstance(connections, list):
        return []
    return [
        ConnectionSeen(None if c.get("nspConnectionId") is None else str(c["nspConnectionId"]),
                       commissioning_date(c.get("commissioningDate")))
        for c in connections if isinstance(c, dict)
    ]
