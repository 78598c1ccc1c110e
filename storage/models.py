"""SQLModel tables: the one place where the schema is written down.

Every timestamp column is timezone-aware UTC (sqlmodel>=0.0.45 refuses naive values at flush).
Migrations in ``storage/migrations`` must follow any change here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from pydantic import ConfigDict
from sqlalchemy import JSON, Column, Index, UniqueConstraint, false, text
from sqlalchemy.ext.mutable import MutableDict
from sqlmodel import Field, SQLModel

from storage.limits import EVENT_ID_LEN, PAGERDUTY_ID_LEN, PAGERDUTY_PRIORITY_LEN, SLACK_ID_LEN

_clock: Callable[[], datetime] | None = None


def utcnow() -> datetime:
    """Now, UTC-aware. Every use case reads the time here, so ``incident-bot demo`` can script it."""
    return _clock() if _clock is not None else datetime.now(UTC)


def set_clock(clock: Callable[[], datetime] | None) -> None:
    """Replace the clock (the demo replays a scripted incident); None restores the wall clock."""
    global _clock
    _clock = clock


class Table(SQLModel):
    """The base of every table here. Pydantic builds a model's validator and serializer when one is first
    used, not at import (``defer_build``): rows are read and written through SQLAlchemy, so most commands
    never use one, and building all of them was ~15 ms of every command's start-up."""

    model_config = ConfigDict(defer_build=True)  # type: ignore[assignment]


def _json_dict() -> Any:
    return Column(MutableDict.as_mutable(JSON), nullable=False, default=dict)


class Counter(Table, table=True):
    """Gap-free counters (``incident`` numbers INC-<n>; ``search_words``: the incident counter when the
    word counts of ``incident_search_words`` were taken).

    A row lock on the counter is taken inside the transaction that creates the incident, so a rolled
    back transaction gives its number back and numbers have no gaps, unlike a database sequence.
    """

    __tablename__ = "counters"
    name: str = Field(primary_key=True, max_length=64)
    value: int = 0


class Incident(Table, table=True):
    __tablename__ = "incidents"
    __table_args__ = (
        Index("ix_incidents_pd_service_status", "pagerduty_service_id", "status"),
        # The web list's filters, each ending in ``number`` (its order and its page cursor): a filtered
        # page is one ordered index range, and severity + status is counted from the index alone.
        Index("ix_incidents_status_number", "status", "number"),
        Index("ix_incidents_severity_status_number", "severity", "status", "number"),
        Index("ix_incidents_service_number", "service", "number"),
        # Similar past incidents on a service, newest first (storage/text_search.py users).
        Index("ix_incidents_service_detected", "service", "detected_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    number: int = Field(unique=True, index=True)
    ref: str = Field(unique=True, max_length=32)
    title: str = Field(max_length=1024)
    description: str | None = None
    service: str | None = Field(default=None, max_length=255)
    severity: str = Field(default="SEV3", max_length=8)
    status: str = Field(default="triggered", max_length=16)
    origin: str = Field(default="pagerduty", max_length=16)  # pagerduty | slack | cli

    pagerduty_incident_id: str | None = Field(default=None, max_length=PAGERDUTY_ID_LEN, unique=True)
    pagerduty_url: str | None = None
    pagerduty_service_id: str | None = Field(default=None, max_length=PAGERDUTY_ID_LEN)
    pagerduty_escalation_policy_id: str | None = Field(default=None, max_length=PAGERDUTY_ID_LEN)
    pagerduty_priority: str | None = Field(default=None, max_length=PAGERDUTY_PRIORITY_LEN)
    pagerduty_urgency: str | None = Field(default=None, max_length=16)

    # False for an incident recorded without a channel (over when we first heard of it, or imported).
    slack_channel_wanted: bool = True
    slack_channel_id: str | None = Field(default=None, max_length=32, index=True)
    slack_channel_name: str | None = Field(default=None, max_length=80)
    announce_channel_id: str | None = Field(default=None, max_length=32)
    announce_ts: str | None = Field(default=None, max_length=32)

    reporter_id: str | None = Field(default=None, max_length=32)
    commander_id: str | None = Field(default=None, max_length=32)
    comms_id: str | None = Field(default=None, max_length=32)
    scribe_id: str | None = Field(default=None, max_length=32)

    # The six milestones (DESIGN.md §5).
    impact_started_at: datetime | None = None
    detected_at: datetime | None = Field(default=None, index=True)
    acknowledged_at: datetime | None = None
    mitigated_at: datetime | None = None
    resolved_at: datetime | None = Field(default=None, index=True)
    closed_at: datetime | None = None

    # Last-writer-wins registers that make the lifecycle independent of delivery order
    # (see incident_bot/core/lifecycle.py). Not shown to users.
    impact_started_reg: datetime | None = None
    first_ack_at: datetime | None = None
    first_mitigated_at: datetime | None = None
    last_resolved_at: datetime | None = None
    resolve_times: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False, default=list))
    last_reopened_at: datetime | None = None
    ack_state: str | None = Field(default=None, max_length=8)  # "ack" | "unack"
    ack_state_at: datetime | None = None
    last_mitigated_at: datetime | None = None
    last_closed_at: datetime | None = None
    severity_at: datetime | None = None
    details_at: datetime | None = None
    close_override_reason: str | None = None

    rca: dict[str, Any] = Field(default_factory=dict, sa_column=_json_dict())

    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class PagerDutyLink(Table, table=True):
    """Every PagerDuty incident that belongs to one of ours (the triggering one and those paged from Slack)."""

    __tablename__ = "pagerduty_links"
    pagerduty_incident_id: str = Field(primary_key=True, max_length=PAGERDUTY_ID_LEN)
    incident_id: int = Field(foreign_key="incidents.id", index=True)
    primary: bool = False
    url: str | None = None
    service_name: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    # What grouping and ``/incident unlink`` need of a linked PagerDuty incident without asking PagerDuty.
    service_id: str | None = Field(default=None, max_length=64)
    title: str | None = Field(default=None, max_length=1024)
    triggered_at: datetime | None = None
    status: str | None = Field(default=None, max_length=16)  # PagerDuty's: triggered | acknowledged | resolved


class BackfillWindow(Table, table=True):
    """One window of a history backfill (``incident-bot backfill pagerduty``): its checkpoint.

    ``scope`` names the run's filter (source and services); a window whose status is ``done`` is skipped
    by the next run over the same scope, so an interrupted backfill continues where it stopped.
    """

    __tablename__ = "backfill_windows"

    scope: str = Field(primary_key=True, max_length=64)
    since: datetime = Field(primary_key=True)
    until: datetime = Field(primary_key=True)
    status: str = Field(default="running", max_length=16)  # running | done
    incidents: int = 0
    log_entries: int = 0
    requests: int = 0
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None


class TimelineEvent(Table, table=True):
    __tablename__ = "timeline_events"
    __table_args__ = (
        UniqueConstraint("incident_id", "source", "source_event_id", name="uq_timeline_source_event"),
        Index("ix_timeline_incident_occurred", "incident_id", "occurred_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    incident_id: int = Field(foreign_key="incidents.id")
    occurred_at: datetime
    source: str = Field(max_length=16)  # pagerduty | slack | bot | cli
    kind: str = Field(max_length=48)
    actor: str | None = Field(default=None, max_length=255)
    text: str = ""
    milestone: str | None = Field(default=None, max_length=32)
    source_event_id: str | None = Field(default=None, max_length=EVENT_ID_LEN)
    recorded_at: datetime = Field(default_factory=utcnow)


class InboxDelivery(Table, table=True):
    """Every signed input, stored raw before it is answered; the fold worker applies it later.

    The unique (source, event_id) key makes redeliveries harmless: a second INSERT of the same delivery
    does nothing. ``status`` follows a row's life: ``pending`` (accepted, 2xx sent) -> ``inflight``
    (claimed by a fold worker) -> ``done``; a row that fails ``INBOX_MAX_ATTEMPTS`` times is ``failed``
    (kept with its error, replayed by ``incident-bot inbox retry``); ``deferred`` holds a PagerDuty event
    that overtook its incident's first event, applied when the incident opens.
    """

    __tablename__ = "inbox"
    __table_args__ = (
        UniqueConstraint("source", "event_id", name="uq_inbox_source_event"),
        Index("ix_inbox_status_id", "status", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=16)  # pagerduty | slack | github | jira | linear
    event_id: str = Field(max_length=EVENT_ID_LEN)
    event_type: str = Field(max_length=64)
    status: str = Field(default="pending", max_length=16)  # pending | done | failed | deferred
    outcome: str | None = Field(default=None, max_length=16)  # processed | ignored | refused...
    attempts: int = 0  # failed attempts (a batch that fails is retried row by row)
    last_error: str | None = None
    incident_id: int | None = None
    subject_id: str | None = Field(default=None, max_length=PAGERDUTY_ID_LEN, index=True)
    payload: str | None = None
    received_at: datetime = Field(default_factory=utcnow)
    done_at: datetime | None = None


class WorkerHeartbeat(Table, table=True):
    """One row per live worker process (fold and outbox). A worker whose heartbeat is older than
    ``WORKER_DEAD_AFTER`` is dead: a live worker hands its claims back within seconds."""

    __tablename__ = "worker_heartbeats"

    worker_id: str = Field(primary_key=True, max_length=128)
    started_at: datetime = Field(default_factory=utcnow)
    heartbeat_at: datetime = Field(default_factory=utcnow)


class OutboxMessage(Table, table=True):
    """A deferred call to Slack, PagerDuty REST or a tracker, delivered by incident_bot/pipeline/outbox_worker.py.

    Rows with the same ``order_key`` are delivered strictly in id order. ``dedup_key`` lets a producer
    enqueue "at most once" work (one reminder per owner per day) even when replicas race.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_status_key", "status", "order_key", "id"),
        # The claim's two lookups, over the active rows only (migration 0010).
        Index("ix_outbox_due", "next_attempt_at", "id", sqlite_where=text("status = 'pending'"),
              postgresql_where=text("status = 'pending'")),
        Index("ix_outbox_active_key", "order_key", "id", sqlite_where=text("status IN ('pending', 'inflight')"),
              postgresql_where=text("status IN ('pending', 'inflight')")),
    )

    id: int | None = Field(default=None, primary_key=True)
    order_key: str = Field(max_length=128, index=True)
    method: str = Field(max_length=64)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=_json_dict())
    incident_id: int | None = Field(default=None, index=True)
    status: str = Field(default="pending", max_length=16)  # pending | inflight | done | dead
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow)
    lease_until: datetime | None = None
    claimed_by: str | None = Field(default=None, max_length=128)
    last_error: str | None = None
    result: dict[str, Any] = Field(default_factory=dict, sa_column=_json_dict())
    dedup_key: str | None = Field(default=None, max_length=255, unique=True)
    created_at: datetime = Field(default_factory=utcnow)
    done_at: datetime | None = None


class IncidentMetrics(Table, table=True):
    """Per-incident durations, recomputed whenever a milestone changes.

    Severity, service and the window timestamps are copied here so period aggregates are one indexed
    scan of a narrow table.
    """

    __tablename__ = "incident_metrics"
    # A service's incidents in time order: what keeps breaking (usecases/learning.py, migration 0012).
    __table_args__ = (Index("ix_incident_metrics_service_detected", "service", "detected_at"),)

    incident_id: int = Field(primary_key=True, foreign_key="incidents.id")
    severity: str = Field(max_length=8, index=True)
    service: str | None = Field(default=None, max_length=255)
    detected_at: datetime | None = Field(default=None, index=True)
    resolved_at: datetime | None = Field(default=None, index=True)
    ttd_s: int | None = None
    tta_s: int | None = None
    ttm_s: int | None = None
    ttr_s: int | None = None
    updated_at: datetime = Field(default_factory=utcnow)


class ActionItem(Table, table=True):
    """A CAPA (corrective and preventive action) item."""

    __tablename__ = "action_items"
    __table_args__ = (
        # CAPA marked done in a window: recurrence after CAPA (core/recurrence.py).
        Index("ix_action_items_status_closed", "status", "closed_at"),
        # CAPA still open at an instant, by due day: the digest's overdue list (migration 0012).
        Index("ix_action_items_closed_due", "closed_at", "due_date"),
    )

    id: int | None = Field(default=None, primary_key=True)
    incident_id: int = Field(foreign_key="incidents.id", index=True)
    title: str = Field(max_length=1024)
    type: str = Field(default="corrective", max_length=16)
    priority: str = Field(default="medium", max_length=8)
    owner_id: str | None = Field(default=None, max_length=32, index=True)
    due_date: date | None = None
    status: str = Field(default="open", max_length=16, index=True)
    ticket_url: str | None = None
    # The tracker's ticket (CAPA_TRACKER): its key ("acme/ops#12", "OPS-7", Linear's issue id), the last
    # state we know it is in (open | in_progress | done | wont_do) and the tracker's updated time of
    # that state: an inbound event no newer than it is our own change coming back, or a stale one.
    ticket_key: str | None = Field(default=None, max_length=255, index=True)
    ticket_state: str | None = Field(default=None, max_length=16)
    ticket_synced_at: datetime | None = None
    created_by: str | None = Field(default=None, max_length=32)
    created_at: datetime = Field(default_factory=utcnow, index=True)  # the digest's "opened in the period"
    closed_at: datetime | None = None


class DigestRun(Table, table=True):
    """Exactly one row per digest period: the unique key is what makes a digest post once."""

    __tablename__ = "digest_runs"

    id: int | None = Field(default=None, primary_key=True)
    period_key: str = Field(unique=True, max_length=64)
    since: datetime
    until: datetime
    status: str = Field(default="claimed", max_length=16)  # claimed | enqueued
    claimed_by: str | None = Field(default=None, max_length=128)
    claimed_at: datetime = Field(default_factory=utcnow)
    outbox_id: int | None = None


class JobLease(Table, table=True):
    """Leader lease for scheduled jobs: the replica whose lease is current runs them."""

    __tablename__ = "job_leases"

    name: str = Field(primary_key=True, max_length=64)
    holder: str = Field(max_length=128)
    expires_at: datetime


class ChannelMember(Table, table=True):
    """Who is in an incident channel, as far as Slack has told us (joins, leaves, our own invites).

    Lets a state-changing command be refused for non-members without a Web API call before the ack.
    """

    __tablename__ = "channel_members"

    channel_id: str = Field(primary_key=True, max_length=SLACK_ID_LEN)
    user_id: str = Field(primary_key=True, max_length=SLACK_ID_LEN)
    updated_at: datetime = Field(default_factory=utcnow)


class SlackUser(Table, table=True):
    """Display cache of Slack users. Ids are the keys everywhere; names are only shown."""

    __tablename__ = "slack_users"

    user_id: str = Field(primary_key=True, max_length=SLACK_ID_LEN)
    name: str | None = Field(default=None, max_length=255)
    email: str | None = Field(default=None, max_length=255)
    tz: str | None = Field(default=None, max_length=64)
    fetched_at: datetime = Field(default_factory=utcnow)


class RcaDocument(Table, table=True):
    """The RCA as a document: its review state (draft | review | final), authors and reviewers.

    The narrative itself stays in ``Incident.rca``; this row exists once someone moves the document
    out of draft (no row means draft). Transitions are checked in incident_bot/core/rca_review.py.
    """

    __tablename__ = "rca_documents"

    incident_id: int = Field(primary_key=True, foreign_key="incidents.id")
    status: str = Field(default="draft", max_length=16)
    authors: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False, default=list))
    reviewers: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False, default=list))
    status_changed_at: datetime | None = None
    status_changed_by: str | None = Field(default=None, max_length=255)
    final_override_reason: str | None = None
    updated_at: datetime = Field(default_factory=utcnow)


class IncidentSearch(Table, table=True):
    """An incident's words, as storage/text_search.py reads them: what the text index is built on.

    PostgreSQL adds a generated ``tsv`` column with a GIN index; SQLite an FTS5 table over these two
    columns (migration 0007). Written in the flush that writes the incident, never by hand.
    """

    __tablename__ = "incident_search"
    __table_args__ = (Index("ix_incident_search_service", "service_key", "detected_at"),
                      Index("ix_incident_search_service_id", "service_id", "detected_at"))

    incident_id: int = Field(primary_key=True, foreign_key="incidents.id", ondelete="CASCADE")
    title_terms: str = ""  # title and service name
    body_terms: str = ""  # description, RCA summary and root causes (words not already in the title)
    # What ranking reads besides the words (storage/text_rank.py), so it never joins ``incidents``:
    # copies of the incident's number, detection, whether it is resolved, its service name as compared
    # (stripped, case-folded) and its PagerDuty service id (migration 0008).
    number: int | None = None
    detected_at: datetime | None = None
    resolved: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    service_key: str | None = None  # no length: case folding can lengthen a name ("ß" -> "ss")
    service_id: str | None = Field(default=None, max_length=PAGERDUTY_ID_LEN)


class IncidentSearchWord(Table, table=True):
    """In how many incidents a word appears, as last counted (storage/text_rank.py ``refresh_word_counts``:
    the scheduler, every 15 minutes). Words in fewer than 10 incidents are not kept. The ``search_words``
    counter holds the incident counter at that count: a lookup knows how many incidents came since."""

    __tablename__ = "incident_search_words"

    term: str = Field(primary_key=True, max_length=64)
    docs: int
