"""ranking in the text index: each incident's number, detection, resolution and service beside its words;
the words' counts

``incident_search`` gains the columns that ranking similar past incidents reads (storage/text_rank.py),
so the ranking query never joins ``incidents``: ``number``, ``detected_at``, ``resolved``,
``service_key`` (the service name stripped and case-folded) and ``service_id`` (PagerDuty's), with an
index per service key for "the same service, newest first". Every incident already there is indexed
again (storage/text_search.py computes the columns). SQLite: the FTS5 update trigger now fires only when
the words change, so resolving an incident does not rewrite its full-text rows.
``incident_search_words``: in how many incidents each word appears (the scheduler counts them again every
15 minutes, storage/text_rank.py); counted here once.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-16 09:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

from storage import text_rank, text_search

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FTS_UPDATE = ("INSERT INTO incident_search_fts(incident_search_fts, rowid, title_terms, body_terms) "
               "VALUES ('delete', old.incident_id, old.title_terms, old.body_terms); "
               "INSERT INTO incident_search_fts(rowid, title_terms, body_terms) "
               "VALUES (new.incident_id, new.title_terms, new.body_terms); END")


def upgrade() -> None:
    # Plain ADD COLUMN (no batch copy on SQLite: the FTS5 triggers and table stay as they are).
    op.add_column('incident_search', sa.Column('number', sa.Integer(), nullable=True))
    op.add_column('incident_search', sa.Column('detected_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    op.add_column('incident_search', sa.Column('resolved', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column('incident_search', sa.Column('service_key', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    op.add_column('incident_search', sa.Column('service_id', sqlmodel.sql.sqltypes.AutoString(length=64),
                                               nullable=True))
    op.create_index('ix_incident_search_service', 'incident_search', ['service_key', 'detected_at'], unique=False)
    op.create_index('ix_incident_search_service_id', 'incident_search', ['service_id', 'detected_at'], unique=False)
    if op.get_bind().dialect.name != "postgresql":
        op.execute("DROP TRIGGER IF EXISTS incident_search_au")
        op.execute("CREATE TRIGGER incident_search_au AFTER UPDATE OF title_terms, body_terms ON incident_search "
                   "WHEN old.title_terms IS NOT new.title_terms OR old.body_terms IS NOT new.body_terms BEGIN "
                   + _FTS_UPDATE)
    op.create_table('incident_search_words',
    sa.Column('term', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('docs', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('term')
    )
    text_search.rebuild(op.get_bind())
    text_rank.refresh_word_counts(op.get_bind())
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ANALYZE incident_search")


def downgrade() -> None:
    op.drop_table('incident_search_words')
    op.execute("DELETE FROM counters WHERE name = 'search_words'")
    if op.get_bind().dialect.name != "postgresql":
        op.execute("DROP TRIGGER IF EXISTS incident_search_au")
        op.execute("CREATE TRIGGER incident_search_au AFTER UPDATE ON incident_search BEGIN " + _FTS_UPDATE)
    op.drop_index('ix_incident_search_service_id', table_name='incident_search')
    op.drop_index('ix_incident_search_service', table_name='incident_search')
    for name in ('service_id', 'service_key', 'resolved', 'detected_at', 'number'):
        op.drop_column('incident_search', name)
