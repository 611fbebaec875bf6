"""The operator console: parked records, console users and sessions, the action log, and what
the overview and the exceptions inbox read through at a million records: indexes, and a tally
of records by sync state kept by triggers.

Parked records: the due index now holds only records a pass takes (due and not parked), so that
picking and counting due work stays an index read.

The tally (`der_record_tally`): counting a million rows by state took 150-370 ms on 2 cores on
both databases, for every overview, `dersync status` and Prometheus scrape. Triggers keep the
counts instead, in the same transaction as the change, so they are exact:
* SQLite (one writer at a time): row triggers update one row per state in place;
* PostgreSQL: statement triggers insert one delta row per state changed (no row is updated, so
  concurrent writers never wait for each other or deadlock on a counter); readers sum them, and
  `records.compact_tally` folds them together when they pile up.
The tally starts from a count of the records, taken under the triggers' lock (nothing can
change in between).

Each step adds only what is missing, so that the migration is safe to run again on a store
that was part-way migrated.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-10
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

_PARK_COLUMNS = (
    ("parked_at", sa.DateTime(timezone=True), "set while parked: sync passes skip the record"),
    ("parked_by", sa.Text(), "who parked it"),
    ("parked_reason", sa.Text(), "why it was parked"),
)

#: (name, table, columns, condition of a partial index or None)
_INDEXES = (
    ("ix_der_record_parked", "der_record", ["nmi"], "parked_at IS NOT NULL"),
    ("ix_validation_exception_inbox", "validation_exception", ["status", "first_seen_at", "id"], None),
    ("ix_validation_exception_first_seen", "validation_exception", ["first_seen_at", "id"], None),
    ("ix_validation_exception_code", "validation_exception", ["status", "level", "code"], None),
)


_SQLITE_TALLY = (
    """CREATE TRIGGER der_record_tally_insert AFTER INSERT ON der_record BEGIN
  INSERT INTO der_record_tally (sync_state, n) VALUES (NEW.sync_state, 1)
  ON CONFLICT (sync_state) DO UPDATE SET n = n + 1;
END""",
    """CREATE TRIGGER der_record_tally_delete AFTER DELETE ON der_record BEGIN
  UPDATE der_record_tally SET n = n - 1 WHERE sync_state = OLD.sync_state;
END""",
    """CREATE TRIGGER der_record_tally_update AFTER UPDATE OF sync_state ON der_record
WHEN OLD.sync_state IS NOT NEW.sync_state BEGIN
  UPDATE der_record_tally SET n = n - 1 WHERE sync_state = OLD.sync_state;
  INSERT INTO der_record_tally (sync_state, n) VALUES (NEW.sync_state, 1)
  ON CONFLICT (sync_state) DO UPDATE SET n = n + 1;
END""",
)

_POSTGRES_TALLY = (
    """CREATE FUNCTION der_record_tally_inserted() RETURNS trigger AS $$
BEGIN
  INSERT INTO der_record_tally (sync_state, n) SELECT sync_state, count(*) FROM new_rows GROUP BY sync_state;
  RETURN NULL;
END
$$ LANGUAGE plpgsql""",
    """CREATE FUNCTION der_record_tally_deleted() RETURNS trigger AS $$
BEGIN
  INSERT INTO der_record_tally (sync_state, n) SELECT sync_state, -count(*) FROM old_rows GROUP BY sync_state;
  RETURN NULL;
END
$$ LANGUAGE plpgsql""",
    """CREATE FUNCTION der_record_tally_updated() RETURNS trigger AS $$
BEGIN
  INSERT INTO der_record_tally (sync_state, n)
  SELECT sync_state, sum(n) FROM (
    SELECT sync_state, -count(*) AS n FROM old_rows GROUP BY sync_state
    UNION ALL
    SELECT sync_state, count(*) AS n FROM new_rows GROUP BY sync_state
  ) AS changed GROUP BY sync_state HAVING sum(n) <> 0;
  RETURN NULL;
END
$$ LANGUAGE plpgsql""",
    """CREATE FUNCTION der_record_tally_truncated() RETURNS trigger AS $$
BEGIN
  DELETE FROM der_record_tally;
  RETURN NULL;
END
$$ LANGUAGE plpgsql""",
    """CREATE TRIGGER der_record_tally_insert AFTER INSERT ON der_record REFERENCING NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION der_record_tally_inserted()""",
    """CREATE TRIGGER der_record_tally_delete AFTER DELETE ON der_record REFERENCING OLD TABLE AS old_rows
FOR EACH STATEMENT EXECUTE FUNCTION der_record_tally_deleted()""",
    """CREATE TRIGGER der_record_tally_update AFTER UPDATE ON der_record
REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION der_record_tally_updated()""",
    """CREATE TRIGGER der_record_tally_truncate AFTER TRUNCATE ON der_record
FOR EACH STATEMENT EXECUTE FUNCTION der_record_tally_truncated()""",
)
_POSTGRES_FUNCTIONS = ("der_record_tally_inserted", "der_record_tally_deleted", "der_record_tally_updated",
                       "der_record_tally_truncated")
_TRIGGERS = ("der_record_tally_insert", "der_record_tally_delete", "der_record_tally_update",
             "der_record_tally_truncate")


def _due_index(where: str) -> None:
    op.execute("DROP INDEX IF EXISTS ix_der_record_due")
    op.execute(f"CREATE INDEX ix_der_record_due ON der_record (nmi) WHERE {where}")


def upgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    inspector = sa.inspect(bind)
    present = {column["name"] for column in inspector.get_columns("der_record")}
    for name, type_, comment in _PARK_COLUMNS:
        if name not in present:
            op.add_column("der_record", sa.Column(name, type_, comment=comment))
    for name, table, columns, where in _INDEXES:
        if name not in {index["name"] for index in inspector.get_indexes(table)}:
            if where is None:
                op.create_index(name, table, columns)
            else:
                op.create_index(name, table, columns, sqlite_where=sa.text(where), postgresql_where=sa.text(where))
    _due_index("due = 1 AND parked_at IS NULL" if sqlite else "due AND parked_at IS NULL")

    op.create_table(
        "der_record_tally",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("sync_state", sa.String(16), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False,
                  comment="records in this state (a delta on PostgreSQL: summed)"),
        comment="records by sync_state, kept by triggers on der_record (migration 0008): counting a million "
                "rows per overview or scrape would take too long",
    )
    if sqlite:
        op.create_index("ux_der_record_tally_state", "der_record_tally", ["sync_state"], unique=True)
    for statement in _SQLITE_TALLY if sqlite else _POSTGRES_TALLY:
        op.execute(statement)
    # After the triggers exist (their lock holds writers off until this transaction commits).
    op.execute("INSERT INTO der_record_tally (sync_state, n) SELECT sync_state, count(*) FROM der_record "
               "GROUP BY sync_state")

    op.create_table(
        "console_user",
        sa.Column("name", sa.Text(), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False, comment="viewer | operator"),
        sa.Column("password_hash", sa.Text(), nullable=False, comment="argon2id (never shown anywhere)"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "console_session",
        sa.Column("id_sha256", sa.String(64), primary_key=True,
                  comment="SHA-256 of the cookie's value (not the value)"),
        sa.Column("user_name", sa.Text(), nullable=False),
        sa.Column("via", sa.String(16), nullable=False, comment="password | proxy"),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_console_session_user", "console_session", ["user_name"])
    op.create_index("ix_console_session_expires", "console_session", ["expires_at"])
    op.create_table(
        "console_action",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False, comment="user name, or cli:OS-USER"),
        sa.Column("kind", sa.String(16), nullable=False,
                  comment="redrive | park | unpark | user_saved | user_removed"),
        sa.Column("reason", sa.Text()),
        sa.Column("detail", sa.Text(), nullable=False, server_default=sa.text("'{}'"),
                  comment="JSON: selection, counts"),
        sa.Column("nmi_count", sa.Integer(), nullable=False, server_default=sa.text("0")),
    )
    op.create_index("ix_console_action_at", "console_action", ["at"])
    op.create_table(
        "console_action_nmi",
        sa.Column("action_id", _Id, primary_key=True, comment="console_action.id"),
        sa.Column("nmi", sa.Text(), primary_key=True),
    )
    op.create_index("ix_console_action_nmi_nmi", "console_action_nmi", ["nmi", "action_id"])


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for trigger in _TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}" + ("" if sqlite else " ON der_record"))
    if not sqlite:
        for function in _POSTGRES_FUNCTIONS:
            op.execute(f"DROP FUNCTION IF EXISTS {function}()")
    op.execute("DROP INDEX IF EXISTS ux_der_record_tally_state")
    op.drop_table("der_record_tally")
    _due_index("due = 1" if sqlite else "due")
    op.drop_index("ix_console_action_nmi_nmi", table_name="console_action_nmi")
    op.drop_table("console_action_nmi")
    op.drop_index("ix_console_action_at", table_name="console_action")
    op.drop_table("console_action")
    op.drop_index("ix_console_session_expires", table_name="console_session")
    op.drop_index("ix_console_session_user", table_name="console_session")
    op.drop_table("console_session")
    op.drop_table("console_user")
    for name, *_rest in reversed(_INDEXES):
        op.execute(f"DROP INDEX IF EXISTS {name}")
    for name, _type, _comment in reversed(_PARK_COLUMNS):
        # Native on PostgreSQL and on SQLite 3.35 and later (the column is no longer indexed).
        op.execute(f"ALTER TABLE der_record DROP COLUMN {name}")
