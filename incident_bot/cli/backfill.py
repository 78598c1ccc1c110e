"""``incident-bot backfill pagerduty``: import PagerDuty's incident history (see usecases/backfill.py)."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime

from dateutil import parser as dtparser

from incident_bot.cli.common import database, print_json, settings_for, table
from incident_bot.core.targets import parse_duration

HELP = """Import PagerDuty incidents created between --since and --until (default: now) with their log
entries (trigger, acknowledge, escalate, note, priority, resolve), through the same fold as live
webhooks, quietly: no Slack channel, no message. Safe to run again (nothing is imported twice) and to
interrupt (it continues at the first window not done). Needs PAGERDUTY_API_TOKEN (read access)."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backfill", help="import incident history (PagerDuty)", description="Import history.")
    bsub = p.add_subparsers(dest="backfill_source", metavar="SOURCE", required=True)
    pd = bsub.add_parser("pagerduty", help="import PagerDuty incidents and their log entries", description=HELP)
    pd.add_argument("--since", required=True, type=_date, help="first day (YYYY-MM-DD or ISO time; TIMEZONE)")
    pd.add_argument("--until", type=_date, default=None, help="end, exclusive (default: now)")
    pd.add_argument("--service", action="append", default=[], metavar="ID",
                    help="only this PagerDuty service id (repeatable)")
    pd.add_argument("--dry-run", action="store_true", help="read and count, store nothing")
    pd.add_argument("--verify", action="store_true",
                    help="afterwards, compare TTA/TTR with PagerDuty's analytics and explain every difference")
    pd.add_argument("--window", default="30d", type=_window,
                    help="checkpoint window (default 30d; PagerDuty allows at most 180d)")
    pd.add_argument("--max-rpm", type=_rpm, default=None,
                    help="requests per minute (at most 960, PagerDuty's limit; default 900)")
    pd.add_argument("--format", choices=("table", "json"), default="table")
    pd.set_defaults(func=_pagerduty)


def _date(text: str) -> datetime:
    try:
        return dtparser.isoparse(text)
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD) or ISO 8601 time") from None


def _rpm(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 1:  # the upper bound is PAGERDUTY_API_MAX_RPM, checked once the settings are read
        raise argparse.ArgumentTypeError("give at least 1 request a minute")
    return value


def _window(text: str) -> int:
    try:
        days = parse_duration(text) // 86400
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not 1 <= days <= 180:
        raise argparse.ArgumentTypeError("the window must be 1d to 180d")
    return days


def _pagerduty(args: argparse.Namespace) -> int:
    from incident_bot.pagerduty.backfill import RestHistory, make_client
    from incident_bot.pagerduty.inbound import PagerDutyApplier
    from incident_bot.usecases import backfill as svc
    from storage.models import utcnow

    settings = settings_for("pagerduty_api_token", command="backfill pagerduty")
    since = svc.as_utc(args.since, settings.tzinfo)
    until = svc.as_utc(args.until, settings.tzinfo) if args.until else utcnow()
    if since >= until:
        print("incident-bot: --since must be before --until", file=sys.stderr)
        return 2
    limit = settings.pagerduty_api_max_rpm
    if args.max_rpm is not None and args.max_rpm > limit:
        print(f"incident-bot: --max-rpm: PagerDuty allows at most {limit:g} requests a minute: give 1 to {limit:g}",
              file=sys.stderr)
        return 2
    per_minute = args.max_rpm if args.max_rpm is not None else min(900.0, limit)
    engine = database(settings)
    client, stats = make_client(settings.pagerduty_api_token or "", settings.pagerduty_api_url,
                                ca_bundle=settings.pagerduty_ca_bundle, per_minute=per_minute, limit=limit)
    opts = svc.Options(since=since, until=until, services=args.service, dry_run=args.dry_run,
                       window_days=args.window)
    history = RestHistory(client, stats)
    summary = svc.run(engine, settings, history, opts, svc.Progress(),
                      applier=PagerDutyApplier(settings, imported=True))
    doc: dict = {"summary": summary.as_dict()}
    if args.verify:
        from incident_bot.usecases.backfill_verify import verify

        v = verify(engine, history, since, until, args.service)
        doc["verify"] = {"compared": v.compared, "matching": v.matching,
                         "differences": [d.__dict__ for d in v.differences or []]}
    if args.format == "json":
        print_json(doc)
        return 0
    s = summary
    verb = "would import" if s.dry_run else "imported"
    print(f"{verb} {s.incidents:,} PagerDuty incidents and {s.log_entries:,} log entries in "
          f"{s.windows_done} window(s) ({s.windows_skipped} already done); {s.stored:,} new, "
          f"{s.duplicates:,} already held; {s.requests:,} requests, {s.throttled} rate-limited, "
          f"{s.elapsed_s:.1f} s")
    if args.verify:
        v = doc["verify"]
        print(f"verify: {v['compared']:,} compared with PagerDuty's analytics, {v['matching']:,} match, "
              f"{len(v['differences'])} difference(s)")
        rows = [[d["pagerduty_id"], d["ref"] or "-", d["metric"].upper(), _s(d["ours_s"]), _s(d["theirs_s"]),
                 d["cause"]] for d in v["differences"]]
        if rows:
            print(table(rows, ["PAGERDUTY", "REF", "METRIC", "OURS", "PAGERDUTY'S", "CAUSE"]))
    return 0


def _s(value: int | None) -> str:
    return "-" if value is None else f"{value}s"
