"""Block Kit for the incident channel and the announcement, built with ``slack_sdk.models``.

``to_dict()`` on the models validates Slack's limits (header 150, section 3000 characters...), and
every value that comes from outside goes through :func:`mrkdwn.escape` first.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from incident_bot.core import capa
from incident_bot.core.durations import format_duration, utc_text
from incident_bot.core.rca import safe_url
from incident_bot.slack.mrkdwn import channel, escape, link, truncate, truncate_md, user

SEV_EMOJI = {"SEV1": "🔴", "SEV2": "🟠", "SEV3": "🟡", "SEV4": "🔵"}
STATUS_EMOJI = {
    "triggered": "🚨", "acknowledged": "👀", "mitigated": "🩹", "resolved": "✅", "closed": "📦",
}
SECTION_LIMIT = 3000
HEADER_LIMIT = 150


def when(ts: datetime | None) -> str:
    """A time every reader sees in their own Slack time zone, with a UTC fallback."""
    if ts is None:
        return "—"
    epoch = int(ts.timestamp())
    return f"<!date^{epoch}^{{date_short_pretty}} {{time}}|{utc_text(ts, seconds=False)}>"


def message(text: str, blocks: list[Any]) -> dict[str, Any]:
    """``text`` is the notification fallback, ``blocks`` are validated now, not at Slack.

    Slack parses the fallback as mrkdwn (it is what notifications show), so it is escaped here.
    """
    return {"text": truncate_md(escape(text), 3000), "blocks": [b.to_dict() for b in blocks]}


def section(md: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=truncate_md(md, SECTION_LIMIT)))


def _header(text: str) -> HeaderBlock:
    return HeaderBlock(text=PlainTextObject(text=truncate(text, HEADER_LIMIT), emoji=True))


def headline(inc: Any) -> str:
    return f"{SEV_EMOJI.get(inc.severity, '⚪')} {inc.ref} · {inc.severity} · {inc.title}"


def topic(inc: Any) -> str:
    """Channel topics are plain text, at most 250 characters."""
    parts = [f"{inc.severity} {inc.status}", f"{inc.ref}: {inc.title}"]
    if inc.pagerduty_url:
        parts.append(f"PagerDuty: {inc.pagerduty_url}")
    return truncate(" | ".join(parts), 250)


def _facts(inc: Any) -> SectionBlock:
    fields = [
        MarkdownTextObject(text=f"*Severity*\n{inc.severity}"),
        MarkdownTextObject(text=f"*Status*\n{STATUS_EMOJI.get(inc.status, '')} {inc.status}"),
        MarkdownTextObject(text=f"*Service*\n{truncate_md(escape(inc.service or 'unknown'), 1900)}"),
        MarkdownTextObject(text=f"*Since*\n{when(inc.impact_started_at or inc.detected_at)}"),
    ]
    if inc.pagerduty_url:
        fields.append(MarkdownTextObject(text=f"*PagerDuty*\n{link(inc.pagerduty_url, 'open incident')}"))
    if inc.commander_id:
        fields.append(MarkdownTextObject(text=f"*Commander*\n{user(inc.commander_id)}"))
    return SectionBlock(fields=fields)


def web_page(base_url: str | None, path: str) -> str | None:
    """A page of the web view (WEB_BASE_URL set), e.g. ``/ui/incidents/INC-4``; None without one."""
    return f"{base_url.rstrip('/')}{path}" if base_url else None


def channel_intro(inc: Any, *, fired_by: str, web_url: str | None = None) -> dict[str, Any]:
    """The first message in the incident channel: what fired, on which service, since when; with
    ``web_url``, a link to the incident's page (timeline, RCA, CAPA)."""
    by = f" by {user(inc.reporter_id)}" if inc.reporter_id else ""
    what = (
        f"*{escape(inc.title)}*\n{escape(fired_by)}{by} on *{escape(inc.service or 'an unknown service')}* "
        f"since {when(inc.impact_started_at or inc.detected_at)}."
    )
    blocks = [_header(headline(inc)), section(what), _facts(inc)]
    if inc.description:
        blocks.append(section(f"*Description*\n{escape(inc.description)}"))
    blocks += [
        ActionsBlock(block_id="incident_actions", elements=[
            ButtonElement(text="Acknowledge", action_id="incident_ack", value="ack"),
            ButtonElement(text="Mitigated", action_id="incident_mitigated", value="mitigated"),
            ButtonElement(text="Resolve", action_id="incident_resolve", value="resolve", style="primary"),
            ButtonElement(text="Status", action_id="incident_status", value="status"),
        ]),
        DividerBlock(),
        ContextBlock(elements=[MarkdownTextObject(
            text="Type `/incident help` for commands. React with :pushpin: to add a message to the timeline."
            + (f" · {link(web_url, f'{inc.ref} in the web view')}" if web_url else "")
        )]),
    ]
    return message(f"{inc.ref} {inc.severity}: {inc.title}", blocks)


SIMILAR_TITLE = 100


def _past_ref(ref: str, web_base_url: str | None) -> str:
    url = web_page(web_base_url, f"/ui/incidents/{ref}")
    return link(url, ref) if url else f"*{escape(ref)}*"


def history_blocks(learned: Any, web_base_url: str | None = None) -> list[SectionBlock]:
    """Similar past incidents (``usecases.similar.PastIncident``) and a recurrence after CAPA, each with
    why it was chosen: the intro message and ``/incident similar`` show the same."""
    blocks = []
    rec = learned.recurrence
    if rec is not None:
        why = "; ".join(rec.reasons)
        n = rec.days_since
        days = "the day this incident opened" if n == 0 else f"{n} day{'s' if n != 1 else ''} before this opened"
        blocks.append(section(
            f"♻️ *Recurrence after CAPA*: {_past_ref(rec.previous.ref, web_base_url)} "
            f"({escape(truncate(rec.previous.title, SIMILAR_TITLE))}) had a CAPA action marked done {days} "
            f"({escape(why)}). Did that fix hold? Done: "
            + ", ".join(f"#{f.action_id} {escape(truncate(f.title, 80))}" for f in rec.fixes[:3])))
    if learned.similar:
        lines = ["*Similar past incidents*"]
        for p in learned.similar:
            where = f" {channel(p.channel_id, '')}" if p.channel_id else ""
            took = f"resolved in {format_duration(p.ttr_s)}" if p.ttr_s is not None else "resolved"
            capa_text = f"CAPA {p.capa_done}/{p.capa_total} done" if p.capa_total else "no CAPA"
            line = (f"• {_past_ref(p.ref, web_base_url)}{where} {escape(truncate(p.title, SIMILAR_TITLE))} · "
                    f"{utc_text(p.detected_at, seconds=False)} · {took} · {capa_text}")
            if p.root_cause:
                line += f"\n   Root cause: {escape(p.root_cause)}"
            line += f"\n   _Why: {escape('; '.join(p.reasons))}_"
            lines.append(line)
        blocks.append(section("\n".join(lines)))
    return blocks


def with_history(blocks: list[dict[str, Any]], learned: Any, web_base_url: str | None) -> list[dict[str, Any]]:
    """The intro's blocks with the history sections put above its buttons (blocks already serialised)."""
    extra = [b.to_dict() for b in history_blocks(learned, web_base_url)]
    if not extra:
        return blocks
    at = next((n for n, b in enumerate(blocks) if b.get("block_id") == "incident_actions"), len(blocks))
    return [*blocks[:at], *extra, *blocks[at:]]


def announcement(inc: Any) -> dict[str, Any]:
    """The post in INCIDENT_ANNOUNCE_CHANNEL; rendered when delivered, so it can link the channel."""
    where = channel(inc.slack_channel_id, f"#{inc.slack_channel_name or inc.ref}")
    md = (
        f"{SEV_EMOJI.get(inc.severity, '⚪')} *{inc.severity}* {inc.ref}: *{escape(inc.title)}*\n"
        f"Service: {escape(inc.service or 'unknown')} · Detected {when(inc.detected_at)} · Join {where}"
    )
    if inc.pagerduty_url:
        md += f" · {link(inc.pagerduty_url, 'PagerDuty')}"
    return message(f"{inc.severity} {inc.ref}: {inc.title}", [section(md)])


def update(inc: Any, *, icon: str, text_md: str, fallback: str) -> dict[str, Any]:
    """A lifecycle update in the channel. ``text_md`` must already be escaped by the caller."""
    blocks = [
        section(f"{icon} {text_md}"),
        ContextBlock(elements=[MarkdownTextObject(
            text=f"{inc.ref} · {inc.severity} · status *{inc.status}*"
        )]),
    ]
    return message(fallback, blocks)


def plain(text_md: str, fallback: str) -> dict[str, Any]:
    return message(fallback, [section(text_md)])


def channel_ref(inc: Any) -> str:
    return channel(inc.slack_channel_id, f"#{inc.slack_channel_name or inc.ref}")


NUDGE_SNOOZE_ACTION = "status_nudge_snooze"


def status_nudge(inc: Any, *, commander: str | None, quiet_for: str, interval: str) -> dict[str, Any]:
    """The stale-communications reminder: names the commander, offers a snooze of one interval."""
    who = user(commander) if commander else "No commander is set (`/incident role commander @someone`);"
    text = (f"⏰ {who} no status update for {quiet_for}. Post one with `/incident update <text>`: "
            f"it goes to this channel and the announcement thread. Next reminder in {interval}.")
    return message(f"{inc.ref}: no status update for {quiet_for}", [
        section(text),
        ActionsBlock(block_id="status_nudge", elements=[
            ButtonElement(text=f"Snooze {interval}", action_id=NUDGE_SNOOZE_ACTION, value=inc.ref)]),
    ])


REMINDER_MAX_ITEMS = 40  # Block Kit allows 50 blocks a message; the rest is summarised in one line


def reminder_message(owner: str, rows: list[tuple[Any, str, str]], *, today: date,
                     zone_label: str) -> dict[str, Any]:
    """One DM listing every overdue action of one owner; every outside value is mrkdwn-escaped."""
    n = len(rows)
    when = f"{today.isoformat()}" + (f" ({escape(zone_label)})" if zone_label else "")
    blocks: list[Any] = [section(
        f":alarm_clock: You own {n} overdue CAPA action{'s' if n != 1 else ''} as of {when}:")]
    for item, ref, title in rows[:REMINDER_MAX_ITEMS]:
        days = capa.days_overdue(item.due_date, today)
        due = item.due_date.isoformat() if item.due_date else "?"
        parts = [f"*#{item.id}* {escape(item.title)}",
                 f"{escape(ref)} · {escape(title)}",
                 f"due {due} ({days} day{'s' if days != 1 else ''} overdue) · {item.priority} · {item.type}"
                 f" · {item.status}"]
        if item.ticket_url:
            parts[-1] += " · " + link(safe_url(item.ticket_url), "ticket")
        blocks.append(section("\n".join(parts)))
    if n > REMINDER_MAX_ITEMS:
        blocks.append(section(f"…and {n - REMINDER_MAX_ITEMS} more: "
                                       f"`incident-bot actions list --overdue --owner {owner}`"))
    blocks.append(ContextBlock(elements=[MarkdownTextObject(
        text="Done or no longer needed? `/incident actions` in the incident channel, or "
             "`incident-bot actions set ID --status done` (or `wont_do`).")]))
    return message(f"You own {n} overdue CAPA action{'s' if n != 1 else ''}", blocks)
def storm_line(*, count: int, service: str | None, span_s: float, titles: list[str]) -> dict[str, Any]:
    """The one channel line for a burst of PagerDuty incidents that joined this incident (coalesced)."""
    where = f" on *{escape(service)}*" if service else ""
    noun = "PagerDuty incident" if count == 1 else "PagerDuty incidents"
    span = f"{max(1, round(span_s / 60))} min" if span_s >= 60 else f"{max(1, round(span_s))} s"
    md = f"📎 *+{count} {noun}*{where} in the last {span}, linked to this incident (no new channel)"
    if titles:
        md += "\n" + "\n".join(f"• {escape(t[:150])}" for t in titles[:3])
        if count > len(titles[:3]):
            md += f"\n… and {count - len(titles[:3])} more (`/incident status` lists them)"
    return plain(md, fallback=f"+{count} {noun}{' on ' + service if service else ''}")
