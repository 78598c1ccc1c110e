"""CAPA tickets in the team's tracker (GitHub Issues, Jira Cloud, Linear), synced both ways.

- :mod:`.base`: the ticket as written and read, the HTTP client, errors;
- :mod:`.github`, :mod:`.jira`, :mod:`.linear`: one tracker each (API calls, webhook verification, parsing);
- :mod:`.outbound`: the tracker client and what its jobs need (the use cases queue them: ``usecases.tickets``);
- :mod:`.jobs`: the outbox job kinds ``tracker.create``, ``tracker.update``, ``tracker.sync``;
- :mod:`.webhooks`: ``POST /github|jira|linear/webhook`` (verify, store in the inbox, answer);
- :mod:`.apply`: the fold's applier (a webhook's ticket, parsed here, applied to its CAPA by the use case
  ``usecases.ticket_changes``, which also holds the reconcile).

Set-up and behaviour: docs/trackers.md.
"""

from __future__ import annotations

from typing import Any


def mount(app: Any, rt: Any) -> None:
    """Add the configured tracker's webhook route to the ASGI app (none when CAPA_TRACKER is unset)."""
    from incident_bot.trackers.webhooks import mount as _mount

    _mount(app, rt)


def appliers(settings: Any) -> dict[str, Any]:
    """The fold's applier for the configured tracker's stored webhooks."""
    from incident_bot.trackers.apply import TrackerApplier

    if settings.capa_tracker == "github":
        from incident_bot.trackers import github

        return {"github": TrackerApplier("GitHub", lambda p: github.parse(p, settings))}
    if settings.capa_tracker == "jira":
        from incident_bot.trackers import jira

        return {"jira": TrackerApplier("Jira", lambda p: jira.parse(p, settings))}
    if settings.capa_tracker == "linear":
        from incident_bot.trackers import linear

        return {"linear": TrackerApplier("Linear", lambda p: linear.parse(p, settings))}
    return {}
