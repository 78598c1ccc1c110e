"""``incident-bot metrics``: MTTD / MTTA / MTTM / MTTR for a period, as a table or stable JSON."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from incident_bot.cli.common import database, print_json, settings_for, table
from incident_bot.core.durations import format_duration
from incident_bot.core.severity import SEVERITIES, normalise_severity
from incident_bot.usecases import runner
from incident_bot.usecases.metrics import METRIC_KEYS, period_metrics

DEFAULT_DAYS = 30

_LABELS = {"mttd_s": "MTTD  detect", "mtta_s": "MTTA  acknowledge", "mttm_s": "MTTM  mitigate",
           "mttr_s": "MTTR  resolve"}

_EPILOG = """\
examples:
  incident-bot metrics                                   last 30 days, table
  incident-bot metrics --since 2026-10-01 --until 2026-11-01 --severity SEV1,SEV2
  incident-bot metrics --since 2026-11-01T09:00:00+01:00 --service checkout --format json

Durations are averaged over incidents RESOLVED in [since, until); incident counts are over incidents
DETECTED in it. An incident missing one end of a metric is left out of that metric only (see n).
p50/p90 are nearest-rank percentiles (an observed duration); the mean is rounded to whole seconds.
A bare date is midnight in TIMEZONE; --until is exclusive.
"""


class UsageError(Exception):
    """A bad argument: reported as one line, exit status 2."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "metrics", help="MTTD/MTTA/MTTM/MTTR (mean, p50, p90) for a period",
        description="Incident metrics for a period: mean, p50, p90 and count of TTD, TTA, TTM and TTR, "
                    "and incident counts by severity.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--since", metavar="DATE",
                   help="start, inclusive: 2026-11-01 (midnight in TIMEZONE) or ISO 8601 such as "
                        "2026-11-01T09:00:00Z (default: --until minus 30 days)")
    p.add_argument("--until", metavar="DATE", help="end, exclusive, same forms (default: now)")
    p.add_argument("--severity", metavar="SEV1,SEV2", action="append",
                   help="only these severities (comma-separated, repeatable; 1 or sev1 also accepted)")
    p.add_argument("--service", metavar="NAME", action="append", help="only this service (repeatable)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=_run)


def parse_when(text: str, zone: tzinfo, *, option: str) -> datetime:
    """``2026-11-01`` -> midnight in ``zone``; ISO 8601 with ``Z``/offset as given; naive ISO -> ``zone``."""
    text = text.strip()
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            return datetime(d.year, d.month, d.day, tzinfo=zone)
        # Imported here: dateutil's parser is ~20 ms of start-up that a bare date (the usual form) and the
        # default window never need.
        from dateutil import parser as dateparser

        ts = dateparser.isoparse(text)
    except (ValueError, OverflowError):
        raise UsageError(f"{option} {text!r} is not a date: use 2026-11-01 or 2026-11-01T09:00:00Z") from None
    return ts if ts.utcoffset() is not None else ts.replace(tzinfo=zone)


def parse_severities(values: list[str] | None) -> list[str] | None:
    if not values:
        return None
    out: list[str] = []
    for item in (part for v in values for part in v.split(",") if part.strip()):
        sev = normalise_severity(item)
        if sev is None:
            raise UsageError(f"--severity {item.strip()!r} is unknown: use {', '.join(SEVERITIES)}")
        if sev not in out:
            out.append(sev)
    return out or None


def window(since_arg: str | None, until_arg: str | None, zone: tzinfo,
           now: datetime | None = None) -> tuple[datetime, datetime]:
    """The half-open window from the options; 30 days ending now when none is given."""
    until = parse_when(until_arg, zone, option="--until") if until_arg else (now or datetime.now(UTC))
    since = (parse_when(since_arg, zone, option="--since") if since_arg
             else until - timedelta(days=DEFAULT_DAYS))
    if since >= until:
        raise UsageError(f"--since ({since.isoformat()}) must be before --until ({until.isoformat()})")
    return since, until


def _run(args: argparse.Namespace) -> int:
    try:
        severities = parse_severities(args.severity)
        settings = settings_for(command="metrics")
        since, until = window(args.since, args.until, settings.tzinfo)
    except UsageError as exc:
        print(f"incident-bot metrics: {exc}", file=sys.stderr)
        return 2
    services = [s.strip() for s in args.service or [] if s.strip()] or None
    engine = database(settings)
    doc = runner.read(engine, period_metrics, since=since, until=until, severities=severities, services=services)
    if args.format == "json":
        print_json(doc)
    else:
        print(render_table(doc, since=since, until=until, zone=settings.tzinfo, zone_name=settings.timezone,
                           severities=severities, services=services))
    return 0


def human_duration(seconds: int | None) -> str:
    """The one duration style (core/durations.py); ``-`` when unknown, as in every CLI table."""
    return format_duration(seconds, unknown="-")


def render_table(doc: dict[str, Any], *, since: datetime, until: datetime, zone: tzinfo, zone_name: str,
                 severities: list[str] | None = None, services: list[str] | None = None) -> str:
    fmt = "%Y-%m-%d %H:%M"
    lines = [f"Window: {since.astimezone(zone):{fmt}} to {until.astimezone(zone):{fmt}} ({zone_name}, "
             "end exclusive)"]
    filters = [f"severity {','.join(severities)}"] if severities else []
    filters += [f"service {', '.join(services)}"] if services else []
    if filters:
        lines.append("Filter: " + "; ".join(filters))
    counts = doc["incidents"]
    lines.append(f"Incidents detected: {counts['total']}  ("
                 + ", ".join(f"{sev} {n}" for sev, n in counts["by_severity"].items()) + ")")
    lines.append("")
    rows = []
    for key in METRIC_KEYS.values():
        s = doc[key]
        rows.append([_LABELS[key], str(s["n"]), human_duration(s["mean"]), human_duration(s["p50"]),
                     human_duration(s["p90"])])
    lines.append(table(rows, ["RESOLVED IN WINDOW", "N", "MEAN", "P50", "P90"]))
    lines.append("")
    lines.append("n: incidents with both ends of that metric; p50/p90: nearest rank.")
    return "\n".join(lines)
