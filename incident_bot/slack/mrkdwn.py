"""The escaping model (README "Escaping model"): every conversion between plain text and Slack mrkdwn.

Two kinds of text, never mixed up:
- **plain**: what a person means, ``Error rate > 5% on R&D``. Text from PagerDuty, from modal fields
  (``plain_text_input`` values are raw) and from the CLI is plain; so are incident titles, services, action
  titles and the RCA narrative wherever they come from. Plain text goes into mrkdwn through :func:`escape`,
  exactly once.
- **mrkdwn**: what Slack shows, ``Error rate &gt; 5% on R&amp;D``. Slash-command text and messages arrive
  like this (the manifest sets ``should_escape: true``): user mentions and links come encoded as
  ``<@U123|ada>`` and ``<https://x|label>``. :func:`from_slack` keeps those (the user typed them) and
  neutralises the mentions that ping many people (``<!channel>``, ``<!here>``, ``<!everyone>``,
  ``<!subteam^…>``); the result is never escaped again. Timeline rows written by Slack users
  (``source == "slack"``) hold mrkdwn: see :func:`row_md` and :func:`row_plain`.
- mrkdwn goes back to plain through :func:`to_plain` before it becomes a channel name, a file (RCA
  Markdown/HTML), HTML or JSON, and before it prefills a modal.

Lengths are counted in UTF-16 units and cut at grapheme boundaries (:mod:`incident_bot.core.text`);
:func:`truncate_md` also never cuts inside an entity (``&amp;``) or a ``<…>`` token.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from incident_bot.core.text import cut, units

# Timeline sources whose row text is stored as mrkdwn (typed in Slack); every other source stores plain.
MRKDWN_SOURCES = frozenset({"slack"})
_TOKEN = re.compile(r"<([^<>]*)>")
_ENTITY = re.compile(r"&(amp|lt|gt);")
_STRAY_AMP = re.compile(r"&(?!(?:amp|lt|gt);)")
_USER = re.compile(r"@([UW][A-Z0-9]{2,31})(?:\|([^|]*))?")
_CHANNEL = re.compile(r"#([CG][A-Z0-9]{2,31})(?:\|([^|]*))?")
_URL = re.compile(r"((?:https?://|mailto:)[^\s|]+)(?:\|([^|]*))?")


def escape(text: str | None) -> str:
    """Plain text as mrkdwn that shows it literally: ``<!channel>`` cannot ping, ``<url|x>`` cannot link."""
    if not text:
        return ""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unescape(md: str) -> str:
    """Slack's three entities back to characters, in one pass (so ``&amp;lt;`` gives ``&lt;``)."""
    return _ENTITY.sub(lambda m: {"amp": "&", "lt": "<", "gt": ">"}[m.group(1)], md)


def _label(label: str | None) -> str:
    """A token's label as safe mrkdwn text (Slack escapes labels too; normalise whatever came)."""
    return escape(unescape(label or "")).replace("|", "¦")


def _special(body: str) -> str:
    """``<!here>``, ``<!subteam^S1|@sre>``, ``<!date^…|fallback>``: the words, without the ping."""
    name, _, label = body[1:].partition("|")
    if label:
        return _label(label)
    return "@" + escape(name.split("^", 1)[0])


def from_slack(text: str | None) -> str:
    """Slack-escaped text (a command, a message) as safe mrkdwn: mentions of one user, channel references
    and http(s)/mailto links are kept; mass mentions are neutralised; anything else that could be markup
    is escaped. Idempotent: ``from_slack(from_slack(x)) == from_slack(x)``."""
    if not text:
        return ""
    out: list[str] = []
    pos = 0
    for m in _TOKEN.finditer(text):
        out.append(_loose(text[pos:m.start()]))
        out.append(_token(m.group(1)))
        pos = m.end()
    out.append(_loose(text[pos:]))
    return "".join(out)


def _loose(text: str) -> str:
    """Text between tokens: ``<``/``>`` that form no token and a ``&`` that starts no entity, escaped."""
    return _STRAY_AMP.sub("&amp;", text).replace("<", "&lt;").replace(">", "&gt;")


def _token(body: str) -> str:
    if m := _USER.fullmatch(body):
        return f"<@{m.group(1)}|{_label(m.group(2))}>" if m.group(2) else f"<@{m.group(1)}>"
    if m := _CHANNEL.fullmatch(body):
        return f"<#{m.group(1)}|{_label(m.group(2))}>" if m.group(2) else f"<#{m.group(1)}>"
    if m := _URL.fullmatch(body):
        url, label = m.group(1), m.group(2)
        return f"<{_STRAY_AMP.sub('&amp;', url)}|{_label(label)}>" if label else f"<{_STRAY_AMP.sub('&amp;', url)}>"
    if body.startswith("!"):
        return _special(body)
    return "&lt;" + _loose(body) + "&gt;"


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
        if u := _USER.fullmatch(body):
            return "@" + unescape((lookup(u.group(1)) if lookup else None) or u.group(2) or u.group(1))
        if c := _CHANNEL.fullmatch(body):
            return "#" + unescape(c.group(2) or c.group(1))
        if body.startswith("!"):
            return unescape(_special(body))
        target, _, label = body.partition("|")
        target = unescape(target)
        return f"{unescape(label)} ({target})" if label and unescape(label) != target else target

    return unescape(_TOKEN.sub(token, md))


def row_md(source: str, text: str) -> str:
    """A timeline row's text as mrkdwn, whichever model its source stores."""
    return text if source in MRKDWN_SOURCES else escape(text)


def row_plain(source: str, text: str, names: Mapping[str, str] | None = None) -> str:
    """A timeline row's text as plain text, for the RCA, JSON and the CLI."""
    return to_plain(text, names) if source in MRKDWN_SOURCES else text


def stored(source: str, plain: str) -> str:
    """Plain text ready for a timeline row of ``source`` (escaped when that source stores mrkdwn)."""
    return escape(plain) if source in MRKDWN_SOURCES else plain


def link(url: str | None, label: str) -> str:
    """A link whose label is escaped; a URL with characters that would break the syntax is dropped."""
    if not url or any(c in url for c in "<>| \n") or not url.startswith(("https://", "http://")):
        return escape(label)
    return f"<{url}|{escape(label).replace('|', '¦')}>"


def user(user_id: str | None) -> str:
    if not user_id or not user_id.isalnum():
        return "someone"
    return f"<@{user_id}>"


def channel(channel_id: str | None, fallback: str = "the incident channel") -> str:
    if not channel_id or not channel_id.isalnum():
        return escape(fallback)
    return f"<#{channel_id}>"


def truncate(text: str, limit: int, suffix: str = "…") -> str:
    """Plain text in at most ``limit`` UTF-16 units, cut at a grapheme boundary."""
    return cut(text, limit, suffix)


def truncate_md(md: str, limit: int, suffix: str = "…") -> str:
    """mrkdwn in at most ``limit`` UTF-16 units, never cut inside ``&amp;`` or a ``<…>`` token (a cut
    token would show its raw syntax, or worse, a link without its end)."""
    if units(md) <= limit:
        return md
    short = cut(md, max(0, limit - units(suffix)), suffix="")
    opened = short.rfind("<")
    if opened > short.rfind(">"):
        short = short[:opened]
    amp = short.rfind("&")
    if amp != -1 and ";" not in short[amp:]:
        short = short[:amp]
    return short + suffix
