"""The Slack accept path: Bolt verifies and routes, we store the request in the inbox and answer.

Every listener here is "store, then ack" (Bolt runs with ``process_before_response``, so the answer
leaves only after the row is durable): one INSERT, no incident lock, no Web API call before the answer.
The fold worker runs the stored request later (``incident_bot.slack.apply``) and sends its outcome
through ``response_url`` or a message, from the outbox. What can be said without the database is said
in the ack itself: help, an unknown sub-command, a usage error. The one Web API call made here is
``views.open`` right after the ack, because a ``trigger_id`` lives only 3 seconds.

HTTP and Socket Mode share this app, so both transports take the same path.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import re
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.error import BoltUnhandledRequestError
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.exc import DBAPIError, OperationalError

from incident_bot.core.text import clean
from incident_bot.observability import DELIVERIES
from incident_bot.pipeline import inbox
from incident_bot.runtime import Runtime
from incident_bot.slack import blocks, events, interactions, slash_dispatch
from incident_bot.slack.mrkdwn import from_slack
from incident_bot.slack.workspace import workspace_refusal

log = logging.getLogger(__name__)
SOURCE = "slack"
STORE_DEADLINE = 2.5  # seconds: Slack shows operation_timeout after 3
STORED_EVENTS = set(events.EVENT_HANDLERS)  # every other event type is answered 200 and not stored
_BACKGROUND: set[asyncio.Task[Any]] = set()


class _NoTokenWarnings(logging.Filter):
    """Bolt reads SLACK_BOT_TOKEN from the environment by itself and then warns that it ignores it, because
    the token comes from ``authorize``: true, intended, and misleading in an operator's log."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not ("`token`" in msg and ("will be ignored" in msg or "will be unused" in msg))


logging.getLogger("slack_bolt.AsyncApp").addFilter(_NoTokenWarnings())


class Unavailable(Exception):
    """The inbox could not store the request in time: nothing was acknowledged."""


def request_key(request: Any, body: dict[str, Any]) -> str:
    """Commands and clicks carry no delivery id and Slack does not retry them: the hash of the signed
    body tells a repeat (a proxy's retry) from a new click. Socket Mode has no raw body: its payload."""
    raw = request.raw_body or json.dumps(body, sort_keys=True, ensure_ascii=False)
    return "sha256:" + hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


async def store(rt: Runtime, *, event_id: str, event_type: str, body: dict[str, Any],
                subject_id: str | None) -> inbox.Accepted:
    payload = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    try:
        async with asyncio.timeout(STORE_DEADLINE):
            accepted = await rt.store(functools.partial(
                inbox.accept, rt.engine, source=SOURCE, event_id=event_id[:inbox.MAX_EVENT_ID],
                event_type=event_type, payload=payload, subject_id=(subject_id or None) and subject_id[:64]))
    except (OperationalError, DBAPIError, TimeoutError) as exc:
        DELIVERIES.labels(source="slack", outcome="unavailable").inc()
        log.warning("slack %s: database unavailable (%s)", event_type, exc.__class__.__name__)
        raise Unavailable from exc
    DELIVERIES.labels(source="slack", outcome="duplicate" if accepted.duplicate else "accepted").inc()
    rt.wake_fold()
    return accepted


def open_view_soon(client: Any, trigger_id: str | None, view: dict[str, Any]) -> None:
    """Open a modal right after the ack (the answer leaves when the listener returns)."""
    task = asyncio.get_running_loop().create_task(client.views_open(trigger_id=trigger_id, view=view))
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


def _later(coro: Any) -> None:
    task = asyncio.get_running_loop().create_task(coro)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


def create_bolt_app(rt: Runtime) -> AsyncApp:
    s = rt.settings
    assert s.slack_bot_token and s.slack_signing_secret
    # No token on the app's client: ``authorize`` gives each request its token (Bolt warns when it gets both).
    client = AsyncWebClient(base_url=s.slack_api_url, timeout=max(1, int(s.slack_timeout)))

    async def authorize(enterprise_id: str | None, team_id: str | None, **_: Any) -> AuthorizeResult:
        # Static: one workspace, one bot token; never an auth.test on the request path.
        return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, bot_token=s.slack_bot_token,
                               bot_user_id=rt.identity.bot_user_id)

    app = AsyncApp(
        # Named: without a name Bolt takes the caller's file name from inspect.stack(), which reads the
        # source of every frame on the stack (~25 ms under a test runner; the tests build ~300 apps). It
        # names Bolt's loggers, which were "accept.py".
        name="incident-bot",
        signing_secret=s.slack_signing_secret, client=client, authorize=authorize,
        process_before_response=True,  # answer only after the row is stored
        raise_error_for_unhandled_request=True,  # so that on_error can answer 200, not 404
        ignoring_self_events_enabled=True,
    )

    @app.error
    async def on_error(error: Exception, response: BoltResponse | None) -> BoltResponse | None:
        if isinstance(error, BoltUnhandledRequestError):
            # Slack sends some requests unsubscribed (app_rate_limited...) and disables apps that fail
            # 5 % of deliveries: every signed request gets a 200; what we ignore is logged.
            req_body = error.body if isinstance(error.body, dict) else {}
            log.info("slack: ignored %s", req_body.get("type") or "request")
            DELIVERIES.labels(source="slack", outcome="ignored").inc()
            return BoltResponse(status=200, body="")
        if isinstance(error, Unavailable):
            return BoltResponse(status=503, body={"error": "unavailable, retry"}, headers={"Retry-After": "5"})
        if isinstance(error, (KeyError, TypeError, AttributeError, IndexError, ValueError)):
            # Bolt building its arguments from a (signed) body of a shape Slack never sends.
            log.warning("slack request refused: %s: %s", error.__class__.__name__, error)
            return BoltResponse(status=400, body={"error": "malformed request"})
        log.exception("slack: unhandled error: %s", error)
        return None

    def foreign(body: dict[str, Any]) -> bool:
        why = workspace_refusal(body, rt.identity.team_id)
        if why:
            DELIVERIES.labels(source="slack", outcome="other_workspace").inc()
            log.warning("slack: ignored a request from another workspace (%s)", why)
        return why is not None

    async def on_command(ack: Any, command: dict[str, Any], body: dict[str, Any], request: Any,
                         client: Any) -> None:
        if foreign(body):
            await ack()
            return
        text = clean(command.get("text")).strip()
        sub, _, args = text.partition(" ")
        sub, args, name = sub.lower(), args.strip(), s.slack_command
        if sub in ("", "help"):
            await ack(text=f"{name} commands", blocks=blocks.help_blocks(name, slash_dispatch.USAGE),
                      response_type="ephemeral")
            return
        if not slash_dispatch.known(sub):
            await ack(text=f"I don't know `{from_slack(sub[:40])}`. Try `{name} help`.", response_type="ephemeral")
            return
        usage = slash_dispatch.precheck(sub, args, name)
        if usage:
            await ack(text=usage, response_type="ephemeral")
            return
        if sub == "declare" and not args:
            await ack()
            open_view_soon(client, command.get("trigger_id"), blocks.declare_modal())
            return
        if sub == "rca" and args.lower() == "edit":
            await ack()
            _later(interactions.open_rca_form(rt, client, command))
            return
        try:
            await store(rt, event_id=request_key(request, body), event_type="command", body=body,
                        subject_id=command.get("channel_id"))
        except Unavailable:
            await ack(text="The incident database is unavailable right now, so this was not recorded. "
                           "Try again in a moment.", response_type="ephemeral")
            return
        await ack()

    async def on_event(ack: Any, body: dict[str, Any], event: dict[str, Any]) -> None:
        kind = str(event.get("type"))
        if kind not in STORED_EVENTS or foreign(body):
            log.info("slack event %s: ignored", kind)
            await ack()
            return
        event_id = str(body.get("event_id") or f"{kind}:{event.get('event_ts')}")
        channel = event.get("channel") or (event.get("item") or {}).get("channel")
        await store(rt, event_id=event_id, event_type=f"event:{kind}", body=body, subject_id=channel)
        await ack()

    async def on_action(ack: Any, body: dict[str, Any], request: Any) -> None:
        if not foreign(body):
            await store(rt, event_id=request_key(request, body), event_type="block_actions", body=body,
                        subject_id=(body.get("channel") or {}).get("id"))
        await ack()

    async def on_view(ack: Any, body: dict[str, Any], view: dict[str, Any], request: Any) -> None:
        if foreign(body):
            await ack()
            return
        errors = interactions.view_errors(rt, view)  # validation that needs no database
        if errors:
            await ack(response_action="errors", errors=errors)
            return
        await store(rt, event_id=request_key(request, body), event_type="view_submission", body=body,
                    subject_id=None)
        await ack()

    async def on_shortcut(ack: Any, shortcut: dict[str, Any], body: dict[str, Any], client: Any) -> None:
        await ack()
        if not foreign(body):
            open_view_soon(client, shortcut.get("trigger_id"), interactions.shortcut_modal(shortcut))

    app.command(s.slack_command)(on_command)
    app.event(re.compile(".*"))(on_event)
    app.action(re.compile(".*"))(on_action)
    app.view(re.compile(".*"))(on_view)
    app.shortcut(interactions.SHORTCUT)(on_shortcut)
    return app

