"""The clock rule (DESIGN.md): every timestamp comes from its source, bounded by the clock that received it.

A source time later than receipt plus :data:`MAX_SKEW` cannot be true (a clock ahead of ours, or a hostile
signed body saying 9999-12-31); kept, it would win every last-writer-wins register for good and freeze
the incident. It is clamped to the receipt time, and the caller says so on the timeline. Pure: no I/O.
"""

from __future__ import annotations

from datetime import datetime, timedelta

MAX_SKEW = timedelta(seconds=60)


def bounded(at: datetime | None, received_at: datetime) -> tuple[datetime | None, bool]:
    """``(time to use, clamped?)``: ``at`` unless it is later than ``received_at + MAX_SKEW``."""
    if at is not None and at > received_at + MAX_SKEW:
        return received_at, True
    return at, False
