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
  (``source == "slack"``) hold mrkdwn: see :func:`row_md` and :func:`row_plain`. The stored-text half of
  this model (escape, to_plain, row_plain, stored) is :mod:`incident_bot.core.markup`, re-exported here.
- mrkdwn goes back to plain through :func:`to_plain` before it becomes a channel name, a file (RCA
  Markdown/HTML), HTML or JSON, and before it prefills a modal.

Lengths are counted in UTF-16 units and cut at grapheme boundaries (:mod:`incident_bot.core.text`);
:func:`truncate_md` also never cuts inside an entity (``&amp;``) or a ``<…>`` token.
"""

from __future__ import annotations

import re

from incident_bot.core.markup import (
    CHANNEL,
    MRKDWN_SOURCES,
    TOKEN,
    USER,
    escape,
    row_plain,
    special_words,
    stored,
    to_plain,
    token_label,
    unescape,
)
from incident_bot.core.text import cut, units

__all__ = ["MRKDWN_SOURCES", "channel", "escape", "from_slack", "link", "row_md", "row_plain", "stored",
           "to_plain", "truncate", "truncate_md", "unescape", "user"]
_STRAY_AMP = re.compile(r"&(?!(?:amp|lt|gt);)")
_URL = re.compile(r"((?:https?://|mailto:)[^\s|]+)(?:\|([^|]*))?")


def from_slack(text: str | None) -> str:
    """Slack-escaped text (a command, a message) as safe mrkdwn: mentions of one user, channel references
    and http(s)/mailto links are kept; mass mentions are neutralised; anything else that could be markup
    is escaped. Idempotent: ``from_slack(from_slack(x)) == from_slack(x)``."""
    if not text:
        return ""
    out: list[str] = []
    pos = 0
    for m in TOKEN.finditer(text):
        out.append(_loose(text[pos:m.start()]))
        out.append(_token(m.group(1)))
        pos = m.end()
    out.append(_loose(text[pos:]))
    return "".join(out)


def _loose(text: str) -> str:
    """Text between tokens: ``<``/``>`` that form no token and a ``&`` that starts no entity, escaped."""
    return _STRAY_AMP.sub("&amp;", text).replace("<", "&lt;").replace(">", "&gt;")


def _token(body: str) -> str:
    if m := USER.fullmatch(body):
        return f"<@{m.group(1)}|{token_label(m.group(2))}>" if m.group(2) else f"<@{m.group(1)}>"
    if m := CHANNEL.fullmatch(body):
        return f"<#{m.group(1)}|{token_label(m.group(2))}>" if m.group(2) else f"<#{m.group(1)}>"
    if m := _URL.fullmatch(body):
        url, label = _STRAY_AMP.sub("&amp;", m.group(1)), m.group(2)
        return f"<{url}|{token_label(label)}>" if label else f"<{url}>"
    if body.startswith("!"):
        return special_words(body)
    return "&lt;" + _loose(body) + "&gt;"


def row_md(source: str, text: str) -> str:
    """A timeline row's text as mrkdwn, whichever model its source stores."""
    return text if source in MRKDWN_SOURCES else escape(text)


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
