"""The compliance deadline rules (dersync.compliance.rules), pure: business days in Perth without
weekends, WA public holidays (from the `holidays` package) or the extra days configured; the
deadline as the Nth business day after commissioning; the five states. Every date is fixed and
"today" is passed in, so nothing here depends on the day the tests run."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from dersync.compliance import BusinessCalendar, DeadlineRules, commissioning_date
from dersync.compliance.report import Summary, judge_installation
from dersync.settings import Settings
from dersync.store import FirstAcceptance, InstallationFacts
from dersync.vocabulary import AcceptanceRule, ComplianceState

PERTH = ZoneInfo("Australia/Perth")


def rules(business_days: int = 20, extra: tuple[date, ...] = (), warning_days: int = 5) -> DeadlineRules:
    return DeadlineRules(business_days, PERTH, BusinessCalendar(extra), warning_days)


def perth(year: int, month: int, day: int, hour: int = 12, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=PERTH)


def test_weekends_are_skipped_and_the_commissioning_day_never_counts() -> None:
    """Day 1 is the first business day after commissioning: a Friday's next business day is
    Monday, and a connection commissioned on Saturday or Sunday has the deadline of Friday's."""
    one = rules(business_days=1)
    assert one.deadline(date(2026, 3, 11)) == date(2026, 3, 12)  # Wednesday -> Thursday: the day itself not counted
    assert one.deadline(date(2026, 3, 13)) == date(2026, 3, 16)  # Friday -> Monday
    assert one.deadline(date(2026, 3, 14)) == date(2026, 3, 16)  # Saturday -> Monday
    assert one.deadline(date(2026, 3, 15)) == date(2026, 3, 16)  # Sunday -> Monday
    five = rules(business_days=5)
    assert five.deadline(date(2026, 3, 9)) == date(2026, 3, 16)  # Monday -> the next Monday


def test_a_wa_public_holiday_inside_the_window_moves_the_deadline_a_business_day_later() -> None:
    """WA Day (Monday 1 June 2026) inside the 20 business days after Monday 25 May is skipped:
    the deadline is Tuesday 23 June, not Monday 22 June; the calendar names the holiday."""
    calendar = BusinessCalendar()
    assert calendar.why_not(date(2026, 6, 1)) == "Western Australia Day"
    assert not calendar.is_business_day(date(2026, 6, 1))
    assert rules().deadline(date(2026, 5, 25)) == date(2026, 6, 23)
    # The same window with WA Day a business day would end a day earlier: 20 weekdays after 25 May.
    weekdays = [date(2026, 5, 25) + timedelta(days=n) for n in range(1, 40)]
    assert [d for d in weekdays if d.weekday() < 5][19] == date(2026, 6, 22)


@pytest.mark.parametrize(
    ("commissioned", "deadline", "why"),
    [
        (date(2026, 1, 23), date(2026, 1, 27), "Australia Day"),  # Friday; Monday 26 January is skipped
        (date(2026, 4, 24), date(2026, 4, 28), "ANZAC Day (observed)"),  # Saturday's holiday observed on Monday
        (date(2026, 4, 2), date(2026, 4, 7), "Good Friday"),  # Thursday; Good Friday and Easter Monday skipped
        (date(2026, 9, 25), date(2026, 9, 29), "King's Birthday"),  # WA's own date (last Monday of September)
    ],
)
def test_public_holidays_come_from_the_wa_calendar(commissioned: date, deadline: date, why: str) -> None:
    """Western Australia's holidays, with the substitute days it observes, are no business days
    (a one-day deadline shows each being skipped)."""
    one = rules(business_days=1)
    assert one.deadline(commissioned) == deadline
    skipped = [commissioned + timedelta(days=n) for n in range(1, (deadline - commissioned).days)]
    assert why in {BusinessCalendar().why_not(day) for day in skipped}


def test_extra_non_business_days_are_skipped_too() -> None:
    """A day in DERSYNC_EXTRA_NON_BUSINESS_DAYS counts like a holiday: from Wednesday 23 December
    2026 with 24 December off, Christmas and the observed Boxing Day, day 1 is Tuesday 29th."""
    assert rules(business_days=1).deadline(date(2026, 12, 23)) == date(2026, 12, 24)
    extra = rules(business_days=1, extra=(date(2026, 12, 24),))
    assert extra.deadline(date(2026, 12, 23)) == date(2026, 12, 29)
    assert extra.calendar.why_not(date(2026, 12, 24)) == "DERSYNC_EXTRA_NON_BUSINESS_DAYS"


def test_the_deadline_figure_comes_from_the_settings() -> None:
    """DERSYNC_SUBMISSION_DEADLINE_BUSINESS_DAYS, the time zone and the extra days reach the rules."""
    settings = Settings(submission_deadline_business_days=3, extra_non_business_days=[date(2026, 3, 12)],
                        deadline_warning_days=2)
    built = DeadlineRules.from_settings(settings)
    assert (built.business_days, built.warning_days, str(built.zone)) == (3, 2, "Australia/Perth")
    assert built.deadline(date(2026, 3, 10)) == date(2026, 3, 16)  # Wed 11, (Thu 12 off), Fri 13, Mon 16


def test_the_deadline_day_counts_until_midnight_in_the_operators_zone() -> None:
    """Accepted at 23:59:59 Perth time on the deadline day is met; at midnight it is late, though
    in UTC both moments fall on the deadline day."""
    deadline_rules = rules()
    commissioned = date(2026, 5, 25)  # deadline Tuesday 23 June 2026
    last_second = datetime(2026, 6, 23, 15, 59, 59, tzinfo=UTC)  # 23:59:59 in Perth
    today = date(2026, 7, 1)
    assert deadline_rules.judge(commissioned, last_second, today).state == ComplianceState.MET
    assert deadline_rules.judge(commissioned, last_second + timedelta(seconds=1), today).state == ComplianceState.LATE


def test_each_state_with_a_fixed_today() -> None:
    """met, late, overdue, due (with business days left) and not_applicable, as of a fixed day."""
    deadline_rules = rules()
    commissioned, deadline = date(2026, 5, 25), date(2026, 6, 23)

    met = deadline_rules.judge(commissioned, perth(2026, 6, 2), today=date(2026, 12, 3))
    late = deadline_rules.judge(commissioned, perth(2026, 6, 24, 9), today=date(2026, 12, 3))
    overdue = deadline_rules.judge(commissioned, None, today=date(2026, 6, 24))
    due = deadline_rules.judge(commissioned, None, today=date(2026, 6, 19))  # Friday
    on_the_day = deadline_rules.judge(commissioned, None, today=deadline)
    not_applicable = deadline_rules.judge(None, None, today=date(2026, 6, 19))

    assert (met.state, met.deadline, met.days_left) == (ComplianceState.MET, deadline, None)
    assert (late.state, late.deadline) == (ComplianceState.LATE, deadline)
    assert (overdue.state, overdue.deadline) == (ComplianceState.OVERDUE, deadline)
    assert (due.state, due.deadline, due.days_left) == (ComplianceState.DUE, deadline, 2)  # Monday, Tuesday
    assert (on_the_day.state, on_the_day.days_left) == (ComplianceState.DUE, 0)
    assert (not_applicable.state, not_applicable.deadline) == (ComplianceState.NOT_APPLICABLE, None)
    # Accepted before it was commissioned (registered ahead) is in time.
    assert deadline_rules.judge(commissioned, perth(2026, 5, 20), date(2026, 12, 3)).state == ComplianceState.MET


def test_days_left_count_business_days_and_due_soon_uses_the_warning_window() -> None:
    """Days left skip weekends and holidays like the deadline does (WA Day between Friday 29 May
    and the deadline); due soon is days left within DERSYNC_DEADLINE_WARNING_DAYS."""
    deadline_rules = rules(business_days=3, warning_days=2)
    commissioned = date(2026, 5, 28)  # Thursday: Fri 29, (Mon 1 June WA Day), Tue 2, Wed 3
    assert deadline_rules.deadline(commissioned) == date(2026, 6, 3)
    left = {today: deadline_rules.judge(commissioned, None, today).days_left
            for today in (date(2026, 5, 28), date(2026, 5, 29), date(2026, 5, 30), date(2026, 6, 2))}
    assert left == {date(2026, 5, 28): 3, date(2026, 5, 29): 2, date(2026, 5, 30): 2, date(2026, 6, 2): 1}
    assert [deadline_rules.due_soon(days) for days in (3, 2, 0, None)] == [False, True, True, False]


def test_commissioning_dates_are_read_strictly() -> None:
    """Only a YYYY-MM-DD calendar date is a commissioning date; anything else means none."""
    assert commissioning_date("2026-06-01") == date(2026, 6, 1)
    assert [commissioning_date(v) for v in ("2023-02-29", "20260601", "2026-06-01T00:00", None, 20260601)] == [
        None, None, None, None, None]


def facts(connections: list[dict[str, object]], *, acceptances: dict[str, FirstAcceptance] | None = None,
          blocking: list[tuple[str | None, str]] | None = None) -> InstallationFacts:
    return InstallationFacts(nmi="8001000001", installation=json.dumps({"acConnections": connections}),
                             acceptances=acceptances or {}, blocking=blocking or [])


def test_the_blocking_exception_prefers_the_connections_own_and_is_shown_only_until_accepted() -> None:
    """An unaccepted connection shows the open exception naming it, else the installation's first
    (AEMO accepts an installation whole); an accepted one shows none; a record's connections are
    judged one row each, and a summary counts every state and month."""
    accepted = FirstAcceptance(perth(2026, 6, 2), AcceptanceRule.ANSWERED, "tx-1")
    rows = judge_installation(facts(
        [{"nspConnectionId": "A", "commissioningDate": "2026-05-25"},
         {"nspConnectionId": "B", "commissioningDate": "2026-05-25"},
         {"nspConnectionId": "C", "commissioningDate": "2026-05-25"},
         {"nspConnectionId": "D"}],
        acceptances={"C": accepted},
        blocking=[("A", "1006"), ("B", "1008"), (None, "1020")],
    ), rules(), today=date(2026, 7, 1))

    assert [(r.nsp_connection_id, r.state, r.blocking_exception) for r in rows] == [
        ("A", ComplianceState.OVERDUE, "1006"), ("B", ComplianceState.OVERDUE, "1008"),
        ("C", ComplianceState.MET, None), ("D", ComplianceState.NOT_APPLICABLE, "1006")]
    only_general = judge_installation(facts([{"nspConnectionId": "E", "commissioningDate": "2026-05-25"}],
                                            blocking=[("A", "1006"), (None, "1020")]), rules(), date(2026, 7, 1))
    assert only_general[0].blocking_exception == "1006"
    assert judge_installation(InstallationFacts("8001000002", "not json", {}, []), rules(), date(2026, 7, 1)) == []

    summary = Summary()
    for row in rows:
        summary.add(row)
    counted = summary.as_dict()
    assert counted["byState"] == {"met": 1, "late": 0, "overdue": 2, "due": 0, "not_applicable": 1}
    assert counted["byMonth"] == [
        {"month": "2026-05", "met": 1, "late": 0, "overdue": 2, "due": 0, "not_applicable": 0, "total": 3},
        {"month": None, "met": 0, "late": 0, "overdue": 0, "due": 0, "not_applicable": 1, "total": 1}]
