"""inbox-first pipeline: inbox rows carry their raw input and a status; worker heartbeats

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 09:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('inbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False,
                                      server_default='done'))
        batch_op.add_column(sa.Column('attempts', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('last_error', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('done_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.alter_column('outcome', existing_type=sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True)
        batch_op.create_index('ix_inbox_status_id', ['status', 'id'], unique=False)
    # Rows deferred by the old request path keep waiting for their incident under the new status.
    op.execute("UPDATE inbox SET status = 'deferred' WHERE outcome = 'deferred'")
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claimed_by', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True))
    with op.batch_alter_table('incidents', schema=None) as batch_op:
        batch_op.add_column(sa.Column('slack_channel_wanted', sa.Boolean(), nullable=False,
                                      server_default=sa.true()))
    # The incident counter exists from the start: concurrent first inserts of it would queue fold
    # transactions behind each other's uncommitted row.
    op.execute("INSERT INTO counters (name, value) SELECT 'incident', 0 "
               "WHERE NOT EXISTS (SELECT 1 FROM counters WHERE name = 'incident')")
    op.create_table('worker_heartbeats',
    sa.Column('worker_id', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('started_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('heartbeat_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('worker_id')
    )


def downgrade() -> None:
    op.drop_table('worker_heartbeats')
    with op.batch_alter_table('incidents', schema=None) as batch_op:
        batch_op.drop_column('slack_channel_wanted')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('claimed_by')
    with op.batch_alter_table('inbox', schema=None) as batch_op:
        batch_op.drop_index('ix_inbox_status_id')
        batch_op.drop_column('done_at')
        batch_op.drop_column('last_error')
        batch_op.drop_column('attempts')
        batch_op.drop_column('status')
