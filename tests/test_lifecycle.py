"""The lifecycle core: order rules, and delivery order never changing the outcome."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from incident_bot.core.lifecycle import Signal, apply, open_state

T0 = datetime(2026, 11, 26, 14, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def fold(signals, strict=False):  # type: ignore[no-untyped-def]
    state = open_state(detected_at=T0, severity="SEV2")
    for sig in signals:
        state = apply(state, sig, strict=strict).state
    return state


def test_in_order_pagerduty_story() -> None:
    s = fold([Signal("acknowledge", at(3)), Signal("resolve", at(40))])
    assert s.status == "resolved"
    assert s.acknowledged_at == at(3)
    assert s.resolved_at == at(40)
    assert s.mitigated_at == at(40), "a resolve without mitigation means mitigated by then"
    assert s.impact_started_at == T0


def test_late_ack_after_resolve_records_first_ack_but_stays_resolved() -> None:
    s = fold([Signal("resolve", at(40)), Signal("acknowledge", at(3))])
    assert s.status == "resolved"
    assert s.acknowledged_at == at(3)


def test_later_ack_does_not_move_first_ack() -> None:
    s = fold([Signal("acknowledge", at(3)), Signal("acknowledge", at(9))])
    assert s.acknowledged_at == at(3)


def test_reopen_clears_resolved_and_next_resolve_sets_it() -> None:
    s = fold([Signal("resolve", at(10)), Signal("reopen", at(20))])
    assert s.resolved_at is None and s.status == "triggered"
    s = apply(s, Signal("resolve", at(30))).state
    assert s.resolved_at == at(30) and s.status == "resolved"


def test_stale_reopen_does_not_unresolve() -> None:
    s = fold([Signal("resolve", at(10)), Signal("reopen", at(20)), Signal("resolve", at(30)),
              Signal("reopen", at(15))])
    assert s.status == "resolved" and s.resolved_at == at(30)


def test_unacknowledge_then_late_ack_ordering() -> None:
    s = fold([Signal("acknowledge", at(3)), Signal("unacknowledge", at(10))])
    assert s.status == "triggered" and s.acknowledged_at == at(3)
    s2 = fold([Signal("unacknowledge", at(10)), Signal("acknowledge", at(3))])
    assert s2.status == "triggered", "an older ack cannot undo a newer unack"


def test_severity_is_last_writer_wins_by_source_time() -> None:
    s = fold([Signal("severity", at(5), value="SEV1"), Signal("severity", at(2), value="SEV3")])
    assert s.severity == "SEV1"


def test_strict_refusals_explain_why() -> None:
    s = fold([Signal("resolve", at(10))])
    tr = apply(s, Signal("acknowledge", at(11)), strict=True)
    assert tr.refused and "resolved" in tr.refused
    assert apply(s, Signal("mitigate", at(11)), strict=True).refused
    open_ = open_state(detected_at=T0, severity="SEV2")
    assert "not resolved" in (apply(open_, Signal("reopen", at(1)), strict=True).refused or "")
    assert "resolve it first" in (apply(open_, Signal("close", at(1)), strict=True).refused or "")
    future = apply(open_, Signal("impact_started", at(1), when=at(2)), strict=True)
    assert future.refused and "future" in future.refused
    after_detect = apply(open_, Signal("impact_started", at(10), when=at(5)), strict=True)
    assert after_detect.refused and "after detection" in after_detect.refused
    ok = apply(open_, Signal("impact_started", at(10), when=at(-20)), strict=True)
    assert ok.refused is None and ok.state.impact_started_at == at(-20)
    assert ok.changed == {"impact_started_at": at(-20)}


def test_close_then_reopen() -> None:
    s = fold([Signal("resolve", at(10)), Signal("close", at(60))])
    assert s.status == "closed" and s.closed_at == at(60)
    s = apply(s, Signal("reopen", at(70))).state
    assert s.status == "triggered" and s.closed_at is None and s.resolved_at is None


def test_mitigated_status_and_milestone() -> None:
    s = fold([Signal("acknowledge", at(2)), Signal("mitigate", at(8))])
    assert s.status == "mitigated" and s.mitigated_at == at(8)
    s = apply(s, Signal("resolve", at(30))).state
    assert s.mitigated_at == at(8), "an explicit mitigation is kept when resolving"


def test_ack_before_detection_is_clamped_to_detection() -> None:
    s = fold([Signal("acknowledge", at(-1))])
    assert s.acknowledged_at == T0


KINDS = ["acknowledge", "unacknowledge", "mitigate", "resolve", "reopen", "severity", "close"]
signal_st = st.builds(
    lambda kind, minute, sev: Signal(kind, at(minute), value=sev if kind == "severity" else None),
    st.sampled_from(KINDS), st.integers(min_value=0, max_value=600), st.sampled_from(["SEV1", "SEV2", "SEV4"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(signal_st, max_size=12), st.randoms(use_true_random=False))
def test_delivery_order_never_changes_the_outcome(signals, rnd) -> None:  # type: ignore[no-untyped-def]
    shuffled = list(signals)
    rnd.shuffle(shuffled)
    # Redeliveries (the same signal twice) change nothing either.
    duplicated = shuffled + shuffled[: len(shuffled) // 2]
    assert fold(signals) == fold(duplicated)


@settings(max_examples=300, deadline=None)
@given(st.lists(signal_st, max_size=12))
def test_milestones_keep_their_order(signals) -> None:  # type: ignore[no-untyped-def]
    s = fold(signals)
    assert s.impact_started_at is not None and s.impact_started_at <= s.detected_at
    if s.acknowledged_at:
        assert s.detected_at <= s.acknowledged_at
    for m in (s.mitigated_at, s.resolved_at):
        if m:
            assert m >= s.impact_started_at
    if s.closed_at:
        assert s.resolved_at is not None


def test_resolved_at_is_first_resolve_after_last_reopen_in_any_order() -> None:
    sigs = [Signal("resolve", at(10)), Signal("resolve", at(30)), Signal("reopen", at(20))]
    import itertools

    for order in itertools.permutations(sigs):
        s = fold(list(order))
        assert s.resolved_at == at(30) and s.status == "resolved"
    # An echo of a resolve we already know of (a later time) does not move resolved_at.
    s = fold([Signal("resolve", at(10)), Signal("resolve", at(11))])
    assert s.resolved_at == at(10)
