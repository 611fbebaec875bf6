"""Compliance deadlines: when AEMO first accepted each AC connection, recorded as it happens.

One row per (NMI, nspConnectionId), written in the transaction that records the outcome of the
accepting write and never moved afterwards (a later rejection or acceptance leaves it as it is).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "connection_acceptance",
        sa.Column("nmi", sa.Text(), primary_key=True),
        sa.Column("nsp_connection_id", sa.Text(), primary_key=True),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False,
                  comment="when AEMO first accepted the AC connection (see rule); never moved once written"),
        sa.Column("rule", sa.String(16), nullable=False,
                  comment="answered: AEMO's answer to dersync's request that added it (the ledger's answered_at) | "
                          "held_at_aemo: AEMO held it before that request (AEMO's recordCreationDate)"),
        sa.Column("transaction_id", sa.String(100), comment="AEMO's transactionId of the accepting exchange"),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("connection_acceptance")
