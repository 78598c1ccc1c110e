"""Interactivity: the "Declare incident" message shortcut, the declare modal, and the channel buttons."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from dateutil import tz as dtz
from slack_bolt.async_app import AsyncApp
from starlette.concurrency import run_in_threadpool

from incident_bot.runtime import Runtime
from incident_bot.services import commands as svc
from incident_bot.slack import blocks
from incident_bot.slack.commands import Invocation, open_view_soon, run_in_incident
from storage import repo
from storage.db import session_scope
from storage.models import utcnow

log = logging.getLogger(__name__)
SHORTCUT = "declare_incident_shortcut"
BUTTONS = {"incident_ack": "ack", "incident_mitigated": "mitigated", "incident_resolve": "resolve",
           "incident_status": "status"}


def _value(values: dict[str, Any], block: str) -> str | None:
    action = (values.get(block) or {}).get("value") or {}
    if action.get("type") == "static_select":
        return (action.get("selected_option") or {}).get("value")
    v = action.get("value")
    return v.strip() if isinstance(v, str) and v.strip() else None


def submit_declare(rt: Runtime, user_id: str, values: dict[str, Any], metadata: str) -> dict[str, Any] | str:
    """Validate the modal; errors go back into the modal (``response_action: errors``)."""
    from incident_bot.core.timeparse import TimeParseError, parse_user_time

    title = _value(values, "title")
    if not title:
        return {"title": "Give the incident a title."}
    impact_text = _value(values, "impact_started")
    with session_scope(rt.engine) as s:
        zone_name = svc.user_tz_name(s, user_id)
        zone = (dtz.gettz(zone_name) if zone_name else None) or rt.settings.tzinfo
        impact = None
        if impact_text:
            try:
                impact = parse_user_time(impact_text, now=utcnow(), tz=zone)
            except TimeParseError as exc:
                return {"impact_started": str(exc)[:150]}
        description = _value(values, "description")
        meta = json.loads(metadata) if metadata else {}
        if meta.get("channel") and meta.get("ts"):
            description = ((description or "") + f"\n\n(Declared from message {meta['ts']} in "
                           f"<#{meta['channel']}>)").strip()
        inc = svc.declare(s, rt.settings, reporter=user_id, title=title,
                          severity=_value(values, "severity") or "SEV3", service=_value(values, "service"),
                          description=description, impact_started_at=impact)
        return inc.ref


def _button(inv: Invocation) -> None:
    """A button click: same rules as the command; the answer goes back as an ephemeral message."""
    reply = run_in_incident(inv)
    with session_scope(inv.rt.engine) as s:
        repo.enqueue(s, order_key=f"ephemeral:{inv.channel_id}", method="chat.postEphemeral",
                     payload={"channel": inv.channel_id, "user": inv.user_id, **reply})


def register(app: AsyncApp, rt: Runtime, on_committed: Callable[[], None]) -> None:
    async def on_shortcut(ack: Any, shortcut: dict[str, Any], client: Any) -> None:
        await ack()
        msg = shortcut.get("message") or {}
        channel = (shortcut.get("channel") or {}).get("id")
        meta = {"channel": channel, "ts": msg.get("ts")}
        text = msg.get("text") or ""
        open_view_soon(client, shortcut["trigger_id"], blocks.declare_modal(
            title=text.split("\n", 1)[0][:150], description=text[:2900], private_metadata=json.dumps(meta)))

    async def on_submit(ack: Any, body: dict[str, Any], view: dict[str, Any]) -> None:
        user_id = (body.get("user") or {}).get("id", "")
        out = await run_in_threadpool(submit_declare, rt, user_id, view["state"]["values"],
                                      view.get("private_metadata") or "")
        if isinstance(out, dict):
            await ack(response_action="errors", errors=out)
            return
        await ack()
        on_committed()

    async def on_button(ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        sub = BUTTONS.get(action.get("action_id", ""), "status")
        inv = Invocation(rt, (body.get("user") or {}).get("id", ""), (body.get("channel") or {}).get("id", ""),
                         sub, "", rt.settings.slack_command)
        await run_in_threadpool(_button, inv)
        on_committed()

    app.shortcut(SHORTCUT)(on_shortcut)
    app.view(blocks.DECLARE_CALLBACK)(on_submit)
    for action_id in BUTTONS:
        app.action(action_id)(on_button)
