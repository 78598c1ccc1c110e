"""Per-incident durations (DESIGN.md §5) and the ONE way durations and times are written for people.

Every renderer (CLI tables, Slack messages, the RCA, the digest) formats through this module, so a
reader sees one style everywhere:

- durations: ``0s``, ``45s``, ``4m 12s``, ``1h 02m 03s``, ``2d 03h 04m``; ``—`` when unknown;
- times in text: ``2026-11-26 14:54:12Z`` (UTC, ``Z``; never ``+00:00`` next to it), or
  ``2026-11-26 14:54Z`` with ``seconds=False``;
- times for machines (JSON): ISO 8601 ``2026-11-26T14:54:12Z``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

# metric -> (start milestone, end milestone)
DEFINITIONS: dict[str, tuple[str, str]] = {
    "ttd_s": ("impact_started_at", "detected_at"),
    "tta_s": ("detected_at", "acknowledged_at"),
    "ttm_s": ("impact_started_at", "mitigated_at"),
    "ttr_s": ("impact_started_at", "resolved_at"),
}
UNKNOWN = "—"


def seconds_between(start: datetime | None, end: datetime | None) -> int | None:
    if start is None or end is None:
        return None
    # Whole seconds, rounded down; the lifecycle guarantees end >= start, max() guards old data.
    return max(0, int((end - start).total_seconds()))


def durations(milestones: Mapping[str, datetime | None]) -> dict[str, int | None]:
    return {
        name: seconds_between(milestones.get(start), milestones.get(end))
        for name, (start, end) in DEFINITIONS.items()
    }


def format_duration(seconds: int | float | None, unknown: str = UNKNOWN) -> str:
    """``45s``, ``4m 12s``, ``1h 02m 03s``, ``2d 03h 04m`` (seconds dropped past a day); ``unknown`` for None.

    Units after the first are zero-padded so columns line up and ``1h 02m`` cannot be misread.
    """
    if seconds is None:
        return unknown
    seconds = max(0, int(seconds))
    d, rem = divmod(seconds, 86400)
    h, rem = divmod(rem, 3600)
    m, s = divmod(rem, 60)
    if d:
        return f"{d}d {h:02d}h {m:02d}m"
    if h:
        return f"{h}h {m:02d}m {s:02d}s"
    if m:
        return f"{m}m {s:02d}s"
    return f"{s}s"


def utc_text(ts: datetime | None, *, seconds: bool = True, unknown: str = UNKNOWN) -> str:
    """``2026-11-26 14:54:12Z``: a UTC time for people to read."""
    if ts is None:
        return unknown
    utc = ts.astimezone(UTC)
    if seconds:  # isoformat is a fraction of strftime's cost, and an RCA may show thousands of these
        return utc.isoformat(" ", "seconds")[:19] + "Z"
    return utc.strftime("%Y-%m-%d %H:%MZ")


def utc_clock(ts: datetime) -> str:
    """``14:54:12Z``: a time of day in UTC (timeline rows of one incident)."""
    return ts.astimezone(UTC).strftime("%H:%M:%SZ")


def iso_utc(ts: datetime | None) -> str | None:
    """``2026-11-26T14:54:12Z`` for JSON; None stays None."""
    if ts is None:
        return None
    # isoformat, as utc_text: half strftime's cost, and a digest's JSON has ~13,000 of these at 100,000 incidents
    return ts.astimezone(UTC).isoformat("T", "seconds")[:19] + "Z"


def local_text(ts: datetime | None, zone: object, fmt: str = "%a %d %b %H:%M", *,
               unknown: str = UNKNOWN) -> str:
    """A time in the reader's zone with the zone's abbreviation (``Mon 23 Nov 09:00 CET``); UTC gets ``Z``."""
    if ts is None:
        return unknown
    local = ts.astimezone(zone)  # type: ignore[arg-type]
    abbrev = local.tzname() or ""
    suffix = "Z" if abbrev in ("UTC", "GMT", "Z") and local.utcoffset() == UTC.utcoffset(None) else f" {abbrev}"
    return local.strftime(fmt) + suffix.rstrip()
