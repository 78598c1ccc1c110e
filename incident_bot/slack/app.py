"""The Bolt app (AsyncApp): signature verification, url_verification and the listeners.

Listeners commit first (milliseconds), ack, then wake the outbox: every Slack write goes out after the
ack. Authorization is static (one workspace, one bot token), so Bolt never calls ``auth.test`` on a
request path.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

from slack_bolt.adapter.fastapi.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

from incident_bot.runtime import Runtime
from incident_bot.slack import commands, events, followup, interactions

MALFORMED = (KeyError, TypeError, AttributeError, IndexError, ValueError)


class _NoTokenWarnings(logging.Filter):
    """Bolt reads SLACK_BOT_TOKEN from the environment by itself and then warns that it ignores it, because
    the token comes from ``authorize``: true, intended, and misleading in an operator's log."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not ("`token`" in msg and ("will be ignored" in msg or "will be unused" in msg))


logging.getLogger("slack_bolt.AsyncApp").addFilter(_NoTokenWarnings())


def create_bolt_app(rt: Runtime) -> AsyncApp:
    s = rt.settings
    assert s.slack_bot_token and s.slack_signing_secret
    # No token on the app's client: ``authorize`` gives each request its token, and Bolt warns ("token ...
    # will be ignored") when it gets both.
    client = AsyncWebClient(base_url=s.slack_api_url, timeout=max(1, int(s.slack_timeout)))
    bot_user_id = rt.worker.ctx.bot_user_id if rt.worker else None

    async def authorize(enterprise_id: str | None, team_id: str | None, **_: Any) -> AuthorizeResult:
        return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, bot_token=s.slack_bot_token,
                               bot_user_id=bot_user_id)

    app = AsyncApp(
        signing_secret=s.slack_signing_secret,
        client=client,
        authorize=authorize,
        # Answer Slack only when the listener has stored what it must: an event acknowledged with 200
        # before its transaction committed would be lost if the database failed (Slack does not retry a
        # 200). Listeners are fast (one transaction); Web API calls go through the outbox after the answer.
        process_before_response=True,
        raise_error_for_unhandled_request=False,
        ignoring_self_events_enabled=bool(bot_user_id),
    )

    @app.error
    async def on_error(error: Exception, response: BoltResponse | None, logger: Any) -> BoltResponse | None:
        """Bolt answers 500 whenever something raises. When Bolt's own routing and argument building choke
        on a (signed) body of a shape Slack never sends, no frame of ours is involved: that is a 400.
        Errors in our listeners stay 500 and are logged with their traceback."""
        ours = any("incident_bot" in frame.filename for frame in traceback.extract_tb(error.__traceback__))
        if not ours and response is not None and isinstance(error, MALFORMED):
            logger.warning("slack request refused: %s: %s", error.__class__.__name__, error)
            return BoltResponse(status=400, body={"error": "malformed request"})
        logger.exception("slack: unhandled error: %s", error)
        return None

    def on_committed() -> None:
        if rt.worker:
            rt.worker.notify()

    commands.register(app, rt, on_committed)
    events.register(app, rt, on_committed)
    interactions.register(app, rt, on_committed)
    followup.register(app, rt, on_committed)
    return app


def create_handler(rt: Runtime) -> AsyncSlackRequestHandler:
    return AsyncSlackRequestHandler(create_bolt_app(rt))
