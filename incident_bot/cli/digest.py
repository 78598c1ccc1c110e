"""``incident-bot digest``: the weekly SEV digest for any period, as Markdown, HTML or JSON, or posted."""

from __future__ import annotations

import argparse
import sys
from datetime import date, datetime, tzinfo
from pathlib import Path

from incident_bot.cli.common import database, settings_for
from incident_bot.core import schedule
from incident_bot.core.learning import MAX_CAPA_ITEMS
from incident_bot.usecases import digest as service
from incident_bot.usecases import runner
from storage.models import utcnow

_EPILOG = """\
examples:
  incident-bot digest                                 last complete ISO week in TIMEZONE, Markdown
  incident-bot digest --week 2026-W47 --format html -o digest-2026-W47.html
  incident-bot digest --since 2026-11-01 --until 2026-12-01 --format json
  incident-bot digest --week 2026-W47 --post          queue it for DIGEST_CHANNEL (once per period)

Periods are half-open [since, until) in TIMEZONE: a date is local midnight, an ISO week runs from
Monday 00:00 to the next Monday 00:00. Counts cover incidents detected in the period, MTTx figures
incidents resolved in it (the rules of `incident-bot metrics`). --post records the period in the
database, so it is posted once whoever asks (the scheduler in `serve` or this command); the message
is delivered by the outbox of a running `incident-bot serve`.
"""


class UsageError(Exception):
    """A bad argument: one line, exit status 2."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "digest", help="the weekly SEV digest for a period (Markdown, HTML, JSON) or post it to Slack",
        description="Incidents by severity, the SEV1/SEV2 list, MTTD/MTTA/MTTM/MTTR with the change "
                    "against the period before, an 8-week trend, response targets, CAPA health, top "
                    "services and incidents missing an RCA.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    when = p.add_mutually_exclusive_group()
    when.add_argument("--week", metavar="YYYY-Www", help="an ISO week, e.g. 2026-W47")
    when.add_argument("--since", metavar="DATE", help="start, inclusive (2026-11-01 or ISO 8601)")
    p.add_argument("--until", metavar="DATE", help="end, exclusive (with --since)")
    p.add_argument("--format", choices=service.FORMATS, default=None, help="md (default), html or json")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")
    p.add_argument("--post", action="store_true",
                   help="queue the digest for DIGEST_CHANNEL; a period is posted at most once")
    p.add_argument("--all-capa", action="store_true",
                   help=f"list every CAPA action of the last 90 days that did not hold (JSON "
                        f"keeps_breaking.capa_effectiveness.recurred_items; default: the {MAX_CAPA_ITEMS} done last)")
    p.set_defaults(func=_run)


def _when(text: str, zone: tzinfo, option: str) -> datetime:
    text = text.strip()
    try:
        if len(text) == 10:
            return schedule.local_midnight(date.fromisoformat(text), zone)
        from dateutil import parser as dateparser  # ~20 ms of start-up that a date or --week never needs

        ts = dateparser.isoparse(text)
    except (ValueError, OverflowError):
        raise UsageError(f"{option} {text!r} is not a date: use 2026-11-01 or 2026-11-01T09:00:00Z") from None
    return ts if ts.utcoffset() is not None else ts.replace(tzinfo=zone)


def resolve_period(args: argparse.Namespace, zone: tzinfo, now: datetime) -> tuple[datetime, datetime]:
    """--week, --since/--until, or the last complete ISO week in ``zone``."""
    if args.week:
        if args.until:
            raise UsageError("--until goes with --since, not with --week")
        try:
            return schedule.iso_week(args.week, zone)
        except ValueError as exc:
            raise UsageError(f"--week: {exc}") from None
    if args.since or args.until:
        if not (args.since and args.until):
            raise UsageError("give both --since and --until (or --week)")
        since, until = _when(args.since, zone, "--since"), _when(args.until, zone, "--until")
        if since >= until:
            raise UsageError("--since must be before --until")
        return since, until
    return schedule.last_complete_week(now, zone)


def _run(args: argparse.Namespace) -> int:
    settings = settings_for(command="digest")
    if args.post:
        settings.require("digest_channel", why="for 'digest --post'")
    service.targets_from(settings)  # a malformed RESPONSE_TARGETS stops here with one line
    now = utcnow()
    try:
        since, until = resolve_period(args, settings.tzinfo, now)
        if since >= now:  # nothing can have happened yet: a typo, not an empty week
            raise UsageError(f"the period starts in the future ({since:%Y-%m-%d %H:%M %Z}); "
                             "a digest covers time that has passed")
    except UsageError as exc:
        print(f"incident-bot digest: {exc}", file=sys.stderr)
        return 2
    key = schedule.period_key(since, until, settings.tzinfo)
    engine = database(settings)
    show = not args.post or args.format is not None or args.output is not None
    if show:
        view = runner.read(engine, service.digest_view, settings, since, until, now=now,
                           capa_items=None if args.all_capa else MAX_CAPA_ITEMS)
        text, warnings = service.render_view(view, args.format or "md", settings)
        for w in warnings:
            print(f"incident-bot digest: warning: {w}", file=sys.stderr)
        if args.output:
            Path(args.output).write_text(text, encoding="utf-8")
            print(f"wrote {args.output} ({key})", file=sys.stderr)
        else:
            sys.stdout.write(text)
    if args.post:
        posted = runner.run(engine, service.post_digest, settings, (since, until), now=now, claimed_by="cli")
        stream = sys.stderr if show and not args.output else sys.stdout
        if posted:
            print(f"digest {key} queued for {settings.digest_channel} (delivered by the outbox of "
                  f"`incident-bot serve`)", file=stream)
        else:
            run = runner.read(engine, service.already_posted, key)
            by = f" by {run.claimed_by}" if run and run.claimed_by else ""
            at = f" at {run.claimed_at:%Y-%m-%d %H:%M} UTC" if run else ""
            print(f"digest {key} was already posted{by}{at}; not posting it again", file=stream)
    return 0
