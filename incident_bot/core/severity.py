"""PagerDuty priority/urgency to SEV1..SEV4."""

from __future__ import annotations

from collections.abc import Mapping

DEFAULT_SEVERITY_MAP: dict[str, str] = {
    "P1": "SEV1",
    "P2": "SEV2",
    "P3": "SEV3",
    "P4": "SEV4",
    "P5": "SEV4",
    # Used when the incident has no priority (PagerDuty accounts without priorities, or priority null).
    "high": "SEV2",
    "low": "SEV4",
}
SEVERITIES = ("SEV1", "SEV2", "SEV3", "SEV4")
FALLBACK = "SEV3"


def priority_key(name: str) -> str:
    """A priority name as a map key: case and spacing do not matter (``"P1 - Critical"`` = ``"p1-critical"``)."""
    return "".join(name.split()).casefold()


def parse_severity_map(text: str) -> dict[str, str]:
    """``"P1=SEV1,P2=SEV1,high=SEV2"`` -> overrides on top of the defaults. Raises ValueError.

    Keys are priority names, whole (``P1 - Critical Outage=SEV1``), compared without case or spaces;
    ``high`` and ``low`` are the urgencies used when an incident has no priority."""
    result = {priority_key(k): v for k, v in DEFAULT_SEVERITY_MAP.items()}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip().upper()
        if not sep or not key:
            raise ValueError(f"expected KEY=SEVn, got {item!r}")
        if value not in SEVERITIES:
            raise ValueError(f"{key}={value}: severity must be one of {', '.join(SEVERITIES)}")
        result[priority_key(key)] = value
    return result


def severity_for(priority: str | None, urgency: str | None, mapping: Mapping[str, str]) -> str | None:
    """Priority wins when set (it is the responder's judgement); urgency is the fallback when there is none.

    None when the incident has a priority that the map does not name: the caller keeps the severity it
    has (an unmapped ``P1 - Critical Outage`` must not move a SEV1 to SEV4 because urgency is low)."""
    if priority and priority.strip():
        return mapping.get(priority_key(priority))
    if urgency:
        sev = mapping.get(priority_key(urgency))
        if sev:
            return sev
    return FALLBACK


def normalise_severity(text: str) -> str | None:
    """``"1"``, ``"sev1"``, ``"SEV1"`` -> ``"SEV1"``; None if it is not a severity."""
    t = text.strip().upper()
    if t.isdigit():
        t = "SEV" + t
    return t if t in SEVERITIES else None
