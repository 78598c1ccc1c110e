"""An incident as ``incident-bot incidents show`` prints it: plain text from the detail document
(``usecases.json_shapes.incident_detail`` with its similar incidents and recurrence). The demo prints the
same text, so it lives here rather than in the CLI (an entry point imports no other one)."""

from __future__ import annotations

from incident_bot.core.durations import format_duration


def render_text(doc: dict) -> str:
    out = [f"{doc['ref']}  {doc['severity']}  {doc['status']}  {doc['title']}",
           f"service: {doc['service'] or '-'}"]
    if doc["pagerduty"]["url"]:
        out.append(f"pagerduty: {doc['pagerduty']['url']}")
    if doc["slack"]["channel_name"]:
        out.append(f"slack: #{doc['slack']['channel_name']} ({doc['slack']['channel_id']})")
    roles = [f"{role} {p['name'] or p['id']}" for role, p in (doc.get("people") or {}).items() if p]
    if roles:
        out.append("people: " + ", ".join(roles))
    out.append("milestones (UTC):")
    out += [f"  {k.removesuffix('_at'):<16} {v or '-'}" for k, v in doc["milestones"].items()]
    out.append("metrics: " + "  ".join(
        f"{k.removesuffix('_s').upper()}={format_duration(v, unknown='-')}" for k, v in doc["metrics"].items()))
    if doc.get("recurrence"):
        r = doc["recurrence"]
        out.append(f"recurrence: after CAPA of {r['previous']} done {r['days_since']} day(s) before ({r['capa_done']})")
    if doc.get("similar"):
        out.append("similar past incidents: " + ", ".join(f"{p['ref']} ({'; '.join(p['reasons'])})"
                                                            for p in doc["similar"]))
    out.append("timeline:")
    out += [f"  {e['occurred_at']}  {e['source']:<9} {e['kind']:<16} "
            + (f"{e.get('actor_name') or e['actor']}: " if e["actor"] else "") + e.get("text_named", e["text"])
            for e in doc["timeline"]]
    return "\n".join(out)
