"""``incident-bot demo``: one incident end to end on SQLite, with local stand-ins of Slack and PagerDuty.

The stand-ins (real HTTP servers on 127.0.0.1 that record calls and can fail on demand) live here
because the demo runs them; the test suite and the benchmarks reuse them. Stand-ins only the tests need
(the CAPA trackers, a TCP proxy for outages, Socket Mode) are under ``tests/standins/``.
"""

from incident_bot.demo.scenario import run

__all__ = ["run"]
