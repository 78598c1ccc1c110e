"""Incident references and Slack channel names (lowercase, letters/digits/-/_, at most 80 characters)."""

from __future__ import annotations

import re
import unicodedata

MAX_CHANNEL_NAME = 80


def incident_ref(number: int) -> str:
    return f"INC-{number}"


def parse_ref(text: str) -> int | None:
    m = re.fullmatch(r"\s*(?:inc-?)?(\d+)\s*", text, flags=re.IGNORECASE)
    return int(m.group(1)) if m else None


def slugify(title: str, max_len: int = MAX_CHANNEL_NAME) -> str:
    ascii_text = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    slug = slug[:max_len].rstrip("-")
    return slug or "incident"


def channel_name(number: int, title: str, suffix: str = "") -> str:
    """``inc-<n>-<slug>``; the slug is cut (at a word boundary when it can) so the suffix still fits."""
    prefix = f"inc-{number}-"
    tail = f"-{suffix}" if suffix else ""
    room = MAX_CHANNEL_NAME - len(prefix) - len(tail)
    slug = slugify(title, max_len=10_000)
    if len(slug) > room:
        cut = slug[:room]
        slug = cut.rsplit("-", 1)[0] if "-" in cut[room // 2:] else cut
        slug = slug.rstrip("-")
    return f"{prefix}{slug or 'incident'}{tail}"
