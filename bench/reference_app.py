"""The yardstick for the ingest benchmark: the least a PagerDuty webhook receiver can do, on our stack.

    DATABASE_URL=sqlite:///ref.db PAGERDUTY_WEBHOOK_SECRETS=s \\
        .venv/bin/python bench/reference_app.py --port 8081

FastAPI + uvicorn (one worker, uvicorn's defaults as ``incident-bot serve`` uses them), the same signature
check, and one durable row per delivery (``INSERT ... ON CONFLICT DO NOTHING`` on the event id, so a
redelivery costs what it costs us: a lookup, no second row). Same durability as the bot: SQLite in WAL
with ``synchronous=FULL`` and ``BEGIN IMMEDIATE``; PostgreSQL through a psycopg connection pool of the
bot's size (10 + 5 overflow) with ``synchronous_commit`` left on. The database call runs in the thread
pool, as the bot's does. Whatever the bot does beyond this (parsing, the lifecycle, the timeline, the
outbox, metrics, logging) is what the ratio ours/reference prices.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import sqlite3
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.engine import make_url
from starlette.concurrency import run_in_threadpool

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from incident_bot.pagerduty.signature import verify

DDL = ("CREATE TABLE IF NOT EXISTS ref_deliveries (id {pk}, event_id VARCHAR(255) NOT NULL UNIQUE, "
       "event_type VARCHAR(64) NOT NULL, received_at VARCHAR(40) NOT NULL)")


class SqliteStore:
    """One connection per thread (sqlite3 connections are not shared), set up as storage/db.py does."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.local = threading.local()
        self._conn().execute(DDL.format(pk="INTEGER PRIMARY KEY AUTOINCREMENT"))

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "busy_timeout=30000"):
                conn.execute(f"PRAGMA {pragma}")
            self.local.conn = conn
        return conn

    def insert(self, event_id: str, event_type: str) -> None:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("INSERT INTO ref_deliveries (event_id, event_type, received_at) VALUES (?, ?, ?) "
                         "ON CONFLICT (event_id) DO NOTHING", (event_id, event_type, _now()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


class PostgresStore:
    def __init__(self, url: str) -> None:
        from psycopg_pool import ConnectionPool

        conninfo = url.replace("postgresql+psycopg://", "postgresql://", 1)
        self.pool = ConnectionPool(conninfo, min_size=int(os.environ.get("DB_POOL_SIZE", "10")),
                                   max_size=int(os.environ.get("DB_POOL_SIZE", "10"))
                                   + int(os.environ.get("DB_POOL_OVERFLOW", "5")), open=True)
        with self.pool.connection() as conn:
            conn.execute(DDL.format(pk="BIGSERIAL PRIMARY KEY"))

    def insert(self, event_id: str, event_type: str) -> None:
        with self.pool.connection() as conn:  # commits when the block ends
            conn.execute("INSERT INTO ref_deliveries (event_id, event_type, received_at) VALUES (%s, %s, %s) "
                         "ON CONFLICT (event_id) DO NOTHING", (event_id, event_type, _now()))


def _now() -> str:
    return datetime.now(UTC).isoformat()


def make_store(url: str) -> SqliteStore | PostgresStore:
    if url.startswith("sqlite:"):
        return SqliteStore(str(make_url(url).database))
    return PostgresStore(url)


def create_app(url: str, secrets: list[str]) -> FastAPI:
    store = make_store(url)
    app = FastAPI(docs_url=None, redoc_url=None)

    @app.post("/pagerduty/webhook")
    async def webhook(request: Request) -> Response:
        body = await request.body()
        if not verify(body, request.headers.get("x-pagerduty-signature"), secrets):
            return JSONResponse({"error": "invalid signature"}, status_code=401)
        try:
            event: dict[str, Any] = json.loads(body)["event"]
            event_id, event_type = str(event["id"]), str(event["event_type"])
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": "malformed"}, status_code=400)
        await run_in_threadpool(store.insert, event_id, event_type)
        return JSONResponse({"status": "accepted"}, status_code=202)

    slack_secret = os.environ.get("SLACK_SIGNING_SECRET", "")

    @app.post("/slack/events")
    async def slack(request: Request) -> Response:
        """The least a Slack receiver can do: the v0 signature over the raw body, one durable row keyed
        on the body's hash, an empty 200 (the answer would go through response_url later)."""
        body = await request.body()
        ts = request.headers.get("x-slack-request-timestamp", "")
        mac = hmac.new(slack_secret.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest("v0=" + mac, request.headers.get("x-slack-signature", "")):
            return JSONResponse({"error": "invalid signature"}, status_code=401)
        await run_in_threadpool(store.insert, "slack:" + hashlib.sha256(body).hexdigest(), "command")
        return Response(status_code=200)

    @app.get("/healthz")
    async def healthz() -> Response:
        return JSONResponse({"status": "ok"})

    return app


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8081)
    args = p.parse_args(argv)
    url = os.environ["DATABASE_URL"]
    secrets = [s.strip() for s in os.environ["PAGERDUTY_WEBHOOK_SECRETS"].split(",") if s.strip()]
    uvicorn.run(create_app(url, secrets), host=args.host, port=args.port, log_config=None, access_log=False,
                timeout_graceful_shutdown=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
