"""The SQLite writer queue (storage/sqlite_gate.py): first come, first served, handed straight to the next
in line; reads in ``read_scope`` do not queue; a real SQLite file with threads, no mocks."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from sqlalchemy import text

from storage.db import make_engine, read_scope
from storage.sqlite_gate import TicketGate

BOUND = 10.0  # seconds a test waits for a condition before it fails


def wait_until(cond, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + BOUND
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def served_in_turn(gate: TicketGate, plan: list[tuple[str, bool]]) -> list[str]:
    """With the gate held by the caller, queue one thread per ``(name, background)`` in that order (each in
    line before the next starts), release, and return the names in the order the gate served them."""
    order: list[str] = []

    def take(name: str, background: bool) -> None:
        gate.acquire(background=background)
        order.append(name)
        gate.release()

    threads = []
    for i, (name, background) in enumerate(plan):
        t = threading.Thread(target=take, args=(name, background))
        t.start()
        threads.append(t)
        wait_until(lambda n=i + 1: gate.waiting == n, f"{name} in line")
    gate.release()
    for t in threads:
        t.join(BOUND)
    return order


def test_the_gate_serves_waiters_in_arrival_order() -> None:
    gate = TicketGate()
    gate.acquire()  # held by the test
    order = served_in_turn(gate, [("first", False), ("second", False), ("third", False)])
    assert order == ["first", "second", "third"]
    assert gate.waiting == 0
    gate.acquire()  # free again: taken at once
    gate.release()


def test_requests_go_before_background_workers_but_workers_are_not_starved() -> None:
    from storage.sqlite_gate import FAIR_EVERY

    gate = TicketGate()
    gate.acquire()  # held by the test
    # A worker queues first, then more requests than the fairness bound.
    order = served_in_turn(gate, [("worker", True)] + [(f"request{i}", False) for i in range(FAIR_EVERY + 2)])
    # The first hand-over goes to a request although the worker came first; after FAIR_EVERY requests in a
    # row the waiting worker gets its turn, then the last requests.
    assert order[:FAIR_EVERY] == [f"request{i}" for i in range(FAIR_EVERY)]
    assert order[FAIR_EVERY] == "worker"
    assert order[FAIR_EVERY + 1:] == [f"request{i}" for i in range(FAIR_EVERY, FAIR_EVERY + 2)]


def test_concurrent_writers_all_commit(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'gate.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))

    def write() -> None:
        for _ in range(50):
            with engine.begin() as c:
                c.execute(text("INSERT INTO t VALUES (1)"))

    threads = [threading.Thread(target=write) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar_one() == 400
    engine.dispose()


def test_a_read_scope_does_not_wait_for_a_writer(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'gate.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))
    holding, release, read_done = threading.Event(), threading.Event(), threading.Event()
    seen: list[int] = []

    def writer() -> None:
        with engine.begin() as c:  # holds the gate and SQLite's write lock until released
            c.execute(text("INSERT INTO t VALUES (2)"))
            holding.set()
            release.wait(BOUND)

    def reader() -> None:
        with read_scope(engine) as s:
            seen.append(int(s.execute(text("SELECT count(*) FROM t")).scalar_one()))
        read_done.set()

    w = threading.Thread(target=writer)
    w.start()
    assert holding.wait(BOUND)
    r = threading.Thread(target=reader)
    r.start()
    assert read_done.wait(BOUND), "the read waited for the writer"
    assert seen == [1]  # the committed state, not the writer's pending row
    release.set()
    w.join(BOUND)
    r.join(BOUND)
    engine.dispose()
