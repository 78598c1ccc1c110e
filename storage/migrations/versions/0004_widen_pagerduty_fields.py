"""widen incidents.pagerduty_priority to a whole priority name

PagerDuty priority names are free text ("P1 - Critical Outage"); 16 characters cut them before the
SEVERITY_MAP lookup, so a name longer than that could never be mapped.

Revision ID: 0004
Revises: 0003
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('incidents') as batch_op:
        batch_op.alter_column('pagerduty_priority', existing_type=sqlmodel.sql.sqltypes.AutoString(length=16),
                              type_=sqlmodel.sql.sqltypes.AutoString(length=255), existing_nullable=True)


def downgrade() -> None:
    # Names longer than 16 characters are cut on the way down (the old column cannot hold them).
    op.execute(sa.text("UPDATE incidents SET pagerduty_priority = substr(pagerduty_priority, 1, 16)"))
    with op.batch_alter_table('incidents') as batch_op:
        batch_op.alter_column('pagerduty_priority', existing_type=sqlmodel.sql.sqltypes.AutoString(length=255),
                              type_=sqlmodel.sql.sqltypes.AutoString(length=16), existing_nullable=True)
