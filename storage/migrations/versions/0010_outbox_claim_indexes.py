"""outbox claim: partial indexes for the due queue and for "is an earlier row of this key still active"

The claim (incident_bot/pipeline/outbox.py) walked every pending row through the status index, probed
each for an earlier active row of its key and sorted the lot to take the first: its cost grew with the
queue, so under a storm a longer queue made every claim slower and the queue longer still (the outbox
fell to ~55 calls/s with 2,000 rows queued; bench/bench_outbox.py). With these, the claim walks the due
rows in order and stops at the first head; both indexes hold only the active rows, so they stay small
while the table keeps its history.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 19:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = sa.text("status = 'pending'")
ACTIVE = sa.text("status IN ('pending', 'inflight')")


def upgrade() -> None:
    op.create_index('ix_outbox_due', 'outbox', ['next_attempt_at', 'id'], unique=False,
                    sqlite_where=PENDING, postgresql_where=PENDING)
    op.create_index('ix_outbox_active_key', 'outbox', ['order_key', 'id'], unique=False,
                    sqlite_where=ACTIVE, postgresql_where=ACTIVE)


def downgrade() -> None:
    op.drop_index('ix_outbox_active_key', table_name='outbox')
    op.drop_index('ix_outbox_due', table_name='outbox')
