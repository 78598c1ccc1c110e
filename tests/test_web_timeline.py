"""The incident page's window of the timeline (usecases/timeline_window.py, usecases/incident_page.py) on
SQLite and PostgreSQL, checked against the database: walks in both directions with no gap and no duplicate,
milestones that no row marks shown once, edited cursors, the counts, and the page's RCA equal to the
export's when the timeline fits one window. The page over HTTP and in a browser: test_web.py and
test_web_browser.py."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Engine, or_, select

from incident_bot.core.rca_parts import BOOKKEEPING_KINDS
from incident_bot.usecases import timeline_window as timeline
from incident_bot.usecases.incident_page import page_document
from incident_bot.usecases.rca import rca_document
from incident_bot.usecases.timeline_window import START, BadCursor, Key, Window, WindowRequest
from storage import repo
from storage.db import session_scope
from storage.models import Incident, TimelineEvent
from tests.conftest import make_settings
from tests.web_seed import LONG_NOTES, seed

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.fixture
def long_ref(engine: Engine, db_url: str) -> str:
    return seed(engine, make_settings(db_url), now=NOW)["long"]


def incident_id(engine: Engine, ref: str) -> int:
    with session_scope(engine) as s:
        inc = repo.incident_by_ref(s, ref)
        assert inc is not None and inc.id is not None
        return inc.id


def curated_keys(engine: Engine, iid: int) -> list[Key]:
    """The curated timeline's rows in the database, in order (bookkeeping rows belong to the appendix)."""
    t = TimelineEvent
    with session_scope(engine) as s:
        rows = s.execute(select(t.occurred_at, t.id).where(
            t.incident_id == iid, or_(t.kind.not_in(BOOKKEEPING_KINDS), t.milestone.is_not(None)))  # type: ignore[attr-defined, union-attr]
            .order_by(t.occurred_at, t.id)).all()
    return [Key(at, i) for at, i in rows]


def get(engine: Engine, iid: int, **params: str) -> Window:
    with session_scope(engine) as s:
        return timeline.window(s, iid, WindowRequest.parse(params))


def keys(w: Window) -> list[Key]:
    return [k for k, _ in w.rows]


@pytest.mark.parametrize("size", [7, 300])
def test_walks_both_ways_cover_the_timeline_once(engine: Engine, long_ref: str, size: int) -> None:
    iid = incident_id(engine, long_ref)
    expected = curated_keys(engine, iid)
    assert len(expected) > 2 * 300  # the seed takes three windows of the default size
    w = get(engine, iid, rows=str(size))
    assert keys(w) == expected[-size:] and w.newer is None  # the latest window first
    seen, windows = keys(w), [w]
    while w.older is not None:
        w = get(engine, iid, before=w.older.token, rows=str(size))
        assert w.newer is not None and len(w.rows) <= size
        seen, windows = keys(w) + seen, [w, *windows]
    assert seen == expected  # every row once, in order: no gap, no duplicate
    forward: list[Key] = []
    w = get(engine, iid, after=START.token, rows=str(size))
    assert w.older is None
    while True:
        forward += keys(w)
        if w.newer is None:
            break
        w = get(engine, iid, after=w.newer.token, rows=str(size))
    assert forward == expected
    # A milestone that no row marks (the seed's mitigation, half a second after a row) is in one window.
    with session_scope(engine) as s:
        mitigated = s.execute(select(Incident.mitigated_at).where(Incident.id == iid)).scalar_one()
    assert mitigated is not None and all(k.at != mitigated for k in expected)
    assert sum(x.holds(mitigated) for x in windows) == 1
    holder = next(x for x in windows if x.holds(mitigated))
    assert holder.rows[0][0].at <= mitigated <= holder.rows[-1][0].at


def test_rows_of_one_time_split_across_windows(engine: Engine, long_ref: str) -> None:
    iid = incident_id(engine, long_ref)
    expected = curated_keys(engine, iid)
    edge = next(i for i in range(1, len(expected)) if expected[i].at == expected[i - 1].at)
    # A window ending between two rows of the same time, then the window after it.
    w = get(engine, iid, after=expected[edge - 3].token, rows="3")
    assert keys(w) == expected[edge - 2:edge + 1]
    assert keys(get(engine, iid, after=w.rows[-1][0].token, rows="3")) == expected[edge + 1:edge + 4]
    assert keys(get(engine, iid, before=expected[edge].token, rows="2")) == expected[edge - 2:edge]


def test_a_cursor_past_either_end_or_between_rows(engine: Engine, long_ref: str) -> None:
    iid = incident_id(engine, long_ref)
    expected = curated_keys(engine, iid)
    late = Key(expected[-1].at + timedelta(days=400), 1)
    assert keys(get(engine, iid, after=late.token, rows="5")) == expected[-5:]  # the latest
    assert keys(get(engine, iid, before=START.token, rows="5")) == expected[:5]  # the oldest
    # A milestone's link starts at the first row of its second (the cursor is no row).
    mid = expected[len(expected) // 2]
    jump = get(engine, iid, after=Key(mid.at, 0).token, rows="4")
    assert keys(jump)[0] == next(k for k in expected if k.at >= mid.at)
    assert jump.holds(mid.at) and jump.lower is not None and jump.lower < Key(mid.at, 0)


def test_an_incident_without_rows_shows_its_milestones(engine: Engine, long_ref: str) -> None:
    w = get(engine, 999_999)
    assert (w.rows, w.older, w.newer) == ([], None, None)
    assert w.holds(NOW) and w.holds(datetime(1999, 1, 1, tzinfo=UTC))


@pytest.mark.parametrize("params", [
    {"before": "abc"}, {"after": "1795701300000000"}, {"before": "1_2_3"}, {"after": "1795701300000000_x"},
    {"before": "-99999999999999999_1"},  # before the year 1
    {"before": "1_1", "after": "2_2"}, {"rows": "0"}, {"rows": "1001"}, {"rows": "ten"}, {"rows": "٣"},
])
def test_bad_cursors_and_sizes_are_refused(params: dict[str, str]) -> None:
    with pytest.raises(BadCursor):
        WindowRequest.parse(params)


def test_a_cursor_reads_back_as_itself() -> None:
    k = Key(datetime(2026, 11, 26, 14, 54, 12, 123456, tzinfo=UTC), 4711)
    assert Key.parse(k.token, "before") == k
    old = Key(datetime(1969, 7, 20, 20, 17, tzinfo=UTC), 3)
    assert Key.parse(old.token, "after") == old


def test_the_counts_come_from_the_database(engine: Engine, long_ref: str) -> None:
    iid = incident_id(engine, long_ref)
    t = TimelineEvent
    with session_scope(engine) as s:
        got = timeline.summary(s, iid)
        rows = s.execute(select(t.kind, t.actor, t.milestone).where(t.incident_id == iid)).all()  # type: ignore[arg-type]
    book = [r for r in rows if r.kind in BOOKKEEPING_KINDS and not r.milestone]
    assert got.bookkeeping == len(book) == LONG_NOTES // 50
    assert got.curated == len(rows) - len(book) == len(curated_keys(engine, iid))
    assert got.communications == LONG_NOTES // 50
    assert set(got.actors) == {r.actor for r in rows if r.actor}
    notes_by_bob = sum(1 for r in rows if r.actor == "U0BOB" and r.kind not in BOOKKEEPING_KINDS)
    assert got.spans["U0BOB"].entries == notes_by_bob and got.spans["U0BOB"].first.tzinfo is not None


def test_the_page_shows_the_export_when_the_timeline_fits_one_window(engine: Engine, db_url: str) -> None:
    refs = seed(engine, make_settings(db_url), now=NOW)
    with session_scope(engine) as s:
        for ref in (refs["full"], refs["long"]):
            inc = repo.incident_by_ref(s, ref)
            assert inc is not None
            export = rca_document(s, inc, today=date(2026, 11, 26))
            page, info = page_document(s, inc, WindowRequest(rows=1000), today=date(2026, 11, 26))
            assert (page.header, page.sections, page.appendix, page.findings, page.participants,
                    page.communications, page.status_label) == (
                export.header, export.sections, export.appendix, export.findings, export.participants,
                export.communications, export.status_label), ref
            timeline_rows = next(x for x in export.sections if x.key == "timeline").rows
            assert (info.shown, info.total, info.older, info.newer) == (len(timeline_rows), len(timeline_rows),
                                                                        None, None)
