"""The escaping model's conversions (slack/mrkdwn.py, core/text.py) as properties over generated text."""

from __future__ import annotations

import re
import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from incident_bot.core.text import clean, cut, units
from incident_bot.slack.mrkdwn import escape, from_slack, to_plain, truncate_md

plain_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)))
tokens = st.sampled_from(["<!channel>", "<!here>", "<!everyone>", "<!subteam^S0SRE|@sre>", "<@U0BOB>",
                          "<@U0BOB|bob>", "<#C0GEN|general>", "<https://x.example/a?b=1&amp;c=2|dash>",
                          "<mailto:a@b.example>", "<javascript:alert(1)|x>", "<@U" + "A" * 41 + ">",
                          "&amp;", "&lt;", "&gt;", "&", "<", ">", "|", "&amp;lt;", "<!date^1|fallback>"])
slack_text = st.lists(st.one_of(tokens, plain_text), max_size=12).map(" ".join)
graphemes = st.lists(st.sampled_from(["a", "é", "e\u0301", "👍🏽", "👩‍💻", "🇩🇪", "🇫🇷", "&", "<", "❤️", "字"]),
                     max_size=80).map("".join)
ALLOWED_TOKEN = re.compile(r"<(?:@[UW][A-Z0-9]{2,31}|#[CG][A-Z0-9]{2,31}|(?:https?://|mailto:)[^\s|<>]+)(?:\|[^<>|]*)?>")


@given(plain_text)
def test_plain_round_trips_through_mrkdwn(text: str) -> None:
    assert to_plain(escape(text)) == text


@given(plain_text)
def test_escaped_plain_is_already_safe_mrkdwn(text: str) -> None:
    assert from_slack(escape(text)) == escape(text)


@given(slack_text)
def test_from_slack_is_idempotent_and_safe(text: str) -> None:
    md = from_slack(text)
    assert from_slack(md) == md
    # Every "<" opens a token Slack may act on only for one user, a channel or a web/mail link.
    assert "<" not in ALLOWED_TOKEN.sub("", md) and ">" not in ALLOWED_TOKEN.sub("", md)
    assert "<!" not in md and "<javascript:" not in md
    assert not re.search(r"&(?!(?:amp|lt|gt);)", md), "a bare & would start an entity"


@given(plain_text)
def test_what_a_person_typed_comes_back(text: str) -> None:
    """Slack escapes typed text (should_escape); from_slack then to_plain gives back what was typed."""
    assert to_plain(from_slack(escape(text))) == text


def test_examples() -> None:
    md = from_slack("Error rate &gt; 5% on R&amp;D <!channel> <@U1BOB|bob> <https://x.example|dash> a & b")
    assert md == "Error rate &gt; 5% on R&amp;D @channel <@U1BOB|bob> <https://x.example|dash> a &amp; b"
    assert to_plain(md) == "Error rate > 5% on R&D @channel @bob dash (https://x.example) a & b"
    assert to_plain("<@U1BOB>", {"U1BOB": "Bob B"}) == "@Bob B"


@given(plain_text)
def test_clean_removes_controls_and_bidi(text: str) -> None:
    out = clean(text)
    assert clean(out) == out
    for c in out:
        assert c in "\n\t" or unicodedata.category(c) not in ("Cc", "Cs")
        assert not ("\u202a" <= c <= "\u202e" or "\u2066" <= c <= "\u2069")


@given(graphemes, st.integers(0, 200))
def test_cut_counts_utf16_units_and_keeps_graphemes_whole(text: str, limit: int) -> None:
    out = cut(text, limit, suffix="")
    assert units(out) <= limit
    assert text.startswith(out)
    rest = text[len(out):]
    if rest:  # the cut never leaves half a cluster on either side
        assert unicodedata.category(rest[0]) not in ("Mn", "Me", "Mc") and rest[0] not in "\u200d\ufe0f"
        assert not rest[0].startswith(("\U0001f3fd",)) and not out.endswith("\u200d")
        flags_before = len(re.search(r"[\U0001f1e6-\U0001f1ff]*$", out).group())  # type: ignore[union-attr]
        assert flags_before % 2 == 0


@given(slack_text, st.integers(1, 300))
def test_truncate_md_never_cuts_a_token_or_entity(text: str, limit: int) -> None:
    md = from_slack(text)
    out = truncate_md(md, limit)
    assert units(out) <= max(limit, 1)
    body = out.removesuffix("…")
    assert body.count("<") == body.count(">")
    assert not re.search(r"&[a-z]*$", body)
