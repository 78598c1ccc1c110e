"""Schedules and periods across daylight-saving changes (pure: incident_bot/core/schedule.py).

Dates checked against dateutil's tz database: in 2026 Europe/Berlin leaves summer time on Sunday
25 October (03:00 CEST -> 02:00 CET) and enters it on Sunday 29 March (02:00 CET -> 03:00 CEST).
So ISO week 2026-W43 (19-25 Oct) is 169 hours long and 2026-W13 (23-29 Mar) 167.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from dateutil import tz

from incident_bot.core import schedule

BERLIN = tz.gettz("Europe/Berlin")
NEW_YORK = tz.gettz("America/New_York")
WEEKLY = "FREQ=WEEKLY;BYDAY=MO;BYHOUR=9;BYMINUTE=0"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_the_dst_weeks_of_2026_in_berlin_are_169_and_167_hours() -> None:
    since, until = schedule.iso_week("2026-W43", BERLIN)
    assert (since, until) == (utc(2026, 10, 18, 22), utc(2026, 10, 25, 23))
    assert until - since == timedelta(hours=169)
    since, until = schedule.iso_week("2026-W13", BERLIN)
    assert (since, until) == (utc(2026, 3, 22, 23), utc(2026, 3, 29, 22))
    assert until - since == timedelta(hours=167)
    since, until = schedule.iso_week("2026-W44", BERLIN)
    assert until - since == timedelta(hours=168)
    assert since.tzinfo is UTC and until.tzinfo is UTC


def test_nine_local_stays_nine_local_across_both_changes() -> None:
    autumn = [schedule.next_occurrence(WEEKLY, BERLIN, utc(2026, 10, 13)),
              schedule.next_occurrence(WEEKLY, BERLIN, utc(2026, 10, 20)),
              schedule.next_occurrence(WEEKLY, BERLIN, utc(2026, 10, 27))]
    # 09:00 CEST is 07:00 UTC before the change, 09:00 CET is 08:00 UTC after it.
    assert autumn == [utc(2026, 10, 19, 7), utc(2026, 10, 26, 8), utc(2026, 11, 2, 8)]
    assert [o.astimezone(BERLIN).hour for o in autumn if o] == [9, 9, 9]
    spring = [schedule.next_occurrence(WEEKLY, BERLIN, utc(2026, 3, 20)),
              schedule.next_occurrence(WEEKLY, BERLIN, utc(2026, 3, 24))]
    assert spring == [utc(2026, 3, 23, 8), utc(2026, 3, 30, 7)]
    # Another zone, another date: New York falls back on 1 November 2026.
    ny = [schedule.next_occurrence(WEEKLY, NEW_YORK, utc(2026, 10, 27)),
          schedule.next_occurrence(WEEKLY, NEW_YORK, utc(2026, 11, 3))]
    assert ny == [utc(2026, 11, 2, 14), utc(2026, 11, 9, 14)]


def test_last_occurrence_is_inclusive_and_next_is_strict() -> None:
    at_nine = utc(2026, 10, 26, 8)
    assert schedule.last_occurrence(WEEKLY, BERLIN, at_nine) == at_nine
    assert schedule.last_occurrence(WEEKLY, BERLIN, at_nine - timedelta(seconds=1)) == utc(2026, 10, 19, 7)
    assert schedule.next_occurrence(WEEKLY, BERLIN, at_nine) == utc(2026, 11, 2, 8)


def test_a_time_that_does_not_exist_moves_past_the_gap() -> None:
    # 02:30 does not exist in Berlin on 29 March 2026: the run happens at 03:30 CEST (01:30 UTC).
    rule = "FREQ=DAILY;BYHOUR=2;BYMINUTE=30"
    assert schedule.last_occurrence(rule, BERLIN, utc(2026, 3, 29, 12)) == utc(2026, 3, 29, 1, 30)
    assert schedule.last_occurrence(rule, BERLIN, utc(2026, 3, 28, 12)) == utc(2026, 3, 28, 1, 30)


def test_due_runs_catches_up_once_with_the_latest_only() -> None:
    now = utc(2026, 11, 25, 10)  # a Wednesday; three Mondays missed since 2 November
    assert schedule.due_runs(WEEKLY, BERLIN, None, now) == [utc(2026, 11, 23, 8)]
    assert schedule.due_runs(WEEKLY, BERLIN, utc(2026, 11, 2, 8), now) == [utc(2026, 11, 23, 8)]
    assert schedule.due_runs(WEEKLY, BERLIN, utc(2026, 11, 23, 8), now) == []
    assert schedule.due_runs(WEEKLY, BERLIN, utc(2026, 11, 23, 8), utc(2026, 11, 30, 8)) == [utc(2026, 11, 30, 8)]


def test_the_scheduled_digest_reports_on_the_last_complete_iso_week() -> None:
    # The run on Monday 26 October reports on the DST week, all 169 hours of it.
    assert schedule.digest_period(WEEKLY, BERLIN, utc(2026, 10, 26, 8)) == schedule.iso_week("2026-W43", BERLIN)
    assert schedule.period_key(*schedule.digest_period(WEEKLY, BERLIN, utc(2026, 10, 26, 8)), BERLIN) == "2026-W43"
    daily = "FREQ=DAILY;BYHOUR=9"
    assert schedule.digest_period(daily, BERLIN, utc(2026, 10, 26, 8)) == (utc(2026, 10, 24, 22), utc(2026, 10, 25, 23))
    twice = "FREQ=WEEKLY;BYDAY=MO;BYHOUR=9,17"
    assert schedule.digest_period(twice, BERLIN, utc(2026, 10, 26, 16)) == schedule.iso_week("2026-W43", BERLIN)


def test_last_complete_week_previous_period_and_trend_windows() -> None:
    monday_0030 = utc(2026, 10, 25, 23, 30)  # Monday 26 Oct 00:30 CET
    assert schedule.last_complete_week(monday_0030, BERLIN) == schedule.iso_week("2026-W43", BERLIN)
    sunday_2359 = utc(2026, 10, 25, 22, 59)
    assert schedule.last_complete_week(sunday_2359, BERLIN) == schedule.iso_week("2026-W42", BERLIN)
    # The week before W44 is the whole of W43 (169 h), not W44's 168 hours moved back.
    assert schedule.previous_period(*schedule.iso_week("2026-W44", BERLIN), BERLIN) == \
        schedule.iso_week("2026-W43", BERLIN)
    weeks = schedule.weeks_ending(schedule.iso_week("2026-W44", BERLIN)[1], BERLIN, 8)
    assert [schedule.week_label(s, BERLIN) for s, _ in weeks] == [f"2026-W{n}" for n in range(37, 45)]
    assert all(a[1] == b[0] for a, b in itertools.pairwise(weeks))


def test_period_keys() -> None:
    assert schedule.period_key(*schedule.iso_week("2026w7", BERLIN), BERLIN) == "2026-W07"
    month = schedule.day_period(datetime(2026, 11, 1).date(), datetime(2026, 12, 1).date(), BERLIN)
    assert schedule.period_key(*month, BERLIN) == "2026-11-01..2026-12-01"
    assert schedule.period_key(utc(2026, 11, 1, 9, 30), utc(2026, 11, 2), BERLIN) == \
        "2026-11-01T09:30Z..2026-11-02T00:00Z"


@pytest.mark.parametrize("bad", ["2026-W54", "2026-47", "W47", "", "2027-W53"])
def test_bad_weeks_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        schedule.iso_week(bad, BERLIN)


def test_2026_has_a_week_53_and_it_is_accepted() -> None:
    since, _until = schedule.iso_week("2026-W53", BERLIN)
    assert since.astimezone(BERLIN).date().isoformat() == "2026-12-28"


@pytest.mark.parametrize("bad", ["FREQ=SOMETIMES", "BYDAY=MO;FREQ", "not a rule", ""])
def test_bad_rules_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        schedule.parse_rule(bad, BERLIN)
