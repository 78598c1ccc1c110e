"""The Slack and PagerDuty stand-ins, driven by the real clients the bot uses (slack_sdk, pagerduty).

If a stand-in drifts from the platform here, every test built on it proves less, so these check the shapes and
errors the bot relies on, and that fault injection really fails calls without changing state.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pagerduty
import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from incident_bot.demo.pagerduty_standin import PagerDutyStandIn
from incident_bot.demo.slack_standin import SlackStandIn


@pytest.fixture
def slack() -> Iterator[SlackStandIn]:
    with SlackStandIn() as standin:
        standin.add_user("U1", "alice", "alice@example.com", tz="Europe/Paris")
        standin.add_user("U2", "bob", "bob@example.com")
        yield standin
        assert standin.crashes() == []


@pytest.fixture
def web(slack: SlackStandIn) -> WebClient:
    # No retry handlers: each test decides what the client retries, so call counts are exact.
    return WebClient(token="xoxb-test", base_url=slack.url, retry_handlers=[])


def _error(call: Any) -> SlackApiError:
    with pytest.raises(SlackApiError) as info:
        call()
    return info.value


def _code(call: Any) -> str:
    """The ``error`` of the SlackApiError that ``call`` raises."""
    return str(_error(call).response["error"])


def _raw(url: str, body: bytes, content_type: str, token: str | None = "xoxb-test") -> dict[str, Any]:
    headers = {"Content-Type": content_type, **({"Authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(url, data=body, headers=headers)
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


# -- Slack ---------------------------------------------------------------------------------------------------


def test_slack_checks_the_bearer_token(slack: SlackStandIn) -> None:
    assert _raw(slack.url + "auth.test", b"", "application/x-www-form-urlencoded", token=None) == {
        "ok": False, "error": "not_authed"}
    assert _error(WebClient(token="nope", base_url=slack.url).auth_test).response["error"] == "invalid_auth"
    me = WebClient(token="xoxb-test", base_url=slack.url).auth_test()
    assert (me["user_id"], me["team_id"], me["bot_id"]) == ("UBOT", "T0STANDIN", "BBOT")


def test_create_channel_then_name_taken_and_name_rules(slack: SlackStandIn, web: WebClient) -> None:
    channel = web.conversations_create(name="inc-42-checkout", is_private=True)["channel"]
    assert channel["id"].startswith("C") and channel["creator"] == "UBOT" and channel["is_private"] is True
    assert slack.channel_by_name("inc-42-checkout")["members"] == ["UBOT"]
    assert _code(lambda: web.conversations_create(name="inc-42-checkout")) == "name_taken"
    for name, error in [("Inc-1", "invalid_name_specials"), ("inc 1", "invalid_name_specials"),
                        ("x" * 81, "invalid_name_maxlength"), ("--", "invalid_name")]:
        assert _code(lambda n=name: web.conversations_create(name=n)) == error
    assert web.conversations_create(name="x" * 80)["ok"]
    assert len(web.conversations_list(types="public_channel,private_channel")["channels"]) == 2


def test_post_message_ts_unique_increasing_and_history_newest_first(slack: SlackStandIn,
                                                                     web: WebClient) -> None:
    channel_id = slack.add_channel("incidents", members=["U1", "UBOT"])
    with ThreadPoolExecutor(max_workers=8) as pool:
        posted = list(pool.map(lambda i: web.chat_postMessage(channel="#incidents", text=f"m{i}"), range(24)))
    stored = [m["ts"] for m in slack.messages(channel_id)]
    assert sorted({p["ts"] for p in posted}) == stored  # unique, and stored in ts order
    assert [float(t) for t in stored] == sorted(float(t) for t in stored) and len(set(stored)) == 24
    assert all(p["channel"] == channel_id and p["message"]["user"] == "UBOT" for p in posted)
    history = web.conversations_history(channel=channel_id, limit=5)
    assert [m["ts"] for m in history["messages"]] == stored[::-1][:5] and history["has_more"] is True
    rest = web.conversations_history(channel=channel_id, cursor=history["response_metadata"]["next_cursor"])
    assert len(rest["messages"]) == 19 and not rest["has_more"]
    window = web.conversations_history(channel=channel_id, oldest=stored[9], latest=stored[12])["messages"]
    assert [m["ts"] for m in window] == [stored[11], stored[10]]


def test_history_returns_metadata_only_when_asked_and_threads_separately(slack: SlackStandIn,
                                                                          web: WebClient) -> None:
    channel_id = web.conversations_create(name="inc-7")["channel"]["id"]
    metadata = {"event_type": "incident_update", "event_payload": {"outbox_id": 17, "incident": 7}}
    parent = web.chat_postMessage(channel=channel_id, text="SEV2 declared", metadata=metadata)
    web.chat_postMessage(channel=channel_id, text="in thread", thread_ts=parent["ts"])
    plain = web.conversations_history(channel=channel_id)["messages"]
    assert [m["text"] for m in plain] == ["SEV2 declared"] and "metadata" not in plain[0]
    rich = web.conversations_history(channel=channel_id, include_all_metadata=True)["messages"]
    assert rich[0]["metadata"] == metadata and rich[0]["reply_count"] == 1
    replies = web.conversations_replies(channel=channel_id, ts=parent["ts"])["messages"]
    assert [m["text"] for m in replies] == ["SEV2 declared", "in thread"]
    assert _code(lambda: web.conversations_replies(channel=channel_id, ts="1.000001")) == (
        "thread_not_found")


def test_post_by_name_only_for_public_channels(slack: SlackStandIn, web: WebClient) -> None:
    public = slack.add_channel("general", members=["U1"])
    slack.add_channel("secret", members=["U1"], is_private=True)
    assert web.chat_postMessage(channel="general", text="hi")["channel"] == public
    assert _code(lambda: web.chat_postMessage(channel="#secret", text="x")) == "channel_not_found"
    assert _code(lambda: web.chat_postMessage(channel="C404", text="x")) == "channel_not_found"
    with pytest.warns(UserWarning):  # slack_sdk warns too, before sending
        assert _code(lambda: web.chat_postMessage(channel=public)) == "no_text"
    assert web.chat_postMessage(channel="U1", text="a DM")["channel"].startswith("D")


def test_invite_reports_already_in_channel_only_when_all_are_members(web: WebClient) -> None:
    channel_id = web.conversations_create(name="inc-9")["channel"]["id"]
    web.conversations_invite(channel=channel_id, users=["U1"])
    assert web.conversations_invite(channel=channel_id, users=["U1", "U2"])["ok"]  # U2 is new: fine
    assert _code(lambda: web.conversations_invite(channel=channel_id, users="U1,U2")) == (
        "already_in_channel")
    assert _code(lambda: web.conversations_invite(channel=channel_id, users="U9")) == (
        "user_not_found")
    assert web.conversations_members(channel=channel_id)["members"] == ["UBOT", "U1", "U2"]
    web.conversations_setTopic(channel=channel_id, topic="SEV1: checkout down")
    assert web.conversations_info(channel=channel_id)["channel"]["topic"]["value"] == "SEV1: checkout down"


def test_files_upload_v2_end_to_end(slack: SlackStandIn, web: WebClient) -> None:
    channel_id = web.conversations_create(name="inc-rca")["channel"]["id"]
    result = web.files_upload_v2(channel=channel_id, content="# RCA\nroot cause: TLS expiry",
                                 filename="rca.md", title="RCA draft", initial_comment="RCA attached")
    (uploaded,) = slack.files()
    assert result["file"]["id"] == uploaded.id and uploaded.title == "RCA draft"
    assert uploaded.content == b"# RCA\nroot cause: TLS expiry" and uploaded.channel_id == channel_id
    (message,) = slack.messages(channel_id)
    assert message["text"] == "RCA attached" and message["files"][0]["title"] == "RCA draft"
    assert [c.method for c in slack.calls()][-3:] == ["files.getUploadURLExternal", "upload",
                                                      "files.completeUploadExternal"]


def test_edit_react_pin_ephemeral_and_permalink(slack: SlackStandIn, web: WebClient) -> None:
    channel_id = web.conversations_create(name="inc-edit")["channel"]["id"]
    web.conversations_invite(channel=channel_id, users="U1")
    ts = web.chat_postMessage(channel=channel_id, text="SEV3")["ts"]
    assert web.chat_update(channel=channel_id, ts=ts, text="SEV2")["message"]["edited"]["user"] == "UBOT"
    web.reactions_add(channel=channel_id, timestamp=ts, name="eyes")
    web.pins_add(channel=channel_id, timestamp=ts)
    assert _code(lambda: web.pins_add(channel=channel_id, timestamp=ts)) == "already_pinned"
    assert _code(lambda: web.chat_update(channel=channel_id, ts="1.000002", text="x")) == (
        "message_not_found")
    (message,) = slack.messages(channel_id)
    assert (message["text"], message["reactions"][0]["name"], message["ts"]) == ("SEV2", "eyes", ts)
    assert web.chat_getPermalink(channel=channel_id, message_ts=ts)["permalink"].endswith(ts.replace(".", ""))
    web.chat_postEphemeral(channel=channel_id, user="U1", text="only you")
    assert _code(lambda: web.chat_postEphemeral(channel=channel_id, user="U2", text="x")) == (
        "user_not_in_channel")
    assert [(e["user"], e["text"]) for e in slack.ephemerals(channel_id)] == [("U1", "only you")]
    assert len(slack.messages(channel_id)) == 1  # ephemerals are not channel messages


def test_async_client_as_bolt_uses_it(slack: SlackStandIn) -> None:
    pytest.importorskip("aiohttp")
    from slack_sdk.web.async_client import AsyncWebClient

    async def scenario() -> str:
        client = AsyncWebClient(token="xoxb-test", base_url=slack.url)
        assert (await client.auth_test())["user_id"] == "UBOT"
        channel_id = (await client.conversations_create(name="inc-async"))["channel"]["id"]
        await client.conversations_invite(channel=channel_id, users=["U1", "U2"])
        await client.chat_postMessage(channel=channel_id, text="async", metadata={
            "event_type": "incident_update", "event_payload": {"outbox_id": 5}})
        await client.files_upload_v2(channel=channel_id, content=b"\x00bin", filename="a.bin", title="blob")
        history = await client.conversations_history(channel=channel_id, include_all_metadata=True)
        posted = next(m for m in history["messages"] if m.get("text") == "async")
        assert posted["metadata"]["event_payload"] == {"outbox_id": 5}
        return channel_id

    channel_id = asyncio.run(scenario())
    assert slack.channel_by_name("inc-async")["members"] == ["UBOT", "U1", "U2"]
    assert [m["text"] for m in slack.messages(channel_id)] == ["async", ""]
    assert slack.files()[0].content == b"\x00bin"


def test_lookup_by_email(web: WebClient) -> None:
    user = web.users_lookupByEmail(email="Alice@Example.com")["user"]
    assert (user["id"], user["tz"], user["profile"]["email"]) == ("U1", "Europe/Paris", "alice@example.com")
    assert _code(lambda: web.users_lookupByEmail(email="nobody@example.com")) == (
        "users_not_found")


def test_429_carries_retry_after_and_changes_nothing(slack: SlackStandIn, web: WebClient) -> None:
    channel_id = web.conversations_create(name="inc-429")["channel"]["id"]
    slack.fail_next("chat.postMessage", times=1, status=429, retry_after=7)
    error = _error(lambda: web.chat_postMessage(channel=channel_id, text="late"))
    assert error.response.status_code == 429 and error.response.headers["Retry-After"] == "7"
    assert error.response["error"] == "ratelimited" and slack.messages(channel_id) == []
    web.chat_postMessage(channel=channel_id, text="now")
    assert [m["text"] for m in slack.messages(channel_id)] == ["now"]
    assert [c.status for c in slack.calls("chat.postMessage")] == [429, 200]


def test_500_and_ok_false_faults_change_nothing(slack: SlackStandIn, web: WebClient) -> None:
    channel_id = web.conversations_create(name="inc-500")["channel"]["id"]
    slack.fail_next("chat.postMessage", times=2, status=500)
    for _ in range(2):
        assert _error(lambda: web.chat_postMessage(channel=channel_id, text="x")).response.status_code == 500
    assert slack.messages(channel_id) == []
    slack.fail_next("*", status=200, error="fatal_error")
    assert _code(lambda: web.conversations_create(name="inc-never")) == "fatal_error"
    assert slack.channel_by_name("inc-never") is None
    assert web.chat_postMessage(channel=channel_id, text="x")["ok"] and len(slack.messages(channel_id)) == 1


def test_rate_limit_is_a_sliding_window_a_retrying_client_respects(slack: SlackStandIn) -> None:
    slack.rate_limit("conversations.create", per_minute=2, window=1.0)
    client = WebClient(token="xoxb-test", base_url=slack.url,
                       retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)])
    for i in range(3):
        client.conversations_create(name=f"inc-{i}")
    calls = slack.calls("conversations.create")
    assert [c.status for c in calls] == [200, 200, 429, 200]
    accepted = [c.at for c in calls if c.status == 200]
    assert accepted[2] - accepted[0] >= 1.0  # the third creation waited for the window to slide
    assert all(slack.channel_by_name(f"inc-{i}") for i in range(3))


def test_down_refuses_connections_and_up_serves_the_same_url(slack: SlackStandIn, web: WebClient) -> None:
    channel_id = web.conversations_create(name="inc-down")["channel"]["id"]
    url = slack.url
    slack.down()
    with pytest.raises(urllib.error.URLError):
        web.chat_postMessage(channel=channel_id, text="lost")
    slack.up()
    assert slack.url == url and web.chat_postMessage(channel=channel_id, text="back")["ok"]
    assert [m["text"] for m in slack.messages(channel_id)] == ["back"]


def test_delay_applies_before_the_late_answer_delay_before_applies_late(slack: SlackStandIn) -> None:
    channel_id = slack.add_channel("slow", members=["UBOT"])
    impatient = WebClient(token="xoxb-test", base_url=slack.url, timeout=0.2, retry_handlers=[])
    slack.delay("chat.postMessage", 0.5)
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        impatient.chat_postMessage(channel=channel_id, text="applied, answer lost")
    assert [m["text"] for m in slack.messages(channel_id)] == ["applied, answer lost"]
    slack.delay("chat.postMessage", 0)
    slack.delay_before("chat.postMessage", 0.5)
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        impatient.chat_postMessage(channel=channel_id, text="applied late")
    assert len(slack.messages(channel_id)) == 1
    slack.wait_for(lambda: len(slack.messages(channel_id)) == 2, timeout=2)


def test_duplicate_detector_finds_repeated_outbox_ids(slack: SlackStandIn, web: WebClient) -> None:
    channel_id = slack.add_channel("incidents")
    for outbox_id in (1, 2, 2):
        metadata = {"event_type": "incident_update", "event_payload": {"outbox_id": outbox_id}}
        web.chat_postMessage(channel=channel_id, text=f"update {outbox_id}", metadata=metadata)
    web.chat_postMessage(channel=channel_id, text="no metadata")
    duplicates = slack.duplicate_messages()
    assert [(m["channel"], m["text"]) for m in duplicates] == [(channel_id, "update 2")] * 2


def test_form_and_json_bodies_and_unknown_methods(slack: SlackStandIn) -> None:
    channel_id = slack.add_channel("incidents")
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}]
    form = urllib.parse.urlencode({"channel": channel_id, "text": "f", "blocks": json.dumps(blocks)}).encode()
    assert _raw(slack.url + "chat.postMessage", form, "application/x-www-form-urlencoded")["ok"]
    body = json.dumps({"channel": channel_id, "text": "j", "blocks": blocks}).encode()
    assert _raw(slack.url + "chat.postMessage", body, "application/json; charset=utf-8")["ok"]
    assert [m["blocks"] for m in slack.messages(channel_id)] == [blocks, blocks]
    too_many = json.dumps({"channel": channel_id, "blocks": blocks * 51}).encode()
    assert _raw(slack.url + "chat.postMessage", too_many, "application/json")["error"] == "invalid_blocks"
    unknown = _raw(slack.url + "no.suchMethod", b"", "application/json")
    assert unknown == {"ok": False, "error": "unknown_method"}


def test_views_open_update_publish(slack: SlackStandIn, web: WebClient) -> None:
    modal = {"type": "modal", "title": {"type": "plain_text", "text": "Declare"}, "blocks": []}
    opened = web.views_open(trigger_id="123.456", view=modal)["view"]
    assert _code(lambda: web.views_update(view_id=opened["id"], view=modal, hash="stale")) == (
        "hash_conflict")
    updated = web.views_update(view_id=opened["id"], view=modal, hash=opened["hash"])["view"]
    assert updated["id"] == opened["id"] and updated["hash"] != opened["hash"]
    home = {"type": "home", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "3 open"}}]}
    web.views_publish(user_id="U1", view=home)
    assert slack.home_view("U1")["blocks"] == home["blocks"] and len(slack.views()) == 2


def test_transcript_reads_like_slack(slack: SlackStandIn, web: WebClient) -> None:
    channel_id = web.conversations_create(name="inc-12")["channel"]["id"]
    web.conversations_invite(channel=channel_id, users="U1")
    web.conversations_setTopic(channel=channel_id, topic="SEV2 · checkout")
    parent = web.chat_postMessage(channel=channel_id, text="fallback", blocks=[
        {"type": "header", "text": {"type": "plain_text", "text": "SEV2: checkout 5xx"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "Commander <@U1> &amp; <https://pd.example/Q1|PD>"},
         "fields": [{"type": "mrkdwn", "text": "*Status* triggered"}]},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "from PagerDuty"}]},
        {"type": "actions",
         "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Acknowledge"}}]},
    ])
    web.chat_postMessage(channel=channel_id, text="on it", thread_ts=parent["ts"])
    text = slack.transcript(channel_id)
    assert "· @alice has joined the channel" in text and "# SEV2: checkout 5xx" in text
    assert "Commander @alice & PD (https://pd.example/Q1)" in text and "*Status* triggered" in text
    assert "[Acknowledge]" in text and "from PagerDuty" in text and "fallback" not in text
    last = text.splitlines()[-1]
    assert last.startswith("    ↳ [") and last.endswith("incident-bot: on it")
    assert slack.describe_channel(channel_id).splitlines() == [
        "#inc-12", "Topic: SEV2 · checkout", "Purpose: -", "Members: @incident-bot, @alice"]


# -- PagerDuty -----------------------------------------------------------------------------------------------


@pytest.fixture
def pd() -> Iterator[PagerDutyStandIn]:
    with PagerDutyStandIn() as standin:
        standin.add_user("PU1", "Alice", "alice@example.com")
        standin.add_user("PU2", "Bob", "bob@example.com")
        standin.add_user("PU3", "Carol", "carol@example.com")
        standin.add_escalation_policy("PEP1", ["PU1", "PU2"], levels=[1, 2], name="Checkout")
        standin.add_escalation_policy("PEP2", ["PU3"], name="Search")
        standin.add_service("PSVC1", "checkout-api", "PEP1")
        yield standin
        assert standin.crashes() == []


def _pd_client(pd: PagerDutyStandIn, default_from: str | None = "alice@example.com",
               ) -> pagerduty.RestApiV2Client:
    client = pagerduty.RestApiV2Client("pd-test-key", default_from=default_from, base_url=pd.url,
                                       verify=ssl.create_default_context(cafile=pd.ca_pem_path))
    client.sleep_timer = 0
    return client


def test_pd_oncalls_filtered_and_paginated(pd: PagerDutyStandIn) -> None:
    client = _pd_client(pd)
    oncalls = list(client.iter_all("oncalls", params={"escalation_policy_ids[]": ["PEP1"]}, page_size=1))
    assert [(o["user"]["id"], o["escalation_level"]) for o in oncalls] == [("PU1", 1), ("PU2", 2)]
    assert oncalls[0]["user"]["type"] == "user_reference" and oncalls[0]["escalation_policy"]["id"] == "PEP1"
    assert len(pd.calls("GET /oncalls")) == 2  # one page each: pagination really ran
    everyone = client.list_all("oncalls", params={"include[]": ["users"]})
    assert sorted(o["user"]["email"] for o in everyone) == ["alice@example.com", "bob@example.com",
                                                            "carol@example.com"]


def test_pd_users_services_and_auth(pd: PagerDutyStandIn) -> None:
    client = _pd_client(pd)
    assert client.rget("/users/PU2")["email"] == "bob@example.com"
    assert client.rget("/services/PSVC1")["escalation_policy"]["id"] == "PEP1"
    assert client.find("services", "checkout-api", attribute="name")["id"] == "PSVC1"
    with pytest.raises(pagerduty.HttpError) as missing:
        client.rget("/users/PNOPE")
    assert missing.value.response.status_code == 404
    assert pd.calls("GET /users")[0].headers["authorization"] == "Token token=pd-test-key"
    with PagerDutyStandIn(api_keys=["right"]) as strict:
        wrong = pagerduty.RestApiV2Client("wrong", base_url=strict.url, verify=strict.client_ssl_context())
        with pytest.raises(pagerduty.HttpError) as denied:
            wrong.rget("/users/PU1")
        assert denied.value.response.status_code == 401


def test_pd_incident_lifecycle_needs_from(pd: PagerDutyStandIn) -> None:
    spec = {"type": "incident", "title": "Checkout 5xx", "incident_key": "chk-5xx",
            "service": {"id": "PSVC1", "type": "service_reference"}}
    with pytest.raises(pagerduty.HttpError) as refused:
        _pd_client(pd, default_from=None).rpost("/incidents", json=spec)
    assert refused.value.response.status_code == 400 and pd.incidents() == []
    client = _pd_client(pd)
    incident = client.rpost("/incidents", json=spec)
    assert incident["status"] == "triggered" and incident["html_url"].endswith(incident["id"])
    assert [a["assignee"]["id"] for a in incident["assignments"]] == ["PU1"]
    created = pd.calls("POST /incidents")[-1]
    assert created.params["incident"]["title"] == "Checkout 5xx"
    assert created.headers["from"] == "alice@example.com"
    with pytest.raises(pagerduty.HttpError):  # same dedup key while open
        client.rpost("/incidents", json=spec)
    client.rpost(f"/incidents/{incident['id']}/notes", json={"content": "rolled back"})
    assert pd.notes(incident["id"])[0]["user"]["id"] == "PU1"
    resolve = {"type": "incident_reference", "status": "resolved"}
    resolved = client.rput(f"/incidents/{incident['id']}", json=resolve)
    assert resolved["status"] == "resolved" and client.rget(f"/incidents/{incident['id']}")["resolved_at"]
    with pytest.raises(pagerduty.HttpError):
        client.rput("/incidents", json=[{"id": incident["id"], **resolve}])


def test_pd_fail_next_by_path_prefix(pd: PagerDutyStandIn) -> None:
    client = _pd_client(pd)
    pd.fail_next("/users", times=1, status=503)
    with pytest.raises(pagerduty.HttpError) as failed:
        client.rget("/users/PU1")
    assert failed.value.response.status_code == 503
    assert client.rget("/users/PU1")["id"] == "PU1" and client.rget("/services/PSVC1")["id"] == "PSVC1"
    pd.fail_next("POST /incidents", times=1, status=500)
    with pytest.raises(pagerduty.HttpError):
        client.rpost("/incidents", json={"type": "incident", "title": "x",
                                         "service": {"id": "PSVC1", "type": "service_reference"}})
    assert pd.incidents() == [] and [c.status for c in pd.calls("/incidents")] == [500]
