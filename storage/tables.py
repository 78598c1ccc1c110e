"""The tables of storage/models.py as SQLAlchemy Core sees them, for reads that want plain rows.

A select of a model's attributes (``Incident.ref``) is an ORM statement: it compiles through the ORM, and
the first one in a process configures every mapper. A report in a fresh process compiles each of its
statements once (the digest ~24), so it selects the columns of these tables instead: the same SQL, compiled
by Core at a fraction of the cost, and no mapper configured at all (bench/RESULTS.md, 2026-12-02).
Nothing is declared here: each name is its model's own ``__table__``.
"""

from __future__ import annotations

from sqlalchemy import Table

from storage import models


def _table(model: type) -> Table:
    return model.__table__  # type: ignore[attr-defined,no-any-return]


action_items = _table(models.ActionItem)
counters = _table(models.Counter)
incidents = _table(models.Incident)
incident_metrics = _table(models.IncidentMetrics)
incident_search = _table(models.IncidentSearch)
incident_search_words = _table(models.IncidentSearchWord)
pagerduty_links = _table(models.PagerDutyLink)
slack_users = _table(models.SlackUser)
