"""``/incident similar``: the similar past incidents of this channel's incident, and a recurrence after CAPA,
with why each was chosen (the same lookup and the same blocks as the intro message)."""

from __future__ import annotations

from typing import Any

from incident_bot.slack import messages
from incident_bot.slack.slash_command import Invocation
from incident_bot.usecases import similar as similar_svc
from incident_bot.usecases.runner import Session
from storage.models import Incident

USAGE = [("similar", "similar past incidents (same service, shared words) and recurrence after CAPA")]
LIMIT = 5


def similar(s: Session, inv: Invocation, inc: Incident) -> dict[str, Any]:
    settings = inv.rt.settings
    learned = similar_svc.learn(s, inc, window=settings.recurrence_delta, limit=LIMIT)
    blocks = messages.history_blocks(learned, settings.web_base_url)
    if not blocks:
        return {"text": f"No similar past incident for {inc.ref}: no resolved incident on its service or sharing "
                        "its words, and no recurrence after a CAPA."}
    return messages.message(f"{inc.ref}: similar past incidents", blocks)
