"""What the three trackers share: the ticket as we write it and as we read it back, the HTTP client
(one ``httpx.Client`` per tracker, ``TRACKER_CA_BUNDLE`` trusted), and the errors the outbox classifies.

A ticket is written from a :class:`TicketSpec` (built from the CAPA by :mod:`incident_bot.trackers.outbound`)
and read back, from a webhook or the reconcile, as a :class:`Ticket` (the use cases' shape,
``usecases/tracker_ticket.py``, which they apply: ``usecases/ticket_changes.py``): its key, URL, state in
OUR vocabulary (open | in_progress | done | wont_do), due date and the tracker's last-updated time. Each
tracker module maps its own states to ours; nothing above this layer knows one tracker from another.
"""

from __future__ import annotations

import logging
import re
import ssl
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import httpx

from incident_bot.usecases.tracker_ticket import UNSET as UNSET  # the trackers' parsers say it
from incident_bot.usecases.tracker_ticket import Ticket

log = logging.getLogger("incident_bot.trackers")
MARKER = "incident-bot:capa="  # the external id written into every ticket body: how a job finds its own
_MARKER_RE = re.compile(r"incident-bot:capa=(\d+)")


def marker(action_id: int) -> str:
    return f"{MARKER}{action_id}"


def marker_id(text: str | None) -> int | None:
    m = _MARKER_RE.search(text or "")
    return int(m.group(1)) if m else None


def carries_marker(text: str | None, action_id: int) -> bool:
    """Whether a ticket body is action ``action_id``'s: the whole number, so #1 does not claim #12's ticket."""
    return marker_id(text) == action_id


@dataclass(frozen=True)
class TicketSpec:
    """What a CAPA's ticket should say (its fields, all at once: every update writes them all)."""

    action_id: int
    incident_ref: str
    title: str
    type: str
    priority: str
    status: str
    due: date | None
    rca_url: str | None
    incident_title: str
    owner_name: str | None  # the Slack owner, as the body shows it
    assignee: str | None  # the tracker account (login, accountId, user id), None: unassigned
    assignee_note: str | None = None  # why unassigned, said in the body

    @property
    def labels(self) -> list[str]:
        return [f"incident:{self.incident_ref}", f"capa:{self.type}"]

    def body_lines(self) -> list[tuple[str, str]]:
        """(label, value) rows every tracker renders in its own format (Markdown, ADF)."""
        rows = [("Incident", f"{self.incident_ref}: {self.incident_title}"),
                ("Type", self.type), ("Priority", self.priority),
                ("Due", self.due.isoformat() if self.due else "no due date")]
        if self.rca_url:
            rows.append(("RCA", self.rca_url))
        owner = self.owner_name or "nobody yet"
        if self.owner_name and not self.assignee:
            owner += f" (unassigned here: {self.assignee_note or 'no matching account'})"
        rows.append(("Owner", owner))
        return rows

    def markdown(self) -> str:
        lines = [f"Corrective/preventive action #{self.action_id} from incident {self.incident_ref}.", ""]
        lines += [f"- **{k}:** {v}" for k, v in self.body_lines()]
        lines += ["", "Closing this ticket marks the action done in Incident Bot; reopening it reopens the action.",
                  "", f"<!-- {marker(self.action_id)} -->"]
        return "\n".join(lines)


class Tracker(Protocol):
    name: str  # "GitHub", "Jira", "Linear": for messages
    search_settle: float  # seconds a new ticket may take to show in find_ticket's search (0: at once)

    def find_user(self, email: str) -> str | None: ...
    def find_ticket(self, spec: TicketSpec) -> Ticket | None: ...
    def create(self, spec: TicketSpec) -> Ticket: ...
    def update(self, key: str, spec: TicketSpec) -> Ticket: ...
    def fetch(self, keys: list[str]) -> list[Ticket]: ...


# -- errors -----------------------------------------------------------------------------------------

class TrackerError(Exception):
    """The tracker refused a call. ``status`` is its HTTP status; ``retry_after`` is set for rate limits."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status, self.retry_after = status, retry_after


class TrackerAuthError(TrackerError):
    """Bad or under-scoped credentials: parked, never retried (it cannot fix itself)."""


class TrackerRateLimited(TrackerError):
    pass


def retry_after_from(headers: httpx.Headers, now: float | None = None) -> float | None:
    """Seconds to wait, from ``Retry-After`` (seconds or an HTTP date) or the ``x-ratelimit-reset`` family
    (GitHub: epoch seconds; Linear: epoch milliseconds; Jira: an ISO time)."""
    now = time.time() if now is None else now
    value = headers.get("retry-after")
    if value:
        if value.strip().isdigit():
            return max(1.0, float(value))
        try:
            return max(1.0, parsedate_to_datetime(value).timestamp() - now)
        except (TypeError, ValueError):
            pass
    for name in ("x-ratelimit-reset", "x-ratelimit-requests-reset", "x-ratelimit-complexity-reset"):
        value = headers.get(name)
        if not value:
            continue
        try:
            reset = float(value)
            if reset > 1e11:  # milliseconds
                reset /= 1000
        except ValueError:
            try:
                reset = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
        return min(3600.0, max(1.0, reset - now))
    return None


# -- HTTP -------------------------------------------------------------------------------------------

@dataclass
class Http:
    """One tracker's HTTP client. Bad credentials are reported once (one ERROR line naming the setting),
    and every later call fails at once without touching the tracker, until the process restarts with a
    fixed setting: a revoked token never turns into a request loop."""

    name: str
    base_url: str
    headers: dict[str, str]
    credential: str  # the setting to blame on a 401/403, e.g. "GITHUB_TOKEN"
    ca_bundle: str | None = None
    timeout: float = 15.0
    auth: tuple[str, str] | None = None
    auth_failed: str | None = field(default=None, init=False)
    _client: httpx.Client | None = field(default=None, init=False, repr=False)

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            verify: Any = ssl.create_default_context(cafile=self.ca_bundle) if self.ca_bundle else True
            self._client = httpx.Client(base_url=self.base_url, headers=self.headers, verify=verify,
                                        timeout=self.timeout, auth=self.auth, follow_redirects=False)
        return self._client

    def request(self, verb: str, path: str, **kwargs: Any) -> Any:
        """One call; its JSON answer, or the tracker's refusal raised as a :class:`TrackerError`."""
        resp = self.send(verb, path, **kwargs)
        if resp.status_code < 400:
            return resp.json() if resp.content else {}
        raise self.error(resp, verb, path)

    def send(self, verb: str, path: str, **kwargs: Any) -> httpx.Response:
        """One call, its answer as it came (for a tracker that says errors in the body: Linear)."""
        if self.auth_failed:
            raise TrackerAuthError(self.auth_failed, status=401)
        return self.client.request(verb, path, **kwargs)

    def error(self, resp: httpx.Response, verb: str, path: str) -> TrackerError:
        """The error an answer of 400 or more stands for: a rate limit, refused credentials, or a refusal."""
        detail = _detail(resp)
        wait = retry_after_from(resp.headers)
        limited = resp.status_code == 429 or (resp.status_code == 403 and (
            wait is not None and (resp.headers.get("x-ratelimit-remaining") == "0" or "retry-after" in resp.headers)))
        if limited:
            return TrackerRateLimited(f"{self.name} rate limit (HTTP {resp.status_code}): {detail}",
                                      status=resp.status_code, retry_after=wait or 60.0)
        if resp.status_code in (401, 403):
            return self.refused(f"HTTP {resp.status_code}: {detail}", resp.status_code)
        return TrackerError(f"{self.name} HTTP {resp.status_code} on {verb} {path}: {detail}",
                            status=resp.status_code, retry_after=wait)

    def refused(self, detail: str, status: int = 401) -> TrackerAuthError:
        """Bad credentials: logged once, and every later call of this process fails without a request."""
        message = (f"{self.name} refused the credentials ({detail}); check {self.credential} and its "
                   "scopes (docs/trackers.md). CAPA sync is paused until restart.")
        if self.auth_failed is None:
            log.error(message)
        self.auth_failed = message
        return TrackerAuthError(message, status=status)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _detail(resp: httpx.Response) -> str:
    try:
        doc = resp.json()
    except ValueError:
        return resp.text[:200]
    if isinstance(doc, dict):
        for key in ("message", "errorMessages", "errors"):
            if doc.get(key):
                return str(doc[key])[:300]
    return str(doc)[:300]


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        # Jira writes offsets without a colon: 2026-12-01T10:00:00.000+0000
        m = re.fullmatch(r"(.*[T ]\d\d:\d\d:\d\d(?:\.\d+)?)([+-]\d\d)(\d\d)", str(value))
        if not m:
            return None
        parsed = datetime.fromisoformat(f"{m[1]}{m[2]}:{m[3]}")
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_day(value: Any) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None
