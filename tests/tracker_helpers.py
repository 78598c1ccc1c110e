"""What the tracker tests (GitHub, Jira, Linear) share: an incident to hang actions on, reading the
actions and the inbox back, a CAPA status button click, and the CLI as an operator runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

from sqlalchemy import func, select
from sqlmodel import Session

from storage.models import ActionItem, InboxDelivery, OutboxMessage

from .conftest import command, slack_interaction

# The web pages on, so that tickets link the RCA page.
WEB = {"web_base_url": "https://bot.example.com", "slack_client_id": "123.456", "slack_client_secret": "s3cret",
       "web_session_secret": "a-session-secret-of-enough-length-0123456789", "slack_team_id": "T0STANDIN"}


def people(slack) -> None:  # type: ignore[no-untyped-def]
    for uid, name in (("U0ADA", "ada"), ("U0BOB", "bob")):
        slack.add_user(uid, name, f"{name}@example.com")


def declare(bot) -> str:  # type: ignore[no-untyped-def]
    command(bot, "declare Checkout errors spiking")
    bot.drain()
    return str(bot.slack.channel_by_name("inc-1-checkout-errors-spiking")["id"])


def actions(bot) -> list[ActionItem]:  # type: ignore[no-untyped-def]
    with Session(bot.rt.engine) as s:
        return list(s.execute(select(ActionItem).order_by(ActionItem.id)).scalars())


def wait_status(bot, action_id: int, status: str) -> None:  # type: ignore[no-untyped-def]
    bot.slack.wait_for(lambda: next(a for a in actions(bot) if a.id == action_id).status == status, timeout=15)


def inbox_rows(bot, source: str) -> int:  # type: ignore[no-untyped-def]
    with Session(bot.rt.engine) as s:
        return int(s.execute(select(func.count()).select_from(InboxDelivery)
                             .where(InboxDelivery.source == source)).scalar_one())


def inbox_outcomes(bot, source: str) -> list[str]:  # type: ignore[no-untyped-def]
    with Session(bot.rt.engine) as s:
        return [str(r) for r in s.execute(select(InboxDelivery.outcome).where(
            InboxDelivery.source == source, InboxDelivery.status == "done").order_by(InboxDelivery.id)).scalars()]


def outbox_rows(bot, method: str) -> list[OutboxMessage]:  # type: ignore[no-untyped-def]
    with Session(bot.rt.engine) as s:
        return list(s.execute(select(OutboxMessage).where(OutboxMessage.method == method)
                              .order_by(OutboxMessage.id)).scalars())


def said(bot, channel: str, text: str) -> bool:  # type: ignore[no-untyped-def]
    import json

    return any(text in json.dumps(m) for m in bot.slack.messages(channel))


def click_status(bot, channel: str, action_id: int, status: str, user: str = "U0ADA") -> str:  # type: ignore[no-untyped-def]
    """Click a CAPA status button under `/incident actions`; returns what the clicker was told."""
    token = uuid.uuid4().hex
    payload = {"type": "block_actions", "team": {"id": "T0STANDIN"}, "user": {"id": user},
               "api_app_id": "A0STANDIN", "trigger_id": "1.2.3", "channel": {"id": channel},
               "container": {"type": "message"}, "response_url": bot.slack.response_url(token),
               "actions": [{"action_id": f"capa_status_{status}", "block_id": f"capa_{action_id}",
                            "value": f"{action_id}:{status}", "type": "button", "action_ts": "1"}]}
    assert slack_interaction(bot, payload).status_code == 200
    return str(bot.slack.wait_for(lambda: bot.slack.responses(token), timeout=20)[0].get("text"))


def cli(bot, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    full = {**os.environ, "DATABASE_URL": str(bot.rt.settings.database_url), "TIMEZONE": "UTC", **(env or {})}
    return subprocess.run([sys.executable, "-m", "incident_bot", *args], env=full, capture_output=True, text=True)
