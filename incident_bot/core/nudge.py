"""When a quiet incident channel needs a status-update reminder. Pure.

While an incident is open, a ``/incident update`` is expected every ``STATUS_UPDATE_INTERVAL`` (by
severity). The quiet stretch starts at the latest of: the last status update, the detection, the last
snooze. Each full interval of silence is one *slot*; a reminder is keyed by (incident, start of the
stretch, slot), so a scheduler that ticks every few seconds, restarts, or runs on several replicas
still posts one reminder per interval. Snoozing starts a new stretch: the next reminder comes one
interval after the snooze.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime

DEFAULT = "SEV1=30m,SEV2=30m,default=60m"
_DURATION = re.compile(r"(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?")


def parse_intervals(text: str | None) -> dict[str, int]:
    """``SEV1=30m,SEV2=30m,default=60m`` or one value for every severity (``45m``) -> seconds by key.

    ``0`` turns the reminder off (for that severity, or all). Raises ValueError naming the bad part.
    """
    out = {"SEV1": 1800, "SEV2": 1800, "default": 3600}
    text = (text or "").strip()
    if not text:
        return out
    if "=" not in text:
        seconds = _seconds(text)
        return {"default": seconds}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        key = key.strip().upper() if key.strip().lower() != "default" else "default"
        if not sep or not key or (key != "default" and not key.startswith("SEV")):
            raise ValueError(f"STATUS_UPDATE_INTERVAL: {part.strip()!r} is not SEVn=DURATION or default=DURATION")
        out[key] = _seconds(value)
    return out


def _seconds(value: str) -> int:
    value = value.strip()
    if value == "0":
        return 0
    m = _DURATION.fullmatch(value.lower())
    seconds = None if not m or not any(m.groups()) else (
        int(m.group(1) or 0) * 3600 + int(m.group(2) or 0) * 60 + int(m.group(3) or 0))
    if seconds is None or seconds < 60:
        raise ValueError(f"STATUS_UPDATE_INTERVAL: {value!r} is not a duration of a minute or more (e.g. 30m, 1h)")
    return seconds


def interval_for(intervals: Mapping[str, int], severity: str) -> int:
    return intervals.get(severity, intervals.get("default", 3600))


def due_slot(now: datetime, quiet_since: datetime, interval_s: int) -> int | None:
    """The slot (1, 2, …) a reminder is due for, or None while the channel is not yet quiet that long."""
    if interval_s <= 0 or now < quiet_since:
        return None
    slot = int((now - quiet_since).total_seconds()) // interval_s
    return slot or None
