"""Migrations: concurrent `db upgrade` from several replicas on one fresh PostgreSQL schema."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

import storage.models  # noqa: F401  (registers the tables)
from incident_bot.config import load_settings
from incident_bot.runtime import prepare_database
from storage import migrate
from storage.db import make_engine

from .conftest import PG_URL, pg_schema_url


@pytest.mark.postgres
def test_concurrent_upgrades_queue_on_the_advisory_lock() -> None:
    for _ in range(3):
        schema = f"m_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        url = pg_schema_url(schema)
        try:
            # Separate processes, as replicas are (Alembic's context is per process, not per thread).
            env = {**os.environ, "DATABASE_URL": url}
            procs = [subprocess.Popen([sys.executable, "-m", "incident_bot", "db", "upgrade"], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
            results = [(p.wait(120), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
            assert [rc for rc, _ in results] == [0, 0, 0], [err[-500:] for _, err in results]
            assert migrate.current(url) == migrate.head()
        finally:
            with psycopg.connect(PG_URL, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _declared(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    """What the models can declare: not the text index's own SQL (storage/text_search.py), which is the
    SQLite FTS5 table, its shadow tables and its vocabulary view, and PostgreSQL's generated tsvector
    with its GIN index."""
    if type_ == "table" and (name or "").startswith(("incident_search_fts", "incident_search_vocab")):
        return False
    if type_ == "column" and name == "tsv" and getattr(getattr(obj, "table", None), "name", "") == "incident_search":
        return False
    return not (type_ == "index" and name == "ix_incident_search_tsv")


def test_models_match_the_migrations(db_url: str) -> None:
    """The tables, columns and indexes the models declare are the ones the migrations build."""
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"render_as_batch": True, "include_object": _declared})
            assert compare_metadata(context, SQLModel.metadata) == []
        assert migrate.is_current(engine)
    finally:
        engine.dispose()


def test_the_packaged_head_is_alembics() -> None:
    """``is_current`` reads the migration files without Alembic: it must name the head Alembic names."""
    assert migrate.packaged_head() == migrate.head() is not None


def test_is_current_only_at_the_newest_revision(tmp_path: Path) -> None:
    """What lets a command skip Alembic: an empty or older database is not current (and is migrated)."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    try:
        assert not migrate.is_current(engine)  # no tables at all
        migrate.upgrade(url, "0006")
        assert not migrate.is_current(engine)
        rt_engine = prepare_database(load_settings(_env_file=None, database_url=url))
        assert migrate.current(url) == migrate.head() and migrate.is_current(rt_engine)
    finally:
        engine.dispose()
