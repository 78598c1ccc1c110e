"""``incident-bot``: the console script.

Sub-commands are declared in one table, :data:`COMMANDS` (name -> module and one-line help). A command's
module is imported only when that command runs (or its own ``--help`` is asked for): ``incident-bot
--help`` lists the table without importing any of them, and ``incident-bot metrics`` loads SQL and
settings but not the Slack SDK, the web server or the templates. Each module has an
``add_parser(subparsers)`` that declares its options and sets ``func`` to what runs it.

Start-up time is a feature here: people run these commands in loops, from cron and from CI, and a
report over 100,000 incidents should take about a second, most of which used to be imports
(``bench/bench_cli.py`` measures it). So this module imports nothing heavy at the top, and the error
boundary looks at SQLAlchemy's errors only when the command has loaded SQLAlchemy.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import sys
from collections.abc import Sequence

from incident_bot.errors import ConfigError

# name -> (the module imported when the command runs, with its add_parser(subparsers); the line in --help).
# Plain tuples: even ``typing`` costs start-up time.
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("incident_bot.cli.serve", "run the bot (HTTP endpoints, fold and outbox workers, scheduler)"),
    "worker": ("incident_bot.cli.worker", "apply stored inputs and deliver the outbox (no HTTP)"),
    "inbox": ("incident_bot.cli.inbox", "stored inputs: list them, replay failed ones"),
    "db": ("incident_bot.cli.db", "database migrations"),
    "incidents": ("incident_bot.cli.incidents", "list and show incidents"),
    "metrics": ("incident_bot.cli.metrics", "MTTD / MTTA / MTTM / MTTR for a period"),
    "rca": ("incident_bot.cli.rca", "export or edit an incident's blameless RCA"),
    "actions": ("incident_bot.cli.actions", "CAPA action items"),
    "digest": ("incident_bot.cli.digest", "the weekly SEV digest"),
    "backfill": ("incident_bot.cli.backfill", "import incident history from PagerDuty (quietly: no Slack)"),
    "demo": ("incident_bot.cli.demo", "run one incident end to end with no credentials"),
}


# One-shot reports: they read, print and exit, so the collector stays off for them too. What they build
# is rows, not cycles (a digest at 100,000 incidents leaves ~500 cyclic objects, no more peak memory), and
# its collections cost ~15% of the digest's own work (bench/RESULTS.md "CLI start-up"). Commands that run
# for long or loop over many transactions (serve, worker, backfill, inbox replay) keep it.
REPORTS = frozenset({"metrics", "digest"})


def _wanted(argv: Sequence[str]) -> str | None:
    """The command named on the line (the first word that is not an option), if it is one of ours."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The parser for ``argv``: the named command's module declares its own options; every other
    command is a name and its summary, so nothing else is imported."""
    parser = argparse.ArgumentParser(
        prog="incident-bot",
        description="Incident response for Slack and PagerDuty: incident channels, one timeline, "
                    "MTTD/MTTA/MTTM/MTTR, blameless RCAs with CAPA, a weekly SEV digest.",
        epilog="Configuration comes from the environment or a .env file; see README.md. "
               "`incident-bot COMMAND --help` shows a command's options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = _wanted(argv)
    for name, (module, summary) in COMMANDS.items():
        if name == wanted:
            importlib.import_module(module).add_parser(sub)
        else:
            sub.add_parser(name, help=summary)
    return parser


def _database_error(exc: BaseException) -> int | None:
    """The exit status for a database problem the user can fix (printed as one line), None otherwise.

    SQLAlchemy's errors are looked at only when the command loaded SQLAlchemy: an exception cannot be
    one of them otherwise, and ``incident-bot --help`` must not pay ~0.3 s to import it.
    """
    if "sqlalchemy" not in sys.modules:
        return None
    from sqlalchemy.exc import DBAPIError, OperationalError  # already loaded: a lookup, not an import

    if not isinstance(exc, DBAPIError):
        return None
    # A table is missing: PostgreSQL's UndefinedTable (42P01), SQLite's "no such table".
    if getattr(exc.orig, "sqlstate", None) == "42P01" or "no such table" in str(exc.orig):
        print("incident-bot: the database has no tables yet (run: incident-bot db upgrade)", file=sys.stderr)
        return 3
    if not isinstance(exc, OperationalError):
        return None  # a bug of ours, not the user's: the traceback is what a bug report needs
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig else exc.__class__.__name__
    print(f"incident-bot: database unavailable: {reason}", file=sys.stderr)
    return 3


def main(argv: Sequence[str] | None = None) -> int:
    """The one error boundary: a user's mistake (settings, paths, an unmigrated or unreachable database,
    an unknown migration) is one line on stderr and a non-zero exit, never a traceback."""
    process = argv is None  # this process is the command (not a caller that runs one, such as a test)
    if process:
        # Importing a command's modules creates ~150,000 objects that live until exit, and the collector
        # would walk them again at every threshold on the way (~5-8% of a report's start-up): off until
        # they are loaded and frozen below.
        gc.disable()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    if process:
        # What is loaded so far (modules, classes: ~150,000 objects) lives until exit; frozen, the garbage
        # collector stops walking it again and again while a report builds 100,000 rows (0.1-0.25 s of a
        # `metrics` run, bench/RESULTS.md "Read paths").
        gc.freeze()
        if args.command not in REPORTS:
            gc.enable()
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"incident-bot: configuration error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `incident-bot incidents list | head`
        sys.stderr.close()
        return 0
    except OSError as exc:  # `-o /missing/dir/x.md`, a SQLite path under a file, an unreadable template
        where = f": {exc.filename}" if exc.filename else ""
        print(f"incident-bot: {exc.strerror or exc.__class__.__name__}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        status = _database_error(exc)
        if status is None:
            raise
        return status


if __name__ == "__main__":
    raise SystemExit(main())
