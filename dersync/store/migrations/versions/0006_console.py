"""The operator console: parked records, console users and sessions, the action log, and the
indexes the exceptions inbox and the overview read through.

Migration 0001 builds `der_record` and `validation_exception` from the current table definitions
(`dersync.store.tables`), so on a store created by this release those already hold the new
columns and indexes; on an older store they are added here. Each step therefore adds only what is
missing, and the migration is the same whichever way the store came to be.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-10
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
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


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
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
