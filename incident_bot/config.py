"""Configuration from the environment and a ``.env`` file (pydantic-settings).

Each command asks only for what it needs (``serve`` needs the Slack and PagerDuty secrets, ``incidents
list`` only the database, ``demo`` nothing): :meth:`Settings.require` stops with one line that names
the missing or malformed setting, never a traceback.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta, tzinfo
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from dateutil import tz
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from incident_bot.core.schedule import parse_rule
from incident_bot.core.severity import DEFAULT_SEVERITY_MAP, parse_severity_map
from incident_bot.errors import ConfigError  # defined apart so the CLI can catch it without loading settings
from storage.db import DEFAULT_SQLITE_URL, normalise_url

TRACKERS = ("github", "jira", "linear")
# What each tracker needs, named as the environment names them (checked by ``require_tracker``).
TRACKER_SETTINGS = {
    "github": ("github_token", "github_repository", "github_webhook_secret"),
    "jira": ("jira_url", "jira_email", "jira_api_token", "jira_project", "jira_webhook_secret"),
    "linear": ("linear_api_key", "linear_team_id", "linear_webhook_secret"),
}
_PLACEHOLDERS = ("changeme", "change-me", "xxx", "todo", "your-", "<", "...")
# Values shipped in .env.example: a copied file that was not filled in must not pass for configuration
# (a digest "posted" to C0123456789 uses up the week's digest on a channel that does not exist).
PLACEHOLDERS = frozenset({"replace-me", "xoxb-replace-me", "xapp-replace-me", "C0123456789"})


def _csv(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v).strip() for v in value if str(v).strip()]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    database_url: str = DEFAULT_SQLITE_URL

    slack_bot_token: str | None = None
    slack_signing_secret: str | None = None
    slack_app_token: str | None = None
    slack_api_url: str = "https://slack.com/api/"
    slack_command: str = "/incident"
    # The one workspace served; requests from others are answered 200 and ignored. Unset: the workspace
    # of SLACK_BOT_TOKEN, from auth.test at start-up.
    slack_team_id: str | None = Field(default=None, pattern=r"^T[A-Z0-9]{2,20}$")

    # The web pages (incident_bot/web): Sign in with Slack. All four set -> pages on; none -> off.
    slack_client_id: str | None = None
    slack_client_secret: str | None = None
    slack_oidc_authorize_url: str = "https://slack.com/openid/connect/authorize"
    web_base_url: str | None = None
    web_session_secret: str | None = None
    web_auth: str = "slack"  # slack | none (loopback only, for local use)
    web_session_hours: float = Field(default=12.0, gt=0, le=24 * 30)

    pagerduty_webhook_secrets: Annotated[list[str], NoDecode] = Field(default_factory=list)
    pagerduty_api_token: str | None = None
    pagerduty_api_url: str = "https://api.pagerduty.com"
    pagerduty_from_email: str | None = None
    pagerduty_ca_bundle: str | None = None
    # PagerDuty's REST limit per API key, requests a minute: `backfill --max-rpm` may not ask for more.
    # Only a stand-in without PagerDuty's limit (the tests) needs another value.
    pagerduty_api_max_rpm: float = Field(default=960, gt=0, le=100_000)
    resolve_linked_pagerduty: bool = True
    # Alert storms: a PagerDuty trigger on a service that already has an open incident opened within
    # GROUP_WINDOW joins it (a linked PagerDuty incident, no new channel). GROUP_BY=none: one per trigger.
    group_by: str = "service"
    group_window: Annotated[float, NoDecode] = 600.0  # seconds; "10m", "90s", "1h" accepted
    # How long a storm's "+N PagerDuty incidents" line waits in the outbox, counting the joins that follow,
    # before it is posted: longer, fewer lines in a long storm; shorter, the channel hears sooner.
    group_line_hold: float = Field(default=5.0, ge=0, le=300)
    # Recurrence after CAPA (core/recurrence.py): an incident detected within this long after a CAPA
    # action of an earlier, same-service or similar incident was marked done is flagged.
    recurrence_window: Annotated[float, NoDecode] = 30 * 86400.0  # seconds; "30d", "2w"... accepted

    # CAPA tickets in the team's tracker (incident_bot/trackers, docs/trackers.md). Unset: no sync.
    capa_tracker: str | None = None
    github_token: str | None = None
    github_repository: str | None = None  # owner/name
    github_api_url: str = "https://api.github.com"
    github_webhook_secret: str | None = None
    # email=login pairs: GitHub does not find users by a private email, so owners are mapped here first.
    github_user_map: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    jira_url: str | None = None
    jira_email: str | None = None
    jira_api_token: str | None = None
    jira_project: str | None = None
    jira_issue_type: str = "Task"
    jira_done_statuses: Annotated[list[str], NoDecode] = Field(default_factory=list)
    jira_webhook_secret: str | None = None
    # Jira's JQL search shows a new issue only after a delay: how long a create whose answer was lost waits
    # for its ticket to show before it creates one (docs/trackers.md, "Exactly once").
    jira_search_settle: float = Field(default=60.0, ge=0, le=3600)
    linear_api_key: str | None = None
    linear_team_id: str | None = None
    linear_api_url: str = "https://api.linear.app/graphql"
    linear_webhook_secret: str | None = None
    tracker_ca_bundle: str | None = None
    tracker_timeout: float = Field(default=15.0, gt=0, le=120)
    capa_sync_schedule: str = "FREQ=DAILY;BYHOUR=6;BYMINUTE=0"

    incident_announce_channel: str | None = None
    digest_channel: str | None = None
    timezone: str = "UTC"
    digest_schedule: str = "FREQ=WEEKLY;BYDAY=MO;BYHOUR=9;BYMINUTE=0"
    response_targets: str = "SEV1:ttr=60m,ttd=10m;SEV2:ttr=4h,ttd=15m"
    capa_reminder_schedule: str = "FREQ=DAILY;BYHOUR=9;BYMINUTE=0"
    scheduler_enabled: bool = True
    scheduler_lease_seconds: float = Field(default=30.0, gt=0, le=3600)
    scheduler_tick_seconds: float = Field(default=10.0, gt=0, le=600)
    severity_map: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=lambda: dict(DEFAULT_SEVERITY_MAP)
    )
    rca_templates_dir: str | None = None
    # Public base URL of this server (the web pages): the digest links each RCA to {base}/ui/incidents/INC-n.
    web_base_url: str | None = None
    # How long an open incident may go without `/incident update` before the channel is reminded
    # (core/nudge.py): "SEV1=30m,SEV2=30m,default=60m", or one duration for all; 0 turns it off.
    status_update_interval: str = "SEV1=30m,SEV2=30m,default=60m"
    blameless_words_file: str | None = None

    # `serve` on PostgreSQL runs its fold, outbox and scheduler in a child process (incident_bot/worker_process.py):
    # false keeps them in threads of the one process (as on SQLite, always).
    serve_worker_process: bool = True
    # The fold worker: inbox rows applied per transaction (SQLite caps it at 50: one writer), attempts
    # before a row is parked as failed, and how often an idle worker looks for rows from other replicas.
    fold_batch_size: int = Field(default=200, ge=1, le=5000)
    fold_max_attempts: int = Field(default=5, ge=1, le=100)
    fold_poll_interval: float = Field(default=0.1, gt=0, le=60)
    # Delivery threads: a call is I/O (Slack answers in 50-300 ms), so a storm's messages need several at
    # once; bench/bench_first_call.py: 2 threads kept follow-ups seconds behind at 100 deliveries/s.
    outbox_workers: int = Field(default=8, ge=1, le=64)
    outbox_max_attempts: int = Field(default=30, ge=1, le=1000)
    outbox_poll_interval: float = Field(default=0.2, gt=0, le=60)
    outbox_backoff_base: float = Field(default=1.0, gt=0, le=600)
    outbox_backoff_cap: float = Field(default=300.0, gt=0, le=3600)
    # A worker process whose heartbeat is older than this is dead: a live one hands its in-flight outbox
    # calls back (pipeline/heartbeat.py). Each process beats every fifth of it.
    worker_dead_after: float = Field(default=10.0, ge=1, le=600)
    slack_timeout: float = Field(default=10.0, gt=0, le=120)
    # Slack's Tier 2 budget for conversations.create (~20/min); the outbox paces itself below it.
    slack_channel_create_per_minute: float = Field(default=19.0, gt=0, le=10_000)
    # The other paced methods' budgets (pipeline/rate_limits.py), "method=per_minute,...": only for a Slack
    # without Slack's limits (a stand-in: the tests); unset, Slack's published tiers apply.
    slack_rate_budgets: Annotated[dict[str, float], NoDecode] = Field(default_factory=dict)
    log_level: str = "INFO"
    # Slow and idle clients (see incident_bot/http_server.py): seconds for a request's headers, for its
    # body, for an idle keep-alive connection; open connections at most (over it: 503).
    http_header_timeout: float = Field(default=10.0, gt=0, le=600)
    http_body_timeout: float = Field(default=15.0, gt=0, le=600)
    http_keep_alive_timeout: int = Field(default=5, ge=1, le=600)
    http_limit_concurrency: int = Field(default=1000, ge=10, le=100_000)

    @field_validator("*", mode="after")
    @classmethod
    def _no_placeholder(cls, value: Any) -> Any:
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, str) and (v in PLACEHOLDERS or "replace-me" in v) for v in values):
            raise ValueError("is still the placeholder from .env.example: set a real value or remove the line")
        return value

    @field_validator("pagerduty_webhook_secrets", mode="before")
    @classmethod
    def _split_secrets(cls, value: Any) -> list[str]:
        return _csv(value)

    @field_validator("jira_done_statuses", mode="before")
    @classmethod
    def _split_statuses(cls, value: Any) -> list[str]:
        return _csv(value)

    @field_validator("github_user_map", mode="before")
    @classmethod
    def _user_map(cls, value: Any) -> dict[str, str]:
        if isinstance(value, dict):
            return {str(k).strip().lower(): str(v).strip() for k, v in value.items()}
        found: dict[str, str] = {}
        for pair in _csv(value):
            email, sep, login = pair.partition("=")
            if not sep or "@" not in email or not login.strip():
                raise ValueError(f"{pair!r} is not email=login")
            found[email.strip().lower()] = login.strip().lstrip("@")
        return found

    @field_validator("slack_rate_budgets", mode="before")
    @classmethod
    def _rate_budgets(cls, value: Any) -> dict[str, float]:
        from incident_bot.pipeline.rate_limits import DEFAULT_BUDGETS

        pairs = value.items() if isinstance(value, dict) else (p.partition("=")[::2] for p in _csv(value))
        found: dict[str, float] = {}
        for method, budget in pairs:
            method = str(method).strip()
            if method not in DEFAULT_BUDGETS:
                raise ValueError(f"{method!r} is not a paced Slack method ({', '.join(DEFAULT_BUDGETS)})")
            try:
                found[method] = float(budget)
            except (TypeError, ValueError):
                raise ValueError(f"{method}={budget!r}: give calls a minute, e.g. {method}=50") from None
            if not 0 < found[method] <= 100_000:
                raise ValueError(f"{method}: calls a minute must be over 0 and at most 100000")
        return found

    @field_validator("capa_tracker", mode="before")
    @classmethod
    def _tracker(cls, value: Any) -> str | None:
        v = str(value or "").strip().lower()
        if v in ("", "none", "off"):
            return None
        if v not in TRACKERS:
            raise ValueError(f"must be one of {', '.join(TRACKERS)} (or unset: no sync)")
        return v

    @field_validator("severity_map", mode="before")
    @classmethod
    def _parse_severity_map(cls, value: Any) -> dict[str, str]:
        if isinstance(value, dict):
            return parse_severity_map(",".join(f"{k}={v}" for k, v in value.items()))
        return parse_severity_map(value or "")

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        if tz.gettz(value) is None:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Europe/Berlin)")
        return value

    @field_validator("database_url")
    @classmethod
    def _check_db_url(cls, value: str) -> str:
        value = normalise_url(value.strip())
        if not value.startswith(("sqlite:", "postgresql+psycopg:")):
            raise ValueError("must be sqlite:///PATH or postgresql://USER@HOST/DB")
        return value

    @field_validator("slack_api_url")
    @classmethod
    def _slash(cls, value: str) -> str:
        if not _is_url(value, ("http", "https")):
            raise ValueError("must be an http(s) URL such as https://slack.com/api/")
        return value if value.endswith("/") else value + "/"

    @field_validator("web_auth")
    @classmethod
    def _web_auth(cls, value: str) -> str:
        if value.strip().lower() not in ("slack", "none"):
            raise ValueError("must be slack (Sign in with Slack) or none (loopback only)")
        return value.strip().lower()
    @field_validator("pagerduty_api_url")
    @classmethod
    def _https(cls, value: str) -> str:
        # The pagerduty client refuses anything but https (with an error naming no setting).
        if not _is_url(value, ("https",)):
            raise ValueError("must be an https URL such as https://api.pagerduty.com")
        return value

    @field_validator("pagerduty_ca_bundle", "rca_templates_dir", "blameless_words_file")
    @classmethod
    def _exists(cls, value: str | None) -> str | None:
        if value and not Path(value).expanduser().exists():
            raise ValueError(f"{value} does not exist")
        return value

    @field_validator("digest_schedule", "capa_reminder_schedule")
    @classmethod
    def _rule(cls, value: str) -> str:
        parse_rule(value, tz.UTC)  # ValueError with the reason; checked again in the team's zone by serve
        return value

    @model_validator(mode="after")
    def _pairs(self) -> Settings:
        if self.pagerduty_api_token and not self.pagerduty_from_email:
            raise ValueError("PAGERDUTY_FROM_EMAIL is required with PAGERDUTY_API_TOKEN "
                             "(PagerDuty writes need the email of a PagerDuty user)")
        return self

    @field_validator("group_by")
    @classmethod
    def _group_by(cls, value: str) -> str:
        if value.strip().lower() not in ("service", "none"):
            raise ValueError("must be service or none")
        return value.strip().lower()

    @field_validator("group_window", mode="before")
    @classmethod
    def _group_window(cls, value: Any) -> float:
        from incident_bot.core.targets import parse_duration

        if isinstance(value, (int, float)) and not isinstance(value, bool):
            seconds = float(value)
        else:
            text = str(value).strip()
            seconds = float(text) if text.isdigit() else float(parse_duration(text))
        if not 0 <= seconds <= 86400:
            raise ValueError("must be a duration from 0 to 24h, e.g. 10m, 90s or 600")
        return seconds

    @field_validator("recurrence_window", mode="before")
    @classmethod
    def _recurrence_window(cls, value: Any) -> float:
        from incident_bot.core.targets import parse_duration

        if isinstance(value, (int, float)) and not isinstance(value, bool):
            seconds = float(value)
        else:
            text = str(value).strip().lower()
            if text.endswith("w") and text[:-1].isdigit():
                text = f"{int(text[:-1]) * 7}d"
            seconds = float(text) if text.isdigit() else float(parse_duration(text))
        if not 86400 <= seconds <= 365 * 86400:
            raise ValueError("must be a duration from 1d to 365d, e.g. 30d, 6w or 2592000 (seconds)")
        return seconds

    @property
    def recurrence_delta(self) -> timedelta:
        return timedelta(seconds=self.recurrence_window)

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return value.upper()

    @cached_property
    def tzinfo(self) -> tzinfo:
        zone = tz.gettz(self.timezone)
        assert zone is not None
        return zone

    @property
    def pagerduty_rest_enabled(self) -> bool:
        return bool(self.pagerduty_api_token)

    def require(self, *names: str, why: str) -> Settings:
        """Stop with one line naming the first setting in ``names`` that is empty."""
        for name in names:
            value = getattr(self, name)
            if value in (None, "", []):
                raise ConfigError(f"{name.upper()} is required {why}")
        if "slack_bot_token" in names and not str(self.slack_bot_token).startswith("xoxb-"):
            raise ConfigError("SLACK_BOT_TOKEN is malformed: a bot token starts with xoxb-")
        if self.slack_app_token and not self.slack_app_token.startswith("xapp-"):
            raise ConfigError("SLACK_APP_TOKEN is malformed: an app-level token starts with xapp-")
        return self


    def require_tracker(self) -> Settings:
        """With CAPA_TRACKER set, stop with one line naming a missing or placeholder setting it needs."""
        if not self.capa_tracker:
            return self
        for name in TRACKER_SETTINGS[self.capa_tracker]:
            value = str(getattr(self, name) or "").strip()
            if not value:
                raise ConfigError(f"{name.upper()} is required when CAPA_TRACKER={self.capa_tracker}")
            if value.lower().startswith(_PLACEHOLDERS) or value.lower() in _PLACEHOLDERS:
                raise ConfigError(f"{name.upper()} is a placeholder ({value[:12]!r}): set the real value")
        if self.capa_tracker == "github" and not re.fullmatch(r"[\w.-]+/[\w.-]+", self.github_repository or ""):
            raise ConfigError("GITHUB_REPOSITORY is malformed: write it as owner/name")
        for name in ("github_api_url", "jira_url", "linear_api_url"):
            url = str(getattr(self, name) or "")
            if url and not url.startswith(("https://", "http://")):
                raise ConfigError(f"{name.upper()} is malformed: an http(s) URL is expected")
        if self.tracker_ca_bundle and not os.path.isfile(self.tracker_ca_bundle):
            raise ConfigError(f"TRACKER_CA_BUNDLE is not a readable file: {self.tracker_ca_bundle}")
        return self
def _is_url(value: str, schemes: tuple[str, ...]) -> bool:
    parts = urlsplit(value)
    return parts.scheme in schemes and bool(parts.hostname)


def load_settings(**overrides: Any) -> Settings:
    """Read settings; a validation error becomes a one-line :class:`ConfigError` naming the setting."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = err.get("msg", "invalid").removeprefix("Value error, ")
        if not err.get("loc"):  # a rule across settings: the message names them
            raise ConfigError(msg) from None
        name = str(err["loc"][0]).upper()
        raise ConfigError(f"{name} {msg}" if msg.startswith("is ") else f"{name} is malformed: {msg}") from None
