"""The weekly SEV digest: gather the figures with SQL, let the core decide the content, post it once.

Membership is the one of ``incident-bot metrics`` (issue 4), by calling the same
:func:`incident_bot.usecases.metrics.period_metrics`: counts over incidents *detected* in
``[since, until)``, MTTx over incidents *resolved* in it. The rest of the digest follows suit:
- major incidents and response targets: incidents of that severity detected in the period;
- top services: incidents detected in the period, by service (incidents without one are left out);
- missing RCA: resolved or closed SEV1/SEV2 incidents, resolved in the 8 weeks that end at ``until``,
  whose RCA lacks a summary or root causes. Minor incidents rarely get a written RCA, and listing
  every SEV4 of two months would bury the few that matter; older ones are a backlog, not news;
- CAPA: opened = created in the period, done = closed as done in it, overdue = open at
  ``as_of = min(until, now)`` with a due day before ``as_of``'s day in ``TIMEZONE``.

Posting is exactly once per period: :func:`post_digest` inserts the period's :class:`DigestRun` row
(unique ``period_key``, insert-or-nothing) and queues the Slack message in the caller's transaction.
Both commit together or not at all, so a replica that dies half-way leaves nothing behind and the
next one posts; one that dies after the commit leaves the message to the outbox, which delivers it.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, union_all, update
from sqlmodel import Session

from incident_bot.config import ConfigError, Settings
from incident_bot.core import digest as core
from incident_bot.core import digest_view as view_rules
from incident_bot.core import schedule
from incident_bot.core import targets as target_rules
from incident_bot.core.capa import CLOSED_STATUSES
from incident_bot.core.learning import MAX_CAPA_ITEMS
from incident_bot.pipeline.outbox import intent
from incident_bot.usecases import learning
from incident_bot.usecases.metrics import period_metrics, periods_metrics
from storage import repo, tables
from storage.bulk import rows, utc
from storage.models import DigestRun, OutboxMessage, utcnow

TREND_WEEKS = 8
MISSING_RCA_WEEKS = 8
TOP_SERVICES = 5
FORMATS = ("md", "html", "json")


def targets_from(settings: Settings) -> dict[str, target_rules.Target]:
    try:
        return target_rules.parse_targets(settings.response_targets)
    except ValueError as exc:
        raise ConfigError(f"RESPONSE_TARGETS is malformed: {exc}") from None


def command_hint(since: datetime, until: datetime, settings: Settings) -> str:
    """The CLI call that makes this same digest (shown where the Slack message is cut short)."""
    zone = settings.tzinfo
    if schedule.is_iso_week(since, until, zone):
        return f"incident-bot digest --week {schedule.week_label(since, zone)}"
    first, end = schedule.local_date(since, zone), schedule.local_date(until, zone)
    return f"incident-bot digest --since {first} --until {end}"


@dataclass
class _Metrics:
    """period_metrics with a cache: the current week is also the last week of the trend."""

    session: Session
    cache: dict[tuple[datetime, datetime], dict[str, Any]]

    def __call__(self, since: datetime, until: datetime) -> dict[str, Any]:
        key = (since, until)
        if key not in self.cache:
            self.cache[key] = period_metrics(self.session, since=since, until=until)
        return self.cache[key]


def _incidents(session: Session, since: datetime, until: datetime, severities: set[str]
               ) -> list[core.IncidentRow]:
    i, m, links = tables.incidents.c, tables.incident_metrics.c, tables.pagerduty_links
    linked = select(func.count()).select_from(links).where(links.c.incident_id == i.id).scalar_subquery()
    stmt = (
        select(i.ref, i.title, i.severity, i.status, i.detected_at, i.impact_started_at, i.resolved_at,
               m.ttd_s, m.ttr_s, i.commander_id, i.slack_channel_id, i.slack_channel_name, i.service, linked)
        .join(tables.incident_metrics, m.incident_id == i.id, isouter=True)
        .where(i.detected_at >= since, i.detected_at < until, i.severity.in_(sorted(severities)),
               # An incident merged into another has no metrics row: it is listed (and counted) once, there.
               m.incident_id.is_not(None))
        .order_by(i.detected_at, i.number)
    )
    return [core.IncidentRow(ref=r[0], title=r[1], severity=r[2], status=r[3], detected_at=r[4],
                             impact_started_at=r[5], resolved_at=r[6], ttd_s=r[7], ttr_s=r[8],
                             commander_id=r[9], channel_id=r[10], channel_name=r[11], service=r[12],
                             pagerduty_count=int(r[13] or 0))
            for r in session.execute(stmt)]


def _trend(session: Session, metrics: _Metrics, until: datetime, settings: Settings,
           severities: set[str]) -> list[core.TrendWeek]:
    zone = settings.tzinfo
    weeks = schedule.weeks_ending(until, zone, TREND_WEEKS)
    for week, doc in zip(weeks, periods_metrics(session, weeks), strict=True):  # two queries for all weeks
        metrics.cache[week] = doc
    samples: dict[int, list[core.TargetSample]] = {n: [] for n in range(len(weeks))}
    if severities:
        m = tables.incident_metrics.c
        stmt = select(m.severity, utc(m.detected_at), m.ttd_s, m.ttr_s).where(
            m.detected_at >= weeks[0][0], m.detected_at < weeks[-1][1], m.severity.in_(sorted(severities)))
        starts = [w[0] for w in weeks]
        for sev, detected, ttd, ttr in rows(session, stmt):
            n = bisect_right(starts, detected) - 1  # the last week starting at or before it
            impact = detected - timedelta(seconds=ttd) if ttd is not None else detected
            samples[n].append(core.TargetSample(severity=sev, impact_started_at=impact, ttd_s=ttd, ttr_s=ttr))
    return [core.TrendWeek(since=s, until=u, label=schedule.week_label(s, zone), metrics=metrics(s, u),
                           samples=tuple(samples[n])) for n, (s, u) in enumerate(weeks)]


def _capa(session: Session, since: datetime, until: datetime, now: datetime, settings: Settings
          ) -> core.CapaInput:
    a, i = tables.action_items.c, tables.incidents.c
    as_of = min(until, now)
    as_of_day = schedule.local_date(as_of, settings.tzinfo)
    opened = session.execute(select(func.count()).where(a.created_at >= since, a.created_at < until)).scalar_one()
    done = session.execute(select(func.count()).where(
        a.status == "done", a.closed_at >= since, a.closed_at < until)).scalar_one()
    # Open at as_of: still open (no closing time), or closed after it. Two ranges of (closed_at, due_date),
    # one statement each: with an OR, SQLite read every action created before as_of instead.
    overdue = (select(a.id, a.title, a.owner_id, a.due_date, i.ref, a.ticket_url, a.ticket_key)
               .join(tables.incidents, i.id == a.incident_id)
               .where(a.due_date.is_not(None), a.due_date < as_of_day, a.created_at < as_of))
    both = union_all(overdue.where(a.closed_at.is_(None), a.status.not_in(CLOSED_STATUSES)),
                     overdue.where(a.closed_at >= as_of)).subquery()
    items = tuple(core.OverdueItem(id=r[0], title=r[1], owner_id=r[2], due=r[3], incident_ref=r[4],
                                   ticket_url=r[5], ticket_key=r[6])
                  for r in session.execute(select(both).order_by(both.c.due_date, both.c.id)))
    return core.CapaInput(opened=int(opened), done=int(done), overdue_items=items, as_of=as_of_day)


def _top_services(session: Session, since: datetime, until: datetime) -> list[tuple[str, int]]:
    m = tables.incident_metrics.c
    n = func.count().label("n")
    stmt = (select(m.service, n)
            .where(m.detected_at >= since, m.detected_at < until, m.service.is_not(None))
            .group_by(m.service).order_by(n.desc(), m.service).limit(TOP_SERVICES))
    return [(str(s), int(c)) for s, c in session.execute(stmt)]


def _no_service(session: Session, since: datetime, until: datetime) -> int:
    m = tables.incident_metrics.c
    stmt = select(func.count()).where(m.detected_at >= since, m.detected_at < until, m.service.is_(None))
    return int(session.execute(stmt).scalar_one())


def _open_incidents(session: Session, now: datetime) -> list[core.IncidentRow]:
    """Incidents still open now (whenever they were detected): what a lead may need to chase."""
    i = tables.incidents.c
    stmt = (select(i.ref, i.title, i.severity, i.status, i.detected_at, i.commander_id, i.slack_channel_id,
                   i.slack_channel_name, i.service)
            .where(i.status.in_(("triggered", "acknowledged", "mitigated")),
                   # detected_at < now, NULL left out, written so that no index on detected_at applies:
                   # SQLite otherwise walks that index over every incident ever detected (60 ms at
                   # 100,000) rather than the status index to the few open ones (1 ms).
                   func.coalesce(i.detected_at, now) < now)
            .order_by(i.severity, i.detected_at).limit(OPEN_LIMIT))
    return [core.IncidentRow(ref=r[0], title=r[1], severity=r[2], status=r[3], detected_at=r[4], commander_id=r[5],
                             channel_id=r[6], channel_name=r[7], service=r[8]) for r in session.execute(stmt)]


OPEN_LIMIT = 50


def _missing_rca(session: Session, until: datetime, settings: Settings) -> list[str]:
    start = schedule.weeks_ending(until, settings.tzinfo, MISSING_RCA_WEEKS)[0][0]
    i = tables.incidents.c
    stmt = (select(i.ref, i.rca)
            .where(i.status.in_(("resolved", "closed")), i.resolved_at >= start, i.resolved_at < until,
                   i.severity.in_(core.MAJOR_SEVERITIES))
            .order_by(i.number))
    return [ref for ref, rca in session.execute(stmt) if not core.has_rca(rca)]


def _names(session: Session, ids: set[str]) -> dict[str, str]:
    ids.discard("")
    if not ids:
        return {}
    u = tables.slack_users.c
    stmt = select(u.user_id, u.name).where(u.user_id.in_(sorted(ids)))
    return {uid: name for uid, name in session.execute(stmt) if name}


def gather(session: Session, settings: Settings, since: datetime, until: datetime, *,
           now: datetime | None = None, capa_items: int | None = MAX_CAPA_ITEMS) -> core.DigestInput:
    """Everything the digest shows, read in the caller's transaction (a dozen indexed queries).
    ``capa_items``: how many CAPA actions that did not hold the JSON lists (None: every one)."""
    if since.tzinfo is None or until.tzinfo is None or since >= until:
        raise ValueError("since and until must be timezone-aware and since < until")
    now = now or utcnow()
    zone = settings.tzinfo
    targets = targets_from(settings)
    severities = set(core.MAJOR_SEVERITIES) | set(targets)
    metrics = _Metrics(session, {})
    trend = _trend(session, metrics, until, settings, set(targets))
    incidents = _incidents(session, since, until, severities)
    capa = _capa(session, since, until, now, settings)
    open_now = _open_incidents(session, now)
    ids = ({i.commander_id or "" for i in (*incidents, *open_now)}
           | {a.owner_id or "" for a in capa.overdue_items})
    return core.DigestInput(
        since=since, until=until, timezone=settings.timezone, zone=zone, now=now,
        label=schedule.period_key(since, until, zone),
        current=metrics(since, until), previous=metrics(*schedule.previous_period(since, until, zone)),
        incidents=incidents, capa=capa, top_services=_top_services(session, since, until),
        missing_rca=_missing_rca(session, until, settings), targets=targets, trend=trend,
        names=_names(session, ids), open_incidents=open_now, no_service=_no_service(session, since, until),
        rca_base_url=settings.web_base_url,
        keeps_breaking=learning.keeps_breaking_doc(session, since, until, now=now, window=settings.recurrence_delta,
                                                   capa_items=capa_items),
    )


def build_digest(session: Session, settings: Settings, since: datetime, until: datetime, *,
                 now: datetime | None = None, capa_items: int | None = MAX_CAPA_ITEMS) -> dict[str, Any]:
    """The ``--format json`` document (keys of issue 5)."""
    return core.build_json(gather(session, settings, since, until, now=now, capa_items=capa_items))


def digest_view(session: Session, settings: Settings, since: datetime, until: datetime, *,
                now: datetime | None = None, capa_items: int | None = MAX_CAPA_ITEMS) -> dict[str, Any]:
    """The template context: the JSON document plus trend, changes and texts."""
    view = view_rules.build_view(gather(session, settings, since, until, now=now, capa_items=capa_items))
    view["command"] = command_hint(since, until, settings)
    for m in view["major"]:
        m["channel_url"] = channel_url(m["channel_id"])
    return view


def channel_url(channel_id: str | None) -> str | None:
    """A link that opens the channel in Slack from a browser or a mail (Markdown and HTML digests)."""
    if not channel_id or not channel_id.isalnum():
        return None
    return f"https://slack.com/app_redirect?channel={channel_id}"


def render_view(view: dict[str, Any], fmt: str, settings: Settings) -> tuple[str, list[str]]:
    """``(text, warnings)``: ``md`` / ``html`` through the templates in ``rca_templates`` (a team's
    RCA_TEMPLATES_DIR first), ``json`` as the stable document."""
    if fmt == "json":
        return json.dumps(view["doc"], indent=2, ensure_ascii=False) + "\n", []
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    from incident_bot.rendering import render

    context = dict(view)
    if fmt == "html":
        from incident_bot.usecases.digest_chart import trend_charts

        context["charts"] = trend_charts(view)
    result = render(f"digest.{fmt}.j2", context, templates_dir=settings.rca_templates_dir)
    return result.text, list(result.warnings)


def render_digest(session: Session, settings: Settings, since: datetime, until: datetime, fmt: str, *,
                  now: datetime | None = None) -> str:
    return render_view(digest_view(session, settings, since, until, now=now), fmt, settings)[0]


def demo_digest_text(session: Session, settings: Settings, since: datetime, until: datetime, *,
                     now: datetime | None = None) -> str:
    """The Markdown digest of ``[since, until)``; ``incident-bot demo`` prints it at the end."""
    return render_digest(session, settings, since, until, "md", now=now)


def already_posted(session: Session, key: str) -> DigestRun | None:
    return session.execute(select(DigestRun).where(DigestRun.period_key == key)).scalar_one_or_none()


def posted_digests(session: Session) -> list[DigestRun]:
    """Every period whose digest was posted (claimed and queued), newest first (``/ui/digests``)."""
    stmt = select(DigestRun).where(or_(DigestRun.status == "enqueued", DigestRun.outbox_id.is_not(None)))  # type: ignore[union-attr]
    return list(session.execute(stmt.order_by(DigestRun.since.desc())).scalars())  # type: ignore[attr-defined]


def posted_before(session: Session, since: datetime) -> bool:
    """Has a digest of an earlier period been posted here? (The scheduler catches up only then.)"""
    stmt = select(DigestRun.id).where(DigestRun.until <= since).limit(1)  # type: ignore[arg-type,operator]
    return session.execute(stmt).first() is not None


def post_scheduled(session: Session, settings: Settings, period: tuple[datetime, datetime], *, now: datetime,
                   late: bool, claimed_by: str | None = None) -> bool | None:
    """The scheduler's digest: :func:`post_digest`, except a ``late`` one (its occurrence long past) where no
    digest was ever posted (a fresh install must not announce the week before the bot existed): None."""
    if late and not posted_before(session, period[0]):
        return None
    return post_digest(session, settings, period, now=now, claimed_by=claimed_by)


def slack_view(view: dict[str, Any]) -> dict[str, Any]:
    """The view the channel message is drawn from (slack/intents.py ``digest``), without the JSON document
    and the trend series it does not show: the outbox row stays small."""
    return {k: v for k, v in view.items() if k not in ("doc", "trend")}


def post_digest(session: Session, settings: Settings, period: tuple[datetime, datetime], *,
                now: datetime | None = None, claimed_by: str | None = None) -> bool:
    """Claim the period and queue its Slack message, in the caller's transaction. False if it was
    already claimed (by this or another replica, now or earlier): nothing is queued then.

    The caller commits (the use-case runner). Two callers racing on the same period: the second's
    insert waits for the first transaction and then sees the conflict (PostgreSQL), or waits for the
    write lock (SQLite); either way one message is queued.
    """
    channel = settings.digest_channel
    if not channel:
        raise ConfigError("DIGEST_CHANNEL is required to post the digest")
    since, until = period
    now = now or utcnow()
    key = schedule.period_key(since, until, settings.tzinfo)
    if already_posted(session, key) is not None:
        return False  # cheap check first: no need to build a digest that will not be sent
    view = digest_view(session, settings, since, until, now=now)
    if settings.web_base_url:
        view["web_url"] = f"{settings.web_base_url.rstrip('/')}/ui/digests/{key}"
    claimed = repo.insert_ignore(session, DigestRun, {
        "period_key": key, "since": since, "until": until, "status": "claimed", "claimed_by": claimed_by,
        "claimed_at": now,
    }, ["period_key"])
    if not claimed:
        return False
    dedup = f"digest:{key}"
    queued = repo.enqueue(session, order_key=f"digest:{channel}", method="chat.postMessage",
                          payload={"channel": channel, **intent("digest", view=slack_view(view))}, dedup_key=dedup)
    outbox_id = session.execute(select(OutboxMessage.id).where(OutboxMessage.dedup_key == dedup)).scalar_one()
    session.execute(update(DigestRun).where(DigestRun.period_key == key)  # type: ignore[arg-type]
                    .values(status="enqueued", outbox_id=outbox_id))
    return queued
