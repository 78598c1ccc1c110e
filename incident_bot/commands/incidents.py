"""``incident-bot incidents list|show``."""

from __future__ import annotations

import argparse
import sys

from incident_bot.commands.common import database, print_json, settings_for, table
from incident_bot.core.durations import format_duration
from incident_bot.services.views import incident_detail, incident_dict, list_incidents
from storage import repo
from storage.db import session_scope


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("incidents", help="list and show incidents", description="Read incidents.")
    isub = p.add_subparsers(dest="incidents_command", metavar="ACTION", required=True)
    ls = isub.add_parser("list", help="list incidents (newest first)")
    ls.add_argument("--status", choices=("open", "resolved", "all"), default="open",
                    help="open = triggered/acknowledged/mitigated; resolved = resolved/closed (default: open)")
    ls.add_argument("--format", choices=("table", "json"), default="table")
    ls.set_defaults(func=_list)
    show = isub.add_parser("show", help="one incident with milestones, metrics and timeline")
    show.add_argument("ref", metavar="REF", help="incident reference, e.g. INC-42")
    show.add_argument("--format", choices=("text", "json"), default="text")
    show.set_defaults(func=_show)


def _list(args: argparse.Namespace) -> int:
    engine = database(settings_for(command="incidents list"))
    with session_scope(engine) as s:
        docs = [incident_dict(i) for i in list_incidents(s, args.status)]
    if args.format == "json":
        print_json(docs)
        return 0
    rows = [[d["ref"], d["severity"], d["status"], (d["service"] or "-")[:24], d["title"][:60],
             d["milestones"]["detected_at"] or "-"] for d in docs]
    print(table(rows, ["REF", "SEV", "STATUS", "SERVICE", "TITLE", "DETECTED (UTC)"]) if rows
          else "no incidents")
    return 0


def _show(args: argparse.Namespace) -> int:
    engine = database(settings_for(command="incidents show"))
    with session_scope(engine) as s:
        inc = repo.incident_by_ref(s, args.ref)
        if inc is None:
            print(f"incident-bot: no incident {args.ref}", file=sys.stderr)
            return 1
        doc = incident_detail(s, inc)
    if args.format == "json":
        print_json(doc)
        return 0
    print(render_text(doc))
    return 0


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
    out.append("timeline:")
    out += [f"  {e['occurred_at']}  {e['source']:<9} {e['kind']:<16} "
            + (f"{e.get('actor_name') or e['actor']}: " if e["actor"] else "") + e.get("text_named", e["text"])
            for e in doc["timeline"]]
    return "\n".join(out)
