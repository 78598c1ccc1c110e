"""Response targets per severity (``RESPONSE_TARGETS``) and the met / missed / pending rule. Pure.

``SEV1:ttr=60m,ttd=10m;SEV2:ttr=4h,ttd=15m`` (the defaults, from the role's KPIs: a SEV1 restored within
an hour and detected within ten minutes). An incident has *met* its targets when every configured one
is met, *missed* when any is exceeded (an unresolved incident already older than its TTR target has
missed it, whatever happens next), and is *pending* otherwise: still open and still within target.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from incident_bot.core.severity import normalise_severity

DEFAULT_TARGETS = "SEV1:ttr=60m,ttd=10m;SEV2:ttr=4h,ttd=15m"
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+)\s*([smhd])")


@dataclass(frozen=True)
class Target:
    ttr_s: int | None = None
    ttd_s: int | None = None


def parse_duration(text: str) -> int:
    """``90s``, ``10m``, ``4h``, ``1h30m``, ``2d`` -> seconds. A bare number is refused (which unit?)."""
    t = text.strip().lower().replace(" ", "")
    if not t or _DURATION.sub("", t):
        raise ValueError(f"{text!r} is not a duration such as 10m, 4h or 1h30m")
    return sum(int(n) * _UNIT_S[u] for n, u in _DURATION.findall(t))


def parse_targets(text: str | None) -> dict[str, Target]:
    """``"SEV1:ttr=60m,ttd=10m;SEV2:ttr=4h,ttd=15m"`` -> ``{"SEV1": Target(3600, 600), ...}``.

    An empty string means no targets. Raises ValueError naming the bad part.
    """
    out: dict[str, Target] = {}
    for chunk in filter(None, (c.strip() for c in (text or "").split(";"))):
        sev_text, sep, spec = chunk.partition(":")
        sev = normalise_severity(sev_text)
        if not sep or sev is None:
            raise ValueError(f"{chunk!r}: expected SEVn:ttr=DURATION,ttd=DURATION")
        values: dict[str, int] = {}
        for item in filter(None, (i.strip() for i in spec.split(","))):
            key, eq, dur = item.partition("=")
            key = key.strip().lower()
            if not eq or key not in ("ttr", "ttd"):
                raise ValueError(f"{chunk!r}: {item!r} should be ttr=DURATION or ttd=DURATION")
            values[f"{key}_s"] = parse_duration(dur)
        if not values:
            raise ValueError(f"{chunk!r}: give ttr=... and/or ttd=...")
        out[sev] = Target(**values)
    return out


@dataclass(frozen=True)
class TargetResult:
    status: str  # met | missed | pending
    missed: tuple[str, ...] = ()  # which of "ttd", "ttr"


def evaluate_target(target: Target, *, ttd_s: int | None, ttr_s: int | None,
                    impact_started_at: datetime | None, now: datetime) -> TargetResult:
    missed: list[str] = []
    pending = False
    if target.ttd_s is not None:
        if ttd_s is None:
            pending = True
        elif ttd_s > target.ttd_s:
            missed.append("ttd")
    if target.ttr_s is not None:
        if ttr_s is not None:
            if ttr_s > target.ttr_s:
                missed.append("ttr")
        elif impact_started_at is not None and (now - impact_started_at).total_seconds() > target.ttr_s:
            missed.append("ttr")  # still open and already past the target: missed whatever happens next
        else:
            pending = True
    status = "missed" if missed else ("pending" if pending else "met")
    return TargetResult(status, tuple(missed))
