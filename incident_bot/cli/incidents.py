"""``incident-bot incidents list|show|similar|merge|unlink``."""

from __future__ import annotations

import argparse
import sys

from incident_bot.cli.common import database, print_json, settings_for, table
from incident_bot.core.durations import format_duration
from incident_bot.core.incident_text import render_text
from incident_bot.usecases import runner
from incident_bot.usecases.incidents import NoSuchIncident
from incident_bot.usecases.json_shapes import incident_docs, incident_show
from incident_bot.usecases.similar import similar_doc


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
    sim = isub.add_parser("similar", help="similar past incidents (why: same service, shared words) and "
                                          "recurrence after CAPA",
                          description="Resolved incidents detected before REF: same service first, then the "
                                      "text score (2 per word both titles share, 1 per other shared word), then "
                                      "the most recent. See the README, 'Similar incidents and recurrence'.")
    sim.add_argument("ref", metavar="REF", help="incident reference, e.g. INC-42")
    sim.add_argument("--limit", type=_limit, default=3, metavar="N", help="how many (1-50, default 3)")
    sim.add_argument("--format", choices=("table", "json"), default="table")
    sim.set_defaults(func=_similar)
    merge = isub.add_parser("merge", help="merge incident B into incident A (alert storms split in two)",
                            description="B's PagerDuty incidents are linked to A; B is closed as a duplicate "
                                        "and counted once in metrics.")
    merge.add_argument("target", metavar="A")
    merge.add_argument("other", metavar="B")
    merge.set_defaults(func=_merge)
    unlink = isub.add_parser("unlink", help="split a linked PagerDuty incident out into its own incident")
    unlink.add_argument("ref", metavar="REF")
    unlink.add_argument("pagerduty_id", metavar="PAGERDUTY_ID")
    unlink.set_defaults(func=_unlink)


def _list(args: argparse.Namespace) -> int:
    engine = database(settings_for(command="incidents list"))
    docs = runner.read(engine, incident_docs, args.status)
    if args.format == "json":
        print_json(docs)
        return 0
    rows = [[d["ref"], d["severity"], d["status"], (d["service"] or "-")[:24], d["title"][:60],
             d["milestones"]["detected_at"] or "-"] for d in docs]
    print(table(rows, ["REF", "SEV", "STATUS", "SERVICE", "TITLE", "DETECTED (UTC)"]) if rows
          else "no incidents")
    return 0


def _limit(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 50:
        raise argparse.ArgumentTypeError("must be a whole number from 1 to 50")
    return int(text)


def _show(args: argparse.Namespace) -> int:
    settings = settings_for(command="incidents show")
    engine = database(settings)
    try:
        doc = runner.read(engine, incident_show, args.ref, window=settings.recurrence_delta)
    except NoSuchIncident as exc:
        print(f"incident-bot: {exc}", file=sys.stderr)
        return 1
    if args.format == "json":
        print_json(doc)
        return 0
    print(render_text(doc))
    return 0


def _similar(args: argparse.Namespace) -> int:
    settings = settings_for(command="incidents similar")
    engine = database(settings)
    try:
        doc = runner.read(engine, similar_doc, args.ref, window=settings.recurrence_delta, limit=args.limit)
    except NoSuchIncident as exc:
        print(f"incident-bot: {exc}", file=sys.stderr)
        return 1
    if args.format == "json":
        print_json(doc)
        return 0
    print(similar_text(doc))
    return 0


def similar_text(doc: dict) -> str:
    rows = [[p["ref"], str(p["score"]), (p["service"] or "-")[:20], p["title"][:50], (p["detected_at"] or "-")[:10],
             format_duration(p["ttr_s"], unknown="-"), f"{p['capa']['done']}/{p['capa']['total']}",
             "; ".join(p["reasons"])] for p in doc["similar"]]
    out = [table(rows, ["REF", "SCORE", "SERVICE", "TITLE", "DETECTED", "TTR", "CAPA DONE", "WHY"]) if rows
           else f"no similar past incident for {doc['ref']}"]
    out += [f"  {p['ref']} root cause: {p['root_cause']}" for p in doc["similar"] if p["root_cause"]]
    rec = doc["recurrence"]
    if rec:
        out.append(f"recurrence: {doc['ref']} opened {rec['days_since']} day(s) after CAPA of {rec['previous']} "
                   f"was marked done ({rec['capa_done']}; actions {', '.join(f'#{a}' for a in rec['actions'])}; "
                   f"{'; '.join(rec['reasons'])})")
    return "\n".join(out)


def _merge(args: argparse.Namespace) -> int:
    from incident_bot.usecases import regroup

    engine = database(settings_for(command="incidents merge"))
    try:
        done = runner.run(engine, regroup.merge_refs, args.target, args.other)
    except NoSuchIncident as exc:
        print(f"incident-bot: {exc}", file=sys.stderr)
        return 1
    print(done.text, file=sys.stdout if done.ok else sys.stderr)
    return 0 if done.ok else 1


def _unlink(args: argparse.Namespace) -> int:
    from incident_bot.usecases import regroup

    settings = settings_for(command="incidents unlink")
    engine = database(settings)
    try:
        done = runner.run(engine, regroup.unlink_ref, settings, args.ref, args.pagerduty_id)
    except NoSuchIncident as exc:
        print(f"incident-bot: {exc}", file=sys.stderr)
        return 1
    print(done.text, file=sys.stdout if done.ok else sys.stderr)
    return 0 if done.ok else 1
