"""Initial schema: records with sync state, AEMO equipment ids, validation exceptions, passes.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from alembic import op

from dersync.store.tables import der_record, equipment_id, metadata, sync_pass, validation_exception

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
