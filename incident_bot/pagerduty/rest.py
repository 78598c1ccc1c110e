"""The PagerDuty REST API through the ``pagerduty`` client: on-call lookups, paging, resolving.

Only the outbox worker calls this (never a request handler), so a slow PagerDuty never delays an ack.
The client retries 429 without limit by default and ignores ``Retry-After``; we cap it and let the
outbox own the retry schedule.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

import pagerduty

from incident_bot.config import Settings


@dataclass(frozen=True)
class OnCallUser:
    id: str
    name: str
    email: str | None


class PagerDutyRest:
    def __init__(self, client: pagerduty.RestApiV2Client) -> None:
        self.client = client

    @classmethod
    def from_settings(cls, settings: Settings) -> PagerDutyRest | None:
        if not settings.pagerduty_api_token:
            return None
        kwargs: dict[str, Any] = {}
        if settings.pagerduty_ca_bundle:
            kwargs["verify"] = ssl.create_default_context(cafile=settings.pagerduty_ca_bundle)
        client = pagerduty.RestApiV2Client(
            settings.pagerduty_api_token,
            default_from=settings.pagerduty_from_email,
            base_url=settings.pagerduty_api_url,
            **kwargs,
        )
        client.retry[429] = 2
        client.max_http_attempts = 3
        client.timeout = 10.0
        return cls(client)

    def oncall_users(self, escalation_policy_id: str) -> list[OnCallUser]:
        """Everyone on call for the policy right now, at any level, each once."""
        seen: dict[str, OnCallUser] = {}
        for oncall in self.client.iter_all(
            "oncalls", params={"escalation_policy_ids[]": [escalation_policy_id], "earliest": True}
        ):
            ref = oncall.get("user") or {}
            uid = ref.get("id")
            if not uid or uid in seen:
                continue
            user = self.client.rget(f"users/{uid}")
            seen[uid] = OnCallUser(id=uid, name=user.get("name") or ref.get("summary") or uid,
                                   email=user.get("email"))
        return list(seen.values())

    def find_service(self, name_or_id: str) -> dict[str, Any] | None:
        for service in self.client.iter_all("services", params={"query": name_or_id}):
            if service.get("id") == name_or_id or str(service.get("name", "")).lower() == name_or_id.lower():
                return service
        return None

    def create_incident(self, *, service_id: str, title: str, details: str, incident_key: str) -> dict[str, Any]:
        body = {
            "type": "incident",
            "title": title,
            "service": {"id": service_id, "type": "service_reference"},
            "incident_key": incident_key,
            "body": {"type": "incident_body", "details": details},
        }
        return self.client.rpost("incidents", json=body)

    def resolve_incident(self, incident_id: str) -> dict[str, Any]:
        return self.client.rput(f"incidents/{incident_id}", json={"type": "incident", "status": "resolved"})

    def resolve_incidents(self, incident_ids: list[str]) -> list[str]:
        """Resolve many in one call (``PUT /incidents``, PagerDuty's bulk update). If PagerDuty refuses the
        batch (one of them is already resolved), each is resolved on its own and "already resolved" is
        not an error. Returns the ids resolved by this call."""
        body = {"incidents": [{"id": i, "type": "incident_reference", "status": "resolved"} for i in incident_ids]}
        try:
            self.client.rput("incidents", json=body)
            return list(incident_ids)
        except pagerduty.HttpError as exc:
            if getattr(exc.response, "status_code", None) != 400:
                raise
        done = []
        for incident_id in incident_ids:
            try:
                self.resolve_incident(incident_id)
                done.append(incident_id)
            except pagerduty.HttpError as exc:
                if "already resolved" not in (getattr(exc.response, "text", "") or "").lower():
                    raise
        return done
