"""Events API: 📌 reactions, channel membership, App Home, applied by the fold worker.

Slack retries events (``X-Slack-Retry-Num``) and may deliver one twice: the inbox stores each under its
``event_id`` once, and the fold marks it done in the transaction of its effect.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from incident_bot.slack import blocks
from incident_bot.usecases import incident_changes as svc
from storage import repo
from storage.models import ActionItem, Incident, utcnow

log = logging.getLogger(__name__)
PIN_REACTIONS = {"pushpin", "round_pushpin"}
OPEN = ("triggered", "acknowledged", "mitigated")


def pin(s: Session, event: dict[str, Any]) -> str:
    if event.get("reaction") not in PIN_REACTIONS:
        return "ignored"
    item = event.get("item") or {}
    if item.get("type") != "message" or not item.get("channel") or not item.get("ts"):
        return "ignored"
    inc = repo.incident_by_channel(s, item["channel"])
    if inc is None:
        return "ignored"  # not an incident channel
    svc.pin(s, inc, channel_id=item["channel"], ts=str(item["ts"]), reactor=str(event.get("user")),
            author=event.get("item_user"))
    return "processed"


def membership(s: Session, event: dict[str, Any]) -> str:
    channel, uid = event.get("channel"), event.get("user")
    if not channel or not uid:
        return "ignored"
    if event.get("type") == "member_joined_channel":
        svc.set_members(s, channel, added=[uid])
    else:
        svc.set_members(s, channel, removed=[uid])
    return "processed"


def publish_home(s: Session, user_id: str) -> None:
    incidents = s.execute(select(Incident).where(Incident.status.in_(OPEN))  # type: ignore[attr-defined]
                          .order_by(Incident.number.desc())).scalars().all()  # type: ignore[attr-defined]
    actions = s.execute(select(ActionItem).where(
        ActionItem.owner_id == user_id, ActionItem.status.in_(("open", "in_progress")))  # type: ignore[attr-defined]
        .order_by(ActionItem.due_date)).scalars().all()
    view = blocks.home_view(list(incidents), list(actions), utcnow())
    repo.enqueue(s, order_key=f"home:{user_id}", method="views.publish", payload={"user_id": user_id, "view": view})


def home(s: Session, event: dict[str, Any]) -> str:
    if event.get("tab") not in (None, "home") or not event.get("user"):
        return "ignored"
    publish_home(s, event["user"])
    return "processed"


EVENT_HANDLERS = {
    "reaction_added": pin,
    "member_joined_channel": membership,
    "member_left_channel": membership,
    "app_home_opened": home,
}


def apply_event(s: Session, body: dict[str, Any]) -> str:
    """A stored Events API delivery, run by the fold worker; returns the outcome. Removing a 📌 keeps
    the timeline entry, by design."""
    event = body.get("event") or {}
    work = EVENT_HANDLERS.get(str(event.get("type")))
    return work(s, event) if work else "ignored"
