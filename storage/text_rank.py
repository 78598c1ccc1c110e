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

Document frequencies (in how many incidents a word appears) live here too: counted for every word every
15 minutes, and counted again at lookup only for a word that incidents created since could have pushed
across the cap.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, delete, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import TextClause
from sqlmodel import Session
from sqlmodel.sql.sqltypes import UTCDateTime

from storage import tables
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
        # One range on detected_at (an index reads it newest first), the tie on the number as a filter.
        cond = "s.detected_at <= :detected AND (s.detected_at < :detected OR s.number < :number)"
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

    def shares(self, every: bool) -> str:
        """A test on each row ``s`` read otherwise (from the service index, newest first): it has the
        probe's words, every one where it counts or any. Written so that no plan turns it into an index
        lookup of every incident with the words, read and sorted before the first row is returned:
        SQLite is told not to (``+``); PostgreSQL's planner cannot see into ``COALESCE`` and assumes half
        the rows pass (it would otherwise trust a product of word frequencies that takes the words as
        independent of the service, far too few, and read the whole service through a bitmap)."""
        name = "q_every" if every else "q_any"
        self.params[name] = self.words(every)
        if self.pg:
            return f"COALESCE(s.tsv @@ CAST(:{name} AS tsquery), FALSE)"
        return f"+s.incident_id IN (SELECT rowid FROM incident_search_fts WHERE incident_search_fts MATCH :{name})"

    def text_rows(self, every: bool, where: str) -> str:
        """The rows that share the probe's words (every word or any), with ``where`` on them."""
        name = "q_every" if every else "q_any"
        self.params[name] = self.words(every)
        if self.pg:
            return f"SELECT s.* FROM incident_search s WHERE s.tsv @@ CAST(:{name} AS tsquery) AND {where}"
        return (f"SELECT s.* FROM incident_search_fts f CROSS JOIN incident_search s ON s.incident_id = f.rowid "
                f"WHERE f.incident_search_fts MATCH :{name} AND {where}")

    def recent_same(self, where: str) -> str:
        """The most recent rows of the same service (by name, and by PagerDuty service id) with ``where``
        on them: the ``(service_key, detected_at)`` index read backwards, stopping at ``:limit`` rows."""
        parts = [f"SELECT * FROM (SELECT s.* FROM incident_search s WHERE s.{col} = :{param} AND {where} "
                 f"ORDER BY s.detected_at DESC, s.number DESC LIMIT :limit) AS r{n}"
                 for n, (col, param, v) in enumerate((("service_key", "sk", self.p.service_key),
                                                      ("service_id", "sid", self.p.service_id))) if v]
        return " UNION ".join(parts)

    def ranked(self, rows: str, min_score: int) -> str:
        """Score ``rows`` (a subquery of incident_search rows as ``s``), keep those that qualify, best first."""
        self.params["min"] = min_score
        return (f"SELECT incident_id, same, score, detected_at AS at, number FROM (SELECT s.incident_id, "
                f"s.detected_at, s.number, {self.same} AS same, {self.score} AS score FROM ({rows}) AS s) AS c "
                f"WHERE same OR score >= :min ORDER BY {SIMILAR_ORDER} LIMIT :limit")


SIMILAR_ORDER = "same DESC, score DESC, at DESC, number DESC"  # the rules' order (at: the detection)
RECURRENCE_ORDER = "at DESC, same DESC, score DESC, number DESC"  # at: when the CAPA action was done


def _statement(sql: str) -> TextClause:
    return text(sql).bindparams(*(bindparam(name, type_=UTCDateTime()) for name in ("detected", "since")
                                  if f":{name}" in sql))


def _run(session: Session, q: _Sql, sql: str, order: str, limit: int, slack: int = MERGED_SLACK) -> list[Ranked]:
    """The rows of a ranking query (columns incident_id, same, score, at, number; ``order`` is its ORDER BY)
    without merged incidents, up to ``limit``: ``limit + slack`` rows are read, more only if merged ones
    fill them."""
    sql = (f"SELECT incident_id, same, score, EXISTS (SELECT 1 FROM incident_metrics m "
           f"WHERE m.incident_id = t.incident_id) AS kept FROM ({sql}) AS t ORDER BY {order}")
    fetch = limit + slack
    while True:
        rows = session.execute(_statement(sql), {**q.params, "detected": q.p.detected_at, "limit": fetch}).all()
        out = [Ranked(int(r[0]), bool(r[1]), int(r[2])) for r in rows if r[3]]
        if len(out) >= limit or len(rows) < fetch:
            return out[:limit]
        fetch *= 4


def best(session: Session, p: Probe, *, limit: int, min_score: int) -> list[Ranked]:
    """The ``limit`` best resolved incidents detected before the probe, in the rules' order."""
    if limit <= 0:
        return []
    q = _Sql(session.get_bind().dialect.name, p)
    where = q.before(resolved_only=True)

    def run(rows: str) -> list[Ranked]:
        return _run(session, q, q.ranked(rows, min_score), SIMILAR_ORDER, limit)

    # The shortcut: incidents with every counted word have the highest score there is, and the most
    # recent of them come first. On the same service it reads the service's incidents newest first and
    # stops after a few.
    if p.has_service:
        top = run(q.recent_same(f"{where} AND {q.shares(True)}" if p.best_score else where))
        if len(top) >= limit:
            return top
    elif p.best_score >= min_score and p.best_score:
        top = run(q.text_rows(True, where))
        if len(top) >= limit:
            return top
    # Every candidate: those sharing a word, and the most recent of the same service that share none
    # (they score 0: only the most recent of them can be in the answer).
    branches = []
    if p.best_score:
        branches.append(q.text_rows(False, where))
    if p.has_service:
        branches.append(q.recent_same(f"{where} AND NOT ({q.shares(False)})" if p.best_score else where))
    return run(" UNION ALL ".join(branches)) if branches else []


def recurring(session: Session, p: Probe, *, since: datetime, min_score: int) -> tuple[int, bool, int] | None:
    """The earlier incident with the latest CAPA action done in ``[since, detected]`` that is on the same
    service or scores ``min_score``: (incident id, same service, score), or None. Walks the done actions
    newest first (``ix_action_items_status_closed``) and stops at the first that qualifies."""
    q = _Sql(session.get_bind().dialect.name, p)
    q.params["min"] = min_score
    sql = (f"SELECT s.incident_id, {q.same} AS same, {q.score} AS score, a.closed_at AS at, "
           "s.number FROM action_items a JOIN incident_search s ON s.incident_id = a.incident_id "
           f"WHERE a.status = 'done' AND a.closed_at >= :since AND a.closed_at <= :detected AND {q.before(False)} "
           f"AND ({q.same} OR {q.score} >= :min) "
           f"ORDER BY {RECURRENCE_ORDER} LIMIT :limit")
    q.params["since"] = since
    found = _run(session, q, sql, RECURRENCE_ORDER, 1, slack=0)  # the first that qualifies wins: stop there
    return (found[0].incident_id, found[0].same_service, found[0].score) if found else None


# -- document frequencies ------------------------------------------------------------------------------

WORDS_FLOOR = 10  # words in fewer incidents than this are not kept in incident_search_words
WORDS_COUNTER = "search_words"


def refresh_word_counts(conn: Connection) -> int:
    """Count in how many incidents every word appears, into ``incident_search_words`` (words in at least
    :data:`WORDS_FLOOR`), and note the incident counter then. The scheduler does it every 15 minutes;
    migration 0008 and bulk loads too. One pass over the index (PostgreSQL ``ts_stat``, SQLite's
    ``fts5vocab``). Returns how many words were kept."""
    total = _counters(conn).get("incident", 0)  # read first: what is counted may be newer, never older
    if conn.dialect.name == "postgresql":
        found = conn.execute(text("SELECT word, ndoc FROM ts_stat('SELECT tsv FROM incident_search') "
                                  "WHERE ndoc >= :floor"), {"floor": WORDS_FLOOR}).all()
    else:
        found = conn.execute(text("SELECT term, doc FROM incident_search_vocab WHERE doc >= :floor"),
                             {"floor": WORDS_FLOOR}).all()
    words = tables.incident_search_words
    ins = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)
    conn.execute(delete(words))
    if found:  # a replica refreshing at the same moment inserted them too: same counts, keep either
        conn.execute(ins(words).on_conflict_do_nothing(), [{"term": t, "docs": int(n)} for t, n in found])
    counter = tables.counters
    stmt = ins(counter).values(name=WORDS_COUNTER, value=total)
    conn.execute(stmt.on_conflict_do_update(index_elements=["name"], set_={"value": stmt.excluded.value}))
    return len(found)


def _counters(conn: Connection | Session) -> dict[str, int]:
    c = tables.counters.c
    rows = conn.execute(select(c.name, c.value).where(c.name.in_(["incident", WORDS_COUNTER])))
    return {str(name): int(value) for name, value in rows}


def totals(session: Session) -> tuple[int, int | None]:
    """(how many incidents there are: the counter behind INC-<n>, the same counter when the words were
    last counted or None), in one read."""
    found = _counters(session)
    return found.get("incident", 0), found.get(WORDS_COUNTER)


def decided(kept: int | None, cap: int, grown: int) -> int | None:
    """A word's count from the last count, when it tells "more than ``cap``" as a count now would; None
    when only a count now can tell. ``kept``: the count then (None: the word was in fewer than
    :data:`WORDS_FLOOR` incidents); ``grown``: incidents created since. New incidents raise a count by at
    most their number: a word far under the cap or over it stays there, a word near it is counted again.
    (Edits of older incidents are not seen before the next count, 15 minutes at most.)"""
    if kept is None:
        return 0 if WORDS_FLOOR - 1 + grown <= cap else None
    return kept if kept > cap or kept + grown <= cap else None


def _count(session: Session, terms: list[str], cap: int) -> dict[str, int]:
    """Count each word's incidents up to ``cap + 1``, one query: the index stops reading there."""
    if session.get_bind().dialect.name == "postgresql":
        hits = "SELECT 1 FROM incident_search WHERE tsv @@ CAST(:q{n} AS tsquery) LIMIT :cap"
        quote = pg_query
    else:
        hits = "SELECT 1 FROM incident_search_fts WHERE incident_search_fts MATCH :q{n} LIMIT :cap"
        quote = fts_query
    sql = " UNION ALL ".join(f"SELECT :t{n} AS term, (SELECT count(*) FROM ({hits.format(n=n)}) AS h{n}) AS n"
                             for n in range(len(terms)))
    params: dict[str, Any] = {"cap": cap + 1}
    for n, t in enumerate(terms):
        params[f"t{n}"], params[f"q{n}"] = t, quote([t])
    return {str(t): int(n) for t, n in session.execute(text(sql), params)}


def doc_freq(session: Session, terms: Iterable[str], *, cap: int, total: int, counted_at: int | None) -> dict[str, int]:
    """In how many incidents each word appears, enough to tell "more than ``cap``": from the last count
    (``incident_search_words``, taken when the incident counter was ``counted_at``) where it decides
    (:func:`decided`), counted now (up to ``cap + 1``) for the others."""
    terms = sorted(set(terms))
    if not terms:
        return {}
    known: dict[str, int] = {}
    if counted_at is not None and counted_at <= total:
        w = tables.incident_search_words.c
        kept = dict(session.execute(select(w.term, w.docs).where(w.term.in_(terms))).all())
        for t in terms:
            n = decided(kept.get(t), cap, total - counted_at)
            if n is not None:
                known[t] = n
    missing = [t for t in terms if t not in known]
    if missing:
        known.update(_count(session, missing, cap))
    return known
