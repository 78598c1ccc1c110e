"""``incident-bot``: the console script. Each sub-command lives in ``incident_bot/commands/<name>.py``
with an ``add_parser(subparsers)`` function, so a command family is one small module."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from incident_bot.config import ConfigError

COMMANDS = ("serve", "db", "incidents", "metrics", "rca", "actions", "digest", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="incident-bot",
        description="Incident response for Slack and PagerDuty: incident channels, one timeline, "
                    "MTTD/MTTA/MTTM/MTTR, blameless RCAs with CAPA, a weekly SEV digest.",
        epilog="Configuration comes from the environment or a .env file; see README.md.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"incident_bot.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"incident_bot.commands.{name}":
                continue  # a command family not built yet
            raise
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"incident-bot: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
