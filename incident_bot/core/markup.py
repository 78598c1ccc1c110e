"""The text model of stored rows: which text is plain and which is Slack mrkdwn, and the conversions
between them that reading and writing the database needs (README "Escaping model").

Timeline rows written from Slack (``source == "slack"``) hold the mrkdwn a person typed there; every other
source stores plain text. This is a fact of the data, not of presentation, so it lives in ``core``: the
RCA, JSON, the CLI and the web read rows as plain through :func:`row_plain`, and a use case that writes a
row of a mrkdwn source goes through :func:`stored`. Drawing messages for Slack (Block Kit, mentions,
links, lengths) is ``incident_bot/slack/``'s business (``slack/mrkdwn.py``, ``slack/intents.py``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

# Timeline sources whose row text is stored as mrkdwn (typed in Slack); every other source stores plain.
MRKDWN_SOURCES = frozenset({"slack"})
TOKEN = re.compile(r"<([^<>]*)>")
_ENTITY = re.compile(r"&(amp|lt|gt);")
USER = re.compile(r"@([UW][A-Z0-9]{2,31})(?:\|([^|]*))?")
CHANNEL = re.compile(r"#([CG][A-Z0-9]{2,31})(?:\|([^|]*))?")


def escape(text: str | None) -> str:
    """Plain text as mrkdwn that shows it literally: ``<!channel>`` cannot ping, ``<url|x>`` cannot link."""
    if not text:
        return ""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unescape(md: str) -> str:
    """Slack's three entities back to characters, in one pass (so ``&amp;lt;`` gives ``&lt;``)."""
    return _ENTITY.sub(lambda m: {"amp": "&", "lt": "<", "gt": ">"}[m.group(1)], md)


def token_label(label: str | None) -> str:
    """A token's label as safe mrkdwn text (Slack escapes labels too; normalise whatever came)."""
    return escape(unescape(label or "")).replace("|", "¦")


def special_words(body: str) -> str:
    """``<!here>``, ``<!subteam^S1|@sre>``, ``<!date^…|fallback>``: the words, without the ping."""
    name, _, label = body[1:].partition("|")
    if label:
        return token_label(label)
    return "@" + escape(name.split("^", 1)[0])


def to_plain(md: str | None, names: Mapping[str, str] | Callable[[str], str | None] | None = None) -> str:
    """mrkdwn as plain text: ``<@U1>`` -> ``@ada`` (from ``names``, else the id), ``<url|label>`` ->
    ``label (url)``, entities unescaped. The inverse of :func:`escape`."""
    if not md:
        return ""
    if "<" not in md and "&" not in md:  # no token, no entity: already plain (most timeline rows)
        return md
    lookup = names.get if isinstance(names, Mapping) else names

    def token(m: re.Match[str]) -> str:
        body = m.group(1)
        if u := USER.fullmatch(body):
            return "@" + unescape((lookup(u.group(1)) if lookup else None) or u.group(2) or u.group(1))
        if c := CHANNEL.fullmatch(body):
            return "#" + unescape(c.group(2) or c.group(1))
        if body.startswith("!"):
            return unescape(special_words(body))
        target, _, label = body.partition("|")
        target = unescape(target)
        return f"{unescape(label)} ({target})" if label and unescape(label) != target else target

    return unescape(TOKEN.sub(token, md))


def row_plain(source: str, text: str, names: Mapping[str, str] | None = None) -> str:
    """A timeline row's text as plain text, for the RCA, JSON and the CLI."""
    return to_plain(text, names) if source in MRKDWN_SOURCES else text


def stored(source: str, plain: str) -> str:
    """Plain text ready for a timeline row of ``source`` (escaped when that source stores mrkdwn)."""
    return escape(plain) if source in MRKDWN_SOURCES else plain


