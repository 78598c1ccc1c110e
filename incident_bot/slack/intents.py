"""Drawing intents: the use cases queue what a message says (``pipeline.outbox.intent``: a renderer's
name and plain JSON data); the Slack job draws it here when it sends, so Block Kit and mrkdwn escaping
never leave ``incident_bot/slack/``.

:data:`RENDERERS` is the one table of names, written out (no registration by import side effect): a
name queued that is not here is a dead row (so is data a renderer cannot draw: retrying would not help),
and tests/test_intents.py checks every name the code queues against it.

A renderer takes the intent's data and the incident as it is at send time (``None`` for a row without
one) and returns the call's content: ``text`` and ``blocks`` for ``chat.postMessage``, ``topic`` for
``conversations.setTopic``. Most draw only from the data, a snapshot of the incident taken when the
message was queued (``outbox.facts``), so a message says what was true then; the announcement draws from
the live incident, to link the channel created just before it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime
from types import SimpleNamespace
from typing import Any

from incident_bot.pipeline.jobs import Permanent
from incident_bot.pipeline.outbox import FACT_TIMES, INCIDENT_FACTS
from incident_bot.slack import messages
from incident_bot.slack.digest_blocks import digest_message
from incident_bot.slack.mrkdwn import escape, link, user
from storage.models import Incident

Renderer = Callable[[Mapping[str, Any], Incident | None], dict[str, Any]]
# Keys of a payload that route the call rather than say anything: kept as they are around a drawing.
ROUTING = ("channel", "thread_ts", "capture", "history")


def draw(payload: Mapping[str, Any], inc: Incident | None) -> dict[str, Any]:
    """A stored payload as the call's arguments: an intent drawn now, a row queued before intents (its
    ``text``/``blocks`` or ``topic`` already drawn) as it was stored."""
    p = dict(payload)
    name = p.pop("render", None)
    if name is None:
        return p
    data = p.pop("data", None)
    if data is None:  # an intent queued before its data went under "data" (announcement, storm_line)
        data = {k: p.pop(k) for k in list(p) if k not in ROUTING}
    renderer = RENDERERS.get(name)
    if renderer is None:
        raise Permanent(f"no renderer named {name!r}")
    try:
        drawn = renderer(data, inc)
    except Permanent:
        raise
    except Exception as exc:  # drawing is deterministic: data it cannot draw never will be, retrying is futile
        raise Permanent(f"cannot draw {name!r}: {exc.__class__.__name__}: {exc}") from exc
    return {**p, **drawn}


def incident(data: Mapping[str, Any] | None) -> SimpleNamespace:
    """An incident snapshot (``outbox.facts``) as the attributes ``messages`` reads; absent fields None."""
    d = data or {}
    values = {name: d.get(name) for name in INCIDENT_FACTS}
    for name in FACT_TIMES:
        if isinstance(values[name], str):
            values[name] = datetime.fromisoformat(values[name])
    return SimpleNamespace(**values)


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


# -- the incident channel's first messages --------------------------------------------------------------

def announcement(data: Mapping[str, Any], inc: Incident | None) -> dict[str, Any]:
    if inc is None:
        raise Permanent("announcement without an incident")
    return messages.announcement(inc)


def channel_intro(data: Mapping[str, Any], inc: Incident | None) -> dict[str, Any]:
    return messages.channel_intro(incident(data["incident"]), fired_by=data["fired_by"],
                                  web_url=messages.web_page(data.get("web_base_url"),
                                                            f"/ui/incidents/{data['incident']['ref']}"))


def topic(data: Mapping[str, Any], inc: Incident | None) -> dict[str, Any]:
    return {"topic": messages.topic(incident(data["incident"]))}


def storm_line(data: Mapping[str, Any], inc: Incident | None) -> dict[str, Any]:
    # The counts the fold kept (grouping.storm_line): the joins of a storm update numbers, not Block Kit.
    storm = data["storm"]
    first, last = (datetime.fromisoformat(storm[k]) for k in ("first", "last"))
    return messages.storm_line(count=int(storm["count"]), service=data.get("service"),
                               span_s=(last - first).total_seconds(), titles=list(storm.get("titles") or []))


# -- what /incident does in the channel (usecases/incident_changes.py) ----------------------------------

ICONS = {"acknowledge": "👀", "mitigate": "🩹", "resolve": "✅", "reopen": "🔁"}
ROLE_HELP = {
    "commander": "Incident commander: you run the response. Keep the team focused, decide, delegate, "
                 "and call mitigation and resolution. `/incident status` shows where things stand.",
    "comms": "Communications lead: you keep stakeholders informed. Post regular status updates with "
             "`/incident update <text>` (they go to the channel and the announcement thread).",
    "scribe": "Scribe: you keep the record. Pin key messages with :pushpin: and add notes with "
              "`/incident note <text>`; the timeline feeds the RCA.",
}


def milestone(data: Mapping[str, Any], inc: Incident | None) -> dict[str, Any]:
    # ``note_md`` is mrkdwn typed in Slack (mrkdwn.from_slack): shown as typed, never escaped again.
    word, note = data["word"], data.get("note_md")
    text = f"{word.capitalize()} by {user(data.get('user'))}" + (f": {note}" if note else "")
    badge = incident(data["incident"])
    return messages.update(badge, icon=ICONS[data["kind"]], text_md=f"*{text}*", fallback=f"{badge.ref} {word}")


def severity(data: Mapping[str, Any], inc: Incident | None) -> dict[str, Any]:
    badge, sev = incident(data["incident"]), data["after"]
    md = f"*Severity* {data['before']} → *{sev}* by {user(data.get('user'))}"
    return messages.update(badge, icon="🎚️", text_md=md, fallback=f"{badge.ref} is now {sev}")


def role(data: Mapping[str, Any], inc: Incident | None) -> dict[str, Any]:
    name = data["role"]
    return messages.plain(f"🎖️ {user(data['assignee'])} is now *{name}* (set by {user(data.get('user'))})",
                          fallback=f"{data['ref']}: new {name}")


def role_dm(data: Mapping[str, Any], inc: Incident | None) -> dict[str, Any]:
    name, of = data["role"], incident(data["incident"])
    return messages.plain(
        f"You are the *{name}* of {of.ref} ({escape(of.title)}) in {messages.channel_ref(of)}.\n{ROLE_HELP[name]}",
        fallback=f"You are the {name} of {of.ref}")


def impact_started(data: Mapping[str, Any], inc: Incident | None) -> dict[str, Any]:
    badge = incident(data["incident"])
    return messages.update(badge, icon="⏱️", text_md=f"*Impact started* at {messages.when(_time(data['when']))} "
                                                     f"(set by {user(data.get('user'))})",
                           fallback=f"{badge.ref}: impact started at {data['shown']}")


def status_update(data: Mapping[str, Any], inc: Incident | None) -> dict[str, Any]:
    # ``text_md`` is mrkdwn from Slack (see slack/mrkdwn.py): posted as it was typed.
    md = f"📢 *Status update* from {user(data.get('user'))}:\n{data['text_md']}"
    return messages.plain(md, fallback=f"{data['ref']} status update")


# -- PagerDuty in the channel (pagerduty/translate.py says what happened, pagerduty/jobs.py what paging did) --

PAGERDUTY_ICONS = {"acknowledged": "👀", "unacknowledged": "⏰", "resolved": "✅", "reopened": "🔁",
                   "escalated": "📣", "reassigned": "📣", "delegated": "📣", "priority_updated": "🎚️",
                   "service_updated": "🧭", "note": "📝", "status_update": "📢", "responder.added": "🙋",
                   "responder.replied": "🙋"}
RESPONDER_VERBS = {"responder.added": "added as responder",
                   "responder.replied": "replied to the responder request"}


def pagerduty_md(said: Mapping[str, Any]) -> str:
    """A PagerDuty event's line, every value from PagerDuty escaped."""
    event = said["event"]
    by = escape(f" by {said['by']}") if said.get("by") else ""
    if event == "unacknowledged":
        return "*Unacknowledged*: the acknowledgement timed out, PagerDuty is paging again"
    if event in ("escalated", "reassigned", "delegated"):
        return f"*{event.capitalize()}*{by}" + (f" to {escape(said['to'])}" if said.get("to") else "")
    if event == "priority_updated":
        if said.get("severity") is None:  # a priority name SEVERITY_MAP does not know
            return f"*Priority* changed to {escape(said.get('priority') or '')} (severity unchanged){by}"
        return f"*Priority* changed to {escape(said.get('priority') or 'none')} → *{said['severity']}*{by}"
    if event == "service_updated":
        return f"*Service* changed to {escape(said.get('service') or 'none')}{by}"
    if event in ("note", "status_update"):
        label = "Note" if event == "note" else "Status update"
        return f"*{label}*{by}: {escape(said.get('note') or '')}"
    if event in RESPONDER_VERBS:
        return f"{escape(said.get('who'))} {RESPONDER_VERBS[event]}"
    return f"*{event.capitalize()}*{by}"  # acknowledged, resolved, reopened


def pagerduty_update(data: Mapping[str, Any], inc: Incident | None) -> dict[str, Any]:
    badge, said = incident(data["incident"]), data["said"]
    return messages.update(badge, icon=PAGERDUTY_ICONS.get(said["event"], "ℹ️"), text_md=pagerduty_md(said),
                           fallback=f"{badge.ref}: {data['text']}")


def pagerduty_page_failed(data: Mapping[str, Any], inc: Incident | None) -> dict[str, Any]:
    return messages.plain(f"⚠️ No PagerDuty service named *{escape(data['service'])}*; nobody was paged.",
                          fallback=f"{data['ref']}: PagerDuty")


def pagerduty_paged(data: Mapping[str, Any], inc: Incident | None) -> dict[str, Any]:
    where = link(data.get("url"), "PagerDuty incident")
    return messages.plain(f"📟 Paged *{escape(data['service'])}* on-call: {where}. "
                          "Responders are invited here as they acknowledge.", fallback=f"{data['ref']}: PagerDuty")


# -- merge and unlink (usecases/regroup.py) --------------------------------------------------------------

def merged_in(data: Mapping[str, Any], inc: Incident | None) -> dict[str, Any]:
    return messages.plain(f"🔗 *{escape(data['ref'])}* ({escape(data['title'])}) was merged into this "
                          f"incident with {data['links']} PagerDuty incident(s).",
                          fallback=f"{data['ref']} merged into {data['into']}")


def merged_away(data: Mapping[str, Any], inc: Incident | None) -> dict[str, Any]:
    into = incident(data["into"])
    return messages.plain(f"🔗 Merged into *{escape(into.ref)}*: follow the response there "
                          f"({messages.channel_ref(into)}).", fallback=f"Merged into {into.ref}")


def split_out(data: Mapping[str, Any], inc: Incident | None) -> dict[str, Any]:
    pd_id, ref = data["pagerduty_id"], data["ref"]
    return messages.plain(f"✂️ PagerDuty incident {escape(pd_id)} now has its own incident, *{escape(ref)}*.",
                          fallback=f"{pd_id} split out into {ref}")


# -- reminders (usecases/nudge.py, usecases/actions.py) --------------------------------------------------

def status_nudge(data: Mapping[str, Any], inc: Incident | None) -> dict[str, Any]:
    return messages.status_nudge(SimpleNamespace(ref=data["ref"]), commander=data.get("commander"),
                                 quiet_for=data["quiet_for"], interval=data["interval"])


def capa_reminder(data: Mapping[str, Any], inc: Incident | None) -> dict[str, Any]:
    rows = [(SimpleNamespace(**{**i, "due_date": date.fromisoformat(i["due_date"]) if i.get("due_date") else None}),
             i["ref"], i["incident_title"]) for i in data["items"]]
    return messages.reminder_message(data["owner"], rows, today=date.fromisoformat(data["today"]),
                                     zone_label=data.get("zone_label") or "")


# -- the weekly digest (usecases/digest.py) --------------------------------------------------------------

def digest(data: Mapping[str, Any], inc: Incident | None) -> dict[str, Any]:
    return digest_message(dict(data["view"]))


# -- CAPA tickets (usecases/ticket_changes.py) ------------------------------------------------------------

TICKET_VERBS = {"done": "closed", "wont_do": "closed as won't do", "open": "reopened", "in_progress": "started"}


def _ticket_ref(data: Mapping[str, Any]) -> str:
    return link(data["url"], data["key"]) if data.get("url") else escape(data["key"])


def ticket_changed(data: Mapping[str, Any], inc: Incident | None) -> dict[str, Any]:
    said = []
    for change in data["changes"]:
        by = f" by {escape(change['by'])}" if change.get("by") else ""
        if "status" in change:
            status = change["status"]
            said.append(f"{TICKET_VERBS[status]}{by} → action is *{status.replace('_', ' ')}*")
        else:
            said.append(f"re-dated{by} to {change.get('due') or 'no due date'}")
    tracker = escape(data["tracker"])
    return messages.plain(f"🎫 {tracker} {_ticket_ref(data)} {'; '.join(said)}: #{data['action_id']} "
                          f"{escape(data['title'])}",
                          fallback=f"{data['ref']}: action #{data['action_id']} changed in {data['tracker']}")


def ticket_tracked(data: Mapping[str, Any], inc: Incident | None) -> dict[str, Any]:
    who = (f"assigned to {escape(data.get('owner_name') or '')}" if data.get("assigned") else
           f"unassigned ({escape(data['assignee_note'])})" if data.get("assignee_note") else "no owner yet")
    return messages.plain(f"🎫 Action #{data['action_id']} is tracked in {escape(data['tracker'])}: "
                          f"{_ticket_ref(data)}, {who}.",
                          fallback=f"{data['ref']}: action #{data['action_id']} ticket {data['key']}")


RENDERERS: dict[str, Renderer] = {
    "announcement": announcement,
    "channel_intro": channel_intro,
    "topic": topic,
    "storm_line": storm_line,
    "milestone": milestone,
    "severity": severity,
    "role": role,
    "role_dm": role_dm,
    "impact_started": impact_started,
    "status_update": status_update,
    "pagerduty_update": pagerduty_update,
    "pagerduty_page_failed": pagerduty_page_failed,
    "pagerduty_paged": pagerduty_paged,
    "merged_in": merged_in,
    "merged_away": merged_away,
    "split_out": split_out,
    "status_nudge": status_nudge,
    "capa_reminder": capa_reminder,
    "digest": digest,
    "ticket_changed": ticket_changed,
    "ticket_tracked": ticket_tracked,
}
