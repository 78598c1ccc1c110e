"""Two indexes for the digest's reads: the incidents of a service in time order, CAPA still open at an instant

- ``incident_metrics (service, detected_at)``: what keeps breaking reads, for the quarter's CAPA, the
  incidents on each service in order of detection (26,000 at 100,000 incidents), and counts each service's
  incidents of 4 weeks and 90 days. Through the ``detected_at`` index that was a range over every service
  and a table read a row; this one gives each service's rows in order from the index alone.
- ``action_items (closed_at, due_date)``: the digest's overdue CAPA are the actions still open at the end
  of the period (``closed_at`` null, or after it) with a due day before it. Without it, SQLite answered by
  reading every action created before the period's end (76,000 here, ~30 ms, growing with the history).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 02:00:00
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_incident_metrics_service_detected', 'incident_metrics', ['service', 'detected_at'],
                    unique=False)
    op.create_index('ix_action_items_closed_due', 'action_items', ['closed_at', 'due_date'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_action_items_closed_due', table_name='action_items')
    op.drop_index('ix_incident_metrics_service_detected', table_name='incident_metrics')
