"""A hand-made incident history with labelled similar pairs, for tests/test_similar.py.

Twenty-four resolved incidents on eight services over four months, some with root causes written, and
six new incidents whose similar past incidents a person labelled beforehand (``LABELS``): the ones a
responder would want to read first. Distractors share a service or a common word but not the failure.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import Session

from incident_bot.usecases.incidents import refresh_metrics
from storage import repo
from storage.models import ActionItem, Incident

T0 = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)

# (key, days after T0, service, title, root causes)
PAST: list[tuple[str, int, str | None, str, str | None]] = [
    ("pool-1", 0, "checkout-api", "Checkout API 5xx rate above 5%",
     "DB connection pool exhausted after the 2.3 deploy"),
    ("psp-1", 3, "payments", "Payment provider timeouts", "Upstream PSP latency; our retries amplified the load"),
    ("alias-1", 6, "search", "Search results empty for some users",
     "Index alias pointed at an empty index after reindex"),
    ("cert-1", 9, "auth", "Login failures: expired TLS certificate on the auth gateway",
     "Certificate renewal cron was disabled"),
    ("lag-1", 12, "kafka", "Kafka consumer lag on orders topic", "Rebalancing storm after a broker restart"),
    ("slowq-1", 15, "checkout-api", "Checkout latency high", "Slow query: missing index on the carts table"),
    ("alias-2", 20, "search", "Search index empty after nightly reindex job",
     "Reindex job swapped the alias before counting documents"),
    ("pool-2", 24, "payments", "Elevated 5xx on payments API", "Connection pool exhausted under peak load"),
    ("disk-1", 28, "postgres-main", "Disk full on primary database", "WAL archiving stalled, WAL filled the disk"),
    ("cert-2", 31, "edge", "TLS certificate expired for api.example.com", "Manual renewal missed; no expiry alert"),
    ("dns-1", 35, "edge", "DNS resolution failures in eu-west", "Resolver pool misconfigured by a config push"),
    ("mem-1", 40, "search", "Search pods OOMKilled", "Memory leak in the query cache"),
    ("lag-2", 44, "kafka", "Consumer lag alerts on payments events", "Slow consumer after a schema change"),
    ("deploy-1", 47, "checkout-api", "Checkout deploy rollback", "Bad feature flag default shipped"),
    ("psp-2", 52, "payments", "Card payments declined by provider", "PSP outage on their side"),
    ("disk-2", 57, "postgres-main", "Primary database disk usage at 95%", "Table bloat after a mass update"),
    ("login-1", 60, "auth", "Login page slow", "Session store latency"),
    ("pool-3", 66, "checkout-api", "Checkout API errors: connection pool exhausted",
     "Pool size not raised with new pods"),
    ("email-1", 70, "email", "Password reset emails delayed", "Mail provider throttling"),
    ("cdn-1", 75, "edge", "Images not loading: CDN 502", "Origin shield misrouted after a config push"),
    ("alias-3", 80, "search", "Empty search results in the app", None),
    ("lag-3", 85, "kafka", "Orders consumer lag growing", "Partition skew"),
    ("cert-3", 90, "email", "SMTP TLS certificate expired", "Certificate not in the renewal inventory"),
    ("misc-1", 95, None, "Support ticket spike about checkout", None),
]

# key -> (days after T0, service, title, the past incidents a person would want first)
NEW: dict[str, tuple[int, str | None, str, set[str]]] = {
    "q-pool": (120, "checkout-api", "Checkout API 5xx: connection pool exhausted again",
               {"pool-3", "pool-1", "pool-2", "slowq-1", "deploy-1"}),
    "q-alias": (121, "search", "Search returns no results after reindex", {"alias-1", "alias-2", "alias-3"}),
    "q-cert": (122, "auth", "Expired TLS certificate breaks login", {"cert-1", "cert-2", "cert-3", "login-1"}),
    "q-lag": (123, "kafka", "Consumer lag on the orders topic", {"lag-1", "lag-3", "lag-2"}),
    "q-disk": (124, "postgres-main", "Database disk almost full", {"disk-1", "disk-2"}),
    # Declared in Slack, no service: only the words can find it.
    "q-declared": (125, None, "Customers see expired certificate warnings", {"cert-1", "cert-2", "cert-3"}),
}


def add_incident(s: Session, title: str, *, service: str | None, detected: datetime,
                 resolved: datetime | None, root_causes: str | None = None) -> Incident:
    number = repo.next_number(s)
    status = "resolved" if resolved else "triggered"
    inc = Incident(number=number, ref=f"INC-{number}", title=title, service=service, status=status,
                   detected_at=detected, impact_started_at=detected, resolved_at=resolved,
                   rca={"root_causes": root_causes} if root_causes else {})
    s.add(inc)
    s.flush()
    refresh_metrics(s, inc)
    return inc


def load(s: Session) -> dict[str, Incident]:
    out = {}
    for key, day, service, title, cause in PAST:
        at = T0 + timedelta(days=day)
        out[key] = add_incident(s, title, service=service, detected=at, resolved=at + timedelta(hours=1),
                                root_causes=cause)
    for key, (day, service, title, _) in NEW.items():
        out[key] = add_incident(s, title, service=service, detected=T0 + timedelta(days=day), resolved=None)
    s.flush()
    return out


def done_action(s: Session, inc: Incident, done_at: datetime, title: str = "Fix it") -> ActionItem:
    item = ActionItem(incident_id=inc.id or 0, title=title, status="done", created_at=done_at - timedelta(days=1),
                      closed_at=done_at)
    s.add(item)
    s.flush()
    return item
