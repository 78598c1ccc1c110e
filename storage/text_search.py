"""The incidents' text index: what a "word" is, how the index is kept in step, and the web list's search.

One concept, one place. A word is a run of letters and digits, lower-cased, not a stop word, reduced to
its stem by the Snowball English stemmer (``timeouts`` and ``timeout`` are one word, so are ``failing``
and ``failed``). Python decides the words, not the database, so SQLite and PostgreSQL index exactly the
same ones and a similarity found on one is found on the other.

Each incident has one row in ``incident_search``: the words of its title and service name
(``title_terms``), and the other words of its description, RCA summary and root causes
(``body_terms``), and beside them what ranking reads (number, detection, resolved, service: see
storage/text_rank.py, which ranks similar incidents over this index). The row is written in the flush
that writes the incident (a session hook below): a new incident, a title or service changed by
PagerDuty, an RCA edit, a resolve, an imported incident (``backfill``) are all indexed in the same
transaction, whoever wrote them. Over that table:

- PostgreSQL: a generated ``tsvector`` column (title words weight A, the rest B) with a GIN index,
  built with ``array_to_tsvector``, so no text search configuration re-parses our words;
- SQLite: an FTS5 table over the same two columns (external content, kept by triggers), and an
  ``fts5vocab`` table that tells in how many incidents a word appears.

Both are created by migration 0007 (0008 adds the ranking columns), which also index the incidents
already there.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    Connection,
    bindparam,
    cast,
    column,
    event,
    inspect,
    select,
    table,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session

from storage.models import Incident, IncidentSearch

# Function words, and words every incident title has whatever broke. Kept short on purpose: a word that
# is merely frequent in a team's history is found out by its document frequency (text_rank.doc_freq).
STOP_WORDS = frozenset({
    "a", "about", "above", "after", "again", "against", "all", "also", "am", "an", "and", "any", "are", "as",
    "at", "be", "because", "been", "before", "being", "below", "between", "both", "but", "by", "can",
    "could", "did", "do", "does", "doing", "down", "during", "each", "few", "for", "from", "further", "had",
    "has", "have", "having", "he", "her", "here", "hers", "him", "his", "how", "i", "if", "in", "into", "is",
    "it", "its", "itself", "just", "me", "more", "most", "my", "no", "nor", "not", "now", "of", "off", "on",
    "once", "only", "or", "other", "our", "ours", "out", "over", "own", "same", "she", "should", "so",
    "some", "such", "than", "that", "the", "their", "theirs", "them", "then", "there", "these", "they",
    "this", "those", "through", "to", "too", "under", "until", "up", "very", "was", "we", "were", "what",
    "when", "where", "which", "while", "who", "whom", "why", "will", "with", "would", "you", "your", "yours"
})
_WORD = re.compile(r"[^\W_]+")
MAX_WORD = 40  # longer runs are hashes, ids, base64: not words anyone searches for
MAX_TERMS = 300  # per field: a 20-page root cause does not need more to be found
_STEM_LOCK = threading.Lock()  # a stemmer object keeps state while it works: one caller at a time


@lru_cache(maxsize=1)
def _stemmer() -> Any:
    """The English stemmer, made on the first word, which a command that stems nothing (``metrics``,
    ``--help``) does not pay for. snowballstemmer hands over to PyStemmer, the C build of the same
    stemmers (a dependency): without it, it imports all of its ~30 pure-Python languages (~20 ms) and
    stems a word in ~80 us."""
    import snowballstemmer

    return snowballstemmer.stemmer("english")


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    with _STEM_LOCK:
        return str(_stemmer().stemWord(word))


def words(text: str | None) -> dict[str, str]:
    """The words of a text: stem -> the first spelling seen (explanations show the spelling), in order."""
    out: dict[str, str] = {}
    for raw in _WORD.findall(unicodedata.normalize("NFKC", text or "").lower()):
        if len(raw) < 2 or len(raw) > MAX_WORD or raw in STOP_WORDS or (raw.isdigit() and len(raw) < 3):
            continue  # "5" of "5%" is noise; "502" or "2026" are not
        out.setdefault(stem(raw), raw)
        if len(out) >= MAX_TERMS:
            break
    return out


def _narrative(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "\n".join(str(v) for v in value)
    return str(value or "")


def fields(title: str | None, service: str | None, description: str | None,
           rca: Mapping[str, Any] | None) -> tuple[dict[str, str], dict[str, str]]:
    """(title words, other words) of an incident, as :func:`words` gives them."""
    head = words(f"{title or ''} {service or ''}")
    rca = rca or {}
    body_text = "\n".join([description or "", _narrative(rca.get("summary")), _narrative(rca.get("root_causes"))])
    body = {k: v for k, v in words(body_text).items() if k not in head}
    return head, body


def service_key(name: str | None) -> str | None:
    """A service name as similarity compares it (core/similarity.py ``same_service``): stripped and
    case-folded; None for no name."""
    return (name or "").strip().casefold() or None


_TERMS = ("incident_id", "title_terms", "body_terms")
_FACETS = ("number", "detected_at", "resolved", "service_key", "service_id")


def _row(incident_id: int, title: str | None, service: str | None, description: str | None,
         rca: Mapping[str, Any] | None, number: int | None = None, detected_at: Any = None,
         resolved_at: Any = None, service_id: str | None = None) -> dict[str, Any]:
    head, body = fields(title, service, description, rca)
    return {"incident_id": incident_id, "title_terms": " ".join(head), "body_terms": " ".join(body),
            "number": number, "detected_at": detected_at, "resolved": resolved_at is not None,
            "service_key": service_key(service), "service_id": service_id}


def _row_of(inc: Incident) -> dict[str, Any]:
    assert inc.id is not None
    return _row(inc.id, inc.title, inc.service, inc.description, inc.rca, inc.number, inc.detected_at,
                inc.resolved_at, inc.pagerduty_service_id)


_UPSERTS: dict[tuple[str, tuple[str, ...]], Any] = {}


def _upsert(conn: Connection, rows: list[dict[str, Any]], names: tuple[str, ...] = _TERMS + _FACETS) -> None:
    # Built once per dialect and column list: building the ``excluded`` columns cost more than running
    # the statement (every incident a storm opens is indexed).
    stmt = _UPSERTS.get((conn.dialect.name, names))
    if stmt is None:
        table = IncidentSearch.__table__  # type: ignore[attr-defined]
        ins = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)
        stmt = _UPSERTS[(conn.dialect.name, names)] = ins.on_conflict_do_update(
            index_elements=["incident_id"], set_={n: ins.excluded[n] for n in names if n != "incident_id"})
    conn.execute(stmt, [{n: r[n] for n in names} for r in rows])


_WATCHED = ("title", "service", "description", "rca", "number", "detected_at", "resolved_at", "pagerduty_service_id")


def _changed(inc: Incident) -> bool:
    attrs = inspect(inc).attrs
    return any(attrs[name].history.has_changes() for name in _WATCHED)


@event.listens_for(Session, "after_flush")
def _keep_in_step(session: Session, _flush_context: Any) -> None:
    """Index every incident this flush inserted, or whose title, service, description, RCA, detection,
    resolution or PagerDuty service it changed. After the flush, so a new incident has its id; on the
    flush's own connection, so the index row commits or rolls back (a savepoint too) with the incident.
    (Only the words' change rewrites SQLite's FTS5 rows: its update trigger compares them.)"""
    rows = [_row_of(o) for o in [*session.new, *session.dirty]
            if isinstance(o, Incident) and o.id is not None and (o in session.new or _changed(o))]
    if rows:
        _upsert(session.connection(), rows)


def index_new(session: Session, incidents: list[Incident]) -> None:
    """Index incidents inserted without a flush (``storage.repo.insert_incident``), in their transaction."""
    _upsert(session.connection(), [_row_of(o) for o in incidents if o.id is not None])


def rebuild(conn: Connection, *, chunk: int = 2000, facets: bool = True) -> int:
    """Index every incident (the migrations that create the index; bulk loads that bypass the ORM).
    ``facets=False`` writes the words only (migration 0007, before the other columns existed).
    Returns how many incidents were indexed."""
    i = Incident.__table__  # type: ignore[attr-defined]
    cols = [i.c.id, i.c.title, i.c.service, i.c.description, i.c.rca, i.c.number, i.c.detected_at, i.c.resolved_at,
            i.c.pagerduty_service_id]
    names = _TERMS + _FACETS if facets else _TERMS
    done, last = 0, 0
    while True:
        batch = conn.execute(select(*cols).where(i.c.id > last).order_by(i.c.id).limit(chunk)).all()
        if not batch:
            return done
        _upsert(conn, [_row(*r) for r in batch], names)
        done, last = done + len(batch), batch[-1][0]


# -- queries -------------------------------------------------------------------------------------------

def pg_query(terms: Iterable[str], op: str = " | ", prefix_last: bool = False, weight: str = "") -> str:
    """A tsquery of lexemes as they are (quoted: no configuration parses them again), ``weight`` on each."""
    quoted = [f"'{t}'" + (f":{weight}" if weight else "") for t in terms]
    if prefix_last and quoted:
        quoted[-1] += ":*"
    return op.join(quoted)


def fts_query(terms: Iterable[str], op: str = " OR ", prefix_last: bool = False) -> str:
    """An FTS5 query of words as they are (quoted: no operator or column name can hide in one)."""
    quoted = [f'"{t}"' for t in terms]
    if prefix_last and quoted:
        quoted[-1] += "*"
    return op.join(quoted)


def matching(dialect: str, query: str) -> ColumnElement[bool] | None:
    """A predicate on ``incidents.id`` for a search box: every word of ``query`` (the last one as a
    prefix, so "check" finds "checkout"), in the title, service, summary or root causes. None when the
    query has no word to look up ("5%", "on"): the caller decides what that finds."""
    terms = list(words(query))
    if not terms:
        return None
    if dialect == "postgresql":
        s = table("incident_search", column("incident_id"), column("tsv", postgresql.TSVECTOR()))
        q = cast(bindparam("search_q", pg_query(terms, " & ", prefix_last=True)), postgresql.TSQUERY())
        return Incident.id.in_(select(s.c.incident_id).where(s.c.tsv.op("@@")(q)))  # type: ignore[union-attr]
    f = table("incident_search_fts", column("rowid"), column("incident_search_fts"))
    q2 = bindparam("search_q", fts_query(terms, " AND ", prefix_last=True))
    return Incident.id.in_(select(f.c.rowid).where(f.c.incident_search_fts.op("MATCH")(q2)))  # type: ignore[union-attr]
