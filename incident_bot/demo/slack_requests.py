"""Signed Slack requests (slash commands, events, interactions), as Slack sends them.

Used by the demo, the tests and the benchmarks so that all three go through Bolt's real signature check.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier

FORM = "application/x-www-form-urlencoded"


def signed(body: str | bytes, secret: str, *, timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
    raw = body.encode() if isinstance(body, str) else body
    ts = str(timestamp if timestamp is not None else int(time.time()))
    sig = SignatureVerifier(secret).generate_signature(timestamp=ts, body=raw)
    return raw, {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sig}


def slash_body(text: str, *, user: str, channel: str, command: str = "/incident",
               response_url: str = "https://hooks.slack.com/commands/T0/1/x", team_id: str = "T0STANDIN") -> str:
    return urlencode({
        "token": "legacy", "team_id": team_id, "team_domain": "acme", "channel_id": channel,
        "channel_name": "x", "user_id": user, "user_name": user.lower(), "command": command,
        "text": text, "api_app_id": "A0STANDIN", "trigger_id": f"{int(time.time())}.42.{uuid.uuid4().hex[:8]}",
        "response_url": response_url,
    })


def event_body(event: dict[str, Any], *, event_id: str | None = None) -> str:
    return json.dumps({
        "token": "legacy", "team_id": "T0STANDIN", "api_app_id": "A0STANDIN", "type": "event_callback",
        "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}", "event_time": int(time.time()),
        "event": event,
    })


def interaction_body(payload: dict[str, Any]) -> str:
    return urlencode({"payload": json.dumps(payload)})
