"""The store's tables: the single definition of its schema (Alembic migrations mirror it).

`der_record` is both the input table an operator's ETL may write (`nmi`, `nmi_details`,
`installation`: JSON text, exactly the objects of an import line) and the record's sync state.
A trigger marks a row due and bumps `revision` whenever either JSON column changes, so an ETL
that only writes the input columns needs to know nothing else; `revision` lets a pass that read
the row earlier detect that it changed underneath it.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    false,
    func,
    text,
    true,
)

metadata = MetaData()

Id = BigInteger().with_variant(Integer(), "sqlite")

der_record = Table(
    "der_record",
    metadata,
    Column("nmi", Text, primary_key=True),
    Column("nmi_details", Text, nullable=True, comment="nmiDetails object as JSON text"),
    Column("installation", Text, nullable=True, comment="Installation API data object as JSON text"),
    Column("revision", BigInteger, nullable=False, server_default=text("1")),
    Column("due", Boolean, nullable=False, server_default=true()),
    Column("sync_state", String(16), nullable=False, server_default=text("'pending'")),
    Column("nmi_synced_hash", String(64)),
    Column("inst_synced_hash", String(64)),
    Column("nmi_rejected_hash", String(64)),
    Column("inst_rejected_hash", String(64)),
    Column("nmi_at_aemo", Boolean),
    Column("inst_at_aemo", Boolean),
    Column("attempt_started_at", DateTime(timezone=True), comment="a write was sent, outcome unknown"),
    Column("last_attempt_at", DateTime(timezone=True)),
    Column("last_synced_at", DateTime(timezone=True)),
    Column("last_transaction_id", String(100)),
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Parked by a person (console, API or CLI): sync passes skip the record until it is unparked.
    Column("parked_at", DateTime(timezone=True), comment="set while parked: sync passes skip the record"),
    Column("parked_by", Text, comment="who parked it"),
    Column("parked_reason", Text, comment="why it was parked"),
    # What a pass takes: due and not parked (migration 0008). SQLite uses a partial index only
    # when the query names its condition as written, and SQLAlchemy writes the due test there as
    # `due = 1` (migration 0003). Both the batches and the count are answered from this index.
    Index("ix_der_record_due", "nmi", sqlite_where=text("due = 1 AND parked_at IS NULL"),
          postgresql_where=text("due AND parked_at IS NULL")),
    Index("ix_der_record_sync_state", "sync_state"),
    Index("ix_der_record_parked", "nmi", sqlite_where=text("parked_at IS NOT NULL"),
          postgresql_where=text("parked_at IS NOT NULL")),
)

equipment_id = Table(
    "equipment_id",
    metadata,
    Column("nmi", Text, primary_key=True),
    Column("nsp_connection_id", Text, primary_key=True),
    Column("nsp_device_id", Text, primary_key=True, comment="'' for the AC connection itself"),
    Column("aemo_id", BigInteger, nullable=False, comment="connectionId or deviceId"),
    Column("installation_stage", String(32)),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("status", Text, comment="AEMO's status for it, as last answered"),
)

validation_exception = Table(
    "validation_exception",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("nmi", Text, nullable=False),
    Column("part", String(16), nullable=False, comment="nmi | installation"),
    Column("level", String(16), nullable=False, comment="local | schema | first | second"),
    Column("code", String(32), nullable=False),
    Column("title", Text),
    Column("detail", Text, nullable=False),
    Column("field", Text),
    Column("transaction_id", String(100)),
    Column("nsp_connection_id", Text),
    Column("connection_id", BigInteger),
    Column("nsp_device_id", Text),
    Column("device_id", BigInteger),
    Column("status", String(16), nullable=False, server_default=text("'open'")),
    Column("first_seen_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=False),
    Column("resolved_at", DateTime(timezone=True)),
    Column("raw", Text, comment="AEMO's original object, as JSON"),
    Index("ix_validation_exception_nmi", "nmi", "part", "status"),
    Index("ix_validation_exception_open", "status", "level"),
    # The console's inbox: newest first within a status, and counts by code (migration 0008).
    Index("ix_validation_exception_inbox", "status", "first_seen_at", "id"),
    Index("ix_validation_exception_first_seen", "first_seen_at", "id"),
    Index("ix_validation_exception_code", "status", "level", "code"),
)

sync_pass = Table(
    "sync_pass",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False, comment="sync | reconcile"),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("status", String(16), nullable=False, comment="running | ok | failed | interrupted"),
    Column("summary", Text, comment="counts as JSON"),
    Column("error", Text),
    Index("ix_sync_pass_kind", "kind", "id"),
)

drift_finding = Table(
    "drift_finding",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("reconcile_pass_id", Id, nullable=False, comment="sync_pass.id of the reconcile pass"),
    Column("nmi", Text, nullable=False),
    Column("kind", String(32), nullable=False,
           comment="missing_at_aemo | different_at_aemo | orphan_at_aemo | conditional_at_aemo"),
    Column("part", String(16), nullable=False, comment="nmi | installation"),
    Column("detail", Text, nullable=False),
    Column("fields", Text, nullable=False, comment="JSON list of {path, store, aemo}"),
    Column("found_at", DateTime(timezone=True), nullable=False),
    Index("ix_drift_finding_pass", "reconcile_pass_id", "nmi"),
    Index("ix_drift_finding_nmi", "nmi"),
)

sender_lease = Table(
    "sender_lease",
    metadata,
    Column("name", String(32), primary_key=True, comment="'sender': the right to send to AEMO"),
    Column("holder", Text, comment="replica id of the holder; NULL once released"),
    Column("generation", BigInteger, nullable=False, comment="bumped by every claim (the fencing token)"),
    Column("renewal", BigInteger, nullable=False, comment="bumped by every renewal and the release"),
    Column("lapse_seconds", Float, nullable=False,
           comment="the holder's rule: seen unchanged this long (by the reader's clock), the lease has lapsed"),
    Column("renewed_at", DateTime(timezone=True), comment="database time of the last write (for people)"),
)

ledger_entry = Table(
    "ledger_entry",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("sent_at", DateTime(timezone=True), nullable=False),
    Column("answered_at", DateTime(timezone=True), comment="NULL: no answer arrived (a write may have landed)"),
    Column("nmi", Text, comment="the NMI the request is about; NULL for a lookup of many"),
    Column("part", String(16), nullable=False, comment="nmi | installation: which API"),
    Column("method", String(8), nullable=False),
    Column("path", Text, nullable=False, comment="path and query, below the API's base URL"),
    Column("status", Integer, comment="HTTP status; NULL for no answer"),
    Column("error", Text, comment="why no answer came (timed out, connection dropped, cannot connect)"),
    Column("transaction_id", String(100)),
    Column("codes", Text, nullable=False, server_default=text("'[]'"), comment="JSON list of error/exception codes"),
    Column("attempt", Integer, nullable=False),
    Column("pass_id", Id, comment="sync_pass.id of the pass that sent it, if any"),
    Column("body_sha256", String(64), comment="SHA-256 of the body as sent, uncompressed"),
    Column("body", LargeBinary, comment="the body as sent, gzip-compressed (writes only; pruned first)"),
    Index("ix_ledger_entry_nmi", "nmi", "id"),
    Index("ix_ledger_entry_sent_at", "sent_at"),
)

der_record_tally = Table(
    "der_record_tally",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("sync_state", String(16), nullable=False),
    Column("n", BigInteger, nullable=False, comment="records in this state (a delta on PostgreSQL: summed)"),
    # SQLite (one writer at a time) keeps one row per state, updated in place by its triggers.
    Index("ux_der_record_tally_state", "sync_state", unique=True).ddl_if(dialect="sqlite"),
    comment="records by sync_state, kept by triggers on der_record (migration 0008): counting a million "
            "rows per overview or scrape would take too long",
)

console_user = Table(
    "console_user",
    metadata,
    Column("name", Text, primary_key=True),
    Column("role", String(16), nullable=False, comment="viewer | operator"),
    Column("password_hash", Text, nullable=False, comment="argon2id (never shown anywhere)"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

console_session = Table(
    "console_session",
    metadata,
    Column("id_sha256", String(64), primary_key=True, comment="SHA-256 of the cookie's value (not the value)"),
    Column("user_name", Text, nullable=False),
    Column("via", String(16), nullable=False, comment="password | proxy"),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_seen_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("ix_console_session_user", "user_name"),
    Index("ix_console_session_expires", "expires_at"),
)

console_action = Table(
    "console_action",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor", Text, nullable=False, comment="user name, or cli:OS-USER"),
    Column("kind", String(16), nullable=False, comment="redrive | park | unpark | user_saved | user_removed"),
    Column("reason", Text),
    Column("detail", Text, nullable=False, server_default=text("'{}'"), comment="JSON: selection, counts"),
    Column("nmi_count", Integer, nullable=False, server_default=text("0")),
    Index("ix_console_action_at", "at"),
)

console_action_nmi = Table(
    "console_action_nmi",
    metadata,
    Column("action_id", Id, primary_key=True, comment="console_action.id"),
    Column("nmi", Text, primary_key=True),
    Index("ix_console_action_nmi_nmi", "nmi", "action_id"),
)

connection_acceptance = Table(
    "connection_acceptance",
    metadata,
    Column("nmi", Text, primary_key=True),
    Column("nsp_connection_id", Text, primary_key=True),
    Column("accepted_at", DateTime(timezone=True), nullable=False,
           comment="when AEMO first accepted the AC connection (see rule); never moved once written"),
    Column("rule", String(16), nullable=False,
           comment="answered: AEMO's answer to dersync's request that added it (the ledger's answered_at) | "
                   "held_at_aemo: AEMO held it before that request (AEMO's recordCreationDate)"),
    Column("transaction_id", String(100), comment="AEMO's transactionId of the accepting exchange"),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)

__all__ = [
    "connection_acceptance",
    "console_action",
    "console_action_nmi",
    "console_session",
    "console_user",
    "der_record",
    "der_record_tally",
    "drift_finding",
    "equipment_id",
    "false",
    "ledger_entry",
    "metadata",
    "sender_lease",
    "sync_pass",
    "validation_exception",
]
