"""Initial schema: records with sync state, AEMO equipment ids, validation exceptions, passes.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from alembic import op
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    text,
    true,
)

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_SQLITE_TRIGGER = """
CREATE TRIGGER der_record_changed AFTER UPDATE OF nmi_details, installation ON der_record
FOR EACH ROW WHEN OLD.nmi_details IS NOT NEW.nmi_details OR OLD.installation IS NOT NEW.installation
BEGIN
  UPDATE der_record SET due = 1, revision = OLD.revision + 1 WHERE nmi = NEW.nmi;
END
"""

_POSTGRES_FUNCTION = """
CREATE FUNCTION der_record_mark_changed() RETURNS trigger AS $$
BEGIN
  IF NEW.nmi_details IS DISTINCT FROM OLD.nmi_details
     OR NEW.installation IS DISTINCT FROM OLD.installation THEN
    NEW.due := true;
    NEW.revision := OLD.revision + 1;
  END IF;
  RETURN NEW;
END
$$ LANGUAGE plpgsql
"""

_POSTGRES_TRIGGER = """
CREATE TRIGGER der_record_changed BEFORE UPDATE ON der_record
FOR EACH ROW EXECUTE FUNCTION der_record_mark_changed()
"""


# The schema as this revision created it, frozen here: later revisions change it by their own
# operations, so this one must never follow dersync/store/tables.py (a column added there would
# otherwise be created here and again by the revision that adds it).
metadata = MetaData()
_Id = BigInteger().with_variant(Integer(), "sqlite")

der_record = Table(
    "der_record", metadata,
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
    Index("ix_der_record_due", "nmi", sqlite_where=text("due"), postgresql_where=text("due")),
    Index("ix_der_record_sync_state", "sync_state"),
)
equipment_id = Table(
    "equipment_id", metadata,
    Column("nmi", Text, primary_key=True),
    Column("nsp_connection_id", Text, primary_key=True),
    Column("nsp_device_id", Text, primary_key=True, comment="'' for the AC connection itself"),
    Column("aemo_id", BigInteger, nullable=False, comment="connectionId or deviceId"),
    Column("installation_stage", String(32)),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
validation_exception = Table(
    "validation_exception", metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
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
)
sync_pass = Table(
    "sync_pass", metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False, comment="sync | reconcile"),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("status", String(16), nullable=False, comment="running | ok | failed | interrupted"),
    Column("summary", Text, comment="counts as JSON"),
    Column("error", Text),
    Index("ix_sync_pass_kind", "kind", "id"),
)


def upgrade() -> None:
    bind = op.get_bind()
    metadata.create_all(bind, tables=[der_record, equipment_id, validation_exception, sync_pass])
    if bind.dialect.name == "sqlite":
        op.execute(_SQLITE_TRIGGER)
    else:
        op.execute(_POSTGRES_FUNCTION)
        op.execute(_POSTGRES_TRIGGER)


def downgrade() -> None:
    bind = op.get_bind()
    on_table = "" if bind.dialect.name == "sqlite" else " ON der_record"
    op.execute("DROP TRIGGER IF EXISTS der_record_changed" + on_table)
    if bind.dialect.name != "sqlite":
        op.execute("DROP FUNCTION IF EXISTS der_record_mark_changed()")
    metadata.drop_all(bind, tables=[sync_pass, validation_exception, equipment_id, der_record])
