"""read paths: the web list's filter indexes end in ``number`` (its order and page cursor)

Replaces the one-column indexes on ``status``, ``severity`` and ``service``: every query they served is
served by the new ones (same leading column), and a filtered page of the incident list becomes one
ordered index range instead of a scan of ``number`` or a sort (bench/RESULTS.md, "Read paths").

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 12:00:00
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW = {
    'ix_incidents_status_number': ['status', 'number'],
    'ix_incidents_severity_status_number': ['severity', 'status', 'number'],
    'ix_incidents_service_number': ['service', 'number'],
}
OLD = {'ix_incidents_status': ['status'], 'ix_incidents_severity': ['severity'], 'ix_incidents_service': ['service']}


def upgrade() -> None:
    for name, columns in NEW.items():
        op.create_index(name, 'incidents', columns, unique=False)
    for name in OLD:
        op.drop_index(name, table_name='incidents')


def downgrade() -> None:
    for name, columns in OLD.items():
        op.create_index(name, 'incidents', columns, unique=False)
    for name in NEW:
        op.drop_index(name, table_name='incidents')
