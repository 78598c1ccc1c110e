#!/usr/bin/env python3
"""Regenerate the README's demo excerpt from a real run of ``incident-bot demo``.

    scripts/readme_demo_excerpt.py           print the excerpt
    scripts/readme_demo_excerpt.py --write   replace it in README.md (between the demo-excerpt markers)
    scripts/readme_demo_excerpt.py --check   exit 1 if README.md differs from a fresh run

The demo runs on a scripted clock, so its transcript is the same on every run; tests/test_demo.py
checks that README.md holds exactly what this script produces.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
START = "<!-- demo-excerpt:start (scripts/readme_demo_excerpt.py --write) -->"
END = "<!-- demo-excerpt:end -->"


def run_demo() -> list[str]:
    sys.path.insert(0, str(ROOT))
    from incident_bot import demo

    lines: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        demo.run(Path(tmp) / "incident-bot-demo", say=lambda text: lines.extend(text.split("\n")))
    return lines


def _block(lines: list[str], first: str, *, stop_blank: bool = True, limit: int | None = None) -> list[str]:
    """From the line that starts with ``first`` to the next blank line (or ``limit`` lines)."""
    at = next(i for i, line in enumerate(lines) if line.startswith(first))
    out = []
    for line in lines[at:]:
        if stop_blank and not line.strip() and out:
            break
        out.append(line)
        if limit and len(out) >= limit:
            break
    return out


def excerpt(lines: list[str]) -> str:
    """The parts a newcomer reads: the webhooks, the Slack commands, the channel, the record, the RCA.
    The demo server's port is the one thing that changes between runs: it is shown as 8080."""
    lines = [re.sub(r"http://127\.0\.0\.1:\d+", "http://127.0.0.1:8080", line) for line in lines]
    parts = [
        _block(lines, "== PagerDuty sends"),
        _block(lines, "== An on-call engineer declares", stop_blank=True),
        _block(lines, "#inc-2-"),
        _block(lines, "INC-2  SEV"),
        _block(lines, "== The RCA", stop_blank=False, limit=22),
    ]
    return "\n…\n".join("\n".join(p).rstrip() for p in parts) + "\n"


def readme_block(text: str) -> str:
    return f"{START}\n```text\n{text}```\n{END}"


def current_readme_excerpt(readme: str) -> str:
    i, j = readme.index(START), readme.index(END) + len(END)
    return readme[i:j]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--write", action="store_true", help="replace the excerpt in README.md")
    g.add_argument("--check", action="store_true", help="exit 1 if README.md is out of date")
    args = p.parse_args()
    block = readme_block(excerpt(run_demo()))
    readme = README.read_text(encoding="utf-8")
    if args.write:
        README.write_text(readme.replace(current_readme_excerpt(readme), block), encoding="utf-8")
        return 0
    if args.check:
        ok = current_readme_excerpt(readme) == block
        print("README demo excerpt is current" if ok else "README demo excerpt is out of date: "
              "run scripts/readme_demo_excerpt.py --write", file=sys.stderr)
        return 0 if ok else 1
    print(block)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
