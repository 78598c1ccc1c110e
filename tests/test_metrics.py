"""Period metrics on a hand-made incident set whose answers are worked out below, through the CLI,
on SQLite and PostgreSQL. Incidents are created through the real service path (open_incident +
apply_signals), so the ``incident_metrics`` rows are the ones production writes.

Window W = [2026-11-01T00:00Z, 2026-11-08T00:00Z).

ref sev  service impact       detected     ack             mitigated    resolved     in W by
A   SEV1 shop    11-02 10:00  11-02 10:05  11-02 10:07     11-02 10:36  11-02 11:00  detect, resolve
B   SEV2 shop    11-03 08:00  11-03 08:00  11-03 08:10     11-03 08:40  11-03 09:30  detect, resolve
C   SEV2 search  11-04 12:00  11-04 12:02  -               (=resolved)  11-04 12:30  detect, resolve
D   SEV3 search  11-05 00:00  11-05 00:00  11-05 00:01     -            - (open)     detect
E   SEV1 shop    10-31 22:50  10-31 23:00  10-31 23:03     10-31 23:40  11-01 00:10  resolve
F   SEV3 shop    11-07 20:00  11-07 20:00  11-07 20:05     (=resolved)  11-08 00:00  detect (1)
G   SEV4 shop    10-20 09:00  10-20 09:00  -               (=resolved)  10-21 09:00  neither
H   SEV2 search  11-06 10:00  11-06 10:00  -               (=resolved)  (2)          detect
I   SEV4 -       11-01 00:00  11-01 00:00  11-01 00:00:46  (=resolved)  11-01 00:45  detect (3), resolve
(1) resolved exactly at until: excluded, the window is half-open.
(2) resolved 10:30, reopened 10:40: no resolution now, so no TTR and not in the MTTx set.
(3) detected exactly at since: included.

A resolve without a mitigation sets mitigated_at = resolved_at (lifecycle rule), so C and I have a TTM.

MTTx over resolved in W = {A, B, C, E, I}:
  TTD  A 300, B 0, C 120, E 600, I 0         sorted [0, 0, 120, 300, 600]          n 5, sum 1020 -> mean 204
       p50 rank ceil(.5*5)=3 -> 120; p90 rank ceil(.9*5)=5 -> 600
  TTA  A 120, B 600, C -, E 180, I 46        sorted [46, 120, 180, 600]            n 4, sum 946 -> 236.5
       -> 236 (half to even); p50 rank 2 -> 120; p90 rank ceil(3.6)=4 -> 600
  TTM  A 2160, B 2400, C 1800, E 3000, I 2700  sorted [1800, 2160, 2400, 2700, 3000] n 5, sum 12060 -> 2412
       p50 -> 2400; p90 -> 3000
  TTR  A 3600, B 5400, C 1800, E 4800, I 2700  sorted [1800, 2700, 3600, 4800, 5400] n 5, sum 18300 -> 3660
       p50 -> 3600; p90 -> 5400
Detected in W = {A, B, C, D, F, H, I}: total 7, SEV1 1, SEV2 3 (B, C, H), SEV3 2 (D, F), SEV4 1 (I).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine

from incident_bot.cli import main
from incident_bot.core.lifecycle import Signal
from incident_bot.usecases.incidents import NewIncident, apply_signals, open_incident
from incident_bot.usecases.metrics import incident_metrics, period_metrics
from storage.db import make_engine, session_scope


def t(text: str) -> datetime:
    """``"11-02 10:05"`` or ``"11-01 00:00:46"`` -> an aware UTC datetime in 2026."""
    fmt = "%Y-%m-%d %H:%M:%S" if text.count(":") == 2 else "%Y-%m-%d %H:%M"
    return datetime.strptime(f"2026-{text}", fmt).replace(tzinfo=UTC)


# ref: (severity, service, impact, detected, ack, mitigate, resolve, reopen)
INCIDENTS: dict[str, tuple[str, str | None, str, str, str | None, str | None, str | None, str | None]] = {
    "A": ("SEV1", "shop", "11-02 10:00", "11-02 10:05", "11-02 10:07", "11-02 10:36", "11-02 11:00", None),
    "B": ("SEV2", "shop", "11-03 08:00", "11-03 08:00", "11-03 08:10", "11-03 08:40", "11-03 09:30", None),
    "C": ("SEV2", "search", "11-04 12:00", "11-04 12:02", None, None, "11-04 12:30", None),
    "D": ("SEV3", "search", "11-05 00:00", "11-05 00:00", "11-05 00:01", None, None, None),
    "E": ("SEV1", "shop", "10-31 22:50", "10-31 23:00", "10-31 23:03", "10-31 23:40", "11-01 00:10", None),
    "F": ("SEV3", "shop", "11-07 20:00", "11-07 20:00", "11-07 20:05", None, "11-08 00:00", None),
    "G": ("SEV4", "shop", "10-20 09:00", "10-20 09:00", None, None, "10-21 09:00", None),
    "H": ("SEV2", "search", "11-06 10:00", "11-06 10:00", None, None, "11-06 10:30", "11-06 10:40"),
    "I": ("SEV4", None, "11-01 00:00", "11-01 00:00", "11-01 00:00:46", None, "11-01 00:45", None),
}
SINCE, UNTIL = "2026-11-01", "2026-11-08"

EXPECTED = {
    "window": {"since": "2026-11-01T00:00:00Z", "until": "2026-11-08T00:00:00Z"},
    "incidents": {"total": 7, "by_severity": {"SEV1": 1, "SEV2": 3, "SEV3": 2, "SEV4": 1}},
    "mttd_s": {"mean": 204, "p50": 120, "p90": 600, "n": 5},
    "mtta_s": {"mean": 236, "p50": 120, "p90": 600, "n": 4},
    "mttm_s": {"mean": 2412, "p50": 2400, "p90": 3000, "n": 5},
    "mttr_s": {"mean": 3660, "p50": 3600, "p90": 5400, "n": 5},
}


def seed(engine: Engine) -> dict[str, int]:
    """Create the incidents above through the service path; returns ref letter -> incident id."""
    ids: dict[str, int] = {}
    for ref, (sev, service, impact, detected, ack, mitigate, resolve, reopen) in INCIDENTS.items():
        with session_scope(engine) as s:
            inc = open_incident(
                s, NewIncident(title=f"incident {ref}", detected_at=t(detected), severity=sev, origin="cli",
                               service=service, impact_started_at=t(impact)),
                announce_channel=None, invite_oncall=False,
            )
            steps = (("acknowledge", ack), ("mitigate", mitigate), ("resolve", resolve), ("reopen", reopen))
            signals = [Signal(kind, at=t(when)) for kind, when in steps if when is not None]
            tr = apply_signals(s, inc, signals, strict=False, source="cli")
            assert tr.refused is None
            assert inc.id is not None
            ids[ref] = inc.id
    return ids


@pytest.fixture
def seeded(db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[str, dict[str, int]]:
    engine = make_engine(db_url)
    try:
        ids = seed(engine)
    finally:
        engine.dispose()
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("TIMEZONE", "UTC")
    return db_url, ids


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["metrics", *args])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    code, out, err = run_cli(capsys, *args, "--format", "json")
    assert code == 0, err
    return json.loads(out)


def test_hand_made_set_json(seeded, capsys) -> None:  # type: ignore[no-untyped-def]
    assert run_json(capsys, "--since", SINCE, "--until", UNTIL) == EXPECTED


def test_per_incident_durations_are_stored(seeded) -> None:  # type: ignore[no-untyped-def]
    db_url, ids = seeded
    engine = make_engine(db_url)
    try:
        with session_scope(engine) as s:
            assert incident_metrics(s, ids["A"]) == {"ttd_s": 300, "tta_s": 120, "ttm_s": 2160, "ttr_s": 3600}
            # C: never acknowledged; resolving without a mitigation sets mitigated_at = resolved_at.
            assert incident_metrics(s, ids["C"]) == {"ttd_s": 120, "tta_s": None, "ttm_s": 1800,
                                                     "ttr_s": 1800}
            # H: reopened, so no resolution and no TTR; D: still open, never mitigated.
            assert incident_metrics(s, ids["H"])["ttr_s"] is None  # type: ignore[index]
            assert incident_metrics(s, ids["D"]) == {"ttd_s": 0, "tta_s": 60, "ttm_s": None, "ttr_s": None}
            assert incident_metrics(s, 999_999) is None
    finally:
        engine.dispose()


def test_severity_and_service_filters(seeded, capsys) -> None:  # type: ignore[no-untyped-def]
    # SEV1+SEV2 resolved in W: A, B, C, E. TTR sorted [1800, 3600, 4800, 5400]: sum 15600 -> 3900,
    # p50 rank 2 -> 3600, p90 rank 4 -> 5400. Detected: A (SEV1), B, C, H (SEV2).
    doc = run_json(capsys, "--since", SINCE, "--until", UNTIL, "--severity", "sev1,2")
    assert doc["incidents"] == {"total": 4, "by_severity": {"SEV1": 1, "SEV2": 3, "SEV3": 0, "SEV4": 0}}
    assert doc["mttr_s"] == {"mean": 3900, "p50": 3600, "p90": 5400, "n": 4}
    # TTA over A 120, B 600, E 180 (C has none): mean 300, p50 rank 2 -> 180, p90 rank 3 -> 600.
    assert doc["mtta_s"] == {"mean": 300, "p50": 180, "p90": 600, "n": 3}

    # service search: resolved in W only C (H was reopened, D is open); detected C, D, H.
    doc = run_json(capsys, "--since", SINCE, "--until", UNTIL, "--service", "search")
    assert doc["incidents"] == {"total": 3, "by_severity": {"SEV1": 0, "SEV2": 2, "SEV3": 1, "SEV4": 0}}
    assert doc["mttr_s"] == {"mean": 1800, "p50": 1800, "p90": 1800, "n": 1}
    assert doc["mtta_s"] == {"mean": None, "p50": None, "p90": None, "n": 0}


def test_dates_are_midnight_in_the_configured_zone(seeded, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # Midnight in Berlin (UTC+1 in November) is 23:00Z the day before: E (detected 10-31 23:00Z) is now
    # detected in the window, and the window is [10-31 23:00Z, 11-07 23:00Z), which still holds F's
    # detection (11-07 20:00Z). The resolved set is unchanged.
    monkeypatch.setenv("TIMEZONE", "Europe/Berlin")
    doc = run_json(capsys, "--since", SINCE, "--until", UNTIL)
    assert doc["window"] == {"since": "2026-10-31T23:00:00Z", "until": "2026-11-07T23:00:00Z"}
    assert doc["incidents"] == {"total": 8, "by_severity": {"SEV1": 2, "SEV2": 3, "SEV3": 2, "SEV4": 1}}
    assert {k: doc[k] for k in ("mttd_s", "mtta_s", "mttm_s", "mttr_s")} == \
        {k: EXPECTED[k] for k in ("mttd_s", "mtta_s", "mttm_s", "mttr_s")}
    # An explicit offset wins over TIMEZONE; the until is exclusive, so F (resolved 11-08 00:00Z) joins
    # only once the window ends after it: TTR adds F's 14400 -> [1800, 2700, 3600, 4800, 5400, 14400],
    # sum 32700 / 6 = 5450, p50 rank 3 -> 3600, p90 rank ceil(5.4)=6 -> 14400.
    doc = run_json(capsys, "--since", "2026-11-01T00:00:00Z", "--until", "2026-11-08T00:00:01+00:00")
    assert doc["mttr_s"] == {"mean": 5450, "p50": 3600, "p90": 14400, "n": 6}


def test_table_output_is_readable(seeded, capsys) -> None:  # type: ignore[no-untyped-def]
    code, out, _ = run_cli(capsys, "--since", SINCE, "--until", UNTIL)
    assert code == 0
    assert "Incidents detected: 7  (SEV1 1, SEV2 3, SEV3 2, SEV4 1)" in out
    lines = {line.split()[0]: " ".join(line.split()) for line in out.splitlines() if line.startswith("MTT")}
    # label words, n, mean, p50, p90 (one duration style: core/durations.py)
    assert lines["MTTD"].endswith(" 5 3m 24s 2m 00s 10m 00s")
    assert lines["MTTA"].endswith(" 4 3m 56s 2m 00s 10m 00s")
    assert lines["MTTM"].endswith(" 5 40m 12s 40m 00s 50m 00s")
    assert lines["MTTR"].endswith(" 5 1h 01m 00s 1h 00m 00s 1h 30m 00s")


def test_empty_window_gives_nulls(seeded, capsys) -> None:  # type: ignore[no-untyped-def]
    doc = run_json(capsys, "--since", "2025-01-01", "--until", "2025-02-01")
    assert doc["incidents"]["total"] == 0
    assert doc["mttr_s"] == {"mean": None, "p50": None, "p90": None, "n": 0}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--since", "2026-13-01"], "--since '2026-13-01' is not a date"),
        (["--until", "last tuesday"], "--until 'last tuesday' is not a date"),
        (["--since", "2026-11-08", "--until", "2026-11-01"], "must be before --until"),
        (["--since", "2026-11-01", "--until", "2026-11-01"], "must be before --until"),
        (["--severity", "SEV1,SEV9"], "--severity 'SEV9' is unknown"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(sqlite_url, monkeypatch, tmp_path, capsys,  # type: ignore[no-untyped-def]
                                            args, needle) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", sqlite_url)
    code, out, err = run_cli(capsys, *args)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert needle in err


def test_service_function_refuses_bad_windows(sqlite_url) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(sqlite_url)
    try:
        with session_scope(engine) as s:
            with pytest.raises(ValueError, match="before"):
                period_metrics(s, since=t("11-02 00:00"), until=t("11-01 00:00"))
            with pytest.raises(ValueError, match="timezone-aware"):
                period_metrics(s, since=datetime(2026, 11, 1), until=None)
            with pytest.raises(ValueError, match="unknown severity"):
                period_metrics(s, since=None, until=None, severities=["P1"])
            # Both ends open: everything ever resolved / detected.
            doc = period_metrics(s, since=None, until=None)
            assert doc["window"] == {"since": None, "until": None}
    finally:
        engine.dispose()
