"""The RCA as a document to sign: its status (draft -> review -> final) and the quality check. Pure.

States and moves (anything else is refused with the reason):

    draft  --review (needs a reviewer)-->  review  --final (quality check passes, or an override reason)-->  final
    review --draft-->  draft                 final --draft (reopen for edits)-->  draft

``final`` straight from ``draft`` is refused: someone other than the authors reads it first.
The quality check lists what a reviewer would send back: empty sections, impact without its
structured fields, a root cause with no corrective or preventive action, actions with no owner or
due date, blameful phrasing, an incident that is not resolved yet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

STATUSES: tuple[str, ...] = ("draft", "review", "final")
LABELS: dict[str, str] = {"draft": "Draft", "review": "In review", "final": "Final"}
# Narrative sections a final RCA must have (the derived facts fill detection/response/recovery).
REQUIRED_SECTIONS: dict[str, str] = {
    "summary": "Summary", "impact": "Impact", "root_causes": "Root causes and contributing factors",
    "trigger": "Trigger",
}
LESSONS = ("went_well", "went_wrong", "lucky")
IMPACT_FIELDS: dict[str, str] = {
    "users_affected": "users affected", "customer_facing": "customer facing (yes/no)",
    "slo_budget_spent": "SLO / error budget spent",
}
FIXING_TYPES = frozenset({"corrective", "preventive"})


class ReviewError(ValueError):
    """A status change that is not allowed; the message says why and what to do."""


@dataclass(frozen=True)
class QualityFinding:
    key: str  # stable, for tests and machines: "empty:summary", "capa:no_owner:3", ...
    message: str


@dataclass(frozen=True)
class ActionFacts:
    id: int | None
    type: str
    status: str
    owner: str | None
    due_date: Any


def quality_findings(narrative: Mapping[str, Any], actions: Sequence[ActionFacts], *,
                     incident_status: str, blameless_count: int = 0) -> list[QualityFinding]:
    """What is missing before the RCA can be final, in document order. Empty list: ready to sign."""
    out: list[QualityFinding] = []

    def filled(key: str) -> bool:
        return bool(str(narrative.get(key) or "").strip())

    if incident_status not in ("resolved", "closed"):
        out.append(QualityFinding("incident:open", f"the incident is {incident_status}, not resolved"))
    for key, title in REQUIRED_SECTIONS.items():
        if not filled(key):
            out.append(QualityFinding(f"empty:{key}", f"{title} is empty"))
    missing = [label for key, label in IMPACT_FIELDS.items() if not filled(key)]
    if missing:
        out.append(QualityFinding("impact:fields", "Impact lacks " + ", ".join(missing)))
    if not any(filled(k) for k in LESSONS):
        out.append(QualityFinding("empty:lessons", "Lessons learned is empty"))
    live = [a for a in actions if a.status != "wont_do"]
    if filled("root_causes") and not any(a.type in FIXING_TYPES for a in live):
        out.append(QualityFinding("capa:none", "a root cause is stated but no corrective or preventive action "
                                               "addresses it"))
    for a in live:
        if not a.owner:
            out.append(QualityFinding(f"capa:no_owner:{a.id}", f"action #{a.id} has no owner"))
        if a.due_date is None and a.status not in ("done",):
            out.append(QualityFinding(f"capa:no_due:{a.id}", f"action #{a.id} has no due date"))
    if blameless_count:
        out.append(QualityFinding("blameless", f"{blameless_count} blameful phrase(s) flagged by the "
                                               "language check"))
    return out


def next_status(current: str, wanted: str, *, reviewers: Sequence[str], findings: Sequence[QualityFinding],
                override: str | None = None) -> str:
    """The status after a requested move, or :class:`ReviewError` saying why not."""
    if wanted not in STATUSES:
        raise ReviewError(f"unknown RCA status {wanted!r}; use draft, review or final")
    if wanted == current:
        raise ReviewError(f"the RCA is already {LABELS[current].lower()}")
    if wanted == "review" and current != "draft":
        raise ReviewError("only a draft goes to review; reopen it as draft first")
    if wanted == "review" and not reviewers:
        raise ReviewError("name a reviewer: --reviewer U123 (or /incident rca status review @someone)")
    if wanted == "final":
        if current != "review":
            raise ReviewError("a draft cannot be final: put it in review first "
                              "(--status review --reviewer U123)")
        if findings and not (override or "").strip():
            raise ReviewError("the RCA is not ready: " + "; ".join(f.message for f in findings)
                              + ". Fix these, or give a reason: --override REASON")
    return wanted
