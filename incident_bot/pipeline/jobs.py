"""Outbox job kinds: an explicit registry, built once where the process is wired.

A job kind is the name stored in an outbox row's ``method`` column ("chat.postMessage",
"pagerduty.resolve", ...) and the function that performs it. Adapters own their kinds (Slack's in
``incident_bot.slack.jobs``, PagerDuty's in ``incident_bot.pagerduty.jobs``) and the way their client's
errors are classified; the worker knows neither Slack nor PagerDuty. A duplicate name is refused when
the registry is built, and a row whose kind is unknown is parked with that error, never sent as a raw
call: a typo cannot become a request to Slack.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlmodel import Session

from storage.models import Incident, OutboxMessage


class Permanent(Exception):
    """This call cannot succeed by trying again (the row is parked as dead)."""


class RetryLater(Exception):
    """Try again later: after ``retry_after`` seconds when the other side said so (429), else with backoff."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Wait(Exception):
    """Not yet: run this row again after ``seconds``, no attempt counted and no other row slowed down (unlike
    a rate limit). ``note`` is merged into the row's ``result`` so that the next run knows it waited (a
    tracker create waiting for the tracker's search index to show a ticket it may have made)."""

    def __init__(self, message: str, *, seconds: float, note: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.seconds, self.note = seconds, dict(note or {})


class DuplicateJobKind(ValueError):
    pass


class UnknownJobKind(KeyError):
    pass


@dataclass
class Delivered:
    """What a call produced, stored in the transaction that marks the row done."""

    result: dict[str, Any] = field(default_factory=dict)
    incident_updates: dict[str, Any] = field(default_factory=dict)
    timeline_note: str | None = None
    members: tuple[str, list[str]] | None = None  # (channel id, user ids now in it)
    store: Callable[[Session], None] | None = None


@dataclass
class Context:
    """The clients a job may use. Typed loosely on purpose: the pipeline does not import vendor SDKs."""

    slack: Any
    pagerduty: Any | None
    bot_user_id: str | None = None
    # Hosts a response_url may point at besides *.slack.com over HTTPS (a stand-in in tests and the demo).
    respond_hosts: tuple[str, ...] = ()
    tracker: Any | None = None  # the CAPA tracker (incident_bot.trackers.outbound.TrackerSync), when set
    # Similar past incidents and recurrence for a new incident's intro (usecases.similar.IntroLookup):
    # called with the incident (or its id), returns what to add, or None.
    history: Any | None = None


@dataclass(frozen=True)
class Failure:
    """How a failed call is handled: ``retry`` with backoff, ``rate_limited`` (wait ``retry_after`` for
    every row of the kind, no attempt counted), ``wait`` (this row only waits ``retry_after``, no attempt
    counted, ``note`` kept in its result), or ``permanent`` (parked as dead)."""

    action: Literal["retry", "rate_limited", "wait", "permanent"]
    message: str
    retry_after: float | None = None
    uncertain: bool = True  # the call may have reached the other side
    recognised: bool = True  # False: no adapter knew the error (logged with its traceback)
    note: dict[str, Any] = field(default_factory=dict)


def resolve_placeholder(value: Any, inc: Incident | None, what: str) -> Any:
    if value == "$incident":
        if inc is None or not inc.slack_channel_id:
            raise Permanent(f"{what}: the incident channel was never created")
        return inc.slack_channel_id
    if value == "$announce":
        if inc is None or not inc.announce_channel_id:
            raise Permanent(f"{what}: the announcement was never posted")
        return inc.announce_channel_id
    if value == "$announce_ts":
        if inc is None or not inc.announce_ts:
            raise Permanent(f"{what}: the announcement was never posted")
        return inc.announce_ts
    return value


Run = Callable[[Context, OutboxMessage, Incident | None, bool], Delivered]
Classifier = Callable[[BaseException], Failure | None]


@dataclass(frozen=True)
class JobKind:
    name: str
    run: Run


class JobRegistry:
    def __init__(self) -> None:
        self._kinds: dict[str, JobKind] = {}
        self._classifiers: list[Classifier] = []

    def add(self, kinds: Iterable[JobKind], classifier: Classifier | None = None) -> JobRegistry:
        for kind in kinds:
            if kind.name in self._kinds:
                raise DuplicateJobKind(kind.name)
            self._kinds[kind.name] = kind
        if classifier is not None:
            self._classifiers.append(classifier)
        return self

    def __getitem__(self, name: str) -> JobKind:
        try:
            return self._kinds[name]
        except KeyError as exc:
            raise UnknownJobKind(name) from exc

    def __contains__(self, name: object) -> bool:
        return name in self._kinds

    def names(self) -> list[str]:
        return sorted(self._kinds)

    def classify(self, exc: BaseException) -> Failure:
        if isinstance(exc, Permanent):
            return Failure("permanent", str(exc))
        if isinstance(exc, Wait):
            return Failure("wait", str(exc), retry_after=exc.seconds, note=exc.note)
        if isinstance(exc, RetryLater):
            if exc.retry_after is not None:
                return Failure("rate_limited", str(exc), retry_after=exc.retry_after)
            return Failure("retry", str(exc))
        for classify in self._classifiers:
            found = classify(exc)
            if found is not None:
                return found
        # An error no adapter recognises: retried with backoff until the attempts run out, then parked.
        return Failure("retry", f"{exc.__class__.__name__}: {exc}", recognised=False)
