"""/incident rca, rca edit, action, actions (buttons) and close, through signed requests to the real app."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import select
from sqlmodel import Session

from storage.models import ActionItem, Incident

from .conftest import slack_interaction, slash


@pytest.fixture
def inc(bot, slack):  # type: ignore[no-untyped-def]
    for uid, name in (("U0ADA", "ada"), ("U0BOB", "bob"), ("U0EVE", "eve")):
        slack.add_user(uid, name, f"{name}@example.com")
    slash(bot, "declare Queue backlog growing")
    bot.drain()
    with Session(bot.rt.engine) as s:
        return s.execute(select(Incident)).scalar_one()


def actions(bot) -> list[ActionItem]:  # type: ignore[no-untyped-def]
    with Session(bot.rt.engine) as s:
        return list(s.execute(select(ActionItem).order_by(ActionItem.id)).scalars())


def click(bot, inc, value: str, user: str = "U0ADA") -> str:  # type: ignore[no-untyped-def]
    """Click a CAPA status button; returns the answer the user got through the click's response_url."""
    status = value.split(":")[1]
    token = uuid.uuid4().hex
    payload = {"type": "block_actions", "team": {"id": "T0STANDIN"}, "user": {"id": user},
               "api_app_id": "A0STANDIN", "trigger_id": "1.2.3", "channel": {"id": inc.slack_channel_id},
               "container": {"type": "message"}, "response_url": bot.slack.response_url(token),
               "actions": [{"action_id": f"capa_status_{status}", "block_id": "b", "value": value,
                            "type": "button", "action_ts": "1"}]}
    assert slack_interaction(bot, payload).status_code == 200
    return str(bot.slack.wait_for(lambda: bot.slack.responses(token), timeout=20)[0].get("text"))


def test_action_add_list_and_status_buttons(bot, inc) -> None:  # type: ignore[no-untyped-def]
    ch = inc.slack_channel_id
    r = slash(bot, "action Add a canary stage to deploys <@U0BOB|bob> due 2026-12-04 preventive", channel=ch)
    assert "Added action #1" in r.json()["text"]
    assert "needs a title" in slash(bot, "action <@U0BOB>", channel=ch).json()["text"]
    [item] = actions(bot)
    assert (item.title, item.owner_id, str(item.due_date), item.type) == (
        "Add a canary stage to deploys", "U0BOB", "2026-12-04", "preventive")
    listing = slash(bot, "actions", channel=ch).json()
    assert "capa_status_done" in json.dumps(listing["blocks"]) and len(listing["blocks"]) <= 50
    # A non-member is told why, through the click's response_url (an ephemeral message to a non-member
    # would fail with user_not_in_channel and leave a dead outbox row).
    assert "Only members" in click(bot, inc, f"{item.id}:done", user="U0EVE")
    bot.drain()
    assert actions(bot)[0].status == "open", "non-members cannot change actions"
    assert "now done" in click(bot, inc, f"{item.id}:done")
    bot.drain()
    done = actions(bot)[0]
    assert done.status == "done" and done.closed_at is not None
    assert not bot.slack.calls("chat.postEphemeral")


def test_close_needs_corrective_actions_done_or_a_reason(bot, inc) -> None:  # type: ignore[no-untyped-def]
    ch = inc.slack_channel_id
    slash(bot, "resolve", channel=ch)
    slash(bot, "action Fix the retry storm in the consumer corrective", channel=ch)
    r = slash(bot, "close", channel=ch)
    assert "open corrective action" in r.json()["text"]
    r = slash(bot, "close override tracked in JIRA-42 by the platform team", channel=ch)
    assert "closed" in r.json()["text"]
    with Session(bot.rt.engine) as s:
        closed = s.get(Incident, inc.id)
    assert closed.status == "closed" and closed.close_override_reason == "tracked in JIRA-42 by the platform team"


def test_rca_upload_with_blameless_warning(bot, inc) -> None:  # type: ignore[no-untyped-def]
    from incident_bot.usecases.rca import set_narrative
    from storage.db import session_scope

    with session_scope(bot.rt.engine) as s:
        set_narrative(s, inc.ref, {"summary": "The outage was caused by human error during the deploy."})
    r = slash(bot, "rca", channel=inc.slack_channel_id)
    assert "uploaded" in r.json()["text"]
    bot.drain()
    [f] = bot.slack.files()
    assert f.title == "INC-1 RCA" and f.completed and f.channel_id == inc.slack_channel_id
    body = (f.content or b"").decode()
    assert "Queue backlog growing" in body and "human error" in body and "Summary" in body
    comment = [m for m in bot.slack.messages(inc.slack_channel_id) if m.get("files")]
    assert comment and "human error" in json.dumps(comment[-1])


def test_rca_edit_modal_saves_narrative(bot, inc) -> None:  # type: ignore[no-untyped-def]
    slash(bot, "rca edit", channel=inc.slack_channel_id)
    opened = bot.slack.wait_for(lambda: bot.slack.calls("views.open"))
    view = opened[0].params["view"]
    view = json.loads(view) if isinstance(view, str) else view
    assert view["callback_id"] == "rca_edit" and json.loads(view["private_metadata"])["ref"] == "INC-1"
    values = {b["block_id"]: {"value": {"type": "plain_text_input", "value": None}} for b in view["blocks"]}
    values["summary"]["value"]["value"] = "Consumers fell behind after a config change."
    values["lucky"]["value"]["value"] = "It happened during business hours."
    payload = {"type": "view_submission", "team": {"id": "T0STANDIN"}, "user": {"id": "U0ADA"},
               "api_app_id": "A0STANDIN", "trigger_id": "1.2.3",
               "view": {"id": "V2", "callback_id": "rca_edit", "private_metadata": view["private_metadata"],
                        "state": {"values": values}, "type": "modal"}}
    assert slack_interaction(bot, payload).status_code == 200
    bot.drain()
    with Session(bot.rt.engine) as s:
        rca = s.get(Incident, inc.id).rca
    assert rca["summary"] == "Consumers fell behind after a config change."
    assert rca["lucky"] == "It happened during business hours."
