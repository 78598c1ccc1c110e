"""PagerDuty adapter: webhook v3 verification and parsing, REST on-call lookups."""
