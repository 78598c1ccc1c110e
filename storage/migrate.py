"""Apply Alembic migrations from the installed package (no alembic.ini needed on the user's side).

Alembic is imported only when a migration runs or its scripts are asked about. A command that opens a
SQLite database (migrated on start) first checks with one SELECT whether the database is already at
the newest revision shipped (:func:`is_current`), the usual case: ~1 ms instead of ~150 ms of Alembic's
imports and script loading, which a command like ``incident-bot metrics`` would otherwise pay every time.
"""

from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from storage.db import normalise_url

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return cfg


def head() -> str | None:
    """The newest revision shipped with this package, as Alembic reads it."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


@lru_cache(maxsize=4)
def packaged_head(migrations: Path = MIGRATIONS_DIR) -> str | None:
    """:func:`head` without importing Alembic: the one revision of ``versions/*.py`` that no other names
    as its ``down_revision`` (read with ``ast``, nothing is executed). None when that is not exactly one
    revision (a branch), and then :func:`is_current` says no and Alembic decides."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (migrations / "versions").glob("*.py"):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
            # Only the two names are read: a migration may hold any other module-level code.
            if not isinstance(target, ast.Name) or target.id not in ("revision", "down_revision") \
                    or getattr(node, "value", None) is None:
                continue
            value = ast.literal_eval(node.value)  # type: ignore[attr-defined,arg-type]
            if target.id == "revision":
                revisions.add(value)
            elif target.id == "down_revision" and value:
                parents.update([value] if isinstance(value, str) else value)
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def is_current(engine: Engine) -> bool:
    """Is the database at :func:`packaged_head`? False for an empty database (no version table yet)."""
    try:
        with engine.connect() as conn:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    except DBAPIError:
        return False
    return versions == [packaged_head()]


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def current(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine

    engine = create_engine(normalise_url(url))
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
