"""The outbox's own pacing of Slack methods (an alert storm must queue, not draw a 429 storm)."""

from __future__ import annotations

from incident_bot.pipeline.rate_limits import RateGate


def test_channel_creation_never_exceeds_a_strict_sliding_window() -> None:
    now = [0.0]
    gate = RateGate({"conversations.create": 19}, clock=lambda: now[0])
    calls: list[float] = []
    while now[0] < 600:  # ten minutes of a storm, the outbox asking every 100 ms
        if "conversations.create" not in gate.blocked():
            gate.before_call("conversations.create")
            calls.append(now[0])
        now[0] += 0.1
    assert 180 <= len(calls) <= 191  # ~19 a minute
    for i, t in enumerate(calls):
        window = [c for c in calls[i:] if c < t + 60]
        assert len(window) <= 20, f"{len(window)} calls in the 60 s after {t:.1f}s"


def test_a_429_parks_the_method_for_retry_after() -> None:
    now = [0.0]
    gate = RateGate({}, clock=lambda: now[0])
    gate.penalise("chat.postMessage", 30)
    assert gate.blocked() == ["chat.postMessage"]
    now[0] = 30.1
    assert gate.blocked() == []


def test_threads_that_claimed_at_once_get_one_token_between_them() -> None:
    """Several delivery threads may claim rows of a paced method in the same instant (each saw it open):
    only one gets the token and calls; the others hand their row back."""
    now = [0.0]
    gate = RateGate({"conversations.setTopic": 20}, clock=lambda: now[0])
    assert "conversations.setTopic" not in gate.blocked()
    granted = [gate.before_call("conversations.setTopic") for _ in range(8)]
    assert granted == [True] + [False] * 7
    now[0] += 3.0  # 20 a minute: the next token after 3 s
    assert gate.before_call("conversations.setTopic") is True
    assert gate.before_call("chat.postMessage") is True, "a method without a budget is never held"


def test_the_budgets_reach_the_outbox_and_default_to_slacks_tiers(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from incident_bot.bootstrap import build_runtime
    from incident_bot.pipeline.rate_limits import DEFAULT_BUDGETS

    from .conftest import make_settings

    url = f"sqlite:///{tmp_path / 'gate.db'}"
    default = build_runtime(make_settings(url, slack_rate_budgets={}, slack_channel_create_per_minute=19))
    assert default.worker is not None and default.worker.gate.budgets == DEFAULT_BUDGETS
    assert DEFAULT_BUDGETS["conversations.setTopic"] == 50 and DEFAULT_BUDGETS["conversations.invite"] == 50
    tuned = build_runtime(make_settings(url, slack_rate_budgets="conversations.setTopic=600"))
    assert tuned.worker is not None and tuned.worker.gate.budgets["conversations.setTopic"] == 600
    assert tuned.worker.gate.budgets["conversations.invite"] == 50
    for rt in (default, tuned):
        rt.engine.dispose()
    with pytest.raises(ValueError, match="not a paced Slack method"):
        make_settings(url, slack_rate_budgets="chat.postMessage=10")
