"""Events API listeners: 📌 reactions, channel membership, App Home.

Slack retries events (``X-Slack-Retry-Num``) and may deliver one twice: each event is recorded in the
inbox under its ``event_id`` in the same transaction as its effect, so a repeat has no second effect.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt.async_app import AsyncApp
from sqlalchemy import select
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from incident_bot.runtime import Runtime
from incident_bot.services import commands as svc
from incident_bot.slack import blocks
from storage import repo
from storage.db import session_scope
from storage.models import ActionItem, Incident, utcnow

log = logging.getLogger(__name__)
PIN_REACTIONS = {"pushpin", "round_pushpin"}
OPEN = ("triggered", "acknowledged", "mitigated")


def _once(rt: Runtime, body: dict[str, Any], work: Callable[[Session, dict[str, Any]], str]) -> str:
    """Run ``work`` once per Slack event_id; returns the recorded outcome."""
    event = body.get("event") or {}
    event_id = str(body.get("event_id") or f"{event.get('type')}:{event.get('event_ts')}")
    with session_scope(rt.engine) as s:
        if not repo.record_delivery(s, source="slack", event_id=event_id, event_type=str(event.get("type"))):
            return "duplicate"
        outcome = work(s, event)
        repo.set_delivery_outcome(s, "slack", event_id, outcome, None)
        return outcome


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


def register(app: AsyncApp, rt: Runtime, on_committed: Callable[[], None]) -> None:
    def listener(work: Callable[[Session, dict[str, Any]], str]) -> Any:
        async def handle(body: dict[str, Any]) -> None:
            outcome = await run_in_threadpool(_once, rt, body, work)
            log.info("slack event %s: %s", (body.get("event") or {}).get("type"), outcome)
            on_committed()
        return handle

    app.event("reaction_added")(listener(pin))
    app.event("member_joined_channel")(listener(membership))
    app.event("member_left_channel")(listener(membership))
    app.event("app_home_opened")(listener(home))

    async def ignore(body: dict[str, Any]) -> None:  # removing a 📌 keeps the entry, by design
        return None

    app.event("reaction_removed")(ignore)
