"""Read a person's "impact started at" time (`/incident started <time>`, the declare modal's optional field).

Why a small closed grammar instead of `dateutil.parser.parse`: the answer becomes `impact_started_at`, which
feeds TTD/TTM/TTR (DESIGN.md §5). A lenient parser guesses (day/month order, "yesterday", a missing date, a
DST instant that happens twice), and a wrong guess silently corrupts the metrics. So every form we accept has
one meaning, everything else is refused with a message that says what was wrong and shows forms that work.

Accepted (local forms are read in the user's zone `tz`):
- `14:54`, `9:05`, `14:54:30`: today, where "today" is the date of `now` in `tz`;
- `2026-11-26 14:54`, `2026-11-26 14:54:30`, `2026-11-26T14:54`: that date and time;
- ISO 8601 with an offset: `2026-11-26T14:54:00+01:00`, `2026-11-26T13:54Z` (via `dateutil.parser.isoparse`);
- relative: `25m ago`, `2h ago`, `1h30m ago`, `90s ago`, `2 hours ago`, `45 minutes ago`, `1d ago`.

Pure: no I/O, the caller passes `now`. Error messages are plain text; escape them (slack/mrkdwn.py) before
putting them in mrkdwn, since they quote what the user typed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, tzinfo

from dateutil import parser as du_parser
from dateutil import tz as du_tz

MAX_INPUT_CHARS = 64
# A user's clock (or Slack's) may run a little ahead of ours; within this we accept and clamp to `now`.
FUTURE_TOLERANCE = timedelta(seconds=60)
# Older than this is almost certainly a typo (wrong month or year), and would distort the metrics badly.
MAX_AGE = timedelta(days=30)

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

_TIME_ONLY = re.compile(r"(?P<h>\d{1,2}):(?P<m>\d{2})(?::(?P<s>\d{2}))?")
_DATE_TIME = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[ T](?P<h>\d{1,2}):(?P<m>\d{2})"
    r"(?::(?P<s>\d{2})(?P<frac>[.,]\d{1,6})?)?"
    r"\s?(?P<off>Z|[+-]\d{2}(?::?\d{2})?)?",
    re.IGNORECASE,
)
_BARE_DATE = re.compile(r"\d{4}-\d{1,2}-\d{1,2}")
_SLASHED = re.compile(r"\d{1,4}/\d{1,4}")
_WORDS = re.compile(r"\b(yesterday|today|tonight|tomorrow|now|last|this|morning|noon|midnight)\b")
_AM_PM = re.compile(r"\d\s*(am|pm|a\.m\.|p\.m\.)", re.IGNORECASE)
_IN_FUTURE = re.compile(r"in\s+\d|.*\bfrom now\b")
_AGO = re.compile(r"(?P<body>.*?)\s*\bago")
_REL_PART = re.compile(r"\s*(\d+)\s*([a-z]+)\s*")
_UNIT_SECONDS = {
    "d": 86400, "day": 86400, "days": 86400,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
}  # fmt: skip


class TimeParseError(ValueError):
    """The text is not a time we accept; `str(error)` is a message for the user, with examples that work."""


# Builds the error for one problem, appending the examples (so no refusal can forget them).
_Fail = Callable[[str], TimeParseError]


def _examples(now_local: datetime) -> str:
    """Examples dated today in the user's zone, with the user's current offset, so they can be copied."""
    day = now_local.date().isoformat()
    offset = _fmt_offset(now_local.utcoffset() or timedelta(0))
    return f"Try `14:54`, `{day} 14:54`, `{day}T14:54{offset}` or `25m ago`."


def _fmt_offset(offset: timedelta) -> str:
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _zone_name(tz: tzinfo, at: datetime) -> str:
    """IANA name when the tzinfo knows it (zoneinfo, dateutil), else its abbreviation or offset."""
    key = getattr(tz, "key", None)
    if key:
        return str(key)
    return at.tzname() or _fmt_offset(at.utcoffset() or timedelta(0))


def _fmt_day(day: date) -> str:
    # Month names from a fixed table: strftime("%b") depends on the process locale.
    return f"{day.day} {_MONTHS[day.month - 1]} {day.year}"


def _fmt_clock(dt: datetime) -> str:
    return dt.strftime("%H:%M:%S" if dt.second else "%H:%M")


def _quote(text: str) -> str:
    return f"'{text}'"


def parse_user_time(text: str, *, now: datetime, tz: tzinfo) -> datetime:
    """Return the UTC-aware instant `text` names, or raise `TimeParseError` saying why and what works instead.

    `now` must be timezone-aware (any zone); `tz` is the user's zone, used for forms without an offset.
    The result is never later than `now`: times up to `FUTURE_TOLERANCE` ahead (clock skew) are clamped to
    `now`, so a caller can store it as an impact start without breaking `impact_started_at <= detected_at`.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    # All arithmetic on UTC: aware-datetime subtraction in a DST zone is wall-clock arithmetic, which would
    # make "25m ago" across a DST change land 35 or 85 minutes back (or on a local time that does not exist).
    now = now.astimezone(UTC)
    now_local = now.astimezone(tz)
    hint = _examples(now_local)

    def fail(problem: str) -> TimeParseError:
        return TimeParseError(f"{problem} {hint}")

    if len(text) > MAX_INPUT_CHARS:
        head = text[:20].strip()
        raise fail(f"That is too long ({len(text)} characters, at most {MAX_INPUT_CHARS}): '{head}…'.")
    raw = " ".join(text.split())
    if not raw:
        raise fail("Give the time the impact started.")
    lowered = raw.lower()

    if _AGO.fullmatch(lowered):
        return _check_range(now - _parse_relative(raw, lowered, fail), raw, now, now_local, fail)

    match = _TIME_ONLY.fullmatch(raw)
    if match:
        naive = _naive(now_local.date(), match, raw, fail)
        dt = _localize(naive, tz, raw, fail)
        return _check_range(dt, raw, now, now_local, fail, time_only=True)

    match = _DATE_TIME.fullmatch(raw)
    if match:
        return _check_range(_parse_date_time(match, raw, tz, fail), raw, now, now_local, fail)

    raise fail(_explain_refusal(raw, lowered, now_local))


def _explain_refusal(raw: str, lowered: str, now_local: datetime) -> str:
    """Say why a text matched none of the accepted forms, as specifically as we can tell."""
    yesterday = (now_local.date() - timedelta(days=1)).isoformat()
    if _BARE_DATE.fullmatch(raw):
        return f"{_quote(raw)} has a date but no time of day: add the time, e.g. `{raw} 14:54`."
    if _SLASHED.search(raw):
        return (
            f"{_quote(raw)} is ambiguous: day/month order differs between countries. "
            "Write the date as YYYY-MM-DD."
        )
    if _IN_FUTURE.match(lowered):
        return f"{_quote(raw)} is in the future; the impact start must be in the past."
    word = _WORDS.search(lowered)
    if word:
        return (
            f"I don't read words like '{word.group(1)}' in {_quote(raw)}: give the date and time, "
            f"e.g. `{yesterday} 23:50`."
        )
    if _AM_PM.search(raw):
        return f"I don't read am/pm in {_quote(raw)}: use the 24-hour clock, e.g. `14:54` for 2:54 pm."
    return f"Could not read {_quote(raw)}."


def _naive(day: date, match: re.Match[str], raw: str, fail: _Fail) -> datetime:
    hour, minute, second = int(match["h"]), int(match["m"]), int(match["s"] or 0)
    if hour > 23 or minute > 59 or second > 59:
        raise fail(f"{_quote(raw)} is not a valid time of day (00:00 to 23:59:59).")
    return datetime(day.year, day.month, day.day, hour, minute, second)


def _parse_date_time(match: re.Match[str], raw: str, tz: tzinfo, fail: _Fail) -> datetime:
    """`YYYY-MM-DD[ T]HH:MM[:SS[.ffffff]][offset]`; with an offset via isoparse, without one in `tz`."""
    hour, minute, second = int(match["h"]), int(match["m"]), int(match["s"] or 0)
    if hour > 23 or minute > 59 or second > 59:
        # isoparse would turn 24:00 into the next day; we want one spelling per instant.
        raise fail(f"{_quote(raw)} is not a valid time of day (00:00 to 23:59:59).")
    frac = (match["frac"] or "").replace(",", ".")
    offset = (match["off"] or "").upper()
    iso = f"{match['date']}T{hour:02d}:{minute:02d}:{second:02d}{frac}{offset}"
    try:
        parsed = du_parser.isoparse(iso)
    except (ValueError, OverflowError) as exc:
        raise fail(f"{_quote(raw)} is not a valid date and time ({exc}).") from None
    if parsed.tzinfo is None:
        return _localize(parsed, tz, raw, fail)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise fail(f"{_quote(raw)} is out of range.") from None


def _localize(naive: datetime, tz: tzinfo, raw: str, fail: _Fail) -> datetime:
    """Attach the user's zone, refusing local times that DST skips or repeats instead of guessing."""
    local = naive.replace(tzinfo=tz)
    zone = _zone_name(tz, local)
    day = naive.date().isoformat()
    clock = naive.strftime("%H:%M:%S" if naive.second else "%H:%M")
    if not du_tz.datetime_exists(local):
        before = _fmt_offset(local.replace(fold=0).utcoffset() or timedelta(0))
        raise fail(
            f"{_quote(raw)} does not exist in {zone} on {day}: the clocks jump forward over it (daylight "
            f"saving). Check the time, or give an explicit offset, e.g. `{day}T{clock}{before}`."
        )
    if du_tz.datetime_ambiguous(local):
        first = _fmt_offset(local.replace(fold=0).utcoffset() or timedelta(0))
        second = _fmt_offset(local.replace(fold=1).utcoffset() or timedelta(0))
        raise fail(
            f"{_quote(raw)} happens twice in {zone} on {day} (the clocks go back). Give the offset: "
            f"`{day}T{clock}{first}` for the first, `{day}T{clock}{second}` for the second."
        )
    try:
        return local.astimezone(UTC)
    except OverflowError:
        raise fail(f"{_quote(raw)} is out of range.") from None


def _parse_relative(raw: str, lowered: str, fail: _Fail) -> timedelta:
    """`1h30m ago`, `2 hours ago`: each unit at most once, largest first, so there is one reading."""
    match = _AGO.fullmatch(lowered)
    assert match is not None
    body = match["body"]
    pos, total, last_size = 0, 0, None
    if not body:
        raise fail(f"{_quote(raw)} says how long ago but not how much, e.g. `25m ago`.")
    while pos < len(body):
        part = _REL_PART.match(body, pos)
        if part is None:
            raise fail(f"Could not read {_quote(raw)}: write the amount as e.g. `25m ago` or `1h30m ago`.")
        unit = _UNIT_SECONDS.get(part[2])
        if unit is None:
            raise fail(
                f"Unknown unit '{part[2]}' in {_quote(raw)}: use d, h, m or s (days, hours, minutes...)."
            )
        if last_size is not None and unit >= last_size:
            raise fail(f"{_quote(raw)}: give each unit once, largest first, e.g. `1h30m ago`.")
        total += int(part[1]) * unit
        last_size = unit
        pos = part.end()
    # Compare as integers before building a timedelta: `99999999999d ago` must be refused, not overflow.
    if total > MAX_AGE.total_seconds():
        raise fail(_too_old(raw))
    return timedelta(seconds=total)


def _too_old(raw: str) -> str:
    return f"{_quote(raw)} is more than {MAX_AGE.days} days ago; the impact start must be more recent."


def _check_range(
    dt: datetime, raw: str, now: datetime, now_local: datetime, fail: _Fail, *, time_only: bool = False
) -> datetime:
    """Refuse the future (beyond clock skew) and the far past; clamp the skew window to `now` (UTC)."""
    if dt > now + FUTURE_TOLERANCE:
        zone = _zone_name(now_local.tzinfo or UTC, now_local)
        problem = f"{_quote(raw)} is in the future: it is {now_local:%H:%M} in {zone} now."
        if time_only:
            yesterday = (now_local.date() - timedelta(days=1)).isoformat()
            problem += f" If you meant yesterday, give the date: `{yesterday} {raw}`."
        raise fail(problem)
    if dt < now - MAX_AGE:
        raise fail(_too_old(raw))
    return min(dt, now).astimezone(UTC)


def describe(dt_utc: datetime, tz: tzinfo) -> str:
    """Render an instant for a confirmation, local first: "14:54 Europe/Berlin (13:54 UTC), 26 Nov 2026".

    The UTC clock is shown too because the timeline and exports are in UTC; its date is added when it differs
    from the local date, so "00:30 Pacific/Auckland" is never read as the wrong day.
    """
    if dt_utc.tzinfo is None or dt_utc.utcoffset() is None:
        raise ValueError("dt_utc must be timezone-aware")
    local = dt_utc.astimezone(tz)
    utc = dt_utc.astimezone(UTC)
    zone = _zone_name(tz, local)
    if local.utcoffset() == timedelta(0) and zone.upper() in {"UTC", "ETC/UTC", "Z", "ZULU", "UNIVERSAL"}:
        return f"{_fmt_clock(utc)} UTC, {_fmt_day(utc.date())}"
    utc_part = f"{_fmt_clock(utc)} UTC"
    if utc.date() != local.date():
        utc_part += f" on {utc.day} {_MONTHS[utc.month - 1]}"
    return f"{_fmt_clock(local)} {zone} ({utc_part}), {_fmt_day(local.date())}"
