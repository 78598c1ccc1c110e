"""The use-case runner: the one place a use case gets its transaction.

Entry points (the CLI, the scheduler, the HTTP app, the demo) and adapters (Slack, the trackers, the web
pages) call a use case as ``run(engine, use_case, *args)``: ``use_case(session, *args)`` runs in one
transaction, committed when it returns and rolled back when it raises (the exception goes on to the
caller). :func:`read` is the same for a use case that only reads: on SQLite its transaction takes no
write lock (``storage.db.read_scope``), so it neither queues behind the fold or the accept path nor holds
them up. A write inside :func:`read` is a bug (on SQLite it may fail under load): use :func:`run`.

Where the pipeline already holds a transaction and hands its session to an adapter (a fold applier, an
outbox job's ``store``), the adapter calls the use case with that session, and :func:`savepoint` when one
input's writes must stand or fall alone inside it. Adapters run no SQL and import neither ``sqlmodel``
nor ``sqlalchemy``: they name the two types they hold, :data:`Engine` and :data:`Session`, from here.

There is no retry here: the callers that retry a transaction (the fold, the outbox worker) have their
own loops. The other modules that open transactions are the pipeline's (inbox accept, fold, outbox,
heartbeat), which claim and finish rows in transactions of their own, and ``storage``;
tests/test_import_graph.py keeps it so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy import Engine
from sqlmodel import Session

from storage.db import read_scope, session_scope

# Re-exported for the adapters' type hints (the same classes, not wrappers): see the module docstring.
__all__ = ["Engine", "Session", "read", "run", "savepoint"]
P = ParamSpec("P")
T = TypeVar("T")


def run(engine: Engine, use_case: Callable[Concatenate[Session, P], T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """``use_case(session, *args, **kwargs)`` in one transaction; its result once committed."""
    with session_scope(engine) as session:
        return use_case(session, *args, **kwargs)


def read(engine: Engine, use_case: Callable[Concatenate[Session, P], T], /, *args: P.args,
         **kwargs: P.kwargs) -> T:
    """``use_case(session, *args, **kwargs)`` in one transaction that only reads (no write lock on SQLite)."""
    with read_scope(engine) as session:
        return use_case(session, *args, **kwargs)


def savepoint(session: Session, step: Callable[[], T], *, keep: Callable[[T], bool] = lambda _: True) -> T:
    """``step()`` in a savepoint of the caller's transaction: its writes stay when ``keep(result)``, and
    are rolled back when that is false or when ``step`` raises (the exception goes on to the caller). One
    stored Slack request in the fold's batch: a refused command keeps nothing but its answer."""
    nested = session.begin_nested()
    try:
        result = step()
    except BaseException:
        nested.rollback()
        raise
    if keep(result):
        nested.commit()
    else:
        nested.rollback()
    return result
