"""The user directory: display names for the ids stored on incidents, timelines and actions.

Slack users come from the ``slack_users`` cache (filled by ``users.info`` through the outbox, queued
by ``remember_user``). PagerDuty actors are stored by the name PagerDuty's payload gives them (the
``agent.summary``), so they need no lookup. An id the cache does not know yet is shown as the id.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlmodel import Session

from incident_bot.core.people import Directory, looks_like_slack_id
from storage import repo
from storage.models import SlackUser, utcnow


def display_names(session: Session, user_ids: Iterable[str | None]) -> dict[str, str]:
    """Slack ids -> display names from the users cache; ids with no cached name are left out."""
    ids = sorted({u for u in user_ids if u})
    if not ids:
        return {}
    names: dict[str, str] = {}
    for chunk in range(0, len(ids), 500):  # keep IN lists bounded on both databases
        part = ids[chunk:chunk + 500]
        stmt = select(SlackUser.user_id, SlackUser.name).where(SlackUser.user_id.in_(part))  # type: ignore[attr-defined]
        names.update({uid: name for uid, name in session.execute(stmt).all() if name})
    return names


def directory(session: Session, user_ids: Iterable[str | None]) -> Directory:
    return Directory(display_names(session, user_ids))


def remember_user(session: Session, user_id: str | None) -> None:
    """Queue a ``users.info`` lookup for a Slack id not cached yet (once: the dedup key is per user)."""
    if not user_id or not looks_like_slack_id(user_id) or session.get(SlackUser, user_id) is not None:
        return
    repo.enqueue(session, order_key=f"user:{user_id}", method="users.info", payload={"user": user_id},
                 dedup_key=f"users.info:{user_id}")


def cache_user(session: Session, user_id: str, *, name: str | None, email: str | None, tz: str | None) -> None:
    """What ``users.info`` said of a user (the outbox job that ``remember_user`` queued), cached now."""
    cached = session.get(SlackUser, user_id) or SlackUser(user_id=user_id)
    cached.name, cached.email, cached.tz, cached.fetched_at = name, email, tz, utcnow()
    session.add(cached)
