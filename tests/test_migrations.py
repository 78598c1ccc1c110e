"""Migrations: concurrent `db upgrade` from several replicas on one fresh PostgreSQL schema."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import psycopg
import pytest
from alembic.script import ScriptDirectory

from storage import migrate

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
            head = ScriptDirectory.from_config(migrate.alembic_config(url)).get_current_head()
            assert head and migrate.current(url) == head
        finally:
            with psycopg.connect(PG_URL, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
