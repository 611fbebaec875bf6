"""The sender lease: one row naming the process that may send to AEMO (see dersync.leadership).

It replaces the PostgreSQL advisory lock, which lived as long as a database session: a leader
that hung kept its session (and the lock) alive, and a leader whose session ended kept sending
until it noticed. A lease lapses unless renewed, and its generation fences deposed writers.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sender_lease",
        sa.Column("name", sa.String(32), primary_key=True, comment="'sender': the right to send to AEMO"),
        sa.Column("holder", sa.Text(), comment="replica id of the holder; NULL once released"),
        sa.Column("generation", sa.BigInteger(), nullable=False,
                  comment="bumped by every claim (the fencing token)"),
        sa.Column("renewal", sa.BigInteger(), nullable=False, comment="bumped by every renewal and the release"),
        sa.Column("lapse_seconds", sa.Float(), nullable=False,
                  comment="the holder's rule: seen unchanged this long (by the reader's clock), the lease has lapsed"),
        sa.Column("renewed_at", sa.DateTime(timezone=True), comment="database time of the last write (for people)"),
    )


def downgrade() -> None:
    op.drop_table("sender_lease")
