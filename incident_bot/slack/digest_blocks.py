"""Block Kit for the weekly SEV digest, built with ``slack_sdk.models`` so Slack's limits are checked
before the message is sent (``to_dict()`` raises on a section over 3000 characters). The digest is queued
as an intent (usecases/digest.py) and drawn here by the Slack job (slack/intents.py ``digest``).

The message must read in ten seconds and stay within 50 blocks whatever the week was like: a bad
week with 60 SEV2s lists the first :data:`MAX_MAJOR` and says how many more there are and which
command prints them all. Every list is packed line by line into sections of at most 3000 characters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from incident_bot.slack.mrkdwn import channel, escape, link, truncate, user

MAX_BLOCKS = 50
SECTION_LIMIT = 3000
FIELD_LIMIT = 2000
HEADER_LIMIT = 150
MAX_MAJOR = 20
MAX_OVERDUE = 10
MAX_MISSING_RCA = 30
MAX_RECURRENCES = 10
TITLE_LIMIT = 90
SEV_EMOJI = {"SEV1": "🔴", "SEV2": "🟠", "SEV3": "🟡", "SEV4": "🔵"}
TARGET_ICON = {"met": "✅", "missed": "❌", "pending": "⏳"}


def _md(text: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=text)


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=_md(truncate(text, SECTION_LIMIT)))


def pack(lines: Sequence[str], *, heading: str = "", limit: int = SECTION_LIMIT) -> list[str]:
    """Join lines into as few texts of at most ``limit`` characters as possible (a line never splits,
    an overlong one is truncated)."""
    chunks: list[str] = []
    current = heading
    for line in lines:
        line = truncate(line, limit)
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > limit:
            chunks.append(current)
            current = line
        else:
            current = candidate
    if current:
        chunks.append(current)
    return chunks


def _counts(view: dict[str, Any]) -> str:
    sev = " · ".join(f"{SEV_EMOJI.get(r['severity'], '⚪')} {r['severity']} {r['count']}"
                     for r in view["by_severity"])
    vs = f" {view['total_vs']}" if view.get("total_vs") else ""
    trend = f"\nLast 8 weeks: `{view['spark']['incidents']}`" if view["spark"]["incidents"] else ""
    return f"*{view['total']} incident{'' if view['total'] == 1 else 's'}*{vs}\n{sev}{trend}"


def _metric_field(m: dict[str, Any]) -> MarkdownTextObject:
    text = (f"*{m['label']}* {m['mean_text']}  {m['change']['text']}\n"
            f"p50 {m['p50_text']} · p90 {m['p90_text']} · n={m['n']}")
    return _md(truncate(text, FIELD_LIMIT))


def _major_line(m: dict[str, Any]) -> str:
    where = channel(m["channel_id"], "") if m.get("channel_id") else ""
    ref = link(m["rca_url"], m["ref"]) if m.get("rca_url") else f"*{escape(m['ref'])}*"
    parts = [f"{SEV_EMOJI.get(m['severity'], '⚪')} {ref}" + (f" {where}" if where else ""),
             escape(truncate(m["title"], TITLE_LIMIT))
             + (f" ({escape(m['pagerduty_text'])})" if m.get("pagerduty_text") else ""), m["duration_text"],
             user(m["commander"]) if m.get("commander") else "no commander"]
    if m.get("target_status"):
        parts.append(f"{TARGET_ICON[m['target_status']]} {escape(m['target_text'])}")
    return " · ".join(parts)


def _major(view: dict[str, Any]) -> list[str]:
    major = view["major"]
    if not major:
        return ["*Major incidents (SEV1/SEV2)*: none 🎉"]
    lines = [_major_line(m) for m in major[:MAX_MAJOR]]
    if len(major) > MAX_MAJOR:
        lines.append(f"…and {len(major) - MAX_MAJOR} more: `{view['command']}` lists them all.")
    return pack(lines, heading=f"*Major incidents (SEV1/SEV2)*: {len(major)}")


def _targets(view: dict[str, Any]) -> str:
    share = view["target_share"]
    if not view["targets"]:
        return "*Response targets*: none configured (RESPONSE_TARGETS)"
    pct = "—" if share["pct"] is None else f"{share['pct']}%"
    lines = [f"*Response targets*: {pct} within target ({share['met']} met, {share['missed']} missed)"
             + (f" {share['change_text']}" if share.get("change_text") else "")
             + (f" · last 8 weeks `{view['spark']['share']}`" if view["spark"]["share"] else "")]
    for t in view["targets"]:
        still_open = f", {t['pending']} open" if t["pending"] else ""
        lines.append(f"{t['severity']} (TTR ≤ {t['ttr_text']}, TTD ≤ {t['ttd_text']}): "
                     f"{t['met']} met, {t['missed']} missed{still_open}")
    return "\n".join(lines)


def _capa(view: dict[str, Any]) -> list[str]:
    c = view["capa"]
    lines = []
    for a in c["overdue_items"][:MAX_OVERDUE]:
        owner = user(a["owner"]) if a.get("owner") else "no owner"
        late = f" ({a['days_overdue']} days late)" if a.get("days_overdue") else ""
        ref = f" [{escape(a['incident_ref'])}]" if a.get("incident_ref") else ""
        ticket = f" · {link(a['ticket_link'], escape(a['ticket_label']))}" if a.get("ticket_link") else ""
        lines.append(f"• #{a['id']}{ref} {escape(truncate(a['title'], TITLE_LIMIT))} — {owner}, "
                     f"due {a['due']}{late}{ticket}")
    if c["overdue"] > MAX_OVERDUE:
        lines.append(f"…and {c['overdue'] - MAX_OVERDUE} more: `{view['command']}`")
    heading = f"*CAPA*: {c['opened']} opened · {c['done']} done · {c['overdue']} overdue"
    return pack(lines, heading=heading)


def _services_and_rca(view: dict[str, Any]) -> str:
    services = " · ".join(f"{escape(s['service'])} {s['count']}" for s in view["top_services"]) or "—"
    missing = view["missing_rca"]
    refs = ", ".join(link(r["url"], r["ref"]) if r["url"] else escape(r["ref"])
                     for r in view["missing_rca_links"][:MAX_MISSING_RCA])
    if len(missing) > MAX_MISSING_RCA:
        refs += f" …and {len(missing) - MAX_MISSING_RCA} more"
    return (f"*Top services*: {services}\n"
            f"*Missing an RCA* ({len(missing)}): {refs or 'none'}")


def _keeps_breaking(view: dict[str, Any]) -> list[str]:
    kb = view.get("keeps_breaking")
    if not kb:
        return []
    services = " · ".join(f"{escape(s['service'])} {s['incidents']} (MTBF {s['mtbf_text']})" for s in kb["services"])
    lines = [f"Repeated services (4 weeks): {services or 'none'}", f"CAPA effectiveness: {escape(kb['capa_text'])}"]
    lines += [f"♻️ *{escape(r['ref'])}* {escape(truncate(r['title'], TITLE_LIMIT))} recurs {escape(r['previous'])} "
              f"{r['days_since']} days after its CAPA was done" for r in kb["recurrences"][:MAX_RECURRENCES]]
    if len(kb["recurrences"]) > MAX_RECURRENCES:
        lines.append(f"…and {len(kb['recurrences']) - MAX_RECURRENCES} more: `{view['command']}`")
    return pack(lines, heading="*What keeps breaking*")


def _open(view: dict[str, Any]) -> list[str]:
    rows = view.get("open_incidents") or []
    if not rows:
        return ["*Open incidents*: none"]
    lines = [f"{SEV_EMOJI.get(o['severity'], '⚪')} "
             + (link(o["rca_url"], o["ref"]) if o.get("rca_url") else f"*{escape(o['ref'])}*")
             + (f" {channel(o['channel_id'], '')}" if o.get("channel_id") else "")
             + f" · {escape(truncate(o['title'], TITLE_LIMIT))} · {o['status']} for {o['age_text']}"
             for o in rows[:MAX_MAJOR]]
    return pack(lines, heading=f"*Open incidents*: {len(rows)}")


def digest_blocks(view: dict[str, Any]) -> list[Block]:
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=truncate(f"📊 SEV digest · {view['label']}", HEADER_LIMIT),
                                         emoji=True)),
        ContextBlock(elements=[_md(f"{view['period_text']} · {escape(view['timezone'])}"
                                   + (f" · *{escape(view['partial_text'])}*" if view.get("partial") else ""))]),
        _section(_counts(view)),
        SectionBlock(fields=[_metric_field(m) for m in view["metrics"]]),
        ContextBlock(elements=[_md(
            "MTT* = mean over incidents resolved in the period, vs the period before."
            + (f" MTTR last 8 weeks: `{view['spark']['mttr']}`" if view["spark"]["mttr"] else ""))]),
        DividerBlock(),
    ]
    blocks += [_section(t) for t in _major(view)]
    blocks += [_section(t) for t in _open(view)]
    blocks.append(_section(_targets(view)))
    blocks += [_section(t) for t in _capa(view)]
    blocks += [_section(t) for t in _keeps_breaking(view)]
    blocks.append(_section(_services_and_rca(view)))
    footer = ContextBlock(elements=[_md(f"Full digest: `{view['command']} --format html`"
                                        + (f" · {link(view['web_url'], 'in the web view')}" if view.get("web_url")
                                           else ""))])
    if len(blocks) >= MAX_BLOCKS:  # cannot happen with the caps above; never let Slack refuse the post
        blocks = blocks[: MAX_BLOCKS - 1]
    blocks.append(footer)
    return blocks


def fallback_text(view: dict[str, Any]) -> str:
    sev = ", ".join(f"{r['severity']} {r['count']}" for r in view["by_severity"] if r["count"])
    mttr = next(m for m in view["metrics"] if m["key"] == "mttr_s")
    return truncate(f"SEV digest {view['label']}: {view['total']} incidents ({sev or 'none'}), "
                    f"MTTR {mttr['mean_text']}", 3000)


def digest_message(view: dict[str, Any]) -> dict[str, Any]:
    """``{"text", "blocks"}`` for ``chat.postMessage``; blocks validated now (raises on a limit)."""
    return {"text": fallback_text(view), "blocks": [b.to_dict() for b in digest_blocks(view)]}
