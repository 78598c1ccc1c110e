"""Group commit (incident_bot/pipeline/group_commit.py): outcomes finished together share a transaction,
every one is stored exactly once, and a batch that fails hands each write back to its caller."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import Engine, select
from sqlmodel import Session

from incident_bot.pipeline import outbox
from incident_bot.pipeline.group_commit import GroupCommit
from storage import repo
from storage.db import session_scope
from storage.models import OutboxMessage


def _rows(engine: Engine, n: int) -> list[int]:
    with session_scope(engine) as s:
        rows = [repo.enqueue_row(s, order_key=f"k{i}", method="chat.postMessage", payload={"i": i}) for i in range(n)]
        s.flush()
        return [r.id or 0 for r in rows]


def _statuses(engine: Engine) -> dict[int, str]:
    with Session(engine) as s:
        return {r.id or 0: r.status for r in s.execute(select(OutboxMessage)).scalars()}


def test_writes_that_arrive_together_share_a_transaction_and_each_is_stored_once(engine: Engine) -> None:
    ids = _rows(engine, 8)
    group = GroupCommit(engine)
    started, release = threading.Event(), threading.Event()

    def first(s: Session) -> None:  # holds the flush (and its lock) until the seven others are queued
        outbox.finish(s, ids[0], result={"ok": True})
        started.set()
        assert release.wait(10)

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(group.store, first)]
        assert started.wait(10)
        futures += [pool.submit(group.store, lambda s, i=i: outbox.finish(s, i, result={"ok": True}))
                    for i in ids[1:]]
        _until(lambda: group.queued == 7)
        release.set()
        assert [f.result(10) for f in futures] == [True] * 8
    assert set(_statuses(engine).values()) == {"done"}
    assert (group.transactions, group.writes) == (2, 8), "the first alone, then the seven queued behind it"


def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def test_a_write_that_fails_sinks_only_its_batch_and_the_callers_are_told(engine: Engine) -> None:
    ids = _rows(engine, 2)
    group = GroupCommit(engine)

    def bad(s: Session) -> None:
        outbox.finish(s, ids[0], result={"ok": True})
        raise ValueError("a write that cannot be stored")

    assert group.store(bad) is False, "the caller learns its write was not stored"
    assert _statuses(engine)[ids[0]] == "pending", "nothing of the failed batch was stored"
    assert group.store(lambda s: outbox.finish(s, ids[1], result={"ok": True})) is True
    assert _statuses(engine) == {ids[0]: "pending", ids[1]: "done"}
