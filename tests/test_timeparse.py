"""parse_user_time / describe: the one place a person's typed time becomes `impact_started_at`.

Expected instants are written out in UTC by hand (not computed with the code under test), so a wrong offset or
a wrong "today" shows up as a failing literal. Both zone implementations are exercised: `zoneinfo.ZoneInfo`
and `dateutil.tz.gettz` (what Settings.tzinfo returns).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

import pytest
from dateutil import tz as du_tz
from hypothesis import given, settings
from hypothesis import strategies as st

from incident_bot.core.timeparse import MAX_INPUT_CHARS, TimeParseError, describe, parse_user_time


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def zones(name: str) -> list[tzinfo]:
    zone = du_tz.gettz(name)
    assert zone is not None
    return [ZoneInfo(name), zone]


BERLIN = ZoneInfo("Europe/Berlin")
NOW = utc(2026, 11, 26, 15, 0, 0)  # 16:00 in Berlin (CET, +01:00)


@pytest.fixture(params=zones("Europe/Berlin"), ids=["zoneinfo", "dateutil"])
def berlin(request: pytest.FixtureRequest) -> tzinfo:
    return request.param


# --- accepted forms -------------------------------------------------------------------------------

ACCEPTED = [
    ("14:54", utc(2026, 11, 26, 13, 54)),
    ("9:05", utc(2026, 11, 26, 8, 5)),
    ("09:05", utc(2026, 11, 26, 8, 5)),
    ("14:54:30", utc(2026, 11, 26, 13, 54, 30)),
    ("00:00", utc(2026, 11, 25, 23, 0)),
    ("  14:54  ", utc(2026, 11, 26, 13, 54)),
    ("2026-11-26 14:54", utc(2026, 11, 26, 13, 54)),
    ("2026-11-26 14:54:30", utc(2026, 11, 26, 13, 54, 30)),
    ("2026-11-25 23:50", utc(2026, 11, 25, 22, 50)),
    ("2026-11-26T14:54", utc(2026, 11, 26, 13, 54)),
    ("2026-11-26T14:54:00", utc(2026, 11, 26, 13, 54)),
    ("2026-11-26T14:54:00+01:00", utc(2026, 11, 26, 13, 54)),
    ("2026-11-26T14:54:00+0100", utc(2026, 11, 26, 13, 54)),
    ("2026-11-26T09:54-04:00", utc(2026, 11, 26, 13, 54)),
    ("2026-11-26T13:54Z", utc(2026, 11, 26, 13, 54)),
    ("2026-11-26t13:54z", utc(2026, 11, 26, 13, 54)),
    ("2026-11-26T13:54:07.250Z", datetime(2026, 11, 26, 13, 54, 7, 250000, tzinfo=UTC)),
    ("2026-11-26 13:54Z", utc(2026, 11, 26, 13, 54)),
    ("25m ago", utc(2026, 11, 26, 14, 35)),
    ("2h ago", utc(2026, 11, 26, 13, 0)),
    ("1h30m ago", utc(2026, 11, 26, 13, 30)),
    ("1h 30m ago", utc(2026, 11, 26, 13, 30)),
    ("90s ago", utc(2026, 11, 26, 14, 58, 30)),
    ("2 hours ago", utc(2026, 11, 26, 13, 0)),
    ("1 hour 30 minutes ago", utc(2026, 11, 26, 13, 30)),
    ("45 minutes ago", utc(2026, 11, 26, 14, 15)),
    ("45 min ago", utc(2026, 11, 26, 14, 15)),
    ("1d ago", utc(2026, 11, 25, 15, 0)),
    ("1 day ago", utc(2026, 11, 25, 15, 0)),
    ("25M AGO", utc(2026, 11, 26, 14, 35)),
    ("0m ago", NOW),
]


@pytest.mark.parametrize(("text", "expected"), ACCEPTED)
def test_accepted_forms(text: str, expected: datetime, berlin: tzinfo) -> None:
    got = parse_user_time(text, now=NOW, tz=berlin)
    assert got == expected
    assert got.utcoffset() == timedelta(0)


def test_now_in_any_zone_means_the_same_instant(berlin: tzinfo) -> None:
    now_in_tokyo = NOW.astimezone(ZoneInfo("Asia/Tokyo"))
    assert parse_user_time("14:54", now=now_in_tokyo, tz=berlin) == utc(2026, 11, 26, 13, 54)
    assert parse_user_time("25m ago", now=now_in_tokyo, tz=berlin) == utc(2026, 11, 26, 14, 35)


def test_user_zone_is_used_for_local_forms() -> None:
    # 15:00 PST on 26 Nov; a Los Angeles user typing 14:54 means 22:54 UTC, not 14:54 UTC.
    now = utc(2026, 11, 26, 23, 0)
    for zone in zones("America/Los_Angeles"):
        assert parse_user_time("14:54", now=now, tz=zone) == utc(2026, 11, 26, 22, 54)
        assert parse_user_time("2026-11-26 14:54", now=now, tz=zone) == utc(2026, 11, 26, 22, 54)
        # An explicit offset wins over the user's zone.
        assert parse_user_time("2026-11-26T14:54Z", now=now, tz=zone) == utc(2026, 11, 26, 14, 54)
    assert parse_user_time("14:54", now=now, tz=UTC) == utc(2026, 11, 26, 14, 54)


def test_today_is_the_users_date_not_the_utc_date() -> None:
    # 23:30 UTC on 26 Nov is 12:30 on 27 Nov in Auckland (NZDT, +13:00).
    now = utc(2026, 11, 26, 23, 30)
    for zone in zones("Pacific/Auckland"):
        assert parse_user_time("12:00", now=now, tz=zone) == utc(2026, 11, 26, 23, 0)
        assert parse_user_time("00:05", now=now, tz=zone) == utc(2026, 11, 26, 11, 5)
        assert parse_user_time("2026-11-27 09:00", now=now, tz=zone) == utc(2026, 11, 26, 20, 0)
        with pytest.raises(TimeParseError) as err:
            parse_user_time("13:00", now=now, tz=zone)  # 00:00 UTC on 27 Nov: still ahead of now
        assert "future" in str(err.value)
        assert "`2026-11-26 13:00`" in str(err.value)  # yesterday in Auckland
        assert "25m ago" in str(err.value)


def test_late_evening_time_just_after_midnight_is_refused_not_moved_to_yesterday(berlin: tzinfo) -> None:
    now = utc(2026, 11, 26, 23, 10)  # 00:10 on 27 Nov in Berlin
    with pytest.raises(TimeParseError) as err:
        parse_user_time("23:50", now=now, tz=berlin)
    message = str(err.value)
    assert "future" in message
    assert "`2026-11-26 23:50`" in message
    assert "`2026-11-27 14:54`" in message  # the examples are dated today in the user's zone
    assert parse_user_time("2026-11-26 23:50", now=now, tz=berlin) == utc(2026, 11, 26, 22, 50)


def test_clock_skew_tolerance_is_60_seconds_and_clamps_to_now(berlin: tzinfo) -> None:
    assert parse_user_time("2026-11-26T15:00:59Z", now=NOW, tz=berlin) == NOW
    assert parse_user_time("2026-11-26T15:01:00Z", now=NOW, tz=berlin) == NOW
    now = utc(2026, 11, 26, 15, 0, 30)
    assert parse_user_time("16:01", now=now, tz=berlin) == now  # 30 s ahead of now
    with pytest.raises(TimeParseError, match="future"):
        parse_user_time("2026-11-26T15:01:01Z", now=NOW, tz=berlin)
    with pytest.raises(TimeParseError, match="future"):
        parse_user_time("16:02", now=NOW, tz=berlin)


def test_thirty_days_is_the_oldest_accepted(berlin: tzinfo) -> None:
    assert parse_user_time("30d ago", now=NOW, tz=berlin) == utc(2026, 10, 27, 15, 0)
    assert parse_user_time("2026-10-27T15:00Z", now=NOW, tz=berlin) == utc(2026, 10, 27, 15, 0)
    for text in ("2026-10-27T14:59:59Z", "30d 1s ago", "31d ago", "2025-11-26 14:54", "721h ago"):
        with pytest.raises(TimeParseError) as err:
            parse_user_time(text, now=NOW, tz=berlin)
        assert "more than 30 days ago" in str(err.value), text
        assert "25m ago" in str(err.value)


# --- refused forms --------------------------------------------------------------------------------

REFUSED = [
    ("", "Give the time"),
    ("   ", "Give the time"),
    ("x" * (MAX_INPUT_CHARS + 1), "too long"),
    ("14:54" + " " * 60, "too long"),
    ("11/12 14:00", "ambiguous"),
    ("12/11/2026", "ambiguous"),
    ("2026/11/26 14:00", "ambiguous"),
    ("2026-11-26", "no time of day"),
    ("yesterday", "yesterday"),
    ("yesterday 23:50", "yesterday"),
    ("today 14:54", "today"),
    ("now", "now"),
    ("banana", "Could not read"),
    ("14", "Could not read"),
    ("14.54", "Could not read"),
    ("1454", "Could not read"),
    ("14:5", "Could not read"),
    ("14:54Z", "Could not read"),
    ("26.11.2026 14:54", "Could not read"),
    ("Nov 26 14:54", "Could not read"),
    ("2pm", "am/pm"),
    ("2:54 pm", "am/pm"),
    ("24:00", "not a valid time"),
    ("12:60", "not a valid time"),
    ("12:00:60", "not a valid time"),
    ("2026-11-26 24:00", "not a valid time"),
    ("2026-13-01 10:00", "not a valid date"),
    ("2026-02-30 10:00", "not a valid date"),
    ("2026-11-26T14:54+25:00", "not a valid date"),
    ("0001-01-01T00:30+01:00", "out of range"),
    ("16:30", "future"),
    ("2026-11-27 09:00", "future"),
    ("2026-11-26T15:30Z", "future"),
    ("in 5m", "future"),
    ("5m from now", "future"),
    ("ago", "how much"),
    ("5 weeks ago", "Unknown unit 'weeks'"),
    ("5 fortnights ago", "Unknown unit"),
    ("30m1h ago", "largest first"),
    ("1h1h ago", "largest first"),
    ("-5m ago", "Could not read"),
    ("5m 3 ago", "Could not read"),
    ("99999999999999999999999999999d ago", "more than 30 days"),
]


@pytest.mark.parametrize(("text", "reason"), REFUSED)
def test_refused_forms_say_why_and_show_examples(text: str, reason: str, berlin: tzinfo) -> None:
    with pytest.raises(TimeParseError) as err:
        parse_user_time(text, now=NOW, tz=berlin)
    message = str(err.value)
    assert reason in message
    for example in ("`14:54`", "`2026-11-26 14:54`", "`2026-11-26T14:54+01:00`", "`25m ago`"):
        assert example in message


def test_over_long_input_is_not_echoed_whole() -> None:
    with pytest.raises(TimeParseError) as err:
        parse_user_time("9" * 500, now=NOW, tz=BERLIN)
    assert "9" * 21 not in str(err.value)
    assert "500 characters" in str(err.value)


def test_error_is_a_value_error_and_naive_now_is_a_programming_error() -> None:
    assert issubclass(TimeParseError, ValueError)
    with pytest.raises(ValueError, match="timezone-aware") as err:
        parse_user_time("14:54", now=datetime(2026, 11, 26, 15, 0), tz=BERLIN)
    assert not isinstance(err.value, TimeParseError)


# --- DST ------------------------------------------------------------------------------------------


def test_spring_forward_gap_is_refused(berlin: tzinfo) -> None:
    now = utc(2026, 3, 29, 10, 0)  # 12:00 CEST; 02:00-03:00 local did not exist that night
    for text in ("02:30", "2026-03-29 02:30", "2026-03-29T02:00:00"):
        with pytest.raises(TimeParseError) as err:
            parse_user_time(text, now=now, tz=berlin)
        message = str(err.value)
        assert "does not exist in Europe/Berlin on 2026-03-29" in message, message
        assert "`25m ago`" in message
    # Either side of the gap is fine, and so is an explicit offset.
    assert parse_user_time("01:59", now=now, tz=berlin) == utc(2026, 3, 29, 0, 59)
    assert parse_user_time("03:00", now=now, tz=berlin) == utc(2026, 3, 29, 1, 0)
    assert parse_user_time("2026-03-29T02:30+01:00", now=now, tz=berlin) == utc(2026, 3, 29, 1, 30)


def test_fall_back_overlap_is_refused_with_both_offsets(berlin: tzinfo) -> None:
    now = utc(2026, 10, 25, 10, 0)  # 11:00 CET; 02:00-03:00 local happened twice that night
    for text in ("02:30", "2026-10-25 02:30"):
        with pytest.raises(TimeParseError) as err:
            parse_user_time(text, now=now, tz=berlin)
        message = str(err.value)
        assert "happens twice in Europe/Berlin on 2026-10-25" in message, message
        assert "`2026-10-25T02:30+02:00`" in message
        assert "`2026-10-25T02:30+01:00`" in message
    assert parse_user_time("2026-10-25T02:30+02:00", now=now, tz=berlin) == utc(2026, 10, 25, 0, 30)
    assert parse_user_time("2026-10-25T02:30+01:00", now=now, tz=berlin) == utc(2026, 10, 25, 1, 30)
    assert parse_user_time("01:59", now=now, tz=berlin) == utc(2026, 10, 24, 23, 59)
    assert parse_user_time("03:00", now=now, tz=berlin) == utc(2026, 10, 25, 2, 0)


def test_relative_time_across_a_dst_change_counts_real_minutes(berlin: tzinfo) -> None:
    # now given in Berlin wall time just after spring-forward: 03:10 CEST = 01:10 UTC.
    now = datetime(2026, 3, 29, 3, 10, tzinfo=berlin)
    assert parse_user_time("25m ago", now=now, tz=berlin) == utc(2026, 3, 29, 0, 45)


# --- describe -------------------------------------------------------------------------------------


def test_describe() -> None:
    for zone in zones("Europe/Berlin"):
        assert describe(utc(2026, 11, 26, 13, 54), zone) == "14:54 Europe/Berlin (13:54 UTC), 26 Nov 2026"
        assert (
            describe(utc(2026, 7, 1, 6, 5, 30), zone) == "08:05:30 Europe/Berlin (06:05:30 UTC), 1 Jul 2026"
        )
    for zone in zones("Pacific/Auckland"):
        assert (
            describe(utc(2026, 11, 26, 23, 30), zone)
            == "12:30 Pacific/Auckland (23:30 UTC on 26 Nov), 27 Nov 2026"
        )
    assert describe(utc(2026, 11, 26, 13, 54), UTC) == "13:54 UTC, 26 Nov 2026"
    assert describe(utc(2026, 11, 26, 13, 54), ZoneInfo("UTC")) == "13:54 UTC, 26 Nov 2026"
    india = timezone(timedelta(hours=5, minutes=30))
    assert describe(utc(2026, 11, 26, 13, 54), india) == "19:24 UTC+05:30 (13:54 UTC), 26 Nov 2026"
    # Input in another zone is the same instant.
    in_tokyo = utc(2026, 11, 26, 13, 54).astimezone(ZoneInfo("Asia/Tokyo"))
    assert describe(in_tokyo, BERLIN) == "14:54 Europe/Berlin (13:54 UTC), 26 Nov 2026"
    with pytest.raises(ValueError):
        describe(datetime(2026, 11, 26, 13, 54), BERLIN)


def test_describe_round_trips_through_parse(berlin: tzinfo) -> None:
    parsed = parse_user_time("2026-11-26T14:54:00+01:00", now=NOW, tz=berlin)
    assert describe(parsed, berlin) == "14:54 Europe/Berlin (13:54 UTC), 26 Nov 2026"


# --- properties -----------------------------------------------------------------------------------

ZONE_NAMES = [
    "UTC",
    "Europe/Berlin",
    "America/Los_Angeles",
    "Pacific/Auckland",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
]
# Half the draws land within a day after a DST change in Berlin, where wall-clock arithmetic would go wrong.
DST_CHANGES = [utc(2026, 3, 29, 1, 0), utc(2026, 10, 25, 1, 0)]
ANY_NOW = st.builds(
    lambda naive, zone: naive.replace(tzinfo=UTC).astimezone(ZoneInfo(zone)),
    st.one_of(
        st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1)),
        st.builds(
            lambda change, seconds: (change + timedelta(seconds=seconds)).replace(tzinfo=None),
            st.sampled_from(DST_CHANGES),
            st.integers(0, 86400),
        ),
    ),
    st.sampled_from(ZONE_NAMES),
)


@settings(max_examples=300, deadline=None)
@given(now=ANY_NOW, minutes=st.integers(1, 1440), zone=st.sampled_from(ZONE_NAMES))
def test_minutes_ago_is_exact(now: datetime, minutes: int, zone: str) -> None:
    got = parse_user_time(f"{minutes}m ago", now=now, tz=ZoneInfo(zone))
    assert got == now.astimezone(UTC) - timedelta(minutes=minutes)
    assert got.utcoffset() == timedelta(0)


@settings(max_examples=200, deadline=None)
@given(now=ANY_NOW, back=st.integers(0, 30 * 86400 - 1), zone=st.sampled_from(ZONE_NAMES))
def test_iso_utc_round_trips(now: datetime, back: int, zone: str) -> None:
    # (30 days minus a second: dropping `now`'s microseconds must not push the instant past the 30-day limit.)
    instant = (now.astimezone(UTC) - timedelta(seconds=back)).replace(microsecond=0)
    text = instant.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert parse_user_time(text, now=now, tz=ZoneInfo(zone)) == instant


@settings(max_examples=400, deadline=None)
@given(
    text=st.one_of(
        st.text(max_size=80),
        st.from_regex(r"\A[0-9:\-T Z+/.,a-z]{0,30}\Z"),
        st.from_regex(r"\A\d{1,3}\s?(d|h|m|s|min|hours|weeks)\s?\d{0,3}\s?[a-z]{0,5} ago\Z"),
    ),
    zone=st.sampled_from(ZONE_NAMES),
)
def test_any_text_is_accepted_within_bounds_or_refused_with_examples(text: str, zone: str) -> None:
    try:
        got = parse_user_time(text, now=NOW, tz=ZoneInfo(zone))
    except TimeParseError as err:
        assert "`25m ago`" in str(err)
    else:
        assert NOW - timedelta(days=30) <= got <= NOW
        assert got.utcoffset() == timedelta(0)
