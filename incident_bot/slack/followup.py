"""After the fire: ``/incident rca``, ``rca edit``, ``action``, ``actions`` and ``close`` (with the modal and
the status buttons). Handlers plug into the ``/incident`` dispatcher of :mod:`incident_bot.slack.commands`.
"""

from __future__ import annotations

from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    ButtonElement,
    InputBlock,
    PlainTextInputElement,
    PlainTextObject,
)
from slack_sdk.models.views import View
from sqlmodel import Session

from incident_bot.core import capa
from incident_bot.core.rca import NARRATIVE_KEYS
from incident_bot.services import actions as capa_svc
from incident_bot.services import commands as svc
from incident_bot.services import rca as rca_svc
from incident_bot.slack import messages
from incident_bot.slack.commands import CHANGES_STATE, EXTRA_COMMANDS, Invocation, Outcome, handler
from incident_bot.slack.mrkdwn import escape, link, truncate, user
from storage import repo
from storage.models import ActionItem, Incident, utcnow

RCA_EDIT_CALLBACK = "rca_edit"
STATUS_ACTION = "capa_status"
EDITABLE = [k for k in NARRATIVE_KEYS if k != "links"]
LABELS = {"summary": "Summary", "impact": "Impact", "root_causes": "Root causes and contributing factors",
          "trigger": "Trigger", "detection": "Detection", "response": "Response", "recovery": "Recovery",
          "went_well": "What went well", "went_wrong": "What went wrong", "lucky": "Where we got lucky"}

EXTRA_COMMANDS.extend([
    ("rca", "render the blameless RCA (Markdown) and upload it here"),
    ("rca edit", "edit the RCA narrative in a form"),
    ("action <text> [@owner] [due <date>] [type]", "add a CAPA action item (corrective, preventive, ...)"),
    ("actions", "this incident's action items, with status buttons"),
    ("close [override <reason>]", "close a resolved incident (open corrective actions need a reason)"),
])
CHANGES_STATE.update({"action", "close"})


def _today(inv: Invocation) -> Any:
    return capa.today_in(inv.rt.settings.tzinfo, utcnow())


@handler("rca")
def _rca(s: Session, inv: Invocation, inc: Incident) -> svc.Reply | dict[str, Any]:
    if inv.args.strip().lower() == "edit":  # opened on the accept path (trigger_id lives 3 s)
        return svc.Reply(f"Run `{inv.command} rca edit` again to open the RCA form.", ok=False)
    result = rca_svc.export_rca(s, inc.ref, "md", inv.rt.settings.rca_templates_dir, today=_today(inv))
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
    repo.enqueue(s, order_key=f"incident:{inc.id}", method="files.upload_v2", incident_id=inc.id,
                 payload={"channel": "$incident", "content": result.text, "filename": f"{inc.ref}-rca.md",
                          "title": f"{inc.ref} RCA", "initial_comment": truncate(summary, 3900)})
    repo.add_timeline(s, incident_id=inc.id or 0, occurred_at=utcnow(), source="slack", kind="rca_exported",
                      actor=inv.user_id, text="RCA exported to the channel")
    extra = f" {len(findings)} blameless-language warning(s) are in the summary." if findings else ""
    return svc.Reply(f"Rendering the RCA of {inc.ref}; it will be uploaded here.{extra}", ref=inc.ref)


@handler("action")
def _action(s: Session, inv: Invocation, inc: Incident) -> svc.Reply:
    try:
        parsed = capa.parse_action_text(inv.args, _today(inv))
        item = capa_svc.add_action(s, inc, parsed.title, parsed.type, parsed.priority, parsed.owner_id,
                                   parsed.due_date, created_by=inv.user_id, source="slack")
    except capa.CapaError as exc:
        return svc.Reply(f"{exc}. Example: `{inv.command} action Add a canary stage @alex due friday preventive`",
                         ok=False)
    owner = f", owner {user(item.owner_id)}" if item.owner_id else ""
    due = f", due {item.due_date:%Y-%m-%d}" if item.due_date else ""
    return svc.Reply(f"Added action #{item.id} ({item.type}, {item.priority}{owner}{due}): {escape(item.title)}")


@handler("actions")
def _actions(s: Session, inv: Invocation, inc: Incident) -> dict[str, Any]:
    rows = capa_svc.list_actions(s, incident_ref=inc.ref, today=_today(inv))
    return {"text": f"{inc.ref} actions", "blocks": actions_blocks(inc, rows)}


@handler("close")
def _close(s: Session, inv: Invocation, inc: Incident) -> svc.Reply:
    words = inv.args.split(maxsplit=1)
    reason = words[1] if len(words) == 2 and words[0].lower() == "override" else None
    out = capa_svc.close_incident(s, inc, actor=inv.user_id, at=utcnow(), override_reason=reason)
    if not out.closed:
        return svc.Reply(f"Can't close {inc.ref}: {out.refused}. "
                         f"(`{inv.command} close override <reason>` records why you close anyway.)", ok=False)
    messages_post(s, inc, f"📦 *Closed* by {user(inv.user_id)}" + (f" — override: {escape(reason)}" if reason else ""))
    return svc.Reply(f"{inc.ref} is closed.")


def messages_post(s: Session, inc: Incident, md: str) -> None:
    from incident_bot.services.incidents import post

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


def rca_edit_modal(inc: Incident) -> dict[str, Any]:
    narrative = inc.rca or {}
    inputs = [
        InputBlock(block_id=key, label=LABELS.get(key, key), optional=True, element=PlainTextInputElement(
            action_id="value", multiline=True, max_length=3000,
            initial_value=truncate(str(narrative.get(key) or ""), 3000) or None))
        for key in EDITABLE
    ]
    return View(type="modal", callback_id=RCA_EDIT_CALLBACK, private_metadata=inc.ref,
                title=PlainTextObject(text=f"RCA {inc.ref}"[:24]), submit=PlainTextObject(text="Save"),
                close=PlainTextObject(text="Cancel"), blocks=inputs).to_dict()


def save_rca(s: Session, user_id: str, ref: str, values: dict[str, Any]) -> str:
    """The RCA form's submission, applied by the fold worker."""
    updates = {key: ((values.get(key) or {}).get("value") or {}).get("value") or "" for key in EDITABLE}
    changed = rca_svc.set_narrative(s, ref, updates)
    inc = repo.incident_by_ref(s, ref)
    if changed and inc is not None:
        repo.add_timeline(s, incident_id=inc.id or 0, occurred_at=utcnow(), source="slack", kind="rca_edited",
                          actor=user_id, text=f"RCA edited: {', '.join(changed)}")
    return "processed" if changed else "unchanged"


def change_status(s: Session, user_id: str, channel_id: str, value: str) -> Outcome:
    """A CAPA status button, applied by the fold worker; the answer goes back through response_url."""
    action_id, _, status = value.partition(":")
    inc = repo.incident_by_channel(s, channel_id)
    item = s.get(ActionItem, int(action_id)) if action_id.isdigit() and len(action_id) < 12 else None
    if inc is None or item is None or item.incident_id != inc.id or status not in capa.STATUSES:
        return Outcome({"text": "That action item no longer exists here."}, ok=False)
    if not svc.is_member(s, channel_id, user_id):
        return Outcome({"text": f"Only members of this channel can change {inc.ref}'s actions."}, ok=False)
    capa_svc.set_status(s, item.id or 0, status, actor=user_id, source="slack")
    return Outcome({"text": f"Action #{item.id} is now {status.replace('_', ' ')}."})


# -- grouping after the fact (issue 13) ------------------------------------------------------------------

EXTRA_COMMANDS.extend([
    ("merge INC-n", "merge another incident into this one (its PagerDuty incidents are linked here)"),
    ("unlink <PagerDuty id>", "split a linked PagerDuty incident out into its own incident"),
])
CHANGES_STATE.update({"merge", "unlink"})


@handler("merge")
def _merge(s: Session, inv: Invocation, inc: Incident) -> svc.Reply:
    from incident_bot.services import regroup

    ref = inv.args.strip().split()[0] if inv.args.strip() else ""
    other = repo.incident_by_ref(s, ref, lock=True) if ref else None
    if other is None:
        return svc.Reply(f"Usage: `{inv.command} merge INC-n` (an incident to merge into {inc.ref}).", ok=False)
    done = regroup.merge(s, inc, other, actor=inv.user_id)
    return svc.Reply(done.text, ok=done.ok, ref=inc.ref)


@handler("unlink")
def _unlink(s: Session, inv: Invocation, inc: Incident) -> svc.Reply:
    from incident_bot.services import regroup

    pd_id = inv.args.strip().split()[0] if inv.args.strip() else ""
    if not pd_id:
        return svc.Reply(f"Usage: `{inv.command} unlink <PagerDuty incident id>`.", ok=False)
    done = regroup.unlink(s, inv.rt.settings, inc, pd_id, actor=inv.user_id)
    return svc.Reply(done.text, ok=done.ok, ref=inc.ref)
