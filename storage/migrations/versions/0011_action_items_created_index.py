"""action_items.created_at index: the digest's "CAPA opened in the period" is an index range

The digest counts the CAPA actions created in its period. Without an index that count read every action
ever recorded (76,000 at 100,000 incidents: 15-40 ms of each digest on either database, growing with the
history); with it, the week's few hundred index entries.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 23:30:00
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_action_items_created_at', 'action_items', ['created_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_action_items_created_at', table_name='action_items')
