"""Reconciliation findings: what a reconcile pass found different between the store and AEMO.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "drift_finding",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("reconcile_pass_id", _Id, nullable=False, comment="sync_pass.id of the reconcile pass"),
        sa.Column("nmi", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False,
                  comment="missing_at_aemo | different_at_aemo | orphan_at_aemo | conditional_at_aemo"),
        sa.Column("part", sa.String(16), nullable=False, comment="nmi | installation"),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("fields", sa.Text(), nullable=False, comment="JSON list of {path, store, aemo}"),
        sa.Column("found_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_drift_finding_pass", "drift_finding", ["reconcile_pass_id", "nmi"])
    op.create_index("ix_drift_finding_nmi", "drift_finding", ["nmi"])


def downgrade() -> None:
    op.drop_index("ix_drift_finding_nmi", table_name="drift_finding")
    op.drop_index("ix_drift_finding_pass", table_name="drift_finding")
    op.drop_table("drift_finding")
