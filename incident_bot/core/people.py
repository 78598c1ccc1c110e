"""Who a person is, for readers: ids are the keys, display names are only shown. Pure.

A :class:`Directory` is a snapshot of the user directory (the Slack users cache, PagerDuty user
names) taken once per document. Every renderer asks it for a name; an id it does not know degrades to
the id itself, never to an error or an empty cell.

JSON shape (stable, documented in the README): a person is ``{"id": "U0ADA", "name": "Ada"}``;
``name`` is null when the directory has no name for the id; a missing person is ``null``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# A Slack user or bot id (U…, W…, B…), as stored in actor and owner columns.
SLACK_ID = re.compile(r"^[UWB][A-Z0-9]{2,}$")
# A Slack mention inside stored mrkdwn: <@U123> or <@U123|name>.
MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|([^>]*))?>")
ID_TOKEN = re.compile(r"(?<![\w@])([UW][A-Z0-9]{2,})(?!\w)")


@dataclass(frozen=True)
class Directory:
    names: Mapping[str, str] = field(default_factory=dict)

    def name(self, uid: str | None, unknown: str = "") -> str:
        """The display name; the id itself when unknown; ``unknown`` when there is no id."""
        if not uid:
            return unknown
        return self.names.get(uid) or uid

    def known(self, uid: str | None) -> bool:
        return bool(uid) and uid in self.names

    def person(self, uid: str | None) -> dict[str, Any] | None:
        """The JSON shape of a person."""
        if not uid:
            return None
        return {"id": uid, "name": self.names.get(uid)}

    def mentions_to_names(self, text: str) -> str:
        """``<@U0ADA>`` / ``<@U0ADA|ada>`` in stored text -> ``@Ada`` (for documents, not for Slack)."""
        if "<@" not in text:  # the common case, kept cheap: an RCA may hold thousands of rows
            return text
        return MENTION.sub(lambda m: "@" + (self.names.get(m.group(1)) or m.group(2) or m.group(1)), text)

    def humanize(self, text: str) -> str:
        """Mentions and known Slack ids in stored text become names; unknown ids stay as they are."""
        text = self.mentions_to_names(text or "")
        if "U" not in text and "W" not in text:  # no id can be in it (most timeline rows): skip the regex
            return text
        return ID_TOKEN.sub(lambda m: self.names.get(m.group(1)) or m.group(1), text)

    def merged(self, more: Mapping[str, str]) -> Directory:
        return Directory({**more, **self.names})


def looks_like_slack_id(value: str | None) -> bool:
    return bool(value) and bool(SLACK_ID.match(value or ""))


def name_variants(names: Iterable[str]) -> set[str]:
    """Names as people write them in prose: the full name, and the first name when it is long enough
    to be a name rather than an initial ("Bob Smith" -> "Bob Smith", "Bob"; "bob" -> "bob", "Bob")."""
    out: set[str] = set()
    for name in names:
        name = (name or "").strip()
        if len(name) < 2 or looks_like_slack_id(name):
            continue
        out.add(name)
        first = name.split()[0]
        if len(first) > 2:
            out.add(first)
            out.add(first.capitalize())
    return out
