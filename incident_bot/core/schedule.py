"""Calendar arithmetic for the digest: RRULE schedules, ISO weeks and periods in a time zone.

Everything here takes and returns timezone-aware datetimes and never reads the clock: the caller
passes ``now``, so tests can stand on a Monday 09:00 without waiting for it.

Two rules keep the digest right across daylight-saving changes:
- schedules are evaluated in local wall time (dateutil's rrule with a zone-aware ``dtstart``), so
  "09:00 on Mondays" stays 09:00 local when the offset changes, and is 07:00 or 08:00 UTC accordingly;
- periods are built from local *dates* (local midnight to local midnight), never by adding 168 hours,
  so the week of the autumn change is 169 hours long and the spring one 167.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from dateutil import tz as dtz
from dateutil.rrule import rrule, rrulestr

# Where a rule without its own DTSTART is anchored: a Monday at local midnight. Fixed, so that
# INTERVAL=2 keeps the same phase from one evaluation to the next.
ANCHOR = datetime(2020, 1, 6)
_ISO_WEEK = re.compile(r"^\s*(\d{4})-?W(\d{1,2})\s*$", re.IGNORECASE)

Period = tuple[datetime, datetime]


def _utc(ts: datetime) -> datetime:
    if ts.tzinfo is None:
        raise ValueError("naive datetime: pass a timezone-aware value")
    return ts.astimezone(UTC)


def _wall(ts: datetime, zone: tzinfo) -> datetime:
    """A local wall time that exists: the spring-forward gap moves to the first time after it."""
    return dtz.resolve_imaginary(ts.replace(tzinfo=zone))


_CACHE: dict[tuple[str, int], tuple[tzinfo, rrule]] = {}


def _parse(rule: str, zone: tzinfo) -> rrule:
    """Parsed rules are cached (a scheduler asks every few seconds); dateutil zones are not hashable,
    so the key is the zone's identity, checked on the way out."""
    hit = _CACHE.get((rule, id(zone)))
    if hit is not None and hit[0] is zone:
        return hit[1]
    parsed = _parse_uncached(rule, zone)
    if len(_CACHE) > 64:
        _CACHE.clear()
    _CACHE[(rule, id(zone))] = (zone, parsed)
    return parsed


def _parse_uncached(rule: str, zone: tzinfo) -> rrule:
    text = rule.strip()
    if not text:
        raise ValueError("empty schedule")
    has_dtstart = "DTSTART" in text.upper()
    body = text if has_dtstart or text.upper().startswith("RRULE:") else f"RRULE:{text}"
    try:
        parsed = rrulestr(body, dtstart=None if has_dtstart else ANCHOR.replace(tzinfo=zone), forceset=False)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not an RRULE ({exc})") from None
    if not isinstance(parsed, rrule):
        raise ValueError("give one RRULE (RDATE/EXDATE sets are not supported)")
    if parsed._dtstart.tzinfo is None:  # a floating DTSTART in the rule: it means local time
        parsed = parsed.replace(dtstart=parsed._dtstart.replace(tzinfo=zone))
    return parsed


def parse_rule(rule: str, zone: tzinfo) -> rrule:
    """Validate and parse ``FREQ=WEEKLY;BYDAY=MO;BYHOUR=9;BYMINUTE=0``. Raises ValueError with a reason."""
    parsed = _parse(rule, zone)
    if parsed.after(datetime(2000, 1, 1, tzinfo=UTC)) is None:
        raise ValueError("the rule has no occurrence after 2000")
    return parsed


def last_occurrence(rule: str, zone: tzinfo, now: datetime) -> datetime | None:
    """The latest occurrence at or before ``now`` (UTC), or None."""
    hit = _parse(rule, zone).before(_utc(now), inc=True)
    return _utc(_wall(hit.replace(tzinfo=None), zone)) if hit else None


def next_occurrence(rule: str, zone: tzinfo, now: datetime) -> datetime | None:
    """The first occurrence strictly after ``now`` (UTC), or None."""
    hit = _parse(rule, zone).after(_utc(now), inc=False)
    return _utc(_wall(hit.replace(tzinfo=None), zone)) if hit else None


def due_runs(rule: str, zone: tzinfo, last_run: datetime | None, now: datetime) -> list[datetime]:
    """Occurrences that are due: in ``(last_run, now]``, of which only the most recent is kept.

    A scheduler that was down for three Mondays catches up *once*, with the latest period; nobody
    wants three stale digests in a row. ``last_run=None`` (never ran) also yields the latest one.
    """
    latest = last_occurrence(rule, zone, now)
    if latest is None or (last_run is not None and latest <= _utc(last_run)):
        return []
    return [latest]


# -- periods -----------------------------------------------------------------------------------------

def local_midnight(day: date, zone: tzinfo) -> datetime:
    """Start of ``day`` in ``zone`` as a UTC datetime (the first existing instant of that day)."""
    return _utc(_wall(datetime.combine(day, time(0)), zone))


def local_date(ts: datetime, zone: tzinfo) -> date:
    return _utc(ts).astimezone(zone).date()


def day_period(first: date, end: date, zone: tzinfo) -> Period:
    """Local dates ``[first, end)`` -> UTC ``[since, until)``."""
    if end <= first:
        raise ValueError(f"the period must end after it starts ({first} .. {end})")
    return local_midnight(first, zone), local_midnight(end, zone)


def iso_week(text: str, zone: tzinfo) -> Period:
    """``"2026-W47"`` -> [Monday 00:00, next Monday 00:00) in ``zone``, as UTC datetimes."""
    m = _ISO_WEEK.match(text)
    if not m:
        raise ValueError(f"{text!r} is not an ISO week such as 2026-W47")
    try:
        monday = date.fromisocalendar(int(m.group(1)), int(m.group(2)), 1)
    except ValueError:
        raise ValueError(f"{text!r}: {m.group(1)} has no week {int(m.group(2))}") from None
    return day_period(monday, monday + timedelta(days=7), zone)


def week_label(since: datetime, zone: tzinfo) -> str:
    year, week, _ = local_date(since, zone).isocalendar()
    return f"{year}-W{week:02d}"


def week_containing(ts: datetime, zone: tzinfo) -> Period:
    day = local_date(ts, zone)
    monday = day - timedelta(days=day.weekday())
    return day_period(monday, monday + timedelta(days=7), zone)


def last_complete_week(now: datetime, zone: tzinfo) -> Period:
    """The ISO week before the one ``now`` falls in (the default digest period)."""
    return previous_period(*week_containing(now, zone), zone)


def _whole_days(since: datetime, until: datetime, zone: tzinfo) -> int | None:
    """Number of local days if both ends are local midnights, else None."""
    a, b = local_date(since, zone), local_date(until, zone)
    if local_midnight(a, zone) == _utc(since) and local_midnight(b, zone) == _utc(until):
        return (b - a).days
    return None


def previous_period(since: datetime, until: datetime, zone: tzinfo) -> Period:
    """The period of the same length just before: same number of local days when the period is made
    of whole days (so W44 after the 169-hour W43 is compared with the whole of W43)."""
    days = _whole_days(since, until, zone)
    if days:
        first = local_date(since, zone)
        return day_period(first - timedelta(days=days), first, zone)
    length = _utc(until) - _utc(since)
    return _utc(since) - length, _utc(since)


def weeks_ending(until: datetime, zone: tzinfo, count: int = 8) -> list[Period]:
    """``count`` consecutive 7-local-day periods, oldest first, the last one ending at ``until``."""
    end_day = local_date(until, zone)
    if local_midnight(end_day, zone) != _utc(until):
        end_day += timedelta(days=1)  # a period ending mid-day: the trend covers that whole day
    return [day_period(end_day - timedelta(days=7 * (i + 1)), end_day - timedelta(days=7 * i), zone)
            for i in reversed(range(count))]


def is_iso_week(since: datetime, until: datetime, zone: tzinfo) -> bool:
    first = local_date(since, zone)
    return first.weekday() == 0 and _whole_days(since, until, zone) == 7


def period_key(since: datetime, until: datetime, zone: tzinfo) -> str:
    """The unique key a digest run is recorded under: ``2026-W47``, ``2026-11-01..2026-12-01`` or, for a
    period that does not start and end at local midnight, its UTC bounds."""
    if is_iso_week(since, until, zone):
        return week_label(since, zone)
    if _whole_days(since, until, zone):
        return f"{local_date(since, zone)}..{local_date(until, zone)}"
    fmt = "%Y-%m-%dT%H:%MZ"
    return f"{_utc(since):{fmt}}..{_utc(until):{fmt}}"


def digest_period(rule: str, zone: tzinfo, occurrence: datetime) -> Period:
    """The period a scheduled run reports on: from the local day of the previous run to the local day
    of this one. For the default Monday rule that is exactly the last complete ISO week; for a daily
    rule, yesterday; for a monthly one, last month."""
    parsed = _parse(rule, zone)
    end_day = local_date(occurrence, zone)
    probe = _utc(occurrence)
    for _ in range(366):  # several runs on one day (BYHOUR=9,17): look further back for a new day
        prev = parsed.before(probe, inc=False)
        if prev is None:
            break
        prev_day = local_date(prev, zone)
        if prev_day < end_day:
            return day_period(prev_day, end_day, zone)
        probe = _utc(prev)
    return day_period(end_day - timedelta(days=7), end_day, zone)


def zone_named(name: str) -> tzinfo:
    zone = dtz.gettz(name)
    if zone is None:
        raise ValueError(f"unknown time zone {name!r}")
    return zone
