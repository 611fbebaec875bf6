"""The words dersync uses about its records, each defined once.

They are `StrEnum`s: a member equals its string, so what the store holds, what JSON and CSV show
and what scripts compare stays the plain word, while the code gets one definition that the type
checker can hold every use to. CLI choices, counters and summaries are derived from these lists,
so adding a word here is the whole change.
"""

from __future__ import annotations

from enum import StrEnum


class Part(StrEnum):
    """The two parts of a record, one per AEMO API (the import line's `nmiDetails` and
    `installation`)."""

    NMI = "nmi"
    INSTALLATION = "installation"


class Level(StrEnum):
    """Who found a validation exception, in the order a record meets them."""

    LOCAL = "local"  # dersync, before sending: nothing was sent
    SCHEMA = "schema"  # AEMO, HTTP 400 (JSON schema, code 1020): nothing stored
    FIRST = "first"  # AEMO, HTTP 422 (first-level business rules, 1000-1999): nothing stored
    SECOND = "second"  # AEMO, in a 200/201 (2023, 2024, 2040): stored at stage Conditional


class Action(StrEnum):
    """What a sync pass plans for one part, before any request."""

    ABSENT = "absent"  # the store holds no such part
    UNCHANGED = "unchanged"  # AEMO accepted exactly this content before
    STILL_REJECTED = "still_rejected"  # AEMO rejected exactly this content before
    INVALID = "invalid"  # local validation failed: not sendable
    SEND = "send"


class Result(StrEnum):
    """What became of one part in a pass."""

    SYNCED = "synced"
    REJECTED = "rejected"
    RETRY = "retry"  # AEMO could not be reached or was busy: nothing known, still due
    UNCHANGED = "unchanged"
    ABSENT = "absent"


class SyncState(StrEnum):
    """A record's state in the store (`der_record.sync_state`)."""

    PENDING = "pending"  # never pushed, or made due again by reconciliation
    SYNCED = "synced"
    REJECTED = "rejected"
    RETRY = "retry"


class ExceptionStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class DriftKind(StrEnum):
    """What a reconciliation can find between the store and AEMO's register."""

    MISSING_AT_AEMO = "missing_at_aemo"
    DIFFERENT_AT_AEMO = "different_at_aemo"
    ORPHAN_AT_AEMO = "orphan_at_aemo"
    CONDITIONAL_AT_AEMO = "conditional_at_aemo"


class Role(StrEnum):
    """What a console user may do (`console_user.role`): a viewer reads, an operator also acts
    (re-drive, park, unpark)."""

    VIEWER = "viewer"
    OPERATOR = "operator"


class ActionKind(StrEnum):
    """What a person did through the console, the JSON API or the CLI (`console_action.kind`)."""

    REDRIVE = "redrive"  # records made due again, their synced content forgotten
    PARK = "park"  # records skipped by sync passes until unparked
    UNPARK = "unpark"
    USER_SAVED = "user_saved"  # a console user created or changed (never the password itself)
    USER_REMOVED = "user_removed"


class ExceptionAge(StrEnum):
    """How long ago an exception was first seen (the inbox's age filter)."""

    DAY = "1d"  # within the last 24 hours
    WEEK = "7d"  # within the last 7 days
    MONTH = "30d"  # within the last 30 days
    OLDER = "older"  # more than 30 days ago
class RemovedEquipment(StrEnum):
    """What to do about equipment AEMO holds that the store's record no longer lists."""

    REPORT = "report"  # an open local exception REMOVED_IN_STORE; nothing is sent for it
    DECOMMISSION = "decommission"  # the next write sends it with the decommissioned status, once


class PassKind(StrEnum):
    SYNC = "sync"
    RECONCILE = "reconcile"


class PassStatus(StrEnum):
    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class ComplianceState(StrEnum):
    """Where an AC connection stands against its submission deadline (README, "Compliance
    deadlines"): judged from its commissioning date and its first acceptance at AEMO."""

    MET = "met"  # first accepted on or before its deadline
    LATE = "late"  # first accepted after its deadline
    OVERDUE = "overdue"  # not accepted, and the deadline has passed
    DUE = "due"  # not accepted, the deadline still ahead
    NOT_APPLICABLE = "not_applicable"  # no commissioning date: no deadline


class AcceptanceRule(StrEnum):
    """Which time a connection's first acceptance was recorded with."""

    ANSWERED = "answered"  # dersync's request added it: when AEMO's successful answer came
    HELD_AT_AEMO = "held_at_aemo"  # AEMO held it before this request: AEMO's own recordCreationDate


def values(words: type[StrEnum]) -> list[str]:
    """The plain words of a vocabulary, in definition order (CLI choices, table columns)."""
    return [word.value for word in words]
