"""``incident-bot inbox list|retry``: see stored inputs, and replay the ones the fold parked as failed."""

from __future__ import annotations

import argparse

from incident_bot.cli.common import database, print_json, settings_for, table


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inbox", help="stored inputs: list them, replay failed ones",
                       description="Every signed PagerDuty and Slack input is stored in the inbox before it "
                                   "is answered, then applied by the fold worker. A row that failed "
                                   "FOLD_MAX_ATTEMPTS times is parked as failed with its error.")
    isub = p.add_subparsers(dest="inbox_command", metavar="ACTION", required=True)
    ls = isub.add_parser("list", help="newest rows first (default: pending and failed)")
    ls.add_argument("--failed", action="store_true", help="only rows parked as failed")
    ls.add_argument("--status", choices=["pending", "done", "failed", "deferred"], help="only rows in this state")
    ls.add_argument("--limit", type=int, default=50, help="at most this many rows (default 50)")
    ls.add_argument("--format", choices=["table", "json"], default="table")
    ls.set_defaults(func=_list)
    rt = isub.add_parser("retry", help="put failed rows back in the queue (fresh attempts)")
    which = rt.add_mutually_exclusive_group(required=True)
    which.add_argument("id", nargs="?", type=int, help="the inbox row id (from `inbox list --failed`)")
    which.add_argument("--all", action="store_true", help="every failed row")
    rt.set_defaults(func=_retry)


def _list(args: argparse.Namespace) -> int:
    from incident_bot.pipeline import inbox
    from incident_bot.usecases import runner

    engine = database(settings_for(command="inbox list"))
    status = "failed" if args.failed else args.status
    rows, counts = runner.read(engine, inbox.listing, status=status, limit=args.limit)
    docs = [{"id": r.id, "source": r.source, "event_id": r.event_id, "event_type": r.event_type,
             "status": r.status, "attempts": r.attempts, "error": r.last_error,
             "received_at": r.received_at.isoformat().replace("+00:00", "Z")} for r in rows]
    if args.format == "json":
        print_json({"counts": counts, "rows": docs})
        return 0
    print(" ".join(f"{k}={v}" for k, v in counts.items()))
    if not docs:
        print("no rows")
        return 0
    print(table([[str(d["id"]), d["source"], d["event_type"], d["status"], str(d["attempts"]),
                  d["received_at"], (d["error"] or "")[:80]] for d in docs],
                ["id", "source", "type", "status", "attempts", "received", "error"]))
    return 0


def _retry(args: argparse.Namespace) -> int:
    from incident_bot.pipeline import inbox
    from incident_bot.usecases import runner

    engine = database(settings_for(command="inbox retry"))
    n = runner.run(engine, inbox.retry, row_id=None if args.all else args.id)
    if n == 0 and not args.all:
        print(f"incident-bot: inbox row {args.id} is not a failed row (see: incident-bot inbox list --failed)")
        return 1
    print(f"{n} row(s) queued again; a running worker applies them")
    return 0
