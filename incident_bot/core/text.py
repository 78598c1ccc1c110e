"""Outside text made storable, and lengths counted the way Slack counts them. Pure: no I/O.

Every piece of text that comes from outside (a Slack command, a modal field, a pinned message, a
PagerDuty title or note) passes :func:`clean` once, where it enters, so nothing further in needs to care:
- NUL and the other C0/C1 control characters (tab and newline kept): PostgreSQL refuses NUL in text,
  and the others only hide or garble what a reader sees;
- bidirectional controls (U+202A-U+202E, U+2066-U+2069, U+200E/U+200F): they reorder what is shown, so
  ``Checkout <U+202E>golb`` would read as something it is not (the "Trojan Source" trick);
- lone surrogates (a JSON ``\\ud800`` escape): no database can store them as UTF-8.

Lengths: Slack documents its limits in "characters" and its clients count UTF-16 code units (an emoji
outside the Basic Multilingual Plane is two). Counting UTF-16 units is never less than counting code
points, so a text that fits in units fits either way. :func:`cut` shortens to a budget of units without
splitting a surrogate pair or a grapheme cluster (a flag, an emoji with a skin tone or a ZWJ sequence,
a letter with its combining accents).
"""

from __future__ import annotations

import re
import unicodedata

_CONTROLS = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
ZWJ = "\u200d"


def clean(text: str | None) -> str:
    """Outside text without control, bidi-control or lone-surrogate characters (tabs, newlines kept)."""
    if not text:
        return ""
    if text.isascii() and text.isprintable():  # most text: nothing to remove (no control, no \r, no bidi)
        return text
    return _CONTROLS.sub("", text.replace("\r\n", "\n"))


def units(text: str) -> int:
    """The length of ``text`` in UTF-16 code units: how Slack's limits are counted."""
    return len(text) + sum(1 for c in text if ord(c) > 0xFFFF)


def _extends(c: str) -> bool:
    """True when ``c`` belongs to the grapheme cluster before it (it cannot start a cut-off tail)."""
    o = ord(c)
    return (
        c == ZWJ
        or unicodedata.category(c) in ("Mn", "Me", "Mc")
        or 0xFE00 <= o <= 0xFE0F  # variation selectors (emoji vs text presentation)
        or 0x1F3FB <= o <= 0x1F3FF  # skin-tone modifiers
        or 0xE0020 <= o <= 0xE007F  # tag characters (subdivision flags)
    )


def _regional(c: str) -> bool:
    return 0x1F1E6 <= ord(c) <= 0x1F1FF


def safe_boundary(text: str, i: int) -> int:
    """The largest index ``<= i`` where ``text`` may be cut without splitting a grapheme cluster."""
    while 0 < i < len(text) and (_extends(text[i]) or text[i - 1] == ZWJ):
        i -= 1
    if 0 < i < len(text) and _regional(text[i]) and _regional(text[i - 1]):
        run = 0  # flags are pairs of regional indicators: cut between pairs only
        while i - run - 1 >= 0 and _regional(text[i - run - 1]):
            run += 1
        if run % 2:
            i -= 1
    return i


def cut(text: str, limit: int, suffix: str = "…") -> str:
    """``text`` in at most ``limit`` UTF-16 units; when shortened it ends with ``suffix``."""
    if units(text) <= limit:
        return text
    budget = max(0, limit - units(suffix))
    i, used = 0, 0
    while i < len(text):
        w = 2 if ord(text[i]) > 0xFFFF else 1
        if used + w > budget:
            break
        used += w
        i += 1
    return text[: safe_boundary(text, i)] + suffix
