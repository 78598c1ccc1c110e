"""``incident-bot actions list|add|set``: the CAPA tracker from the command line."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime

from incident_bot.cli.common import database, print_json, settings_for, table
from incident_bot.config import Settings
from incident_bot.core import capa
from incident_bot.usecases import actions as svc
from incident_bot.usecases import runner
from incident_bot.usecases.incidents import NoSuchIncident
from incident_bot.usecases.rca import RcaError, get_incident

LIST_EPILOG = """\
examples:
  incident-bot actions list --open                  every open or in-progress action
  incident-bot actions list --overdue --owner U0123ABC
  incident-bot actions list --incident INC-42 --format json

Overdue: open or in progress, and the due date has passed in TIMEZONE (the team's time zone).
Listed by priority (high, medium, low), then due date.
"""
ADD_EPILOG = """\
examples:
  incident-bot actions add INC-42 "Alert on checkout 5xx rate" --type preventive --priority high \\
      --owner U0123ABC --due 2026-12-15 --ticket https://jira.example.com/browse/OPS-7
  incident-bot actions add INC-42 "Roll back the pool-size change" --due friday

Due dates: 2026-12-15, today, tomorrow, friday, "next week", "in 2 weeks", "dec 15".
"""
SET_EPILOG = """\
examples:
  incident-bot actions set 7 --status in_progress
  incident-bot actions set 7 --status done
  incident-bot actions set 7 --status wont_do
  incident-bot actions set 7 --owner U0123ABC --due "in 2 weeks" --priority high
  incident-bot actions set 7 --no-owner --no-due

With CAPA_TRACKER set, every change is written to the action's ticket as well.
"""
SYNC_EPILOG = """\
examples:
  incident-bot actions sync                  read every ticket back from the tracker
  incident-bot actions sync --incident INC-42

Applies what webhooks missed (a ticket closed, reopened or re-dated while the bot was down or the
webhook was not set up) and queues tickets for open actions that have none. Runs daily from the
scheduler (CAPA_SYNC_SCHEDULE). Needs CAPA_TRACKER and its settings (docs/trackers.md).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("actions", help="CAPA action items: list, add, change, sync with the tracker",
                       description="Corrective and preventive actions that follow incidents.")
    asub = p.add_subparsers(dest="actions_command", metavar="ACTION", required=True)
    raw = argparse.RawDescriptionHelpFormatter

    ls = asub.add_parser("list", help="list action items", epilog=LIST_EPILOG, formatter_class=raw)
    ls.add_argument("--open", action="store_true", help="only open and in-progress actions")
    ls.add_argument("--overdue", action="store_true", help="only overdue actions (implies --open)")
    ls.add_argument("--owner", metavar="U", help="only actions owned by this Slack user id")
    ls.add_argument("--incident", metavar="REF", help="only actions of this incident")
    ls.add_argument("--format", choices=("table", "json"), default="table")
    ls.set_defaults(func=_list)

    add = asub.add_parser("add", help="add an action item to an incident", epilog=ADD_EPILOG,
                          formatter_class=raw)
    add.add_argument("ref", metavar="REF", help="incident reference, e.g. INC-42")
    add.add_argument("title", help="what will be done")
    add.add_argument("--type", choices=capa.TYPES, default="corrective", help="default: corrective")
    add.add_argument("--priority", choices=capa.PRIORITIES, default="medium", help="default: medium")
    add.add_argument("--owner", metavar="U", help="owner's Slack user id (gets the overdue reminders)")
    add.add_argument("--due", metavar="DATE", help="due date (in the team's time zone)")
    add.add_argument("--ticket", metavar="URL", help="tracking ticket URL")
    add.add_argument("--format", choices=("text", "json"), default="text")
    add.set_defaults(func=_add)

    st = asub.add_parser("set", help="change an action's status, owner, due date or priority", epilog=SET_EPILOG,
                         formatter_class=raw)
    st.add_argument("id", metavar="ID", type=int, help="action id (see 'actions list')")
    st.add_argument("--status", choices=capa.STATUSES)
    st.add_argument("--owner", metavar="U", help="new owner's Slack user id")
    st.add_argument("--no-owner", action="store_true", help="remove the owner")
    st.add_argument("--due", metavar="DATE", help="new due date (in the team's time zone)")
    st.add_argument("--no-due", action="store_true", help="remove the due date")
    st.add_argument("--priority", choices=capa.PRIORITIES)
    st.add_argument("--format", choices=("text", "json"), default="text")
    st.set_defaults(func=_set)

    sy = asub.add_parser("sync", help="reconcile actions from their tickets in the tracker", epilog=SYNC_EPILOG,
                         formatter_class=raw)
    sy.add_argument("--incident", metavar="REF", help="only the tickets of this incident")
    sy.add_argument("--format", choices=("text", "json"), default="text")
    sy.set_defaults(func=_sync)


def _today(settings: Settings) -> date:
    return capa.today_in(settings.tzinfo, datetime.now(UTC))


def _list(args: argparse.Namespace) -> int:
    settings = settings_for(command="actions list")
    today = _today(settings)
    try:
        docs = runner.read(database(settings), svc.action_docs, open_only=args.open, overdue=args.overdue,
                           owner=args.owner, incident_ref=args.incident, today=today)
    except NoSuchIncident as exc:
        print(f"incident-bot: {exc}", file=sys.stderr)
        return 1
    except capa.CapaError as exc:
        print(f"incident-bot: {exc}", file=sys.stderr)
        return 2
    if args.format == "json":
        print_json(docs)
        return 0
    if not docs:
        print("no action items")
        return 0
    print(table(
        [[str(d["id"]), d["incident"], d["priority"], d["type"],
          d["status"] + (" OVERDUE" if d["overdue"] else ""), d["due_date"] or "-", _who(d["owner"]),
          d["title"][:60]] for d in docs],
        ["ID", "INCIDENT", "PRIORITY", "TYPE", "STATUS", "DUE", "OWNER", "TITLE"],
    ))
    return 0


def _who(person: dict | None) -> str:
    """A person as a table shows it: the display name, else the id; ``-`` for nobody."""
    return "-" if not person else person["name"] or person["id"]


def _add(args: argparse.Namespace) -> int:
    settings = settings_for(command="actions add")
    try:
        due = capa.parse_due(args.due, _today(settings)) if args.due else None
        doc = runner.run(database(settings), svc.add_action_doc, args.ref, args.title, args.type, args.priority,
                         args.owner, due, args.ticket, source="cli", tracker=settings.capa_tracker)
    except (capa.CapaError, NoSuchIncident) as exc:
        print(f"incident-bot: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, capa.CapaError) else 1
    if args.format == "json":
        print_json(doc)
    else:
        print(f"added action #{doc['id']} to {doc['incident']}: {doc['title']} ({doc['type']}, "
              f"{doc['priority']}, due {doc['due_date'] or '-'}, owner {_who(doc['owner'])})")
    return 0


def _set(args: argparse.Namespace) -> int:
    settings = settings_for(command="actions set")
    if not (args.status or args.owner or args.no_owner or args.due or args.no_due or args.priority):
        print("incident-bot: nothing to change: give --status, --owner, --due or --priority", file=sys.stderr)
        return 2
    try:
        today = _today(settings)
        due = capa.parse_due(args.due, today) if args.due else None
        doc = runner.run(database(settings), svc.change_action_doc, args.id, status=args.status, today=today,
                         source="cli", tracker=settings.capa_tracker, owner_id=args.owner,
                         clear_owner=args.no_owner, due_date=due, clear_due=args.no_due, priority=args.priority)
    except capa.CapaError as exc:
        print(f"incident-bot: {exc}", file=sys.stderr)
        return 2
    except LookupError as exc:
        print(f"incident-bot: {exc}", file=sys.stderr)
        return 1
    if args.format == "json":
        print_json(doc)
    else:
        print(f"action #{doc['id']} ({doc['incident']}) is now {doc['status']}: {doc['title']} "
              f"({doc['priority']}, due {doc['due_date'] or '-'}, owner {doc['owner'] or '-'})")
    return 0


def _sync(args: argparse.Namespace) -> int:
    """Read the tickets back now (the worker's ``tracker.sync`` job does the same on schedule)."""
    from incident_bot.trackers.apply import reconcile
    from incident_bot.trackers.base import TrackerError
    from incident_bot.trackers.outbound import build

    settings = settings_for("capa_tracker", command="actions sync").require_tracker()
    engine = database(settings)
    ts = build(settings, engine)
    assert ts is not None
    try:
        if args.incident:
            runner.read(engine, get_incident, args.incident)
        tickets = ts.fetch(args.incident)
        counts, queued = runner.run(engine, reconcile, tickets, tracker=ts.name, capa_tracker=settings.capa_tracker,
                                    incident_ref=args.incident)
    except RcaError as exc:
        print(f"incident-bot: {exc}", file=sys.stderr)
        return 1
    except TrackerError as exc:
        print(f"incident-bot: {exc}", file=sys.stderr)
        return 1
    doc = {"tracker": ts.name, "tickets": len(tickets), "applied": counts.get("applied", 0),
           "unchanged": counts.get("unchanged", 0) + counts.get("stale", 0), "unknown": counts.get("unknown", 0),
           "tickets_queued": queued}
    if args.format == "json":
        print_json(doc)
    else:
        print(f"{ts.name}: read {doc['tickets']} ticket(s); {doc['applied']} action(s) changed, "
              f"{doc['unchanged']} unchanged; {queued} ticket(s) queued for actions without one")
    return 0
