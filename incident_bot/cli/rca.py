"""``incident-bot rca REF``: export a blameless RCA, and edit its narrative fields."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from incident_bot.cli.common import database, settings_for
from incident_bot.core.capa import today_in
from incident_bot.core.rca import NARRATIVE_KEYS
from incident_bot.rendering import RenderError
from incident_bot.usecases import rca, runner

EPILOG = f"""\
narrative fields: {", ".join(NARRATIVE_KEYS)}

examples:
  incident-bot rca INC-42                                  Markdown to stdout
  incident-bot rca INC-42 --format html -o INC-42.html     standalone, printable HTML page
  incident-bot rca INC-42 --set summary="Checkout returned 500s for 38 minutes." \\
                          --set trigger="Config push at 14:02 UTC" --set-file root_causes=why.md
  incident-bot rca INC-42 --set lucky=                     clear a field
  incident-bot rca INC-42 --set users_affected="~40% of searches" --set customer_facing=yes \
                          --set slo_budget_spent="18% of the 30-day search availability budget"
  incident-bot rca INC-42 --status review --reviewer U0LEAD  send it for review (draft -> review)
  incident-bot rca INC-42 --status final                   sign it off (refused while the check finds gaps)
  incident-bot rca INC-42 --status final --override "root cause action tracked in OPS-12"

Document status: draft -> review (needs a reviewer) -> final; --status draft reopens it. "final" is
refused until the quality check passes (required sections filled, impact fields set, a corrective or
preventive action when a root cause is stated, every action with an owner and a due date, no blameful
phrasing), unless --override REASON is given: the reason is stored and recorded on the timeline.
The document lists what is still missing at its top while it is not final.

Empty sections are rendered as prompts to fill. Blameful phrasing in the narrative (people named as
the cause, "human error", "should have"...) is reported on stderr; it never stops the export. Team
templates: RCA_TEMPLATES_DIR (rca.md.j2, rca.html.j2), rendered under a budget (5 s, 5 M characters);
one that fails or runs over falls back to the default, with a warning. A narrative field over 3,000
characters cannot be edited in Slack's RCA form: use --set-file. Extra blameless rules: BLAMELESS_WORDS_FILE.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "rca", help="export a blameless RCA (Markdown or HTML) and edit its narrative",
        description="Render the RCA of an incident: header, summary, impact, UTC timeline with milestones, "
                    "detection, response, recovery, root causes, trigger, lessons, CAPA actions, links.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("ref", metavar="REF", help="incident reference, e.g. INC-42")
    p.add_argument("--format", choices=("md", "html"), default="md", help="output format (default: md)")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=TEXT", dest="sets",
                   help="set a narrative field before exporting (repeatable; empty TEXT clears it)")
    p.add_argument("--set-file", action="append", default=[], metavar="FIELD=PATH", dest="set_files",
                   help="set a narrative field from a file (repeatable; '-' reads stdin)")
    p.add_argument("--status", choices=("draft", "review", "final"),
                   help="move the document to this status before exporting")
    p.add_argument("--reviewer", action="append", default=[], metavar="USER",
                   help="Slack user id of a reviewer (repeatable; needed for --status review)")
    p.add_argument("--author", action="append", default=[], metavar="USER",
                   help="Slack user id of an author (repeatable; recorded with a status change)")
    p.add_argument("--override", metavar="REASON", help="with --status final: sign off despite open findings")
    p.add_argument("--no-check", action="store_true", help="skip the blameless-language check")
    p.add_argument("--quiet", action="store_true", help="only write the document (no summary on stderr)")
    p.set_defaults(func=run)


def _pairs(items: list[str], what: str) -> list[tuple[str, str]]:
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{what} expects FIELD=VALUE, got {item!r}")
        out.append((key.strip(), value))
    return out


def collect_updates(sets: list[str], set_files: list[str]) -> dict[str, str]:
    updates = dict(_pairs(sets, "--set"))
    for key, path in _pairs(set_files, "--set-file"):
        try:
            source = sys.stdin if path == "-" else None
            updates[key] = source.read() if source else Path(path).expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"--set-file {key}: cannot read {path}: {exc.strerror or exc}") from None
    return updates


def run(args: argparse.Namespace) -> int:
    settings = settings_for(command="rca")
    try:
        updates = collect_updates(args.sets, args.set_files)
    except ValueError as exc:
        print(f"incident-bot: {exc}", file=sys.stderr)
        return 2
    engine = database(settings)
    today = today_in(settings.tzinfo, datetime.now(UTC))
    try:
        if updates:
            changed = runner.run(engine, rca.set_narrative, args.ref, updates)
            if not args.quiet:
                print(f"{args.ref}: updated {', '.join(changed) or 'nothing (no change)'}", file=sys.stderr)
        if args.status:
            status, open_findings = runner.run(
                engine, rca.set_status, args.ref, args.status, reviewers=[r.strip().upper() for r in args.reviewer],
                authors=[a.strip().upper() for a in args.author], override=args.override)
            if not args.quiet:
                extra = f" with {len(open_findings)} open finding(s), overridden" if open_findings else ""
                print(f"{args.ref}: RCA is now {status}{extra}", file=sys.stderr)
        elif args.override or args.reviewer:
            print("incident-bot: --reviewer and --override go with --status", file=sys.stderr)
            return 2
        result, findings, problems = runner.read(
            engine, rca.export_checked, args.ref, args.format, settings.rca_templates_dir, today=today,
            window=settings.recurrence_delta, words_file=settings.blameless_words_file, check=not args.no_check)
    except rca.RcaError as exc:
        print(f"incident-bot: {exc}", file=sys.stderr)
        return 1
    except RenderError as exc:
        print(f"incident-bot: cannot render the RCA: {exc}", file=sys.stderr)
        return 1
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    for problem in problems:
        print(f"warning: blameless rules: {problem}", file=sys.stderr)
    for f in findings:
        print(f"blameless: {f.format()}", file=sys.stderr)
    if args.output:
        Path(args.output).expanduser().write_text(result.text, encoding="utf-8")
        if not args.quiet:
            print(f"wrote {args.output} ({args.format}, {len(result.text)} characters"
                  + (f", {len(findings)} blameless warning(s)" if findings else "") + ")", file=sys.stderr)
    else:
        sys.stdout.write(result.text)
    return 0
