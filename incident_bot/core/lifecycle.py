"""The incident lifecycle: milestones, status and the order rules (DESIGN.md §5). Pure: no I/O.

Why registers: PagerDuty and Slack deliver at least once and in any order. Every input is folded into
a handful of registers that merge commutatively (first-ack is a ``min``, last resolve/reopen are a
``max``, severity is last-writer-wins by the source's own timestamp), and status and milestones are
*derived* from the registers. So a shuffled or late delivery gives exactly the state an in-order one
would, and nothing ever moves backwards.

Two modes:
- facts from PagerDuty (``strict=False``) are always recorded, they happened;
- commands from people (``strict=True``) are refused with a reason when they would break the order.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

MILESTONES: tuple[str, ...] = (
    "impact_started_at",
    "detected_at",
    "acknowledged_at",
    "mitigated_at",
    "resolved_at",
    "closed_at",
)
STATUSES: tuple[str, ...] = ("triggered", "acknowledged", "mitigated", "resolved", "closed")
SEVERITIES: tuple[str, ...] = ("SEV1", "SEV2", "SEV3", "SEV4")


@dataclass(frozen=True)
class IncidentState:
    """What the lifecycle needs of an incident. Milestones and status are derived, never set directly."""

    detected_at: datetime
    severity: str = "SEV3"
    # derived by derive(): never read back as input
    impact_started_at: datetime | None = None
    acknowledged_at: datetime | None = None
    mitigated_at: datetime | None = None
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    status: str = "triggered"
    # registers: the only inputs of derive()
    impact_started_reg: datetime | None = None
    first_ack_at: datetime | None = None
    first_mitigated_at: datetime | None = None
    ack_state: str | None = None
    ack_state_at: datetime | None = None
    last_mitigated_at: datetime | None = None
    last_resolved_at: datetime | None = None
    # Every resolve we were told of: resolved_at is the first resolve after the last reopen, which a
    # single register cannot give when deliveries are shuffled (resolve 10, resolve 30, reopen 20).
    resolve_times: tuple[datetime, ...] = ()
    last_reopened_at: datetime | None = None
    last_closed_at: datetime | None = None
    severity_at: datetime | None = None

    def milestones(self) -> dict[str, datetime | None]:
        return {name: getattr(self, name) for name in MILESTONES}


@dataclass(frozen=True)
class Signal:
    """One input to the lifecycle. ``at`` is the source's time (PagerDuty occurred_at, Slack ts...)."""

    kind: Literal[
        "detected", "acknowledge", "unacknowledge", "mitigate", "resolve", "reopen", "close",
        "severity", "impact_started",
    ]
    at: datetime
    value: str | None = None  # severity for "severity"
    when: datetime | None = None  # the new timestamp for "impact_started" / "detected"


@dataclass(frozen=True)
class Transition:
    state: IncidentState
    refused: str | None = None
    changed: dict[str, datetime | None] = field(default_factory=dict)
    status_before: str = ""

    @property
    def status_changed(self) -> bool:
        return self.state.status != self.status_before


def _min(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _max(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def _after(a: datetime | None, b: datetime | None) -> bool:
    """a happened, and after b (or b never happened)."""
    return a is not None and (b is None or a > b)


def derive(s: IncidentState) -> IncidentState:
    """Milestones and status from the registers."""
    impact = _min(s.impact_started_reg, s.detected_at)
    ack = s.first_ack_at
    if ack is not None and ack < s.detected_at:
        # Clock skew between PagerDuty's created_at and an ack: an ack cannot precede detection.
        ack = s.detected_at
    # Ties between a resolve and a reopen at the same instant resolve, so the result is order-free.
    after_reopen = [t for t in s.resolve_times if s.last_reopened_at is None or t >= s.last_reopened_at]
    resolved = min(after_reopen) if after_reopen else None
    # An incident that was resolved without an explicit mitigation was mitigated by then at the latest.
    mitigated = s.first_mitigated_at
    if mitigated is None and resolved is not None:
        mitigated = resolved
    closed = s.last_closed_at if resolved is not None and _after(s.last_closed_at, s.last_reopened_at) else None

    if closed is not None:
        status = "closed"
    elif resolved is not None:
        status = "resolved"
    elif _after(s.last_mitigated_at, s.last_reopened_at):
        status = "mitigated"
    elif s.ack_state == "ack" and _after(s.ack_state_at, s.last_reopened_at):
        status = "acknowledged"
    else:
        status = "triggered"
    return replace(
        s,
        impact_started_at=impact,
        acknowledged_at=ack,
        mitigated_at=mitigated,
        resolved_at=resolved,
        closed_at=closed,
        status=status,
    )


def _refusal(s: IncidentState, sig: Signal) -> str | None:
    """Why a person's command would break the order, or None if it is fine."""
    k = sig.kind
    if k == "acknowledge":
        if s.status in ("resolved", "closed"):
            return f"the incident is {s.status}; reopen it first"
        if s.acknowledged_at is not None and s.status != "triggered":
            return f"already acknowledged at {s.acknowledged_at:%Y-%m-%d %H:%M} UTC"
    elif k == "mitigate":
        if s.status in ("resolved", "closed"):
            return f"the incident is {s.status}; reopen it first"
        if s.status == "mitigated":
            return f"already mitigated at {s.last_mitigated_at:%Y-%m-%d %H:%M} UTC"
        if s.impact_started_at and sig.at < s.impact_started_at:
            return "mitigation cannot be before the impact started"
    elif k == "resolve":
        if s.status in ("resolved", "closed"):
            return f"already {s.status}"
        if s.impact_started_at and sig.at < s.impact_started_at:
            return "resolution cannot be before the impact started"
    elif k == "reopen":
        if s.status not in ("resolved", "closed"):
            return f"the incident is {s.status}, not resolved: nothing to reopen"
    elif k == "close":
        if s.status == "closed":
            return "already closed"
        if s.status != "resolved":
            return "only a resolved incident can be closed; resolve it first"
    elif k == "impact_started":
        when = sig.when
        assert when is not None
        if when > sig.at:
            return "the impact cannot start in the future"
        if when > s.detected_at:
            return (
                f"impact cannot start after detection ({s.detected_at:%Y-%m-%d %H:%M} UTC); "
                "give a time at or before it"
            )
    elif k == "severity":
        if sig.value not in SEVERITIES:
            return f"unknown severity {sig.value!r}; use one of {', '.join(SEVERITIES)}"
        if sig.value == s.severity:
            return f"the severity is already {sig.value}"
    return None


def apply(state: IncidentState, sig: Signal, *, strict: bool = False) -> Transition:
    """Fold one signal into the state. ``strict`` refuses order-breaking commands instead of recording."""
    state = derive(state)
    if strict:
        why = _refusal(state, sig)
        if why:
            return Transition(state=state, refused=why, status_before=state.status)
    s = state
    k, at = sig.kind, sig.at
    if k == "detected":
        s = replace(s, detected_at=min(s.detected_at, sig.when or at))
    elif k == "acknowledge":
        s = replace(s, first_ack_at=_min(s.first_ack_at, at))
        if s.ack_state_at is None or at >= s.ack_state_at:
            s = replace(s, ack_state="ack", ack_state_at=at)
    elif k == "unacknowledge":
        if s.ack_state_at is None or at > s.ack_state_at:
            s = replace(s, ack_state="unack", ack_state_at=at)
    elif k == "mitigate":
        s = replace(s, first_mitigated_at=_min(s.first_mitigated_at, at),
                    last_mitigated_at=_max(s.last_mitigated_at, at))
    elif k == "resolve":
        times = tuple(sorted(set(s.resolve_times) | {at}))
        s = replace(s, last_resolved_at=_max(s.last_resolved_at, at), resolve_times=times)
    elif k == "reopen":
        s = replace(s, last_reopened_at=_max(s.last_reopened_at, at))
    elif k == "close":
        s = replace(s, last_closed_at=_max(s.last_closed_at, at))
    elif k == "severity":
        # Last writer wins by the source's time; a tie goes to the more severe value, so the result
        # does not depend on which of two simultaneous changes arrived first.
        newer = s.severity_at is None or at > s.severity_at
        tie = s.severity_at == at and (sig.value or "") < s.severity
        if sig.value in SEVERITIES and (newer or tie):
            s = replace(s, severity=sig.value, severity_at=at)
    elif k == "impact_started":
        s = replace(s, impact_started_reg=_min(s.impact_started_reg, sig.when or at))
    new = derive(s)
    if strict and not _took_effect(new, sig):
        # A register kept a value from a later source time (a PagerDuty clock ahead of ours): the command
        # would change nothing, so it is refused rather than announced (DESIGN.md: never announce a
        # change the fold did not make).
        return Transition(state=state, refused="a later change recorded for this incident takes precedence; "
                                               "nothing was changed", status_before=state.status)
    changed = {m: getattr(new, m) for m in MILESTONES if getattr(new, m) != getattr(state, m)}
    return Transition(state=new, changed=changed, status_before=state.status)


_EFFECT = {
    "acknowledge": lambda s, sig: s.status != "triggered",
    "mitigate": lambda s, sig: s.status == "mitigated",
    "resolve": lambda s, sig: s.status == "resolved",
    "reopen": lambda s, sig: s.status not in ("resolved", "closed"),
    "close": lambda s, sig: s.status == "closed",
    "severity": lambda s, sig: s.severity == sig.value,
}


def _took_effect(new: IncidentState, sig: Signal) -> bool:
    """Whether a person's command did what it asked (checked only for commands, ``strict=True``)."""
    check = _EFFECT.get(sig.kind)
    return check is None or bool(check(new, sig))


def open_state(
    *, detected_at: datetime, severity: str, impact_started_at: datetime | None = None
) -> IncidentState:
    """The state of a newly opened incident."""
    reg = impact_started_at if impact_started_at is not None and impact_started_at < detected_at else None
    return derive(IncidentState(detected_at=detected_at, severity=severity, impact_started_reg=reg))
