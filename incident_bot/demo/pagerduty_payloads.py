"""PagerDuty webhook v3 deliveries shaped like PagerDuty's documented samples, and their signatures.

Used by the demo, the tests and the benchmarks, so that all three send what PagerDuty sends.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from incident_bot.pagerduty.signature import sign

BASE = "https://acme.pagerduty.com"


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def incident_data(
    pd_id: str = "Q2K8FV9Z1OQX6M",
    *,
    title: str = "Checkout API 5xx rate above 5%",
    created_at: datetime | None = None,
    status: str = "triggered",
    priority: str | None = "P2",
    urgency: str = "high",
    service_id: str = "PSVC001",
    service_name: str = "checkout-api",
    escalation_policy_id: str = "PEP0001",
    number: int = 42,
) -> dict[str, Any]:
    created = created_at or datetime.now(UTC)
    return {
        "id": pd_id,
        "type": "incident",
        "self": f"https://api.pagerduty.com/incidents/{pd_id}",
        "html_url": f"{BASE}/incidents/{pd_id}",
        "number": number,
        "status": status,
        "incident_key": f"key-{pd_id}",
        "created_at": iso(created),
        "title": title,
        "service": {"html_url": f"{BASE}/services/{service_id}", "id": service_id,
                    "self": f"https://api.pagerduty.com/services/{service_id}", "summary": service_name,
                    "type": "service_reference"},
        "assignees": [{"html_url": f"{BASE}/users/PUSER01", "id": "PUSER01",
                       "self": "https://api.pagerduty.com/users/PUSER01", "summary": "Ada Oncall",
                       "type": "user_reference"}],
        "escalation_policy": {"html_url": f"{BASE}/escalation_policies/{escalation_policy_id}",
                              "id": escalation_policy_id, "summary": "Checkout on-call",
                              "type": "escalation_policy_reference"},
        "teams": [],
        "priority": None if priority is None else {
            "html_url": f"{BASE}/account/incident_priorities", "id": f"PPRI{priority}",
            "self": f"https://api.pagerduty.com/priorities/PPRI{priority}", "summary": priority,
            "type": "priority_reference"},
        "urgency": urgency,
        "conference_bridge": None,
        "resolve_reason": None,
    }


def delivery(
    event_type: str,
    data: dict[str, Any],
    *,
    occurred_at: datetime | None = None,
    event_id: str | None = None,
    agent: str | None = "Ada Oncall",
) -> dict[str, Any]:
    return {
        "event": {
            "id": event_id or str(uuid.uuid4()),
            "event_type": event_type,
            "resource_type": "incident",
            "occurred_at": iso(occurred_at or datetime.now(UTC)),
            "agent": None if agent is None else {
                "html_url": f"{BASE}/users/PUSER01", "id": "PUSER01",
                "self": "https://api.pagerduty.com/users/PUSER01", "summary": agent, "type": "user_reference"},
            "client": None,
            "data": data,
        }
    }


def note_data(pd_id: str, content: str, note_id: str = "PNOTE01") -> dict[str, Any]:
    return {
        "incident": {"html_url": f"{BASE}/incidents/{pd_id}", "id": pd_id,
                     "self": f"https://api.pagerduty.com/incidents/{pd_id}", "summary": "",
                     "type": "incident_reference"},
        "id": note_id,
        "content": content,
        "type": "incident_note",
    }


def encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def signed_headers(body: bytes, secret: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-PagerDuty-Signature": sign(body, secret),
        "X-Webhook-Id": str(uuid.uuid4()),
        "User-Agent": "PagerDuty-Webhook/V3.0",
    }
