"""backfill from PagerDuty and alert-storm grouping: per-window checkpoints; what a linked PagerDuty incident is

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-10 09:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('backfill_windows',
    sa.Column('scope', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('since', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('until', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('incidents', sa.Integer(), nullable=False),
    sa.Column('log_entries', sa.Integer(), nullable=False),
    sa.Column('requests', sa.Integer(), nullable=False),
    sa.Column('started_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('finished_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('scope', 'since', 'until')
    )
    with op.batch_alter_table('pagerduty_links', schema=None) as batch_op:
        batch_op.add_column(sa.Column('service_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column('title', sqlmodel.sql.sqltypes.AutoString(length=1024), nullable=True))
        batch_op.add_column(sa.Column('triggered_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True))
    with op.batch_alter_table('incidents', schema=None) as batch_op:
        # The open incident of a PagerDuty service is what an alert storm joins: one indexed lookup.
        batch_op.create_index('ix_incidents_pd_service_status', ['pagerduty_service_id', 'status'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('incidents', schema=None) as batch_op:
        batch_op.drop_index('ix_incidents_pd_service_status')
    with op.batch_alter_table('pagerduty_links', schema=None) as batch_op:
        batch_op.drop_column('status')
        batch_op.drop_column('triggered_at')
        batch_op.drop_column('title')
        batch_op.drop_column('service_id')
    op.drop_table('backfill_windows')
