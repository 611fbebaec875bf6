"""First acceptances in the store (dersync.store.compliance): written with the outcome that
brought them, at the time their rule says, never moved afterwards; and the facts a compliance
report is judged from, streamed in batches. Fixed times throughout; SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dersync.aemo.sent import SentRequest
from dersync.store import Accepted, PartOutcome, RecordOutcome, Store, ValidationException
from dersync.testing import connection, installation, load, nmi_details, nmi_for
from dersync.vocabulary import AcceptanceRule, Level, Part, Result

T0 = datetime(2026, 6, 10, 2, 0, tzinfo=UTC)
ALL = frozenset(Level)


def answered(nmi: str, transaction_id: str, at: datetime, *, status: int = 200) -> SentRequest:
    """The ledger row of an installation write AEMO answered at `at`."""
    return SentRequest(sent_at=at - timedelta(milliseconds=30), answered_at=at, nmi=nmi, api="installation",
                       method="PUT", path=f"/installation/{nmi}", status=status, error=None,
                       transaction_id=transaction_id, codes=(), attempt=1, pass_id=None, body_sha256=None,
                       body_gzip=None)


def accepted(nmi: str, transaction_id: str, *items: Accepted, read_at: datetime) -> RecordOutcome:
    return RecordOutcome(nmi, 1, (PartOutcome(Part.INSTALLATION, Result.SYNCED, "h", ALL, at_aemo=True,
                                              transaction_id=transaction_id, accepted=items, answered_at=read_at),))


def rejected(nmi: str, *exceptions: ValidationException, part: Part = Part.INSTALLATION,
             levels: frozenset[Level] = frozenset({Level.LOCAL, Level.SCHEMA, Level.FIRST})) -> RecordOutcome:
    return RecordOutcome(nmi, 1, (PartOutcome(part, Result.REJECTED, "bad", levels, exceptions,
                                              transaction_id="tx-rejected"),))


async def test_a_first_acceptance_is_the_ledgers_answer_time_and_never_moves(store: Store) -> None:
    """Connections added by an accepted write are recorded at the ledger's answeredAt of that
    request (stored in the same transaction), with its transactionId; a later rejection or a
    later acceptance leaves them as they were, and only a connection new in it is added."""
    nmi = nmi_for(1)
    await store.record_outcomes(
        [accepted(nmi, "tx-1", Accepted("A", AcceptanceRule.ANSWERED), Accepted("B", AcceptanceRule.ANSWERED),
                  read_at=T0 + timedelta(milliseconds=3))],
        sent=[answered(nmi, "tx-1", T0)])
    await store.record_outcomes([rejected(nmi, ValidationException(Level.FIRST, "1006", "bad type"))],
                                sent=[answered(nmi, "tx-rejected", T0 + timedelta(days=1), status=422)])
    later = T0 + timedelta(days=2)
    await store.record_outcomes(
        [accepted(nmi, "tx-3", Accepted("A", AcceptanceRule.ANSWERED), Accepted("C", AcceptanceRule.ANSWERED),
                  read_at=later)],
        sent=[answered(nmi, "tx-3", later)])

    found = (await store.first_acceptances([nmi]))[nmi]
    assert {key: (a.accepted_at, a.rule, a.transaction_id) for key, a in found.items()} == {
        "A": (T0, AcceptanceRule.ANSWERED, "tx-1"),
        "B": (T0, AcceptanceRule.ANSWERED, "tx-1"),
        "C": (later, AcceptanceRule.ANSWERED, "tx-3"),
    }


async def test_an_answer_stored_before_its_outcome_is_read_from_the_ledger(store: Store) -> None:
    """The answer times of requests appended with the outcome are taken as they are appended; one
    appended earlier on its own (a pass cut short, a lost lease) is read back from the ledger."""
    nmi = nmi_for(3)
    await store.append_ledger([answered(nmi, "tx-early", T0)])
    await store.record_outcomes([accepted(nmi, "tx-early", Accepted("A", AcceptanceRule.ANSWERED),
                                          read_at=T0 + timedelta(seconds=5))])

    found = (await store.first_acceptances([nmi]))[nmi]
    assert (found["A"].accepted_at, found["A"].transaction_id) == (T0, "tx-early")


async def test_a_connection_aemo_held_before_is_recorded_at_aemos_creation_time(store: Store) -> None:
    """A connection AEMO held before the accepting request is recorded at AEMO's
    recordCreationDate for it, not at the answer's time; where the ledger holds no row for an
    answer, the time the answer was read stands in; within one call the first mention wins."""
    nmi = nmi_for(2)
    portal = datetime(2026, 5, 1, 3, 0, tzinfo=UTC)
    read_at = T0 + timedelta(milliseconds=5)
    await store.record_outcomes([
        accepted(nmi, "tx-9", Accepted("P", AcceptanceRule.HELD_AT_AEMO, portal),
                 Accepted("N", AcceptanceRule.ANSWERED), read_at=read_at),
        accepted(nmi, "tx-10", Accepted("N", AcceptanceRule.ANSWERED), read_at=read_at + timedelta(hours=1)),
    ])

    found = (await store.first_acceptances([nmi]))[nmi]
    assert (found["P"].accepted_at, found["P"].rule, found["P"].transaction_id) == (
        portal, AcceptanceRule.HELD_AT_AEMO, "tx-9")
    assert (found["N"].accepted_at, found["N"].rule, found["N"].transaction_id) == (
        read_at, AcceptanceRule.ANSWERED, "tx-9")


async def test_installation_facts_stream_in_batches_with_acceptances_and_blocking_exceptions(store: Store) -> None:
    """Every record with an installation comes once, in NMI order, across batch boundaries, with
    its own first acceptances and its open installation exceptions that block acceptance (local
    before schema before first; not second-level ones, the NMI part's or resolved ones)."""
    nmis = [nmi_for(i) for i in range(10, 15)]
    await load(store, [{"nmiDetails": nmi_details(nmi), "installation": installation(nmi)} for nmi in nmis]
               + [{"nmiDetails": nmi_details(nmi_for(16))}])
    await store.record_outcomes([
        accepted(nmis[1], "tx-a", Accepted(f"C-{nmis[1]}-1", AcceptanceRule.ANSWERED), read_at=T0),
        accepted(nmis[4], "tx-b", Accepted(f"C-{nmis[4]}-1", AcceptanceRule.ANSWERED), read_at=T0),
    ])
    await store.record_outcomes([rejected(
        nmis[2],
        ValidationException(Level.FIRST, "1006", "bad type", nsp_connection_id=f"C-{nmis[2]}-1"),
        ValidationException(Level.LOCAL, "missing", "field missing", field="jobNumber"),
    )])
    await store.record_outcomes([rejected(nmis[3], ValidationException(Level.SECOND, "2023", "unapproved"),
                                          levels=ALL)])
    await store.record_outcomes([rejected(nmis[0], ValidationException(Level.LOCAL, "nmi", "bad"), part=Part.NMI)])

    batches = [batch async for batch in store.installation_facts(2)]

    assert [len(batch) for batch in batches] == [2, 2, 1]
    facts = {f.nmi: f for batch in batches for f in batch}
    assert list(facts) == nmis
    assert {nmi: sorted(f.acceptances) for nmi, f in facts.items() if f.acceptances} == {
        nmis[1]: [f"C-{nmis[1]}-1"], nmis[4]: [f"C-{nmis[4]}-1"]}
    assert facts[nmis[1]].acceptances[f"C-{nmis[1]}-1"].accepted_at == T0
    assert {nmi: list(f.blocking) for nmi, f in facts.items() if f.blocking} == {
        nmis[2]: [(None, "missing"), (f"C-{nmis[2]}-1", "1006")]}
    assert "acConnections" in facts[nmis[0]].installation


async def test_a_record_changed_to_a_new_connection_keeps_the_old_ones_acceptance(store: Store) -> None:
    """Acceptances are keyed by (NMI, nspConnectionId): a record whose installation is rewritten
    keeps each connection's first acceptance, and a connection it drops simply stops appearing."""
    nmi = nmi_for(20)
    await load(store, [{"installation": installation(nmi, connections=[connection("A"), connection("B")])}])
    await store.record_outcomes([accepted(nmi, "tx", Accepted("A", AcceptanceRule.ANSWERED),
                                          Accepted("B", AcceptanceRule.ANSWERED), read_at=T0)])
    await load(store, [{"installation": installation(nmi, connections=[connection("B")])}])

    [[facts]] = [batch async for batch in store.installation_facts(10)]
    assert sorted(facts.acceptances) == ["A", "B"] and '"A"' not in facts.installation


async def test_aemos_read_back_fills_in_connections_without_a_first_acceptance(store: Store) -> None:
    """AEMO's installations as read back (reconciliation's batched GET) give a connection with no
    first acceptance yet its recordCreationDate (read as UTC without an offset), rule
    held_at_aemo; a connection already recorded keeps its row, one without a readable date is
    left alone."""
    nmi = nmi_for(30)
    await store.record_outcomes([accepted(nmi, "tx-d", Accepted("D", AcceptanceRule.ANSWERED), read_at=T0)])
    held = {nmi: {"nmi": nmi, "acConnections": [
        {"nspConnectionId": "A", "connectionId": 100001, "recordCreationDate": "2026-05-01T03:00:00.000Z"},
        {"nspConnectionId": "B", "connectionId": 100002, "recordCreationDate": "2026-05-02T10:00:00"},
        {"nspConnectionId": "C", "connectionId": 100003, "recordCreationDate": "soon"},
        {"nspConnectionId": "D", "connectionId": 100004, "recordCreationDate": "2026-01-01T00:00:00Z"},
    ]}}

    assert await store.record_held_at_aemo(held) == 2
    assert await store.record_held_at_aemo(held) == 0

    found = (await store.first_acceptances([nmi]))[nmi]
    assert {key: (a.accepted_at, a.rule, a.transaction_id) for key, a in found.items()} == {
        "A": (datetime(2026, 5, 1, 3, tzinfo=UTC), AcceptanceRule.HELD_AT_AEMO, None),
        "B": (datetime(2026, 5, 2, 10, tzinfo=UTC), AcceptanceRule.HELD_AT_AEMO, None),
        "D": (T0, AcceptanceRule.ANSWERED, "tx-d"),
    }
