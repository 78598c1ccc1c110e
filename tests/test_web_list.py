"""The incident list's reads on SQLite and PostgreSQL: pages by cursor, the capped count, the service
names (a loose index scan), and the bad parameters the page refuses. The pages over HTTP and in a
browser are tested in test_web.py and test_web_browser.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from incident_bot.usecases.incident_list import BadFilter, IncidentFilter, IncidentPage, list_incidents, services
from incident_bot.usecases.incidents import NewIncident, open_incident
from storage.db import session_scope

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def seed(engine: Engine, n: int) -> None:
    """``n`` incidents INC-1..INC-n, one a day (newest last); odd numbers SEV1 on "search", even SEV3."""
    with session_scope(engine) as s:
        for k in range(1, n + 1):
            open_incident(s, NewIncident(
                title=f"Incident {k}", detected_at=NOW - timedelta(days=n - k), origin="cli",
                severity="SEV1" if k % 2 else "SEV3", service="search" if k % 2 else None),
                announce_channel=None, invite_oncall=False)


def page(engine: Engine, params: dict[str, str], **kw: int) -> IncidentPage:
    with session_scope(engine) as s:
        return list_incidents(s, IncidentFilter.parse(params), now=NOW, **kw)


def numbers(p: IncidentPage) -> list[int]:
    return [r.number for r in p.rows]


def test_pages_follow_the_cursor_both_ways(engine: Engine) -> None:
    seed(engine, 7)
    first = page(engine, {}, page_size=3)
    assert (numbers(first), first.newer, first.older, first.total) == ([7, 6, 5], None, 5, 7)
    second = page(engine, {"before": str(first.older)}, page_size=3)
    assert (numbers(second), second.newer, second.older) == ([4, 3, 2], 4, 2)
    last = page(engine, {"before": "2"}, page_size=3)
    assert (numbers(last), last.newer, last.older) == ([1], 1, None)
    back = page(engine, {"after": "1"}, page_size=3)  # "newer" from the last page: the page before it
    assert (numbers(back), back.newer, back.older) == ([4, 3, 2], 4, 2)
    top = page(engine, {"after": "4"}, page_size=3)
    assert (numbers(top), top.newer, top.older) == ([7, 6, 5], None, 5)


def test_filters_and_cursors_together(engine: Engine) -> None:
    seed(engine, 9)  # SEV1 on search: 1, 3, 5, 7, 9
    first = page(engine, {"severity": "SEV1", "service": "search"}, page_size=2)
    assert (numbers(first), first.older, first.total) == ([9, 7], 7, 5)
    second = page(engine, {"severity": "SEV1", "service": "search", "before": "7"}, page_size=2)
    assert (numbers(second), second.newer, second.older) == ([5, 3], 5, 3)
    assert {r.severity for r in second.rows} == {"SEV1"}
    recent = page(engine, {"period": "7d", "status": "triggered"}, page_size=20)
    assert numbers(recent) == [9, 8, 7, 6, 5, 4, 3, 2]  # detected in the 7 days up to NOW (INC-9 today)


def test_the_count_stops_at_its_cap(engine: Engine) -> None:
    seed(engine, 6)
    capped = page(engine, {}, page_size=2, count_cap=4)
    assert (capped.total, capped.capped, numbers(capped)) == (4, True, [6, 5])
    exact = page(engine, {"severity": "SEV3"}, page_size=2, count_cap=4)
    assert (exact.total, exact.capped) == (3, False)


def test_a_cursor_past_either_end_shows_the_first_page(engine: Engine) -> None:
    seed(engine, 3)
    for params in ({"before": "1"}, {"after": "3"}, {"after": "999"}):
        p = page(engine, params, page_size=2)
        assert (numbers(p), p.newer, p.older) == ([3, 2], None, 2), params


def test_service_names_are_distinct_sorted_and_skip_none(engine: Engine) -> None:
    with session_scope(engine) as s:
        assert services(s) == []
        for k, service in enumerate(["web", None, "api", "web", "db", "api", None]):
            open_incident(s, NewIncident(title=f"t{k}", detected_at=NOW, severity="SEV3", origin="cli",
                                         service=service), announce_channel=None, invite_oncall=False)
    with session_scope(engine) as s:
        assert services(s) == ["api", "db", "web"]


@pytest.mark.parametrize("params", [{"before": "0"}, {"before": "x1"}, {"after": "-3"}, {"after": "12345678901"},
                                    {"before": "3", "after": "1"}])
def test_a_bad_cursor_is_refused(params: dict[str, str]) -> None:
    with pytest.raises(BadFilter):
        IncidentFilter.parse(params)
