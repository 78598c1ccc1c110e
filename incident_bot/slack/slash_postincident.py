"""After the fire: ``/incident rca``, ``rca edit``, ``action``, ``actions`` and ``close`` (with the modal and
the status buttons). Handlers plug into the ``/incident`` dispatcher of :mod:`incident_bot.slack.slash_command`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    ButtonElement,
    ContextBlock,
    InputBlock,
    MarkdownTextObject,
    PlainTextInputElement,
    PlainTextObject,
)
from slack_sdk.models.views import View

from incident_bot.core import capa
from incident_bot.core.rca import NARRATIVE_KEYS
from incident_bot.core.text import clean, units
from incident_bot.slack import messages
from incident_bot.slack.mrkdwn import escape, link, to_plain, truncate, truncate_md, user
from incident_bot.slack.slash_command import Invocation, Outcome
from incident_bot.usecases import actions as capa_svc
from incident_bot.usecases import incident_changes as svc
from incident_bot.usecases import nudge as nudge_svc
from incident_bot.usecases import rca as rca_svc
from incident_bot.usecases.runner import Session
from storage.models import ActionItem, Incident, utcnow

RCA_EDIT_CALLBACK = "rca_edit"
log = logging.getLogger(__name__)
MODAL_FIELD_MAX = 3000  # a plain_text_input holds at most 3,000 characters
STATUS_ACTION = "capa_status"
EDITABLE = [k for k in NARRATIVE_KEYS if k != "links"]
LABELS = {"summary": "Summary", "impact": "Impact", "root_causes": "Root causes and contributing factors",
          "trigger": "Trigger", "detection": "Detection", "response": "Response", "recovery": "Recovery",
          "went_well": "What went well", "went_wrong": "What went wrong", "lucky": "Where we got lucky",
          "users_affected": "Users affected", "customer_facing": "Customer facing (yes/no)",
          "slo_budget_spent": "SLO / error budget spent", "authors": "Authors"}

USAGE: list[tuple[str, str]] = [
    ("rca", "render the blameless RCA (Markdown) and upload it here"),
    ("rca edit", "edit the RCA narrative in a form"),
    ("rca status review @reviewer | final [override <reason>] | draft", "move the RCA document along"),
    ("action <text> [@owner] [due <date>] [type]", "add a CAPA action item (corrective, preventive, ...)"),
    ("action #N [@owner|owner none] [due <date>|due none] [high|medium|low] [open|in progress|done|won't do]",
     "change an action item (its ticket follows)"),
    ("actions", "this incident's action items, with status buttons"),
    ("close [override <reason>]", "close a resolved incident (open corrective actions need a reason)"),
    ("merge INC-n", "merge another incident into this one (its PagerDuty incidents are linked here)"),
    ("unlink <PagerDuty id>", "split a linked PagerDuty incident out into its own incident"),
]


def _today(inv: Invocation) -> Any:
    return capa.today_in(inv.rt.settings.tzinfo, utcnow())


def rca(s: Session, inv: Invocation, inc: Incident) -> svc.Reply | dict[str, Any]:
    if inv.args.strip().lower() == "edit":  # opened on the accept path (trigger_id lives 3 s)
        return svc.Reply(f"Run `{inv.command} rca edit` again to open the RCA form.", ok=False)
    if inv.args.strip().lower().startswith("status"):
        return _rca_status(s, inv, inc, inv.args.strip()[len("status"):].strip())
    result = rca_svc.export_rca(s, inc.ref, "md", inv.rt.settings.rca_templates_dir, today=_today(inv),
                                window=inv.rt.settings.recurrence_delta)
    findings, _ = rca_svc.check_language(s, inc.ref, words_file=getattr(inv.rt.settings, "blameless_words_file",
                                                                          None))
    summary = f"📄 Blameless RCA for {inc.ref} ({escape(inc.title)}), exported by {user(inv.user_id)}."
    if findings:
        listed = "\n".join(f"• _{escape(truncate(f.sentence, 200))}_ — “{escape(f.phrase)}”: {escape(f.suggestion)}"
                           for f in findings[:10])
        summary += f"\n⚠️ Blameless language check ({len(findings)}):\n{listed}"
    for warning in result.warnings[:3]:
        summary += f"\n⚠️ Template: {escape(truncate(warning, 300))}"
    page = messages.web_page(inv.rt.settings.web_base_url, f"/ui/incidents/{inc.ref}")
    if page:
        summary += f"\n🌐 {link(page, 'Read it in the web view')} (rendered, with the timeline and CAPA)"
    rca_svc.share_rca(s, inc, content=result.text, comment=truncate_md(summary, 3900), actor=inv.user_id)
    extra = f" {len(findings)} blameless-language warning(s) are in the summary." if findings else ""
    return svc.Reply(f"Rendering the RCA of {inc.ref}; it will be uploaded here.{extra}", ref=inc.ref)


def _rca_status(s: Session, inv: Invocation, inc: Incident, rest: str) -> svc.Reply:
    """``rca status review @reviewer…`` | ``rca status final [override <reason>]`` | ``rca status draft``."""
    word, _, tail = rest.partition(" ")
    word = word.lower()
    if word not in ("draft", "review", "final"):
        return svc.Reply("Usage: `/incident rca status review @reviewer`, `/incident rca status final "
                         "[override <reason>]` or `/incident rca status draft`.", ok=False)
    reviewers = MENTION.findall(tail) if word == "review" else []
    override = None
    if word == "final" and tail.lower().startswith("override"):
        override = tail[len("override"):].strip() or None
    try:
        status, findings = rca_svc.set_status(s, inc.ref, word, actor=inv.user_id, reviewers=reviewers,
                                              authors=[inv.user_id] if word == "review" else [],
                                              override=override)
    except rca_svc.RcaError as exc:
        return svc.Reply(escape(str(exc)), ok=False)
    text = {"draft": f"The RCA of {inc.ref} is a draft again: edit it with `/incident rca edit`.",
            "review": f"The RCA of {inc.ref} is in review by " + ", ".join(user(r) for r in reviewers) + ".",
            "final": f"The RCA of {inc.ref} is final."}[status]
    if findings:
        text += f" Signed off with {len(findings)} open finding(s); the reason is on the timeline."
    return svc.Reply(text, ref=inc.ref)


MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")


def action(s: Session, inv: Invocation, inc: Incident) -> svc.Reply:
    if capa.is_action_edit(inv.args):
        return _edit_action(s, inv, inc)
    try:
        # Parsed as mrkdwn (so `@owner` is still a mention); the title is stored as plain text.
        parsed = capa.parse_action_text(inv.args, _today(inv))
        item = capa_svc.add_action(s, inc, to_plain(parsed.title), parsed.type, parsed.priority, parsed.owner_id,
                                   parsed.due_date, created_by=inv.user_id, source="slack",
                                   tracker=inv.rt.settings.capa_tracker)
    except capa.CapaError as exc:
        return svc.Reply(f"{exc}. Example: `{inv.command} action Add a canary stage @alex due friday preventive`",
                         ok=False)
    owner = f", owner {user(item.owner_id)}" if item.owner_id else ""
    due = f", due {item.due_date:%Y-%m-%d}" if item.due_date else ""
    return svc.Reply(f"Added action #{item.id} ({item.type}, {item.priority}{owner}{due}): {escape(item.title)}")


def _edit_action(s: Session, inv: Invocation, inc: Incident) -> svc.Reply:
    """``action #N ...``: owner, due date, priority and status from Slack, as ``actions set`` does from the
    CLI; with CAPA_TRACKER set the ticket is updated in the same transaction's outbox."""
    example = f"Example: `{inv.command} action #3 @alex due friday high in progress`"
    try:
        edit = capa.parse_action_edit(inv.args, _today(inv))
    except capa.CapaError as exc:
        return svc.Reply(f"{escape(str(exc))}. {example}", ok=False)
    item = capa_svc.action_of(s, inc, edit.action_id)
    if item is None:
        return svc.Reply(f"{inc.ref} has no action #{edit.action_id}: `{inv.command} actions` lists them.", ok=False)
    if edit.empty:
        return svc.Reply(f"Nothing to change on action #{item.id}. {example}", ok=False)
    tracker = inv.rt.settings.capa_tracker
    capa_svc.update_action(s, item.id or 0, owner_id=edit.owner_id, clear_owner=edit.clear_owner,
                           due_date=edit.due_date, clear_due=edit.clear_due, priority=edit.priority,
                           actor=inv.user_id, source="slack", tracker=tracker)
    if edit.status:
        capa_svc.set_status(s, item.id or 0, edit.status, actor=inv.user_id, source="slack", tracker=tracker)
    owner = user(item.owner_id) if item.owner_id else "no owner"
    due = f"due {item.due_date:%Y-%m-%d}" if item.due_date else "no due date"
    return svc.Reply(f"Action #{item.id} is now {item.status.replace('_', ' ')} ({item.priority}, {owner}, {due}): "
                     f"{escape(item.title)}")


def actions(s: Session, inv: Invocation, inc: Incident) -> dict[str, Any]:
    rows = capa_svc.list_actions(s, incident_ref=inc.ref, today=_today(inv))
    return {"text": f"{inc.ref} actions", "blocks": actions_blocks(inc, rows)}


def close(s: Session, inv: Invocation, inc: Incident) -> svc.Reply:
    words = inv.plain.split(maxsplit=1)
    reason = words[1] if len(words) == 2 and words[0].lower() == "override" else None
    out = capa_svc.close_incident(s, inc, actor=inv.user_id, at=utcnow(), override_reason=reason)
    if not out.closed:
        return svc.Reply(f"Can't close {inc.ref}: {out.refused}. "
                         f"(`{inv.command} close override <reason>` records why you close anyway.)", ok=False)
    messages_post(s, inc, f"📦 *Closed* by {user(inv.user_id)}" + (f" — override: {escape(reason)}" if reason else ""))
    return svc.Reply(f"{inc.ref} is closed.")


def messages_post(s: Session, inc: Incident, md: str) -> None:
    from incident_bot.usecases.incidents import post

    post(s, inc, messages.plain(md, fallback=f"{inc.ref} update"))


def actions_blocks(inc: Incident, rows: list[Any]) -> list[dict[str, Any]]:
    if not rows:
        return [messages.section(f"{inc.ref} has no action items yet. Add one with "
                                 "`/incident action <text> [@owner] [due <date>] [type]`.").to_dict()]
    blocks: list[Any] = [messages.section(f"*{inc.ref} CAPA actions* ({len(rows)})")]
    for row in rows[:23]:  # two blocks an item: stays under 50
        a: ActionItem = row.item
        due = f"due {a.due_date:%Y-%m-%d}" + (" ⚠️ overdue" if row.overdue else "") if a.due_date else "no due date"
        owner = user(a.owner_id) if a.owner_id else "no owner"
        blocks.append(messages.section(f"*#{a.id}* {escape(truncate(a.title, 500))}\n"
                                       f"{a.type} · {a.priority} · {owner} · {due} · *{a.status}*"))
        buttons = [ButtonElement(text=label, action_id=f"{STATUS_ACTION}_{status}", value=f"{a.id}:{status}")
                   for status, label in (("in_progress", "In progress"), ("done", "Done"), ("wont_do", "Won't do"),
                                         ("open", "Reopen")) if status != a.status]
        blocks.append(ActionsBlock(block_id=f"capa_{a.id}", elements=buttons))
    if len(rows) > 23:
        blocks.append(messages.section(f"and {len(rows) - 23} more: `incident-bot actions list --incident {inc.ref}`"))
    return [b.to_dict() for b in blocks]


def _digest(text: str) -> str:
    """A short fingerprint of a field as offered, to tell on submission whether the user changed it."""
    return hashlib.sha256(text.strip().encode()).hexdigest()[:16]


def rca_edit_modal(inc: Incident) -> dict[str, Any]:
    """One input a narrative field, prefilled. A field longer than the form allows (MODAL_FIELD_MAX) is
    not offered at all (cut, it would be saved cut): a note says to edit it with the CLI instead."""
    narrative = inc.rca or {}
    blocks: list[Any] = []
    offered: dict[str, str] = {}
    for key in EDITABLE:
        value = str(narrative.get(key) or "")
        if len(value) > MODAL_FIELD_MAX or units(value) > MODAL_FIELD_MAX:
            blocks.append(ContextBlock(block_id=key, elements=[MarkdownTextObject(
                text=f"*{LABELS.get(key, key)}* is {units(value)} characters, more than this form holds "
                     f"({MODAL_FIELD_MAX}); it is kept as it is. Edit it with "
                     f"`incident-bot rca {inc.ref} --set-file {key}=FILE`.")]))
            continue
        offered[key] = _digest(value)
        blocks.append(InputBlock(block_id=key, label=LABELS.get(key, key), optional=True,
                                 element=PlainTextInputElement(action_id="value", multiline=True,
                                                               max_length=MODAL_FIELD_MAX,
                                                               initial_value=value or None)))
    meta = json.dumps({"ref": inc.ref, "offered": offered}, separators=(",", ":"))
    return View(type="modal", callback_id=RCA_EDIT_CALLBACK, private_metadata=meta,
                title=PlainTextObject(text=f"RCA {inc.ref}"[:24]), submit=PlainTextObject(text="Save"),
                close=PlainTextObject(text="Cancel"), blocks=blocks).to_dict()


def _rca_meta(metadata: str) -> tuple[str, dict[str, str] | None]:
    """``(ref, offered digests)``; a form opened before digests existed carries only the ref."""
    try:
        doc = json.loads(metadata)
    except ValueError:
        return metadata, None
    if not isinstance(doc, dict) or not isinstance(doc.get("offered"), dict):
        return str(doc.get("ref", "")) if isinstance(doc, dict) else metadata, None
    return str(doc.get("ref", "")), {str(k): str(v) for k, v in doc["offered"].items()}


def rca_form_errors(values: dict[str, Any]) -> dict[str, str]:
    """The RCA form's checks that need no database (before the ack): no field over the form's limit."""
    for key in EDITABLE:
        entry = values.get(key)
        action = entry.get("value") if isinstance(entry, dict) else None
        value = action.get("value") if isinstance(action, dict) else None
        if isinstance(value, str) and units(clean(value)) > MODAL_FIELD_MAX:
            return {key: f"At most {MODAL_FIELD_MAX} characters."}
    return {}


def save_rca(s: Session, user_id: str, metadata: str, values: dict[str, Any]) -> str:
    """The RCA form's submission, applied by the fold worker; returns the inbox outcome.

    Only fields offered in the form and changed in it are written: a field left alone keeps its stored
    value exactly (even if someone edited it meanwhile), and a field too long for the form is never sent.
    The form is opened only for channel members (``interactions.open_rca_form``); a submission from
    someone who is not (any more) a member saves nothing."""
    ref, offered = _rca_meta(metadata)
    submitted: dict[str, str] = {}
    for key in EDITABLE:
        entry = values.get(key)
        action = entry.get("value") if isinstance(entry, dict) else None
        if not isinstance(action, dict):
            continue  # not in the form (too long for it), or a forged submission
        value = clean(action.get("value") if isinstance(action.get("value"), str) else "")
        if units(value) > MODAL_FIELD_MAX:
            return "refused"  # checked before the ack too (interactions.view_errors)
        submitted[key] = value
    inc = svc.incident_by_ref(s, ref)
    if inc is None:
        return "ignored"
    if not inc.slack_channel_id or not svc.is_member(s, inc.slack_channel_id, user_id):
        log.warning("rca form from %s, not a member of %s's channel: nothing saved", user_id, inc.ref)
        return "refused"
    stored_now = inc.rca or {}
    updates = {
        key: value for key, value in submitted.items()
        if (offered is not None and key in offered and _digest(value) != offered[key])
        or (offered is None and value.strip() != str(stored_now.get(key) or "").strip())
    }
    changed = rca_svc.edit_narrative(s, inc, updates, actor=user_id) if updates else []
    return "processed" if changed else "unchanged"


def change_status(s: Session, user_id: str, channel_id: str, value: str, tracker: str | None = None) -> Outcome:
    """A CAPA status button, applied by the fold worker; the answer goes back through response_url."""
    action_id, _, status = value.partition(":")
    inc = svc.incident_in_channel(s, channel_id)
    item = capa_svc.action_of(s, inc, int(action_id)) if inc and action_id.isdigit() and len(action_id) < 12 else None
    if inc is None or item is None or status not in capa.STATUSES:
        return Outcome({"text": "That action item no longer exists here."}, ok=False)
    if not svc.is_member(s, channel_id, user_id):
        return Outcome({"text": f"Only members of this channel can change {inc.ref}'s actions."}, ok=False)
    capa_svc.set_status(s, item.id or 0, status, actor=user_id, source="slack", tracker=tracker)
    return Outcome({"text": f"Action #{item.id} is now {status.replace('_', ' ')}."})


def snooze_nudge(s: Session, rt: Any, user_id: str, channel_id: str) -> Outcome:
    """The reminder's *Snooze* button: one more interval of quiet before the next reminder (members only)."""
    inc = svc.incident_in_channel(s, channel_id)
    if inc is None:
        return Outcome({"text": "This channel has no incident any more."}, ok=False)
    if not svc.is_member(s, channel_id, user_id):
        return Outcome({"text": f"Only members of this channel can snooze {inc.ref}'s reminders."}, ok=False)
    interval = nudge_svc.snooze(s, rt.settings, inc, user_id=user_id, now=utcnow())
    return Outcome({"text": f"Snoozed: the next status update reminder comes in {interval}."})
# -- grouping after the fact (issue 13) ------------------------------------------------------------------



def merge(s: Session, inv: Invocation, inc: Incident) -> svc.Reply:
    from incident_bot.usecases import regroup

    ref = inv.args.strip().split()[0] if inv.args.strip() else ""
    other = svc.incident_by_ref(s, ref, lock=True) if ref else None
    if other is None:
        return svc.Reply(f"Usage: `{inv.command} merge INC-n` (an incident to merge into {inc.ref}).", ok=False)
    done = regroup.merge(s, inc, other, actor=inv.user_id)
    return svc.Reply(done.text, ok=done.ok, ref=inc.ref)


def unlink(s: Session, inv: Invocation, inc: Incident) -> svc.Reply:
    from incident_bot.usecases import regroup

    pd_id = inv.args.strip().split()[0] if inv.args.strip() else ""
    if not pd_id:
        return svc.Reply(f"Usage: `{inv.command} unlink <PagerDuty incident id>`.", ok=False)
    done = regroup.unlink(s, inv.rt.settings, inc, pd_id, actor=inv.user_id)
    return svc.Reply(done.text, ok=done.ok, ref=inc.ref)
