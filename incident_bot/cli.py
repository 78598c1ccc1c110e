"""``incident-bot``: the console script. Each sub-command lives in ``incident_bot/commands/<name>.py``
with an ``add_parser(subparsers)`` function, so a command family is one small module."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from sqlalchemy.exc import DBAPIError, OperationalError

from incident_bot.config import ConfigError

# name -> one-line help. Only the module of the command being run is imported (start-up time matters
# for a CLI that people run in a loop or from cron).
COMMANDS = {
    "serve": "run the bot (HTTP endpoints, fold and outbox workers, scheduler)",
    "worker": "apply stored inputs and deliver the outbox (no HTTP)",
    "inbox": "stored inputs: list them, replay failed ones",
    "db": "database migrations",
    "incidents": "list and show incidents",
    "metrics": "MTTD / MTTA / MTTM / MTTR for a period",
    "rca": "export or edit an incident's blameless RCA",
    "actions": "CAPA action items",
    "digest": "the weekly SEV digest",
    "backfill": "import incident history from PagerDuty (quietly: no Slack)",
    "demo": "run one incident end to end with no credentials",
}


def _wanted(argv: Sequence[str]) -> str | None:
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="incident-bot",
        description="Incident response for Slack and PagerDuty: incident channels, one timeline, "
                    "MTTD/MTTA/MTTM/MTTR, blameless RCAs with CAPA, a weekly SEV digest.",
        epilog="Configuration comes from the environment or a .env file; see README.md.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = _wanted(argv) if argv is not None else None
    for name, summary in COMMANDS.items():
        if wanted is not None and name != wanted:
            sub.add_parser(name, help=summary)
            continue
        try:
            module = importlib.import_module(f"incident_bot.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"incident_bot.commands.{name}":
                continue  # a command family not built yet
            raise
        module.add_parser(sub)
    return parser


def _not_migrated(exc: DBAPIError) -> bool:
    """A table is missing: PostgreSQL's UndefinedTable (42P01), SQLite's "no such table"."""
    return getattr(exc.orig, "sqlstate", None) == "42P01" or "no such table" in str(exc.orig)


def main(argv: Sequence[str] | None = None) -> int:
    """The one error boundary: a user's mistake (settings, paths, an unmigrated or unreachable database,
    an unknown migration) is one line on stderr and a non-zero exit, never a traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"incident-bot: configuration error: {exc}", file=sys.stderr)
        return 2
    except DBAPIError as exc:
        if _not_migrated(exc):
            print("incident-bot: the database has no tables yet (run: incident-bot db upgrade)", file=sys.stderr)
            return 3
        if not isinstance(exc, OperationalError):
            raise  # a bug of ours, not the user's: the traceback is what a bug report needs
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else exc.__class__.__name__
        print(f"incident-bot: database unavailable: {reason}", file=sys.stderr)
        return 3
    except BrokenPipeError:  # `incident-bot incidents list | head`
        sys.stderr.close()
        return 0
    except OSError as exc:  # `-o /missing/dir/x.md`, a SQLite path under a file, an unreadable template
        where = f": {exc.filename}" if exc.filename else ""
        print(f"incident-bot: {exc.strerror or exc.__class__.__name__}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
