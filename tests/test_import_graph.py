"""The arrows point one way (README, "How the code is laid out"), checked on the source, so a new import
that breaks a layer fails here rather than in review.

Rules:
- ``core`` is pure: it imports nothing of ours but ``core``, and no SDK, HTTP, SQL or web framework;
- ``pipeline`` knows no vendor: no Slack, PagerDuty or tracker SDK, no adapter package;
- ``storage`` imports nothing from ``incident_bot``;
- ``usecases`` import no Slack SDK, no web framework, no entry point and no adapter (``slack/``,
  ``pagerduty/``, ``trackers/``, ``web/``): they queue intents (``pipeline.outbox.intent``) that
  ``slack/intents.py`` draws, own the shapes an adapter fills (``usecases/pagerduty_event.py``) and take
  what they need of an adapter as a Protocol passed in (``usecases.backfill.History``);
- ``pagerduty/`` and ``trackers/`` import nothing of ``slack/`` either (their channel lines are intents);
- only ``slack/`` imports ``slack_sdk`` / ``slack_bolt`` (the stand-ins and the wiring aside);
- only the wiring (``bootstrap``, ``server``) and the demo reach into ``slack/`` from outside it;
- nothing imports an entry point (``cli``, ``commands``, ``bootstrap``, ``server``);
- the packages (and top-level modules) of ``incident_bot``, with ``storage``, import each other without a
  cycle: every arrow points one way, imports inside functions included;
- a transaction is opened in one place: the use-case runner (``usecases/runner.py``), the pipeline's
  workers (``pipeline/``) and ``storage`` itself. Nothing else imports ``session_scope`` / ``read_scope``,
  builds a ``Session`` or calls ``.begin()``: entry points and adapters call use cases through the runner.
- an adapter (``web/``, ``slack/``, ``trackers/``, ``pagerduty/``) runs no SQL: it imports neither
  ``sqlmodel`` nor ``sqlalchemy`` (``sqlalchemy.exc`` aside, to map a database outage to a 503 or answer a
  value the database refused in words) nor ``storage``'s queries (``repo``, ``db``, ``text_search``); its
  reads and writes are use cases, called through the runner or with the session the pipeline hands it (a
  fold applier, an outbox job's ``store``), typed as ``usecases.runner.Session``. Allowed: ``storage.models``
  for a type (and ``utcnow``, the clock the demo scripts), ``storage.limits`` for the column lengths that
  check input.
"""

from __future__ import annotations

import ast
from itertools import pairwise
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "incident_bot"


def imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function (no import hides from the check)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            if node.module == "incident_bot":  # ``from incident_bot import slack`` imports incident_bot.slack
                found |= {f"incident_bot.{a.name}" for a in node.names}
    return found


def files(sub: str) -> list[Path]:
    base = ROOT / sub
    return sorted(base.rglob("*.py")) if base.is_dir() else [base]


def offending(sub: str, forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for path in files(sub):
        bad = sorted(m for m in imports(path)
                     if m.startswith(forbidden) and not m.startswith(allowed))
        if bad:
            out[str(path.relative_to(ROOT))] = bad
    return out


VENDORS = ("slack_sdk", "slack_bolt", "pagerduty", "httpx", "githubkit", "fastapi", "starlette", "uvicorn",
           "aiohttp")
ENTRY_POINTS = ("incident_bot.cli", "incident_bot.bootstrap", "incident_bot.server")


@pytest.mark.parametrize(("layer", "forbidden", "allowed"), [
    ("incident_bot/core", ("incident_bot", "storage", "sqlalchemy", "sqlmodel", *VENDORS), ("incident_bot.core",)),
    ("incident_bot/pipeline", (*VENDORS, "incident_bot.slack", "incident_bot.pagerduty", "incident_bot.trackers",
                               "incident_bot.web", *ENTRY_POINTS), ()),
    ("storage", ("incident_bot",), ()),
    ("incident_bot/usecases", ("slack_sdk", "slack_bolt", "fastapi", "starlette", "uvicorn", "incident_bot.slack",
                               "incident_bot.pagerduty", "incident_bot.trackers", "incident_bot.web",
                               *ENTRY_POINTS), ()),
    ("incident_bot/pagerduty", ("incident_bot.slack", "incident_bot.web", *ENTRY_POINTS), ()),
    ("incident_bot/trackers", ("incident_bot.slack", "incident_bot.web", *ENTRY_POINTS), ()),
])
def test_layers_import_only_downwards(layer: str, forbidden: tuple[str, ...], allowed: tuple[str, ...]) -> None:
    assert offending(layer, forbidden, allowed) == {}


# What only use cases (and the pipeline) touch: SQL, and storage's queries, connections and text index.
STORAGE_INTERNALS = ("sqlmodel", "sqlalchemy", "storage.repo", "storage.db", "storage.text_search")
DB_OUTAGE = ("sqlalchemy.exc",)  # an adapter may catch a database outage to answer 503
# The adapters held to it, one entry each.
STORAGE_FREE_ADAPTERS = ["incident_bot/web", "incident_bot/slack", "incident_bot/trackers", "incident_bot/pagerduty"]


def modules_named(path: Path) -> set[str]:
    """What a file imports, dotted in full: ``from storage import repo`` is ``storage.repo`` and
    ``from sqlalchemy import exc`` is ``sqlalchemy.exc`` (:func:`imports` keeps only the package)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def storage_reached(path: Path) -> list[str]:
    def under(module: str, prefixes: tuple[str, ...]) -> bool:
        return any(module == p or module.startswith(p + ".") for p in prefixes)
    return sorted(m for m in modules_named(path) if under(m, STORAGE_INTERNALS) and not under(m, DB_OUTAGE))


@pytest.mark.parametrize("adapter", STORAGE_FREE_ADAPTERS)
def test_adapters_reach_storage_only_through_use_cases(adapter: str) -> None:
    bad = {str(p.relative_to(ROOT)): found for p in files(adapter) if (found := storage_reached(p))}
    assert bad == {}, "move the query into a use case (usecases/) and call it through usecases.runner"


SESSION_METHODS = {"execute", "scalar", "scalars", "add", "add_all", "flush", "commit", "rollback", "get",
                   "delete", "merge", "query", "refresh", "begin", "begin_nested", "exec", "connection"}


def session_calls(path: Path) -> list[str]:
    """Calls of a session's query methods on a name that holds a session: a parameter annotated ``Session``
    (or ``runner.Session``), or one of the names the code base gives sessions (``s``, ``session``)."""
    tree = ast.parse(path.read_text(), str(path))
    held = {"s", "session"}
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.annotation is not None and \
                ast.unparse(node.annotation).split(".")[-1].strip("'\"") == "Session":
            held.add(node.arg)
    return sorted(f"{node.lineno}: {node.func.value.id}.{node.func.attr}()" for node in ast.walk(tree)
                  if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and isinstance(node.func.value, ast.Name) and node.func.value.id in held
                  and node.func.attr in SESSION_METHODS)


@pytest.mark.parametrize("adapter", STORAGE_FREE_ADAPTERS)
def test_adapters_pass_sessions_on_but_never_query_them(adapter: str) -> None:
    """An adapter may hand the use-case runner's session to a use case; the query itself lives there."""
    bad = {str(p.relative_to(ROOT)): found for p in files(adapter) if (found := session_calls(p))}
    assert bad == {}, "move the query into a use case (usecases/)"


def test_the_session_rule_sees_a_query_through_any_name(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("def f(db: Session, s, other):\n    db.execute(1)\n    s.add(2)\n    other.execute(3)\n"
                      "def g(tx: 'runner.Session'):\n    tx.scalars(4)\n    tx.info.get(5)\n")
    assert session_calls(sample) == ["2: db.execute()", "3: s.add()", "6: tx.scalars()"]


def test_the_storage_rule_sees_each_way_of_importing(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("from storage import models, repo\nimport storage.db\nfrom sqlmodel import Session\n"
                      "from sqlalchemy import exc, select\nfrom sqlalchemy.exc import OperationalError\n"
                      "from storage.models import Incident\nimport sqlalchemy.exc\n"
                      "def f():\n    from storage.text_search import matching\n")
    assert storage_reached(sample) == ["sqlalchemy.select", "sqlmodel.Session", "storage.db", "storage.repo",
                                       "storage.text_search.matching"]


def test_only_the_slack_adapter_speaks_slack() -> None:
    outside = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] in ("slack", "demo") or rel.name in ("bootstrap.py", "server.py"):
            continue
        bad = sorted(m for m in imports(path) if m.startswith(("slack_sdk", "slack_bolt")))
        if bad:
            outside[str(rel)] = bad
    # Known exceptions, each a reason: PagerDuty jobs invite people in Slack (users.lookupByEmail).
    assert outside == {"pagerduty/jobs.py": ["slack_sdk.errors"]}


def test_only_the_wiring_reaches_into_the_slack_adapter() -> None:
    """Block Kit and mrkdwn live in ``slack/``; everything else says what it means (plain data, intents)."""
    outside = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] in ("slack", "demo") or rel.name in ("bootstrap.py", "server.py"):
            continue
        bad = sorted(m for m in imports(path) if m == "incident_bot.slack" or m.startswith("incident_bot.slack."))
        if bad:
            outside[str(rel)] = bad
    assert outside == {}, "Slack presentation imported outside slack/: queue an intent (pipeline/outbox.py)"


def test_nothing_imports_an_entry_point() -> None:
    bad = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] in ("cli", "demo") or rel.name in ("__main__.py", "bootstrap.py"):
            continue
        hits = sorted(m for m in imports(path) if m.startswith(ENTRY_POINTS) and not
                      (rel.name == "bootstrap.py" and m == "incident_bot.server"))
        if hits:
            bad[str(rel)] = hits
    assert bad == {}, "an entry point is imported by a layer below it"


def test_the_package_never_imports_the_tests() -> None:
    """Test-only stand-ins live in tests/standins/: a plain ``pip install .`` (no tests/) must run."""
    bad = {str(p.relative_to(PACKAGE)): sorted(m for m in imports(p) if m == "tests" or m.startswith("tests."))
           for p in PACKAGE.rglob("*.py")}
    assert {k: v for k, v in bad.items() if v} == {}


def unit(module: str) -> str | None:
    """The package (or top-level module) of ours a module belongs to: ``incident_bot.usecases.rca`` ->
    ``usecases``, ``incident_bot.config`` -> ``config``, ``storage.repo`` -> ``storage``; None: not ours."""
    parts = module.split(".")
    if parts[0] == "storage":
        return "storage"
    return parts[1] if parts[0] == "incident_bot" and len(parts) > 1 else None


def package_graph() -> dict[str, dict[str, set[str]]]:
    """unit -> unit it imports -> the files that do."""
    graph: dict[str, dict[str, set[str]]] = {}
    for path in [*PACKAGE.rglob("*.py"), *(ROOT / "storage").rglob("*.py")]:
        src = unit(".".join(path.relative_to(ROOT).with_suffix("").parts))
        if src is None:
            continue
        for dst in filter(None, map(unit, imports(path))):
            if dst != src:
                graph.setdefault(src, {}).setdefault(dst, set()).add(str(path.relative_to(ROOT)))
    return graph


def cycle(graph: dict[str, dict[str, set[str]]]) -> list[str]:
    """One cycle of the graph (its units in order, the first repeated at the end), or [] when it has none."""
    state: dict[str, str] = {}  # "open" while on the path being walked, "done" once all below it are seen
    path: list[str] = []

    def walk(node: str) -> list[str]:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, {})):
            if state.get(nxt) == "open":
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (found := walk(nxt)):
                return found
        state[node] = "done"
        path.pop()
        return []

    for start in sorted(graph):
        if start not in state and (found := walk(start)):
            return found
    return []


def test_the_package_graph_has_no_cycle() -> None:
    graph = package_graph()
    loop = cycle(graph)
    arrows = {f"{a} -> {b}": sorted(graph[a][b]) for a, b in pairwise(loop)}
    assert loop == [], f"an import cycle between packages: {arrows}"


def test_the_cycle_check_finds_a_cycle() -> None:
    """The check itself, on graphs with and without a cycle (a check that can never fail proves nothing)."""
    assert cycle({"a": {"b": set()}, "b": {"c": set()}, "c": {"a": set()}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b": set(), "c": set()}, "b": {"c": set()}}) == []
    graph = package_graph()
    assert {"core", "pipeline", "storage"} <= set(graph["usecases"]) and "usecases" in graph["pagerduty"], \
        "the graph holds the arrows between packages"


SCOPES = {"session_scope", "read_scope"}
# Where a transaction may be opened: the runner, the pipeline's workers (claim, apply, finish in their own
# transactions) and storage.
OPENERS = ("incident_bot/usecases/runner.py", "incident_bot/pipeline/", "storage/")


def opens_transactions(path: Path) -> list[str]:
    """What in a file opens a transaction: ``session_scope``/``read_scope`` imported from ``storage.db``
    (or reached as an attribute), a ``Session(...)`` built, an ``engine.begin()`` called."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module == "storage.db":
            found += [f"imports {a.name}" for a in node.names if a.name in SCOPES]
        elif isinstance(node, ast.Attribute) and node.attr in SCOPES:
            found.append(f"uses {node.attr}")
        elif isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name) and node.func.id == "Session":
                found.append(f"line {node.lineno}: Session(...)")
            elif isinstance(node.func, ast.Attribute) and node.func.attr == "begin":
                found.append(f"line {node.lineno}: .begin()")
    return found


def test_transactions_are_opened_by_the_runner_the_pipeline_and_storage_only() -> None:
    bad = {}
    for path in [*PACKAGE.rglob("*.py"), *(ROOT / "storage").rglob("*.py")]:
        rel = path.relative_to(ROOT).as_posix()
        if not rel.startswith(OPENERS) and (found := opens_transactions(path)):
            bad[rel] = found
    assert bad == {}, "call the use case through incident_bot.usecases.runner (run, or read for a read)"


def test_the_transaction_check_sees_each_way_of_opening_one(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("from storage.db import get_engine, read_scope\nimport storage.db\n"
                      "def f(engine):\n    with storage.db.session_scope(engine):\n        pass\n"
                      "    with Session(engine) as s, engine.begin() as c:\n        s.begin_nested()\n")
    assert sorted(opens_transactions(sample)) == ["imports read_scope", "line 6: .begin()", "line 6: Session(...)",
                                                  "uses session_scope"]
