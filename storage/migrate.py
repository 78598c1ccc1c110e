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
from typing import TYPE_CHECKING, Any

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
        for name, value in _revision_lines(path.read_text(encoding="utf-8")):
            if name == "revision":
                revisions.add(value)
            elif value:
                parents.update([value] if isinstance(value, str) else value)
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


_NAMES = ("revision", "down_revision")


def _revision_lines(source: str) -> list[tuple[str, Any]]:
    """``(name, value)`` of a migration's top-level ``revision`` and ``down_revision``. Only their own lines
    are parsed (every CLI command that opens SQLite asks, and parsing every whole file cost ~15 ms of
    its start-up); the whole file when a value spans lines."""
    lines = [line for line in source.splitlines() if line.startswith(_NAMES)]
    try:
        return _assignments(ast.parse("\n".join(lines)))
    except SyntaxError:
        return _assignments(ast.parse(source))


def _assignments(tree: ast.Module) -> list[tuple[str, Any]]:
    found = []
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        if isinstance(target, ast.Name) and target.id in _NAMES and getattr(node, "value", None) is not None:
            found.append((target.id, ast.literal_eval(node.value)))  # type: ignore[attr-defined,arg-type]
    return found


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
