"""slack-app-manifest.yml lists exactly the scopes, commands, shortcuts and events the code uses."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from incident_bot.config import Settings
from incident_bot.slack import interactions

ROOT = Path(__file__).resolve().parents[1]
CODE = [p for p in (ROOT / "incident_bot").rglob("*.py") if "testing" not in p.parts]

# Slack's documented scope for each Web API method (public and private channel variants).
METHOD_SCOPES: dict[str, set[str]] = {
    "auth.test": set(),
    "chat.postMessage": {"chat:write"},
    "chat.postEphemeral": {"chat:write"},
    "conversations.create": {"channels:manage", "groups:write"},
    "conversations.setTopic": {"channels:manage", "groups:write"},
    "conversations.invite": {"channels:manage", "groups:write"},
    "conversations.join": {"channels:join"},
    "conversations.history": {"channels:history", "groups:history"},
    "conversations.replies": {"channels:history", "groups:history"},
    "conversations.list": {"channels:read", "groups:read"},
    "users.info": {"users:read"},
    "users.lookupByEmail": {"users:read.email"},
    "views.open": set(),
    "views.publish": set(),
    "files.getUploadURLExternal": {"files:write"},
    "files.completeUploadExternal": {"files:write"},
    "files.upload_v2": {"files:write"},  # the outbox job name for slack_sdk's files_upload_v2
}
EVENT_SCOPES = {
    "reaction_added": {"reactions:read"}, "reaction_removed": {"reactions:read"},
    "member_joined_channel": {"channels:read", "groups:read"}, "member_left_channel": {"channels:read", "groups:read"},
    "app_home_opened": set(),
}
# Scopes needed by behaviour rather than by one method: posting to a public channel without joining it.
BEHAVIOUR_SCOPES = {"commands", "chat:write.public"}


def manifest() -> dict:
    return yaml.safe_load((ROOT / "slack-app-manifest.yml").read_text())


def methods_called() -> set[str]:
    found: set[str] = set()
    for path in CODE:
        text = path.read_text()
        for attr in re.findall(r"\.(auth_test|chat_\w+|conversations_\w+|users_\w+|views_\w+|files_\w+)\(", text):
            if attr == "files_upload_v2":
                found |= {"files.getUploadURLExternal", "files.completeUploadExternal"}
            else:
                family, _, name = attr.partition("_")
                found.add(f"{family}.{name}")
        found |= set(re.findall(r'method="((?:chat|conversations|users|views|files)\.\w+)"', text))
    return found


def events_registered() -> set[str]:
    """The Events API types the bot stores and applies (the accept path answers 200 to any other)."""
    from incident_bot.slack.accept import STORED_EVENTS
    from incident_bot.slack.events import EVENT_HANDLERS

    assert set(EVENT_HANDLERS) == STORED_EVENTS
    return set(EVENT_HANDLERS)


def test_every_method_the_code_calls_has_its_scope() -> None:
    scopes = set(manifest()["oauth_config"]["scopes"]["bot"])
    called = methods_called()
    assert {"chat.postMessage", "conversations.create", "users.lookupByEmail", "views.open"} <= called
    for method in called:
        assert method in METHOD_SCOPES, f"{method}: add its scope to METHOD_SCOPES and the manifest"
        needed = METHOD_SCOPES[method]
        assert not needed or needed & scopes, f"{method} needs one of {needed}"


def test_no_scope_is_unused() -> None:
    scopes = set(manifest()["oauth_config"]["scopes"]["bot"])
    used = set(BEHAVIOUR_SCOPES)
    for method in methods_called():
        used |= METHOD_SCOPES[method]
    for event in events_registered():
        used |= EVENT_SCOPES[event]
    assert scopes <= used, f"scopes nothing uses: {scopes - used}"


def test_sign_in_with_slack_asks_for_the_openid_scopes_and_our_callback() -> None:
    oauth = manifest()["oauth_config"]
    assert set(oauth["scopes"]["user"]) == {"openid", "email", "profile"}  # incident_bot/web/oidc.py SCOPES
    assert [u.rsplit("/", 3)[-3:] for u in oauth["redirect_urls"]] == [["ui", "auth", "callback"]]


def test_events_commands_and_shortcuts_match_the_code() -> None:
    m = manifest()
    assert set(m["settings"]["event_subscriptions"]["bot_events"]) == events_registered()
    assert [c["command"] for c in m["features"]["slash_commands"]] == [Settings(_env_file=None).slack_command]
    assert m["features"]["slash_commands"][0]["should_escape"] is True, "mentions arrive as <@U..> ids"
    assert [s["callback_id"] for s in m["features"]["shortcuts"]] == [interactions.SHORTCUT]
    urls = {m["settings"]["event_subscriptions"]["request_url"], m["settings"]["interactivity"]["request_url"],
            m["features"]["slash_commands"][0]["url"]}
    assert len(urls) == 1 and urls.pop().endswith("/slack/events"), "one URL, as the server serves"
