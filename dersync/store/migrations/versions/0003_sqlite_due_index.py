"""SQLite: the partial index on due records now matches the queries that pick and count them.

SQLite has no boolean type, so SQLAlchemy writes the due test as `due = 1`; SQLite uses a partial
index only when the query's WHERE contains the index's condition as written, so the 0001 index
(`WHERE due`) was never used there: picking due work and counting it read the whole table. The
index is rebuilt with `WHERE due = 1`. PostgreSQL's index (`WHERE due`) is used as it is.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute("DROP INDEX IF EXISTS ix_der_record_due")
    op.execute("CREATE INDEX ix_der_record_due ON der_record (nmi) WHERE due = 1")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute("DROP INDEX IF EXISTS ix_der_record_due")
    op.execute("CREATE INDEX ix_der_record_due ON der_record (nmi) WHERE due")
