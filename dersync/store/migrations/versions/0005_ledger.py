"""The submission ledger: every request dersync sends to AEMO, answered or not, with its body.

An auditor's or AEMO support's question ("when did you tell AEMO about the battery at this
NMI, and what exactly did you send?") is answered from here, not from rotated logs.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "ledger_entry",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True),
                  comment="NULL: no answer arrived (a write may have landed)"),
        sa.Column("nmi", sa.Text(), comment="the NMI the request is about; NULL for a lookup of many"),
        sa.Column("part", sa.String(16), nullable=False, comment="nmi | installation: which API"),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("path", sa.Text(), nullable=False, comment="path and query, below the API's base URL"),
        sa.Column("status", sa.Integer(), comment="HTTP status; NULL for no answer"),
        sa.Column("error", sa.Text(), comment="why no answer came (timed out, connection dropped, cannot connect)"),
        sa.Column("transaction_id", sa.String(100)),
        sa.Column("codes", sa.Text(), nullable=False, server_default=sa.text("'[]'"),
                  comment="JSON list of error/exception codes"),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("pass_id", _Id, comment="sync_pass.id of the pass that sent it, if any"),
        sa.Column("body_sha256", sa.String(64), comment="SHA-256 of the body as sent, uncompressed"),
        sa.Column("body", sa.LargeBinary(), comment="the body as sent, gzip-compressed (writes only; pruned first)"),
    )
    op.create_index("ix_ledger_entry_nmi", "ledger_entry", ["nmi", "id"])
    op.create_index("ix_ledger_entry_sent_at", "ledger_entry", ["sent_at"])


def downgrade() -> None:
    op.drop_index("ix_ledger_entry_sent_at", table_name="ledger_entry")
    op.drop_index("ix_ledger_entry_nmi", table_name="ledger_entry")
    op.drop_table("ledger_entry")
