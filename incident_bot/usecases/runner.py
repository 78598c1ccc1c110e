"""The use-case runner: the one place a use case gets its transaction.

Entry points (the CLI, the scheduler, the HTTP app, the demo) and adapters (Slack, the trackers, the web
pages) call a use case as ``run(engine, use_case, *args)``: ``use_case(session, *args)`` runs in one
transaction, committed when it returns and rolled back when it raises (the exception goes on to the
caller). :func:`read` is the same for a use case that only reads: on SQLite its transaction takes no
write lock (``storage.db.read_scope``), so it neither queues behind the fold or the accept path nor holds
them up. A write inside :func:`read` is a bug (on SQLite it may fail under load): use :func:`run`.

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
