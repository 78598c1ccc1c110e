"""Interactivity: the "Declare incident" message shortcut, the declare modal, and the channel buttons."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any

from dateutil import tz as dtz
from slack_bolt.async_app import AsyncApp
from starlette.concurrency import run_in_threadpool

from incident_bot.core.lifecycle import SEVERITIES
from incident_bot.core.text import clean, units
from incident_bot.runtime import Runtime
from incident_bot.services import commands as svc
from incident_bot.slack import blocks
from incident_bot.slack.commands import TITLE_MAX, Invocation, open_view_soon, run_in_incident
from incident_bot.slack.mrkdwn import from_slack, to_plain
from storage import repo
from storage.db import session_scope
from storage.models import utcnow

log = logging.getLogger(__name__)
SHORTCUT = "declare_incident_shortcut"
_SLACK_ID = re.compile(r"[CDG][A-Z0-9]{2,31}")
_TS = re.compile(r"[0-9]{1,12}\.[0-9]{1,8}")
BUTTONS = {"incident_ack": "ack", "incident_mitigated": "mitigated", "incident_resolve": "resolve",
           "incident_status": "status"}


# What the declare form accepts: a forged or stale submission can carry anything, so each value is checked
# here, not trusted because the form's element limits it.
FORM_LIMITS = {"title": TITLE_MAX, "service": 255, "description": 2900, "impact_started": 64}


def _value(values: dict[str, Any], block: str) -> str | None:
    """A modal value: raw plain text (never Slack-escaped), cleaned at this boundary."""
    entry = values.get(block) if isinstance(values, dict) else None
    action = entry.get("value") if isinstance(entry, dict) else None
    if not isinstance(action, dict):
        return None
    if action.get("type") == "static_select":
        option = action.get("selected_option") or {}
        v = option.get("value") if isinstance(option, dict) else None
    else:
        v = action.get("value")
    v = clean(v).strip() if isinstance(v, str) else ""
    return v or None


def form_errors(values: dict[str, Any]) -> dict[str, str]:
    """Per-block errors for the declare form (shown under each field by ``response_action: errors``)."""
    errors: dict[str, str] = {}
    for block, limit in FORM_LIMITS.items():
        v = _value(values, block)
        if v is not None and units(v) > limit:
            errors[block] = f"At most {limit} characters (this is {units(v)})."
    sev = _value(values, "severity")
    if sev is not None and sev not in SEVERITIES:
        errors["severity"] = f"Pick one of {', '.join(SEVERITIES)}."
    return errors


def submit_declare(rt: Runtime, user_id: str, values: dict[str, Any], metadata: str) -> dict[str, Any] | str:
    """Validate the modal; errors go back into the modal (``response_action: errors``)."""
    from incident_bot.core.timeparse import TimeParseError, parse_user_time

    title = " ".join((_value(values, "title") or "").split())
    if not title:
        return {"title": "Give the incident a title."}
    if errors := form_errors(values):
        return errors
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
        try:
            meta = json.loads(metadata) if metadata else {}
        except ValueError:
            meta = {}
        meta = meta if isinstance(meta, dict) else {}
        if _SLACK_ID.fullmatch(str(meta.get("channel"))) and _TS.fullmatch(str(meta.get("ts"))):
            # Plain text like the rest of the description: the channel is named, not linked.
            description = ((description or "") + f"\n\n(Declared from message {meta['ts']} in "
                           f"channel {meta['channel']})").strip()
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
        # The message is Slack mrkdwn; the form shows plain text (it is submitted back as plain text).
        text = to_plain(from_slack(clean(msg.get("text")))).strip()
        open_view_soon(client, shortcut["trigger_id"], blocks.declare_modal(
            title=" ".join(text.split("\n", 1)[0].split()), description=text, private_metadata=json.dumps(meta)))

    async def on_submit(ack: Any, body: dict[str, Any], view: dict[str, Any]) -> None:
        user_id = (body.get("user") or {}).get("id", "")
        state = view.get("state") if isinstance(view.get("state"), dict) else {}
        metadata = view.get("private_metadata")
        out = await run_in_threadpool(submit_declare, rt, user_id, state.get("values") or {},
                                      metadata if isinstance(metadata, str) else "")
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
