"""Block Kit for the ephemeral answers, the declare modal and App Home (slack_sdk.models, validated).

Long content is paged or cut so a message never passes 50 blocks or 3000 characters a section,
and a modal or Home never passes 100 blocks.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import (
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    PlainTextObject,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from incident_bot.core.durations import format_duration
from incident_bot.core.lifecycle import MILESTONES
from incident_bot.slack.messages import SEV_EMOJI, STATUS_EMOJI, section, when
from incident_bot.slack.mrkdwn import escape, link, row_md, truncate, truncate_md, user

TIMELINE_PAGE = 40  # rows a page: 40 sections + header/context/buttons stay under 50 blocks
DECLARE_CALLBACK = "declare_incident"


def _dicts(blocks: list[Any]) -> list[dict[str, Any]]:
    return [b.to_dict() for b in blocks]


def elapsed(start: datetime | None, now: datetime) -> str:
    if start is None:
        return "—"
    return format_duration(max(0, int((now - start).total_seconds())))


def status_card(inc: Any, now: datetime) -> list[dict[str, Any]]:
    roles = " · ".join(f"{r}: {user(getattr(inc, f'{r}_id')) if getattr(inc, f'{r}_id') else '—'}"
                       for r in ("commander", "comms", "scribe"))
    milestones = "\n".join(
        f"{'✅' if getattr(inc, m) else '▫️'} {m.removesuffix('_at').replace('_', ' ')}: {when(getattr(inc, m))}"
        for m in MILESTONES
    )
    head = (f"{SEV_EMOJI.get(inc.severity, '')} *{inc.ref}* · *{inc.severity}* · "
            f"{STATUS_EMOJI.get(inc.status, '')} {inc.status}\n*{escape(inc.title)}*")
    facts = f"Service: {escape(inc.service or 'unknown')} · Elapsed: {elapsed(inc.impact_started_at, now)}"
    if inc.pagerduty_url:
        facts += f" · {link(inc.pagerduty_url, 'PagerDuty')}"
    blocks = [section(head), section(facts), section(f"*Roles*  {roles}"), section(f"*Milestones*\n{milestones}")]
    return _dicts(blocks)


def help_blocks(command: str, commands: list[tuple[str, str]]) -> list[dict[str, Any]]:
    lines = "\n".join(f"`{command} {usage}` — {what}" for usage, what in commands)
    return _dicts([section(f"*{command}* — incident commands\n{truncate(lines, 2900)}"),
                   ContextBlock(elements=[MarkdownTextObject(
                       text="React with :pushpin: on any message in an incident channel to add it to the timeline.")])])


def timeline_page(inc: Any, rows: list[Any], page: int, command: str) -> tuple[str, list[dict[str, Any]]]:
    pages = max(1, -(-len(rows) // TIMELINE_PAGE))
    page = min(max(1, page), pages)
    chunk = rows[(page - 1) * TIMELINE_PAGE: page * TIMELINE_PAGE]
    blocks: list[Any] = [section(f"*{inc.ref} timeline* (UTC) — page {page} of {pages}, {len(rows)} entries")]
    for r in chunk:
        mark = "⭐ " if r.milestone else ""
        who = f" — {user(r.actor)}" if r.actor and r.actor.isalnum() and r.actor.startswith(("U", "W")) else (
            f" — {escape(r.actor)}" if r.actor else "")
        blocks.append(section(f"`{r.occurred_at:%m-%d %H:%M:%S}` {mark}*{escape(r.kind)}*{who}\n"
                              f"{truncate_md(row_md(r.source, r.text), 2500)}"))
    if pages > 1:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(
            text=f"More: `{command} timeline {page + 1 if page < pages else 1}` · all of it: "
                 f"`incident-bot incidents show {inc.ref}`")]))
    return f"{inc.ref} timeline, page {page}/{pages}", _dicts(blocks)


def declare_modal(*, title: str = "", description: str = "", private_metadata: str = "") -> dict[str, Any]:
    sev_options = [Option(value=s, label=f"{SEV_EMOJI[s]} {s}") for s in ("SEV1", "SEV2", "SEV3", "SEV4")]
    view = View(
        type="modal", callback_id=DECLARE_CALLBACK, private_metadata=private_metadata,
        title=PlainTextObject(text="Declare an incident"), submit=PlainTextObject(text="Declare"),
        close=PlainTextObject(text="Cancel"),
        blocks=[
            InputBlock(block_id="title", label="Title", element=PlainTextInputElement(
                action_id="value", initial_value=truncate(title, 150) or None, max_length=150,
                placeholder="Checkout errors spiking")),
            InputBlock(block_id="severity", label="Severity", element=StaticSelectElement(
                action_id="value", options=sev_options, initial_option=sev_options[2])),
            InputBlock(block_id="service", label="Service", optional=True, element=PlainTextInputElement(
                action_id="value", max_length=200, placeholder="checkout-api")),
            InputBlock(block_id="description", label="Description", optional=True, element=PlainTextInputElement(
                action_id="value", multiline=True, max_length=2900, initial_value=truncate(description, 2900) or None)),
            InputBlock(block_id="impact_started", label="Impact started at", optional=True,
                       hint="e.g. 14:54 (your time zone), 2026-11-26 14:54, or 25m ago",
                       element=PlainTextInputElement(action_id="value", max_length=64)),
        ],
    )
    return view.to_dict()


def home_view(open_incidents: list[Any], actions: list[Any], now: datetime) -> dict[str, Any]:
    blocks: list[Any] = [HeaderBlock(text="Open incidents")]
    if not open_incidents:
        blocks.append(section("No open incidents. :relieved:"))
    for inc in open_incidents[:40]:
        commander = user(inc.commander_id) if inc.commander_id else "no commander"
        where = f"<#{inc.slack_channel_id}>" if inc.slack_channel_id else inc.ref
        blocks.append(section(f"{SEV_EMOJI.get(inc.severity, '')} *{inc.ref}* {escape(truncate(inc.title, 200))} · "
                              f"{inc.status} · {elapsed(inc.impact_started_at, now)} · {commander} · {where}"))
    if len(open_incidents) > 40:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(
            text=f"and {len(open_incidents) - 40} more: `incident-bot incidents list`")]))
    blocks += [DividerBlock(), HeaderBlock(text="Your open CAPA actions")]
    if not actions:
        blocks.append(section("Nothing assigned to you."))
    for a in actions[:40]:
        due = f"due {a.due_date:%Y-%m-%d}" if a.due_date else "no due date"
        title = escape(truncate(a.title, 300))
        blocks.append(section(f"#{a.id} *{title}* · {a.type} · {a.priority} · {due} · {a.status}"))
    return View(type="home", blocks=blocks).to_dict()
