"""AEMO's status for each connection and device it holds (active, decommissioned, ...).

The DER lifecycle needs it: equipment the store no longer lists is reported or decommissioned
only while AEMO still holds it as something other than decommissioned.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("equipment_id") as table:
        table.add_column(sa.Column("status", sa.Text(), comment="AEMO's status for it, as last answered"))


def downgrade() -> None:
    with op.batch_alter_table("equipment_id") as table:
        table.drop_column("status")
