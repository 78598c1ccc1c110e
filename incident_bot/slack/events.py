"""Events API: 📌 reactions, channel membership, App Home, applied by the fold worker.

Slack retries events (``X-Slack-Retry-Num``) and may deliver one twice: the inbox stores each under its
``event_id`` once, and the fold marks it done in the transaction of its effect.
"""

from __future__ import annotations

import logging
from typing import Any

from incident_bot.slack import blocks
from incident_bot.usecases import incident_changes as svc
from incident_bot.usecases import user_views
from incident_bot.usecases.runner import Session
from storage.models import ActionItem, Incident, utcnow

log = logging.getLogger(__name__)
PIN_REACTIONS = {"pushpin", "round_pushpin"}


def pin(s: Session, event: dict[str, Any]) -> str:
    if event.get("reaction") not in PIN_REACTIONS:
        return "ignored"
    item = event.get("item") or {}
    if item.get("type") != "message" or not item.get("channel") or not item.get("ts"):
        return "ignored"
    inc = svc.incident_in_channel(s, item["channel"])
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


def home(s: Session, event: dict[str, Any]) -> str:
    if event.get("tab") not in (None, "home") or not event.get("user"):
        return "ignored"
    user_views.publish_home(s, event["user"], _draw_home)
    return "processed"


def _draw_home(incidents: list[Incident], actions: list[ActionItem]) -> dict[str, Any]:
    return blocks.home_view(incidents, actions, utcnow())


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
