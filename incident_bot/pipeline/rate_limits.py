"""Stay inside Slack's rate limits instead of bouncing off them.

Two mechanisms, both per Web API method and per process:
- a token bucket with Slack's published budget for the methods that an alert storm hammers
  (``conversations.create`` is Tier 2, about 20 a minute), so a storm queues instead of 429-storming;
- a penalty box: after a 429, the method is not called again until ``Retry-After`` has passed.
Blocked methods are left unclaimed in the outbox, so other rows (other methods) keep flowing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# calls per minute; None = no proactive limit (Slack's own 429 still applies)
DEFAULT_BUDGETS: dict[str, float] = {
    "conversations.create": 19,  # Tier 2 is ~20/min; one under it, since Slack counts a strict window
    "conversations.invite": 50,
    "conversations.setTopic": 50,
    "users.lookupByEmail": 100,
}


class RateGate:
    def __init__(self, budgets: dict[str, float] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.budgets = dict(DEFAULT_BUDGETS if budgets is None else budgets)
        self.clock = clock
        self._lock = threading.Lock()
        self._not_before: dict[str, float] = {}
        self._tokens: dict[str, float] = {m: 1.0 for m in self.budgets}
        self._refilled: dict[str, float] = {m: clock() for m in self.budgets}

    def _refill(self, method: str, now: float) -> float:
        budget = self.budgets[method]
        # No burst: a bucket of one token paces calls evenly, which a strict sliding window never refuses
        # (the storm benchmark saw a burst of 3 on top of 20/min draw ~1 429 a minute).
        tokens = min(1.0, self._tokens[method] + (now - self._refilled[method]) * budget / 60.0)
        self._tokens[method], self._refilled[method] = tokens, now
        return tokens

    def blocked(self) -> list[str]:
        """Methods that must not be claimed right now."""
        now = self.clock()
        with self._lock:
            out = [m for m, t in self._not_before.items() if t > now]
            out += [m for m in self.budgets if m not in out and self._refill(m, now) < 1.0]
            return out

    def before_call(self, method: str) -> bool:
        """Take a token for a call; False when there is none. A row is claimed while its method looked
        open, but several delivery threads can claim at once: only those that get a token call, the
        others hand their row back, so a burst of threads never becomes a burst of calls."""
        if method not in self.budgets:
            return True
        with self._lock:
            now = self.clock()
            if self._not_before.get(method, 0.0) > now or self._refill(method, now) < 1.0:
                return False
            self._tokens[method] -= 1.0
            return True

    def penalise(self, method: str, seconds: float) -> None:
        with self._lock:
            until = self.clock() + seconds
            self._not_before[method] = max(self._not_before.get(method, 0.0), until)
