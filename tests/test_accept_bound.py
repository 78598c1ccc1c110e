"""The accept paths hold at most the pool's kept connections at once (Runtime.store).

A burst larger than the pool used to open an overflow connection per request past the pool's size and
close it after its one INSERT. Here: a real engine and pool, a real thread pool, real INSERTs.
"""

from __future__ import annotations

import asyncio
import threading
import time

from sqlalchemy import event, func, select
from sqlmodel import Session

from incident_bot.pipeline import inbox
from incident_bot.runtime import Runtime
from storage.db import kept_connections, make_engine
from storage.models import InboxDelivery

from .conftest import make_settings


def test_a_burst_of_accepts_opens_no_connection_past_the_pool(db_url) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(db_url)
    opened: list[object] = []
    event.listen(engine, "connect", lambda conn, record: opened.append(conn))
    rt = Runtime(settings=make_settings(db_url), engine=engine)
    kept = kept_connections(engine)
    assert kept == (5 if engine.dialect.name == "sqlite" else 10)  # SQLAlchemy's default; DB_POOL_SIZE's
    in_flight, most = 0, 0
    lock = threading.Lock()

    def accept(n: int) -> inbox.Accepted:
        nonlocal in_flight, most
        with lock:
            in_flight += 1
            most = max(most, in_flight)
        try:
            time.sleep(0.01)  # long enough that an unbounded burst would overlap far past the pool
            return inbox.accept(engine, source="pagerduty", event_id=f"E{n}", event_type="incident.triggered",
                                payload="{}")
        finally:
            with lock:
                in_flight -= 1

    async def burst() -> list[inbox.Accepted]:
        return await asyncio.gather(*(rt.store(accept, n) for n in range(60)))

    accepted = asyncio.run(burst())
    assert [a.duplicate for a in accepted] == [False] * 60
    assert most == kept, "as many at once as the pool keeps, no more (and the bound is reached)"
    assert len(opened) <= kept, f"{len(opened)} connections opened for 60 INSERTs"
    with Session(engine) as s:
        assert s.execute(select(func.count()).select_from(InboxDelivery)).scalar_one() == 60
    engine.dispose()
