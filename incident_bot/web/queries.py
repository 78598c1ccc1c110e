"""What the pages read: column selects on indexed columns, one short read transaction per page.

The incident list has to stay fast at 100,000 incidents (bench/bench_web.py): it pages by
``number`` (the unique index), filters on indexed columns, and counts with the same WHERE. The
incident page reuses the RCA export's loader (:func:`incident_bot.usecases.rca.rca_document`), so the
page and the exported RCA cannot disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select
from sqlmodel import Session

from incident_bot.core import capa
from incident_bot.core.lifecycle import STATUSES
from incident_bot.core.rca import RcaDocument, safe_url
from incident_bot.core.severity import SEVERITIES
from incident_bot.usecases.rca import display_names, rca_document
from storage import text_search
from storage.models import ActionItem, DigestRun, Incident, IncidentMetrics, PagerDutyLink, utcnow

PAGE_SIZE = 50
PERIODS: dict[str, timedelta | None] = {
    "7d": timedelta(days=7), "30d": timedelta(days=30), "90d": timedelta(days=90),
    "365d": timedelta(days=365), "all": None,
}
_REF = re.compile(r"^INC-(\d{1,9})$", re.IGNORECASE)


class BadFilter(ValueError):
    """A query parameter the page does not accept; the message names it (shown with a 400)."""


@dataclass(frozen=True)
class IncidentFilter:
    status: str = ""
    severity: str = ""
    service: str = ""
    period: str = "all"
    q: str = ""
    page: int = 1

    @classmethod
    def parse(cls, params: dict[str, str]) -> IncidentFilter:
        status, severity = params.get("status", "").strip(), params.get("severity", "").strip().upper()
        period = params.get("period", "").strip() or "all"
        if status and status not in STATUSES:
            raise BadFilter(f"status must be one of {', '.join(STATUSES)}")
        if severity and severity not in SEVERITIES:
            raise BadFilter(f"severity must be one of {', '.join(SEVERITIES)}")
        if period not in PERIODS:
            raise BadFilter(f"period must be one of {', '.join(PERIODS)}")
        raw_page = params.get("page", "").strip() or "1"
        if not raw_page.isdigit() or not 1 <= int(raw_page) <= 100_000:
            raise BadFilter("page must be a whole number from 1")
        service, q = params.get("service", "").strip(), " ".join(params.get("q", "").split())
        if len(service) > 255 or len(q) > 200:
            raise BadFilter("service and search are limited to 255 and 200 characters")
        return cls(status=status, severity=severity, service=service, period=period, q=q, page=int(raw_page))

    def query(self, **changes: Any) -> dict[str, str]:
        """The filter as query parameters (empty ones left out), for links to other pages."""
        values = {"status": self.status, "severity": self.severity, "service": self.service,
                  "period": "" if self.period == "all" else self.period, "q": self.q, "page": str(self.page)}
        values.update({k: str(v) for k, v in changes.items()})
        if values.get("page") == "1":
            values.pop("page")
        return {k: v for k, v in values.items() if v}


@dataclass(frozen=True)
class IncidentListRow:
    ref: str
    title: str
    severity: str
    status: str
    service: str | None
    detected_at: datetime | None
    resolved_at: datetime | None
    ttr_s: int | None


@dataclass
class IncidentPage:
    rows: list[IncidentListRow]
    total: int
    page: int
    pages: int
    services: list[str] = field(default_factory=list)


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def list_incidents(session: Session, f: IncidentFilter, *, now: datetime | None = None) -> IncidentPage:
    i = Incident
    where: list[Any] = []
    if f.status:
        where.append(i.status == f.status)
    if f.severity:
        where.append(i.severity == f.severity)
    if f.service:
        where.append(i.service == f.service)
    span = PERIODS[f.period]
    if span is not None:
        where.append(i.detected_at >= (now or utcnow()) - span)  # type: ignore[operator]
    if f.q:
        # The text index (storage/text_search.py): words of the title, service, summary and root causes, the
        # last word as a prefix. A search with no word in it ("5%") falls back to a scan of the titles.
        found = text_search.matching(session.get_bind().dialect.name, f.q)
        where.append(found if found is not None else func.lower(i.title).like(_like(f.q.lower()), escape="\\"))
    total = int(session.execute(select(func.count()).select_from(i).where(*where)).scalar_one())
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(f.page, pages)
    m = IncidentMetrics
    stmt = (select(i.ref, i.title, i.severity, i.status, i.service, i.detected_at, i.resolved_at, m.ttr_s)
            .join(m, m.incident_id == i.id, isouter=True)  # type: ignore[arg-type]
            .where(*where).order_by(i.number.desc())  # type: ignore[attr-defined]
            .limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE))
    rows = [IncidentListRow(*r) for r in session.execute(stmt)]
    return IncidentPage(rows=rows, total=total, page=page, pages=pages, services=services(session))


def services(session: Session) -> list[str]:
    """Service names for the filters (distinct over the indexed column)."""
    stmt = select(Incident.service).where(Incident.service.is_not(None)).distinct().order_by(Incident.service)  # type: ignore[union-attr,arg-type]
    return [s for s in session.execute(stmt).scalars() if s][:500]


def incident_by_ref(session: Session, ref: str) -> Incident | None:
    """By ``number`` (the unique index) rather than ``upper(ref)``, which no index serves."""
    match = _REF.match(ref.strip())
    if not match:
        return None
    return session.execute(select(Incident).where(Incident.number == int(match.group(1)))).scalar_one_or_none()


@dataclass(frozen=True)
class PagerDutyRef:
    incident_id: str
    url: str | None
    service: str | None
    primary: bool


@dataclass
class IncidentView:
    incident: Incident
    doc: RcaDocument
    pagerduty: list[PagerDutyRef]
    commander: str | None
    metrics: dict[str, int | None]
    review: str  # the RCA's state, in words


def incident_view(session: Session, inc: Incident, *, today: date,
                  window: timedelta = timedelta(days=30)) -> IncidentView:
    assert inc.id is not None
    doc = rca_document(session, inc, today=today, window=window)
    links = session.execute(select(PagerDutyLink).where(PagerDutyLink.incident_id == inc.id)  # type: ignore[arg-type]
                            .order_by(PagerDutyLink.primary.desc(), PagerDutyLink.created_at)).scalars()  # type: ignore[attr-defined]
    pd = [PagerDutyRef(p.pagerduty_incident_id, safe_url(p.url), p.service_name, p.primary) for p in links]
    if inc.pagerduty_incident_id and not any(p.incident_id == inc.pagerduty_incident_id for p in pd):
        pd.insert(0, PagerDutyRef(inc.pagerduty_incident_id, safe_url(inc.pagerduty_url), None, True))
    row = session.get(IncidentMetrics, inc.id)
    metrics = {k: getattr(row, k) if row else None for k in ("ttd_s", "tta_s", "ttm_s", "ttr_s")}
    names = display_names(session, [inc.commander_id])
    return IncidentView(incident=inc, doc=doc, pagerduty=pd, commander=names.get(inc.commander_id or "",
                        inc.commander_id), metrics=metrics, review=review_state(inc, doc))


def review_state(inc: Incident, doc: RcaDocument) -> str:
    """Published once the incident is closed (closing is publishing the RCA); a draft before, with
    how many of its written sections are still to fill."""
    written = [s for s in doc.sections if s.kind in ("text", "lessons")]
    todo = sum(1 for s in written if s.empty)
    if inc.status == "closed":
        note = f" (closed without a complete RCA: {inc.close_override_reason})" if inc.close_override_reason else ""
        return f"Published{note}"
    if todo:
        return f"Draft: {todo} of {len(written)} sections still to fill"
    return "Draft: every section written, ready for review"


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


def posted_digests(session: Session) -> list[DigestRun]:
    """Every period whose digest was posted (claimed and queued), newest first."""
    stmt = select(DigestRun).where(or_(DigestRun.status == "enqueued", DigestRun.outbox_id.is_not(None)))  # type: ignore[union-attr]
    return list(session.execute(stmt.order_by(DigestRun.since.desc())).scalars())  # type: ignore[attr-defined]


def digest_run(session: Session, period_key: str) -> DigestRun | None:
    return session.execute(select(DigestRun).where(DigestRun.period_key == period_key)).scalar_one_or_none()
