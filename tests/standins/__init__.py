"""Stand-ins only the tests (and benchmarks) need: the CAPA trackers' APIs, a TCP proxy that cuts the
database off, Slack's Socket Mode, a generated PagerDuty history. The demo's stand-ins of Slack and
PagerDuty are in ``incident_bot/demo/``."""
