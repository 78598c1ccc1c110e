"""Helpers shared by the sub-commands: settings for a command, database access, output."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from incident_bot.config import ConfigError, Settings, load_settings


def settings_for(*required: str, command: str) -> Settings:
    return load_settings().require(*required, why=f"for '{command}'")


def database(settings: Settings) -> Engine:
    """The database of a CLI command. Never created here: a mistyped SQLite path must be an error, not an
    empty database that answers "no incidents" (``serve`` and ``db upgrade`` create it)."""
    from sqlalchemy.engine import make_url

    from incident_bot.runtime import prepare_database  # lazy: it pulls in the Slack and PagerDuty clients
    from storage.db import is_sqlite

    if is_sqlite(settings.database_url):
        path = make_url(settings.database_url).database
        if path and path != ":memory:" and not Path(path).is_file():
            raise ConfigError(f"DATABASE_URL: no database at {Path(path).resolve()} "
                              "(check the path; create one with: incident-bot db upgrade)")
    return prepare_database(settings)


def print_json(doc: Any) -> None:
    json.dump(doc, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=False)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])
