"""text index of incidents (similar past incidents, the web view's search); indexes for recurrence after CAPA

PostgreSQL: ``incident_search`` with a generated ``tsvector`` (title words weight A, the rest B, built
with ``array_to_tsvector`` so no text search configuration re-parses the words) and a GIN index.
SQLite: the same table, an FTS5 table over it (external content, kept by triggers) and an ``fts5vocab``
table for document frequencies. Then every incident already there is indexed (storage/text_search.py
decides the words; it needs no extension and no model).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-14 09:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

from storage import text_search

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FTS_TRIGGERS = {
    "incident_search_ai": "AFTER INSERT ON incident_search BEGIN "
    "INSERT INTO incident_search_fts(rowid, title_terms, body_terms) "
    "VALUES (new.incident_id, new.title_terms, new.body_terms); END",
    "incident_search_ad": "AFTER DELETE ON incident_search BEGIN "
    "INSERT INTO incident_search_fts(incident_search_fts, rowid, title_terms, body_terms) "
    "VALUES ('delete', old.incident_id, old.title_terms, old.body_terms); END",
    "incident_search_au": "AFTER UPDATE ON incident_search BEGIN "
    "INSERT INTO incident_search_fts(incident_search_fts, rowid, title_terms, body_terms) "
    "VALUES ('delete', old.incident_id, old.title_terms, old.body_terms); "
    "INSERT INTO incident_search_fts(rowid, title_terms, body_terms) "
    "VALUES (new.incident_id, new.title_terms, new.body_terms); END",
}


def upgrade() -> None:
    op.create_table('incident_search',
    sa.Column('incident_id', sa.Integer(), nullable=False),
    sa.Column('title_terms', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('body_terms', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.ForeignKeyConstraint(['incident_id'], ['incidents.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('incident_id')
    )
    with op.batch_alter_table('incidents', schema=None) as batch_op:
        batch_op.create_index('ix_incidents_service_detected', ['service', 'detected_at'], unique=False)
    with op.batch_alter_table('action_items', schema=None) as batch_op:
        batch_op.create_index('ix_action_items_status_closed', ['status', 'closed_at'], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE incident_search ADD COLUMN tsv tsvector GENERATED ALWAYS AS ("
                   "setweight(array_to_tsvector(string_to_array(title_terms, ' ')), 'A') || "
                   "setweight(array_to_tsvector(string_to_array(body_terms, ' ')), 'B')) STORED")
        op.execute("CREATE INDEX ix_incident_search_tsv ON incident_search USING gin (tsv)")
    else:
        op.execute("CREATE VIRTUAL TABLE incident_search_fts USING fts5(title_terms, body_terms, "
                   "content='incident_search', content_rowid='incident_id', "
                   "tokenize='unicode61 remove_diacritics 0')")
        op.execute("CREATE VIRTUAL TABLE incident_search_vocab USING fts5vocab(incident_search_fts, 'row')")
        for name, body in _FTS_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {body}")
    text_search.rebuild(op.get_bind(), facets=False)  # the words only: 0008 adds the other columns
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ANALYZE incident_search")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        for name in _FTS_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS incident_search_vocab")
        op.execute("DROP TABLE IF EXISTS incident_search_fts")
    with op.batch_alter_table('action_items', schema=None) as batch_op:
        batch_op.drop_index('ix_action_items_status_closed')
    with op.batch_alter_table('incidents', schema=None) as batch_op:
        batch_op.drop_index('ix_incidents_service_detected')
    op.drop_table('incident_search')
