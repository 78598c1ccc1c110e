"""Per-incident durations (DESIGN.md §5): TTD, TTA, TTM, TTR in whole seconds, None when an end is missing."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

# metric -> (start milestone, end milestone)
DEFINITIONS: dict[str, tuple[str, str]] = {
    "ttd_s": ("impact_started_at", "detected_at"),
    "tta_s": ("detected_at", "acknowledged_at"),
    "ttm_s": ("impact_started_at", "mitigated_at"),
    "ttr_s": ("impact_started_at", "resolved_at"),
}


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
