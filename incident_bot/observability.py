"""Structured logs and Prometheus metrics.

Logs are one JSON object a line (what log shippers parse without rules); secrets never reach them:
request bodies and headers are not logged, only ids, types, outcomes and latencies.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

REGISTRY = CollectorRegistry(auto_describe=True)

DELIVERIES = Counter(
    "incident_bot_deliveries_total", "Inbound deliveries by source and outcome",
    ["source", "outcome"], registry=REGISTRY,
)
REQUEST_LATENCY = Histogram(
    "incident_bot_request_seconds", "Latency of inbound HTTP requests",
    ["route"], registry=REGISTRY,
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
OUTBOX_DELIVERIES = Counter(
    "incident_bot_outbox_calls_total", "Outbox calls by Web API method and outcome",
    ["method", "outcome"], registry=REGISTRY,
)


FOLD_BATCHES = Histogram(
    "incident_bot_fold_batch_rows", "Inbox rows applied per fold transaction", registry=REGISTRY,
    buckets=(1, 5, 10, 25, 50, 100, 200, 500),
)
INBOX_FAILED = Counter(
    "incident_bot_inbox_failed_total", "Inbox rows parked as failed by this process", registry=REGISTRY,
)


# Counted by the fold and the outbox: in a worker child of ``serve`` (worker_process.py), not in the process
# that answers /metrics.
WORKER_METRICS = (OUTBOX_DELIVERIES, FOLD_BATCHES, INBOX_FAILED)


class WorkerChildMetrics:
    """The worker metrics of ``serve``'s worker child, read from its prometheus_client multiprocess files
    at scrape time (and summed over the children it has had, so counters never go back). Only those: the
    child also holds zeroed copies of this process's request metrics, which must not appear twice."""

    def __init__(self, path: str) -> None:
        self.files = MultiProcessCollector(None, path=path)
        self.names = {m._name for m in WORKER_METRICS}  # the family name (a counter: without _total)

    def describe(self) -> list[Any]:
        return []  # nothing to check against at registration: the child may not have started yet

    def collect(self) -> Any:
        return (family for family in self.files.collect() if family.name in self.names)


def read_worker_metrics_from(path: str) -> None:
    """/metrics of a ``serve`` whose workers run in a child: their counters from the child's files
    instead of this process's own (which would stay at zero)."""
    global _child_metrics
    for collector in (*WORKER_METRICS, _child_metrics):
        with contextlib.suppress(KeyError):  # not registered (a second call in a process: only in tests)
            REGISTRY.unregister(collector)
    _child_metrics = WorkerChildMetrics(path)
    REGISTRY.register(_child_metrics)


_child_metrics: WorkerChildMetrics | None = None


class OutboxCollector:
    """Outbox depth and dead rows, read from the database at scrape time (true across replicas)."""

    name, help_text = "incident_bot_outbox_rows", "Outbox rows by status"

    def __init__(self) -> None:
        self.counts_fn: Any = dict

    def collect(self) -> Any:
        g = GaugeMetricFamily(self.name, self.help_text, labels=["status"])
        try:
            counts = self.counts_fn()
        except Exception:  # a scrape must not fail because the database is down
            counts = {}
        for status, n in counts.items():
            g.add_metric([status], n)
        yield g


class InboxCollector(OutboxCollector):
    """Inbox depth: pending (not applied yet: the fold's lag) and failed rows (need a look)."""

    name, help_text = "incident_bot_inbox_rows", "Inbox rows by status"


OUTBOX_COLLECTOR = OutboxCollector()
REGISTRY.register(OUTBOX_COLLECTOR)
INBOX_COLLECTOR = InboxCollector()
REGISTRY.register(INBOX_COLLECTOR)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            doc.update(extra)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def setup_logging(level: str = "INFO", *, json_lines: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter("%(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("uvicorn.access", "slack_bolt", "slack_sdk", "httpx2", "httpx", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
