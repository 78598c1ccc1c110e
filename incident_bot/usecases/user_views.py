"""What one Slack user sees outside the incident channels: the answer to their command or click (through
the ``response_url`` Slack gave with it) and their App Home. Both are queued in the outbox, in the
transaction of the input that caused them; how they look is the Slack adapter's (passed in, or already
drawn), the rows they show are read here.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from storage import repo
from storage.models import ActionItem, Incident

OPEN = ("triggered", "acknowledged", "mitigated")
HomeView = Callable[[list[Incident], list[ActionItem]], dict[str, Any]]  # open incidents, my open actions


def respond(session: Session, response_url: str | None, reply: dict[str, Any]) -> None:
    """Queue the answer to a command or a click for its ``response_url`` (ephemeral, to that user only)."""
    if not response_url:
        return
    repo.enqueue(session, order_key=f"respond:{uuid.uuid4().hex}", method="slack.respond",
                 payload={"response_url": response_url, "replace_original": False, **reply})


def publish_home(session: Session, user_id: str, draw: HomeView) -> None:
    """Queue ``views.publish`` of the user's App Home: the open incidents, newest first, and the user's open
    actions by due date, drawn by ``draw`` (Block Kit is the adapter's)."""
    incidents = session.execute(select(Incident).where(Incident.status.in_(OPEN))  # type: ignore[attr-defined]
                                .order_by(Incident.number.desc())).scalars().all()  # type: ignore[attr-defined]
    actions = session.execute(select(ActionItem).where(
        ActionItem.owner_id == user_id, ActionItem.status.in_(("open", "in_progress")))  # type: ignore[attr-defined]
        .order_by(ActionItem.due_date)).scalars().all()
    view = draw(list(incidents), list(actions))
    repo.enqueue(session, order_key=f"home:{user_id}", method="views.publish",
                 payload={"user_id": user_id, "view": view})
