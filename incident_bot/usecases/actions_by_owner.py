"""Open CAPA by owner (``/ui/actions``): one column select of the open items with their incident's ref,
grouped by owner, the owners' names from the directory."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlmodel import Session

from incident_bot.core import capa
from incident_bot.core.rca import safe_url
from incident_bot.usecases.directory import display_names
from storage.models import ActionItem, Incident


@dataclass(frozen=True)
class ActionView:
    id: int
    title: str
    incident_ref: str
    type: str
    priority: str
    status: str
    due_date: date | None
    overdue: bool
    ticket_url: str | None
    ticket_link: str | None


@dataclass
class OwnerActions:
    owner_id: str | None
    owner: str
    actions: list[ActionView]

    @property
    def overdue(self) -> int:
        return sum(1 for a in self.actions if a.overdue)


def open_actions(session: Session, *, today: date) -> list[OwnerActions]:
    """Open CAPA grouped by owner; owners with overdue items first, then by how many they hold."""
    a = ActionItem
    stmt = (select(a.id, a.title, Incident.ref, a.type, a.priority, a.status, a.due_date, a.ticket_url, a.owner_id)
            .join(Incident, Incident.id == a.incident_id)  # type: ignore[arg-type]
            .where(a.status.in_(capa.OPEN_STATUSES))  # type: ignore[attr-defined]
            .order_by(a.due_date.is_(None), a.due_date, a.id))  # type: ignore[union-attr]
    groups: dict[str | None, list[ActionView]] = {}
    for r in session.execute(stmt):
        groups.setdefault(r[8], []).append(ActionView(
            id=r[0], title=r[1], incident_ref=r[2], type=r[3], priority=r[4], status=r[5], due_date=r[6],
            overdue=capa.is_overdue(r[5], r[6], today), ticket_url=r[7], ticket_link=safe_url(r[7])))
    names = display_names(session, [k for k in groups if k])
    out = [OwnerActions(k, names.get(k, k) if k else "no owner", v) for k, v in groups.items()]
    out.sort(key=lambda g: (-g.overdue, -len(g.actions), g.owner.lower()))
    return out
