"""Local stand-ins of Slack, PagerDuty and the CAPA trackers (GitHub, Jira, Linear) for the test suite, the
benchmarks and ``incident-bot demo``.

Exports are loaded on first use, so that importing one helper does not import every stand-in's
dependencies (the PagerDuty stand-in needs ``trustme`` only when it is constructed).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from incident_bot.testing.http_standin import Call
    from incident_bot.testing.pagerduty_standin import PagerDutyStandIn
    from incident_bot.testing.slack_standin import SlackStandIn

__all__ = ["Call", "PagerDutyStandIn", "SlackStandIn"]

_HOMES = {
    "Call": "incident_bot.testing.http_standin",
    "PagerDutyStandIn": "incident_bot.testing.pagerduty_standin",
    "SlackStandIn": "incident_bot.testing.slack_standin",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
