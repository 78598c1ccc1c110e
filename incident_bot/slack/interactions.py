"""Interactivity: the "Declare incident" message shortcut, the declare modal, the channel buttons and the
RCA form. What needs no database runs on the accept path; the rest is applied by the fold worker."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from dateutil import tz as dtz
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from incident_bot.core.lifecycle import SEVERITIES
from incident_bot.core.timeparse import TimeParseError, parse_user_time
from incident_bot.runtime import Runtime
from incident_bot.services import commands as svc
from incident_bot.slack import blocks, followup
from incident_bot.slack.commands import Invocation, Outcome, run_in_incident
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


def view_errors(rt: Runtime, view: dict[str, Any]) -> dict[str, str]:
    """Checks of a submitted form that need no database, answered in the ack (``response_action: errors``)."""
    if view.get("callback_id") != blocks.DECLARE_CALLBACK:
        return {}
    values = (view.get("state") or {}).get("values") or {}
    errors: dict[str, str] = {}
    if not _value(values, "title"):
        errors["title"] = "Give the incident a title."
    severity = _value(values, "severity")
    if severity is not None and severity not in SEVERITIES:
        errors["severity"] = f"Choose one of {', '.join(SEVERITIES)}."
    impact_text = _value(values, "impact_started")
    if impact_text:
        try:  # the syntax, in the workspace's zone; the fold parses again in the user's own zone
            parse_user_time(impact_text, now=utcnow(), tz=rt.settings.tzinfo)
        except TimeParseError as exc:
            errors["impact_started"] = str(exc)[:150]
    return errors


def submit_declare(s: Session, rt: Runtime, user_id: str, values: dict[str, Any], metadata: str) -> str:
    """Declare from the modal (already checked by :func:`view_errors`); returns the new incident's ref."""
    title = _value(values, "title") or "(untitled incident)"
    impact_text = _value(values, "impact_started")
    zone_name = svc.user_tz_name(s, user_id)
    zone = (dtz.gettz(zone_name) if zone_name else None) or rt.settings.tzinfo
    impact = None
    if impact_text:
        try:
            impact = parse_user_time(impact_text, now=utcnow(), tz=zone)
        except TimeParseError:
            impact = None  # valid in the workspace's zone, not in the user's (a DST gap): keep detection
    description = _value(values, "description")
    try:
        meta = json.loads(metadata) if metadata else {}
    except ValueError:
        meta = {}
    if isinstance(meta, dict) and meta.get("channel") and meta.get("ts"):
        description = ((description or "") + f"\n\n(Declared from message {meta['ts']} in "
                       f"<#{meta['channel']}>)").strip()
    severity = _value(values, "severity")
    inc = svc.declare(s, rt.settings, reporter=user_id, title=title,
                      severity=severity if severity in SEVERITIES else "SEV3", service=_value(values, "service"),
                      description=description, impact_started_at=impact)
    return inc.ref


def shortcut_modal(shortcut: dict[str, Any]) -> dict[str, Any]:
    msg = shortcut.get("message") or {}
    channel = (shortcut.get("channel") or {}).get("id")
    meta = {"channel": channel, "ts": msg.get("ts")}
    text = msg.get("text") or ""
    return blocks.declare_modal(title=text.split("\n", 1)[0][:150], description=text[:2900],
                                private_metadata=json.dumps(meta))


async def open_rca_form(rt: Runtime, client: Any, command: dict[str, Any]) -> None:
    """``/incident rca edit``: after the ack, read the incident (one read), then open the form, or say why
    not through response_url. trigger_id lives 3 s, so this cannot wait for the fold."""
    inv = Invocation(rt, str(command.get("user_id", "")), str(command.get("channel_id", "")), "rca", "edit",
                     rt.settings.slack_command)
    view, refusal = await run_in_threadpool(_rca_form_or_refusal, inv)
    if view is not None:
        await client.views_open(trigger_id=command.get("trigger_id"), view=view)
    elif refusal and command.get("response_url"):
        await run_in_threadpool(_respond_now, rt, command["response_url"], refusal)


def _rca_form_or_refusal(inv: Invocation) -> tuple[dict[str, Any] | None, str | None]:
    with session_scope(inv.rt.engine) as s:
        inc = repo.incident_by_channel(s, inv.channel_id)
        if inc is None:
            return None, f"`{inv.command} rca edit` works inside an incident channel."
        if not svc.is_member(s, inv.channel_id, inv.user_id):
            return None, f"Only members of this channel can edit {inc.ref}'s RCA."
        return followup.rca_edit_modal(inc), None


def _respond_now(rt: Runtime, response_url: str, text: str) -> None:
    with session_scope(rt.engine) as s:
        respond(s, response_url, {"text": text})


def respond(s: Session, response_url: str | None, reply: dict[str, Any]) -> None:
    """Queue the answer to a command or a click for its ``response_url`` (ephemeral, to that user only)."""
    if not response_url:
        return
    repo.enqueue(s, order_key=f"respond:{uuid.uuid4().hex}", method="slack.respond",
                 payload={"response_url": response_url, "replace_original": False, **reply})


def apply_action(s: Session, rt: Runtime, body: dict[str, Any]) -> Outcome:
    """A stored button click, run by the fold worker: the same rules as the command it stands for."""
    action = (body.get("actions") or [{}])[0]
    action_id = str(action.get("action_id", ""))
    user_id = str((body.get("user") or {}).get("id", ""))
    channel_id = str((body.get("channel") or {}).get("id", ""))
    if action_id.startswith(followup.STATUS_ACTION):
        return followup.change_status(s, user_id, channel_id, str(action.get("value", "")),
                                      tracker=rt.settings.capa_tracker)
    sub = BUTTONS.get(action_id)
    if sub is None:
        return Outcome({}, ok=True)  # a link button or an action we do not handle: nothing to do
    return run_in_incident(s, Invocation(rt, user_id, channel_id, sub, "", rt.settings.slack_command))


def apply_view(s: Session, rt: Runtime, body: dict[str, Any]) -> str:
    view = body.get("view") or {}
    user_id = str((body.get("user") or {}).get("id", ""))
    values = (view.get("state") or {}).get("values") or {}
    if view.get("callback_id") == blocks.DECLARE_CALLBACK:
        submit_declare(s, rt, user_id, values, view.get("private_metadata") or "")
        return "processed"
    if view.get("callback_id") == followup.RCA_EDIT_CALLBACK:
        return followup.save_rca(s, user_id, str(view.get("private_metadata", "")), values)
    return "ignored"
