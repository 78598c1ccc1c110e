"""Migrations: concurrent `db upgrade` from several replicas on one fresh PostgreSQL schema."""

from __future__ import annotations

import os
import sqlite3
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


# -- the suite's fixtures copy one real migration (tests/db_template.py): the copy must be the same -----

_PG_CATALOG = {
    "columns": "SELECT table_name, column_name, data_type, character_maximum_length, is_nullable, column_default,"
               " generation_expression FROM information_schema.columns WHERE table_schema = %(s)s",
    "indexes": "SELECT tablename, indexname, replace(indexdef, %(s)s || '.', '') FROM pg_indexes"
               " WHERE schemaname = %(s)s",
    "constraints": "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c"
                   " JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = %(s)s",
    "triggers": "SELECT event_object_table, trigger_name, action_statement FROM information_schema.triggers"
                " WHERE trigger_schema = %(s)s",
    "sequences": "SELECT sequence_name, data_type, start_value, increment FROM information_schema.sequences"
                 " WHERE sequence_schema = %(s)s",
}


def _pg_catalog(conn: psycopg.Connection, schema: str) -> dict[str, object]:
    conn.execute(f'SET search_path TO "{schema}"')  # regclass::text then names tables without the schema
    found: dict[str, object] = {k: sorted(conn.execute(q, {"s": schema}).fetchall(), key=repr)
                                for k, q in _PG_CATALOG.items()}
    for table in ("alembic_version", "counters"):
        found[table] = sorted(conn.execute(f'SELECT * FROM "{schema}".{table}').fetchall())
    return found


@pytest.mark.postgres
def test_a_replayed_schema_is_the_migrated_one(pg_template) -> None:  # type: ignore[no-untyped-def]
    migrated, replayed = f"m_{uuid.uuid4().hex[:10]}", f"r_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{migrated}"')
        try:
            migrate.upgrade(pg_schema_url(migrated))
            pg_template.replay(conn, replayed)
            want, got = _pg_catalog(conn, migrated), _pg_catalog(conn, replayed)
            assert want["columns"] and want["alembic_version"] == [(migrate.head(),)]
            assert got == want
        finally:
            conn.execute(f'DROP SCHEMA IF EXISTS "{migrated}" CASCADE')
            conn.execute(f'DROP SCHEMA IF EXISTS "{replayed}" CASCADE')


def test_a_copied_sqlite_file_is_the_migrated_one(sqlite_url: str, tmp_path: Path) -> None:
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    migrate.upgrade(fresh)

    def catalog(url: str) -> list[tuple[object, ...]]:
        # Alembic's batch mode writes a table's UNIQUE clauses in no fixed order (two real migrations
        # differ), so a table's definition is compared as its set of lines.
        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            rows = [(kind, name, table, sorted(line.strip().rstrip(",") for line in (sql or "").splitlines()))
                    for kind, name, table, sql in db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master"
                                                             " ORDER BY type, name")]
            return rows + db.execute("SELECT * FROM alembic_version").fetchall() + \
                db.execute("SELECT * FROM counters ORDER BY name").fetchall()

    assert catalog(sqlite_url) == catalog(fresh)
    assert migrate.current(sqlite_url) == migrate.head()
