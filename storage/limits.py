"""Column sizes that inbound parsers check ids against.

An id longer than its column is refused (HTTP 400), never cut: two different ids cut to the same prefix
would become one incident, or the second delivery would be dropped as a duplicate of the first.
``storage/models.py`` declares its columns with these constants, so parser and schema cannot drift.
"""

from __future__ import annotations

EVENT_ID_LEN = 255  # inbox_deliveries.event_id, timeline.source_event_id (PagerDuty event ids, Slack event ids)
PAGERDUTY_ID_LEN = 64  # PagerDuty incident, service, escalation policy and user ids (PagerDuty's are ~7-14)
PAGERDUTY_PRIORITY_LEN = 255  # a priority's display name ("P1 - Critical Outage"), matched whole
SLACK_ID_LEN = 32  # Slack user, channel, team, enterprise and app ids (Slack's are 9-11 characters)
