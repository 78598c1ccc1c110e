"""Migrated databases for tests without running Alembic for every test.

Running the migrations costs ~0.3-1 s per database (Alembic's imports, batch mode on SQLite, a dozen
revisions); with ~600 tests that each want a fresh database it was a fifth of the suite's time. So each
pytest process migrates once, for real, and hands every test a copy of the result:

- SQLite: the migrated file, copied byte for byte.
- PostgreSQL: every statement the real migration sent to the server is recorded (with its parameters)
  and replayed, in the same order and in one transaction, into each new schema; psycopg's pipeline sends
  them in one round trip. The statements are unqualified (the schema is chosen by ``search_path``), so the
  same script builds the same tables, indexes, triggers and rows in any schema.

``tests/test_migrations.py`` still runs the real migrations, checks the models against a copy, and checks
that a replayed schema and a freshly migrated one have the same catalog and rows.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Engine, event

from storage import migrate

# Statements that only matter to a migration run by several replicas at once.
_SKIP = ("SELECT pg_advisory_lock", "SELECT pg_advisory_unlock")


@dataclass
class PgScript:
    """The statements one real ``migrate.upgrade`` sent to PostgreSQL, in order."""

    schema: str
    statements: list[tuple[str, Any, bool]] = field(default_factory=list)

    def replay(self, conn: psycopg.Connection, schema: str) -> None:
        """Build ``schema`` (created here, must not exist) as the recorded migration built its own."""
        with conn.transaction(), conn.pipeline(), conn.cursor() as cur:
            cur.execute(f'CREATE SCHEMA "{schema}"')
            cur.execute(f"SET LOCAL search_path TO \"{schema}\"")
            for statement, params, many in self.statements:
                if many:
                    cur.executemany(statement, params)
                else:
                    cur.execute(statement, params)


def record_pg_migration(url: str, schema: str) -> PgScript:
    """Run the real migrations on ``url`` (a schema-scoped URL for ``schema``) and record what they sent."""
    script = PgScript(schema)

    def before(conn, cursor, statement: str, parameters: Sequence[Any] | dict[str, Any] | None,  # type: ignore[no-untyped-def]
               context, executemany: bool) -> None:
        if conn.dialect.name == "postgresql" and not statement.lstrip().startswith(_SKIP):
            # A statement sent without parameters is not scanned for placeholders by psycopg (a "%" stays
            # as written); one with parameters is. Replay it the same way.
            params = None if context is not None and context.no_parameters else parameters
            script.statements.append((statement, params, executemany))

    event.listen(Engine, "before_cursor_execute", before)
    try:
        migrate.upgrade(url)
    finally:
        event.remove(Engine, "before_cursor_execute", before)
    # Replaying into another schema is only sound if nothing names this one explicitly.
    named = [s for s, _, _ in script.statements if schema in s]
    if named:
        raise AssertionError(f"the migration names its schema; cannot replay it elsewhere: {named[:3]}")
    return script


class SqliteTemplate:
    """One migrated SQLite file; :meth:`copy` gives each test its own."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "template.db"
        migrate.upgrade(f"sqlite:///{self.path}")

    def copy(self, target: Path) -> str:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.path, target)
        return f"sqlite:///{target}"
