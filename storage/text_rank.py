"""Ranking past incidents in the database by the README's score, so only the few best rows leave it.

core/similarity.py states the rules; this module computes the same numbers in SQL over the text index
(storage/text_search.py) and the columns ``incident_search`` keeps beside the words (number, detection,
resolved, service), never joining ``incidents``:

- score: for each counted word of the incident's title, ``title_points`` when the other incident has it
  in its title and ``other_points`` when it has it in its other words; for each other counted word,
  ``other_points`` when the other incident has it anywhere (PostgreSQL: ``tsv @@ 'word':A`` / ``'word'``;
  SQLite: the word between spaces in ``title_terms`` / ``body_terms``);
- order: same service first, then the score, the later detection, the higher number;
- candidates: the incidents that share a counted word (the GIN or FTS5 index finds them) and the most
  recent ones of the same service (the ``(service_key, detected_at)`` index).

So the answer is the rules' answer on both databases, not "the database's best matches ranked again".
A shortcut first: when at least ``limit`` incidents of the same service (without a service: any) have
every counted word, they have the highest score possible and the most recent of them are the answer;
that query reads only their rows. Otherwise one query scores every candidate (cost: about one row per
incident that shares a word; bench/bench_similar.py).

Merged incidents (no ``incident_metrics`` row) are left out after ranking: a few more rows are read
than asked for, and more again in the rare case that merged ones fill them.

Document frequencies (in how many incidents a word appears) are counted here too, with a cache.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Engine, bindparam, select, text
from sqlalchemy.sql.elements import TextClause
from sqlmodel import Session
from sqlmodel.sql.sqltypes import UTCDateTime

from storage.models import IncidentMetrics
from storage.text_search import fts_query, pg_query

MERGED_SLACK = 4  # extra rows read so that a merged incident or two can be dropped without a second query


@dataclass(frozen=True)
class Probe:
    """The incident we look from, as ranking needs it."""

    number: int
    detected_at: datetime
    title_words: tuple[str, ...]  # its counted title words (stems)
    other_words: tuple[str, ...]  # its other counted words
    service_key: str | None  # text_search.service_key of its service
    service_id: str | None  # its PagerDuty service id
    title_points: int
    other_points: int

    @property
    def best_score(self) -> int:
        return self.title_points * len(self.title_words) + self.other_points * len(self.other_words)

    @property
    def has_service(self) -> bool:
        return bool(self.service_key or self.service_id)


class Ranked(NamedTuple):
    incident_id: int
    same_service: bool
    score: int


class _Sql:
    """The SQL pieces of one probe for one dialect, with their bound values."""

    def __init__(self, dialect: str, p: Probe) -> None:
        self.pg = dialect == "postgresql"
        self.p = p
        self.params: dict[str, Any] = {"tp": p.title_points, "op": p.other_points, "number": p.number,
                                       "sk": p.service_key, "sid": p.service_id}
        same = [c for c, v in (("s.service_key = :sk", p.service_key), ("s.service_id = :sid", p.service_id)) if v]
        self.same = f"COALESCE({' OR '.join(same)}, {'FALSE' if self.pg else '0'})" if same else (
            "FALSE" if self.pg else "0")
        terms = []
        for n, w in enumerate(p.title_words):
            if self.pg:
                self.params[f"ta{n}"], self.params[f"tw{n}"] = pg_query([w]) + ":A", pg_query([w])
                terms.append(f"CASE WHEN s.tsv @@ CAST(:ta{n} AS tsquery) THEN :tp "
                             f"WHEN s.tsv @@ CAST(:tw{n} AS tsquery) THEN :op ELSE 0 END")
            else:
                self.params[f"tw{n}"] = f" {w} "
                terms.append(f"CASE WHEN instr(' ' || s.title_terms || ' ', :tw{n}) THEN :tp "
                             f"WHEN instr(' ' || s.body_terms || ' ', :tw{n}) THEN :op ELSE 0 END")
        for n, w in enumerate(p.other_words):
            if self.pg:
                self.params[f"ow{n}"] = pg_query([w])
                terms.append(f"CASE WHEN s.tsv @@ CAST(:ow{n} AS tsquery) THEN :op ELSE 0 END")
            else:
                self.params[f"ow{n}"] = f" {w} "
                terms.append(f"CASE WHEN instr(' ' || s.title_terms || ' ' || s.body_terms || ' ', :ow{n}) "
                             "THEN :op ELSE 0 END")
        self.score = " + ".join(terms) or "0"

    def before(self, resolved_only: bool) -> str:
        """Detected before the probe (ties: a lower number), and resolved when asked."""
        cond = ("s.detected_at IS NOT NULL AND (s.detected_at < :detected OR "
                "(s.detected_at = :detected AND s.number < :number))")
        return cond + (" AND s.resolved" if resolved_only else "")

    def words(self, every: bool) -> str:
        """A full-text query for the probe's words: any of them, or every one where it counts."""
        title, other = self.p.title_words, self.p.other_words
        if self.pg:
            if every:
                return pg_query(title, " & ", weight="A") + (" & " if title and other else "") + pg_query(other, " & ")
            return pg_query([*title, *other])
        if every:
            parts = [f"title_terms : {fts_query([w])}" for w in title] + [fts_query([w]) for w in other]
            return " AND ".join(parts)
        return fts_query([*title, *other])

    def text_rows(self, every: bool, where: str) -> str:
        """The rows that share the probe's words (every word or any), with ``where`` on them."""
        self.params["q_every" if every else "q_any"] = self.words(every)
        q = ":q_every" if every else ":q_any"
        if self.pg:
            return f"SELECT s.* FROM incident_search s WHERE s.tsv @@ CAST({q} AS tsquery) AND {where}"
        return (f"SELECT s.* FROM incident_search_fts f CROSS JOIN incident_search s ON s.incident_id = f.rowid "
                f"WHERE f.incident_search_fts MATCH {q} AND {where}")

    def recent_same(self, where: str, limit_param: str) -> str:
        """The most recent rows of the same service (by name, and by PagerDuty service id), ``where`` on them."""
        parts = [f"SELECT * FROM (SELECT s.* FROM incident_search s WHERE s.{col} = :{param} AND {where} "
                 f"ORDER BY s.detected_at DESC, s.number DESC LIMIT :{limit_param}) AS r{n}"
                 for n, (col, param, v) in enumerate((("service_key", "sk", self.p.service_key),
                                                      ("service_id", "sid", self.p.service_id))) if v]
        return " UNION ALL ".join(parts)

    def ranked(self, rows: str, min_score: int) -> str:
        """Score ``rows`` (a subquery of incident_search rows as ``s``), keep those that qualify, best first."""
        self.params["min"] = min_score
        return (f"SELECT incident_id, same, score FROM (SELECT s.incident_id, s.detected_at, s.number, "
                f"{self.same} AS same, {self.score} AS score FROM ({rows}) AS s) AS c "
                "WHERE same OR score >= :min ORDER BY same DESC, score DESC, detected_at DESC, number DESC "
                "LIMIT :limit")


def _statement(sql: str) -> TextClause:
    return text(sql).bindparams(bindparam("detected", type_=UTCDateTime()),
                                bindparam("since", type_=UTCDateTime())) if ":since" in sql else \
        text(sql).bindparams(bindparam("detected", type_=UTCDateTime()))


def _run(session: Session, q: _Sql, sql: str, limit: int) -> list[Ranked]:
    """Rows of a ranking query without merged incidents, up to ``limit``."""
    fetch = limit + MERGED_SLACK
    while True:
        rows = session.execute(_statement(sql), {**q.params, "detected": q.p.detected_at, "limit": fetch}).all()
        ids = [int(r[0]) for r in rows]
        kept = set(session.execute(select(IncidentMetrics.incident_id)
                                   .where(IncidentMetrics.incident_id.in_(ids))).scalars()) if ids else set()  # type: ignore[attr-defined]
        out = [Ranked(int(r[0]), bool(r[1]), int(r[2])) for r in rows if r[0] in kept]
        if len(out) >= limit or len(rows) < fetch:
            return out[:limit]
        fetch *= 4


def best(session: Session, p: Probe, *, limit: int, min_score: int) -> list[Ranked]:
    """The ``limit`` best resolved incidents detected before the probe, in the rules' order."""
    if limit <= 0:
        return []
    q = _Sql(session.get_bind().dialect.name, p)
    where = q.before(resolved_only=True)
    # The shortcut: incidents with every counted word have the highest score there is.
    if p.has_service:
        q.params["k_same"] = limit + MERGED_SLACK
        rows = (q.text_rows(True, f"{where} AND {q.same}") if p.best_score else q.recent_same(where, "k_same"))
        top = _run(session, q, q.ranked(rows, min_score), limit)
        if len(top) >= limit:
            return top
    elif p.best_score >= min_score and p.best_score:
        top = _run(session, q, q.ranked(q.text_rows(True, where), min_score), limit)
        if len(top) >= limit:
            return top
    # Every candidate: those sharing a word, and the most recent of the same service that share none
    # (with a score of 0, only the most recent of them can be in the answer).
    branches = []
    if p.best_score:
        branches.append(q.text_rows(False, where))
    if p.has_service:
        q.params["k_same"] = limit + MERGED_SLACK
        shares = (" AND NOT (s.tsv @@ CAST(:q_any AS tsquery))" if q.pg else
                  " AND s.incident_id NOT IN (SELECT rowid FROM incident_search_fts WHERE "
                  "incident_search_fts MATCH :q_any)") if p.best_score else ""
        branches.append(q.recent_same(where + shares, "k_same"))
    if not branches:
        return []
    return _run(session, q, q.ranked(" UNION ALL ".join(branches), min_score), limit)


def recurring(session: Session, p: Probe, *, since: datetime, min_score: int) -> tuple[int, bool, int] | None:
    """The earlier incident with the latest CAPA action done in ``[since, detected]`` that is on the same
    service or scores ``min_score``: (incident id, same service, score), or None. Walks the done actions
    newest first (``ix_action_items_status_closed``) and stops at the first that qualifies."""
    q = _Sql(session.get_bind().dialect.name, p)
    q.params["min"] = min_score
    sql = (f"SELECT s.incident_id, {q.same} AS same, {q.score} AS score FROM action_items a "
           "JOIN incident_search s ON s.incident_id = a.incident_id "
           f"WHERE a.status = 'done' AND a.closed_at >= :since AND a.closed_at <= :detected AND {q.before(False)} "
           f"AND ({q.same} OR {q.score} >= :min) "
           "ORDER BY a.closed_at DESC, same DESC, score DESC, s.number DESC LIMIT :limit")
    q.params["since"] = since
    found = _run(session, q, sql, 1)
    return (found[0].incident_id, found[0].same_service, found[0].score) if found else None


# -- document frequencies ------------------------------------------------------------------------------

DF_TTL = 600.0  # seconds a count is trusted for; bounds what edits of existing incidents can leave stale
DF_KEEP = 50_000  # words per database


class _Count(NamedTuple):
    n: int  # incidents with the word, counted up to cap + 1
    cap: int
    total: int  # the incident counter then
    at: float


_CACHE: weakref.WeakKeyDictionary[Engine, dict[str, _Count]] = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def _still(c: _Count, cap: int, total: int, now: float) -> int | None:
    """The cached count when it still decides "more than ``cap``" the same way, else None.

    New incidents since it was counted can only raise it, by at most how many there are: a word far
    under the cap or over it stays there; a word near it is counted again. Edits of older incidents are
    not seen by the counter: ``DF_TTL`` bounds them."""
    grown = total - c.total
    if grown < 0 or now - c.at > DF_TTL:
        return None
    if c.n > c.cap:  # "more than c.cap" then
        return c.n if c.cap >= cap else None
    if c.n > cap or c.n + grown <= cap:
        return c.n
    return None


def _count(session: Session, terms: list[str], cap: int) -> dict[str, int]:
    if session.get_bind().dialect.name == "postgresql":
        parts = [f"SELECT :t{n} AS term, (SELECT count(*) FROM (SELECT 1 FROM incident_search "
                 f"WHERE tsv @@ CAST(:q{n} AS tsquery) LIMIT :cap) AS hits) AS n" for n in range(len(terms))]
        params: dict[str, Any] = {"cap": cap + 1}
        for n, t in enumerate(terms):
            params[f"t{n}"], params[f"q{n}"] = t, pg_query([t])
        rows = session.execute(text(" UNION ALL ".join(parts)), params).all()
    else:
        marks = ", ".join(f":t{n}" for n in range(len(terms)))
        rows = session.execute(text(f"SELECT term, doc FROM incident_search_vocab WHERE term IN ({marks})"),
                               {f"t{n}": t for n, t in enumerate(terms)}).all()
    found = {str(t): min(int(n), cap + 1) for t, n in rows}
    return {t: found.get(t, 0) for t in terms}


def doc_freq(session: Session, terms: Iterable[str], *, cap: int, total: int) -> dict[str, int]:
    """In how many incidents each word appears, enough to tell "more than ``cap``" (counted up to
    ``cap + 1``: PostgreSQL stops there, SQLite's vocabulary table knows the number outright).

    Counts are kept per database and reused while they cannot have crossed the cap (:func:`_still`):
    a lookup counts only the words it has not seen lately."""
    terms = sorted(set(terms))
    if not terms:
        return {}
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    now = time.monotonic()
    with _CACHE_LOCK:
        cache = _CACHE.setdefault(engine, {})
        known = {t: n for t in terms if t in cache and (n := _still(cache[t], cap, total, now)) is not None}
    missing = [t for t in terms if t not in known]
    if missing:
        counted = _count(session, missing, cap)
        known.update(counted)
        with _CACHE_LOCK:
            if len(cache) + len(counted) > DF_KEEP:
                cache.clear()
            cache.update({t: _Count(n, cap, total, now) for t, n in counted.items()})
    return {t: known[t] for t in terms}
