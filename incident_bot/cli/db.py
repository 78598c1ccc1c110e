"""``incident-bot db upgrade|current``: Alembic migrations."""

from __future__ import annotations

import argparse
import sys

from incident_bot.cli.common import settings_for
from storage import migrate
from storage.db import get_engine


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("db", help="database migrations", description="Apply or inspect migrations.")
    dsub = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = dsub.add_parser("upgrade", help="apply all migrations (safe to run from several replicas at once)")
    up.add_argument("--revision", default="head", help="target revision (default: head)")
    up.set_defaults(func=_upgrade)
    cur = dsub.add_parser("current", help="print the revision the database is at")
    cur.set_defaults(func=_current)


def _upgrade(args: argparse.Namespace) -> int:
    from alembic.util.exc import CommandError

    s = settings_for(command="db upgrade")
    get_engine(s.database_url)  # a SQLite file's directory: created, or an error naming the path
    try:
        migrate.upgrade(s.database_url, args.revision)
    except CommandError as exc:  # `--revision nosuch`
        print(f"incident-bot: db upgrade: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    print(f"database at {migrate.current(s.database_url)}")
    return 0


def _current(args: argparse.Namespace) -> int:
    s = settings_for(command="db current")
    print(migrate.current(s.database_url) or "empty (run: incident-bot db upgrade)")
    return 0
