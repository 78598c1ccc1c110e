"""A CAPA's ticket as the tracker adapter reads it back (a webhook, the reconcile's fetch, a job's answer):
the shape ``trackers/`` fills and :mod:`incident_bot.usecases.ticket_changes` applies. Plain data: no
tracker, no database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()  # "the tracker did not say" (GitHub has no due date), unlike None ("no due date")


@dataclass(frozen=True)
class Ticket:
    """A ticket: its key, URL, state in OUR vocabulary, due date and the tracker's last-updated time."""

    key: str
    url: str | None
    state: str  # open | in_progress | done | wont_do
    updated_at: datetime | None = None
    due: Any = UNSET  # date | None | UNSET
    actor: str | None = None  # who made the change (a webhook's sender), for the channel message
    action_id: int | None = None  # from the body's marker, when the tracker returned the body
