"""Blameless-language check for the RCA narrative: it warns, it never blocks.

Why a data file and not code: the words a team wants flagged change with its culture and language.
The defaults live in ``incident_bot/data/blameless.txt`` (its header documents the format); a team
adds its own rules with ``BLAMELESS_WORDS_FILE``. A broken rule is reported and skipped, because a
typo in a word list must never stop anyone exporting an RCA.

"People named as the cause" is the hard part: "caused by Bob" is blameful, "caused by Kafka" is not,
and both are a capitalised word. ``{person}`` matches only what is surely a person (a Slack mention,
a known name, a role such as "the engineer"); ``{name}`` adds any capitalised word that is not on a
``!notperson`` line, and the default rules use it only next to verbs that are about people.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

CHECKED_FIELDS: tuple[str, ...] = (
    "summary", "impact", "detection", "response", "recovery", "root_causes", "trigger",
    "went_well", "went_wrong", "lucky",
)
_MENTIONS = r"<@[UW][A-Z0-9]+(?:\|[^>]*)?>|(?<![\w.])@[A-Za-z0-9][\w.-]*"
_ROLES = (
    r"(?:the |an? |our |one )?(?:engineer|developer|dev|operator|on-?call(?: engineer)?|sre"
    r"|admin(?:istrator)?|dba|reviewer|committer|intern|new hire|contractor)|someone|somebody|he|she"
)
_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass(frozen=True)
class Rule:
    pattern: str
    suggestion: str
    origin: str = ""


@dataclass(frozen=True)
class Rules:
    rules: tuple[Rule, ...]
    not_people: frozenset[str] = frozenset()
    problems: tuple[str, ...] = ()  # rules that could not be read; reported, then skipped

    def __add__(self, other: Rules) -> Rules:
        return Rules(self.rules + other.rules, self.not_people | other.not_people,
                     self.problems + other.problems)


@dataclass(frozen=True)
class Finding:
    field: str
    sentence: str
    phrase: str
    suggestion: str

    def format(self) -> str:
        return f'{self.field}: "{self.sentence}" — "{self.phrase}": {self.suggestion}'


def _expand(pattern: str, people: Iterable[str], not_people: Iterable[str]) -> str:
    names = sorted({p.strip() for p in people if p and len(p.strip()) > 1}, key=len, reverse=True)
    known = "|".join(re.escape(n) for n in names)
    person = f"(?:{_MENTIONS}|{_ROLES}" + (f"|{known}" if known else "") + ")"
    stop = "|".join(re.escape(w) for w in sorted(not_people, key=len, reverse=True)) or "(?!)"
    # A capitalised word (or two: "Bob Smith"), case-sensitive even though the rule is not.
    cap = rf"(?-i:(?!(?:{stop})\b)[A-Z][a-z]+(?:\s(?!(?:{stop})\b)[A-Z][a-z]+)?)"
    return pattern.replace("{person}", person).replace("{name}", f"(?:{person}|{cap})")


def parse_rules(text: str, origin: str = "blameless.txt") -> Rules:
    """Read rules in the data-file format; bad lines become ``problems`` naming the file and line."""
    rules: list[Rule] = []
    not_people: set[str] = set()
    problems: list[str] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip("\r\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.startswith("!notperson"):
            not_people.update(line.split()[1:])
            continue
        pattern, sep, suggestion = line.partition("\t")
        if not sep or not pattern.strip() or not suggestion.strip():
            problems.append(f"{origin}:{lineno}: expected PATTERN<TAB>SUGGESTION")
            continue
        try:
            re.compile(_expand(pattern.strip(), ["Sample Name"], ["Sample"]), re.IGNORECASE)
        except re.error as exc:
            problems.append(f"{origin}:{lineno}: bad pattern {pattern.strip()!r}: {exc}")
            continue
        rules.append(Rule(pattern.strip(), suggestion.strip(), f"{origin}:{lineno}"))
    return Rules(tuple(rules), frozenset(not_people), tuple(problems))


def default_rules() -> Rules:
    text = resources.files("incident_bot").joinpath("data", "blameless.txt").read_text(encoding="utf-8")
    return parse_rules(text, "blameless.txt")


def load_rules(extra_file: str | None = None) -> Rules:
    """The packaged rules plus a team's file (``BLAMELESS_WORDS_FILE``), which adds to them."""
    rules = _default_rules_cached()
    if not extra_file:
        return rules
    path = Path(extra_file).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return rules + Rules((), frozenset(), (f"BLAMELESS_WORDS_FILE {path}: {exc.strerror or exc}",))
    return rules + parse_rules(text, str(path))


@lru_cache(maxsize=1)
def _default_rules_cached() -> Rules:
    return default_rules()


@lru_cache(maxsize=64)
def _compiled(rules: Rules, people: tuple[str, ...]) -> tuple[tuple[re.Pattern[str], Rule], ...]:
    out = []
    for rule in rules.rules:
        try:
            rx = re.compile(rf"(?<!\w)(?:{_expand(rule.pattern, people, rules.not_people)})(?!\w)",
                            re.IGNORECASE)
        except re.error:
            continue  # a name that makes the pattern invalid cannot happen (names are escaped); be safe
        out.append((rx, rule))
    return tuple(out)


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SPLIT.split(text) if s and s.strip()]


def _as_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "\n".join(str(v) for v in value)
    return "" if value is None else str(value)


def check(narrative: Mapping[str, Any], *, rules: Rules | None = None, people: Iterable[str] = (),
          fields: Iterable[str] = CHECKED_FIELDS) -> list[Finding]:
    """Blameful phrasing in the narrative, one finding per phrase, in field and sentence order.

    ``people``: names known to be people (Slack display and real names, responders); they make
    "because Alex ran..." a hit even where the capitalised-word heuristic would not reach.
    """
    known = tuple(sorted(set(people)))
    compiled = _compiled(rules or _default_rules_cached(), known)
    named_rx = _names_rx(known)
    findings: list[Finding] = []
    for field in fields:
        for sentence in sentences(_as_text(narrative.get(field))):
            hits = []
            for rx, rule in compiled:
                for m in rx.finditer(sentence):
                    hits.append((m.start(), -(m.end() - m.start()), m.group(0), rule))
            end = -1
            flagged: list[Finding] = []
            for start, neg_len, phrase, rule in sorted(hits, key=lambda h: (h[0], h[1])):
                if start < end:
                    continue  # overlaps a longer or earlier hit: one warning per phrase is enough
                end = start - neg_len
                flagged.append(Finding(field, sentence, phrase, rule.suggestion))
            if flagged and named_rx is not None:
                # "Bob made a human error": the phrase is flagged, and so is the person it is pinned on.
                covered = " ".join(f.phrase for f in flagged).lower()
                for name in dict.fromkeys(m.group(0) for m in named_rx.finditer(sentence)):
                    if name.lower() not in covered:
                        flagged.insert(0, Finding(field, sentence, name, NAMED_SUGGESTION))
            findings.extend(flagged)
    return findings


NAMED_SUGGESTION = ("A person is named in a sentence about a mistake: describe the role and the conditions "
                    "(\"the on-call engineer, without a pre-deploy check, ...\") instead of the person.")


@lru_cache(maxsize=64)
def _names_rx(people: tuple[str, ...]) -> re.Pattern[str] | None:
    # Capitalised names only: "bob" the Slack handle is written "Bob" in prose, and "will" is a verb.
    names = sorted({p.strip() for p in people if p and len(p.strip()) > 1 and p.strip()[0].isupper()},
                   key=len, reverse=True)
    if not names:
        return None
    # Case-sensitive: a name in prose is capitalised; "will" is not Will.
    return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(n) for n in names) + r")(?!\w)")
