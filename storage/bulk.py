"""Bulk reads: thousands of rows for a report, without the per-row costs that a few rows never notice.

A digest reads ~60,000 timestamps at 100,000 incidents (the CAPA of 90 days and the incidents on their
services, the earlier incidents a recurrence can name, the trend). Three costs dominate there:
- the ORM's row loading (``Session.execute``), where a select of plain columns wants plain rows: the
  session's connection returns the very same rows, in the same order, without it;
- sqlmodel's ``UTCDateTime`` on SQLite: the text is parsed (``datetime.fromisoformat``), then
  ``replace(tzinfo=UTC)`` builds a second datetime, through a ``TypeDecorator`` call: ~3x the parse.

:func:`utc` reads a timestamp column as the same aware UTC datetime ``UTCDateTime`` returns (equal, with
``datetime.UTC`` as its tzinfo), made in one C call on SQLite. Use it in the select list only; WHERE
clauses keep the model's column, whose bind processing checks the values compared.

- and a filter on thousands of ids (the earlier incidents a week's recurrences can name: ~4,800): as an
  ``IN`` list that is a parameter each, which PostgreSQL parses and plans in ~0.1 s. :func:`among` gives
  it one array parameter there (``= ANY``); SQLite keeps the ``IN`` list, which it reads as fast.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, DateTime, Integer, Row, any_, bindparam, type_coerce
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import Executable
from sqlalchemy.types import TypeDecorator
from sqlmodel import Session

_parse = datetime.fromisoformat


def _from_text(value: str | None) -> datetime | None:
    """SQLite's stored text -> what ``UTCDateTime`` makes of it (``fromisoformat``, then UTC)."""
    if value is None:
        return None
    try:
        # A naive ISO text (every timestamp we write: ``2026-11-01 09:00:00.000000``) with a zero offset
        # appended parses to the same wall time with tzinfo datetime.UTC, in one call.
        return _parse(value + "+00:00")
    except ValueError:  # a date alone, or a text that carries its own offset
        return _aware(_parse(value))


def _aware(value: datetime | None) -> datetime | None:
    """``UTCDateTime.process_result_value``: naive -> UTC, aware -> converted to UTC."""
    if value is None or value.tzinfo is UTC:  # psycopg's, when the session's time zone is UTC (storage/db.py)
        return value
    if value.utcoffset() is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class UtcRead(TypeDecorator[datetime]):
    """A timestamp read in bulk (see the module docstring); only ever used for results."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], datetime | None]:
        if dialect.name == "sqlite":
            return _from_text  # pysqlite hands over the stored text
        return _aware  # psycopg hands over an aware datetime


def utc(column: Any) -> ColumnElement[datetime]:
    """``column`` (a timestamp) in a select list, read as :class:`UtcRead`."""
    return type_coerce(column, UtcRead())


def rows(session: Session, stmt: Executable) -> Sequence[Row[Any]]:
    """``session.execute(stmt).all()`` for a select of columns (not entities), in the session's transaction,
    without the ORM's row loading; fetched in one call (the driver builds the rows in C, not one Python
    call a row)."""
    return session.connection().execute(stmt).all()  # type: ignore[arg-type]


def among(session: Session, column: Any, ids: list[int]) -> ColumnElement[bool]:
    """``column IN ids``, as one array parameter on PostgreSQL (see the module docstring)."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import ARRAY  # that dialect's own type: loaded there only

        return column == any_(bindparam(None, ids, type_=ARRAY(Integer)))  # type: ignore[no-any-return]
    return column.in_(ids)  # type: ignore[no-any-return]
