"""The Bolt app (AsyncApp): signature verification, url_verification and the listeners.

Listeners ack first and do the work after; every Slack write goes through the outbox.
"""

from __future__ import annotations

from slack_bolt.adapter.fastapi.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from incident_bot.runtime import Runtime
from incident_bot.slack import commands


def create_bolt_app(rt: Runtime) -> AsyncApp:
    s = rt.settings
    assert s.slack_bot_token and s.slack_signing_secret
    client = AsyncWebClient(token=s.slack_bot_token, base_url=s.slack_api_url, timeout=int(s.slack_timeout))
    app = AsyncApp(
        signing_secret=s.slack_signing_secret,
        client=client,
        # Bolt would otherwise answer some requests only after listeners finish.
        process_before_response=False,
        raise_error_for_unhandled_request=False,
    )
    commands.register(app, rt)
    return app


def create_handler(rt: Runtime) -> AsyncSlackRequestHandler:
    return AsyncSlackRequestHandler(create_bolt_app(rt))
