"""``incident-bot demo``: a full incident end to end, SQLite and built-in stand-ins, no credentials."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from incident_bot.observability import setup_logging


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="run one incident end to end with no credentials",
        description="Start the real server on 127.0.0.1 with a fresh SQLite database and built-in Slack and "
                    "PagerDuty stand-ins, drive an incident with signed webhooks and Slack commands, and print "
                    "what Slack users would have seen, the milestones and metrics, the RCA and the digest.",
    )
    p.add_argument("-o", "--output-dir", type=Path, default=Path("incident-bot-demo"),
                   help="where the demo database and exported files go (default ./incident-bot-demo)")
    p.add_argument("-v", "--verbose", action="store_true", help="show the server's logs")
    p.add_argument("--web", action="store_true",
                   help="afterwards keep serving the web pages (/ui/, signed in through the Slack stand-in) "
                        "until Ctrl-C")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from incident_bot import demo

    setup_logging("INFO" if args.verbose else "ERROR", json_lines=args.verbose)
    logging.getLogger("incident_bot").setLevel(logging.INFO if args.verbose else logging.ERROR)
    return demo.run(args.output_dir, keep_web=args.web)
