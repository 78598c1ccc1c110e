"""Compiled templates are kept between commands (incident_bot/rendering.py ``_CompiledTemplates``): the second
environment renders from the cache without compiling, a budgeted environment never reads the default one's
code, and a damaged or impossible cache costs a compile, never a render."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from jinja2 import FileSystemLoader

from incident_bot import rendering


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temp directory of our own (the cache lives in ``$TMPDIR/_jinja2-cache-<uid>``) and one template."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "t.md.j2").write_text("{{ 6 * 7 }} {{ who }}\n", encoding="utf-8")
    return tmp_path


def _cache_files(tmp: Path) -> list[str]:
    return sorted(os.listdir(tmp / f"_jinja2-cache-{os.getuid()}"))


def _render(budgeted: bool, tmp: Path, *, compile_allowed: bool = True) -> str:
    env = rendering._make_env(FileSystemLoader(str(tmp / "templates")), budgeted=budgeted)
    if not compile_allowed:
        def refuse(*args: object, **kwargs: object) -> None:
            raise AssertionError("compiled again")
        env.compile = refuse  # type: ignore[method-assign]
    return env.get_template("t.md.j2").render(who="ada")


def test_a_template_compiles_once_per_kind_of_environment(private_tmp: Path) -> None:
    assert _render(False, private_tmp) == "42 ada\n"
    assert [f.startswith("incident-bot-default-") for f in _cache_files(private_tmp)] == [True]
    assert _render(False, private_tmp, compile_allowed=False) == "42 ada\n"  # from the cache
    # The budgeted environment compiles its own code (operators intercepted), in a file of its own.
    with pytest.raises(AssertionError, match="compiled again"):
        _render(True, private_tmp, compile_allowed=False)
    assert _render(True, private_tmp) == "42 ada\n"
    assert len(_cache_files(private_tmp)) == 2
    assert _render(True, private_tmp, compile_allowed=False) == "42 ada\n"
    # A changed template is compiled again, not served from the cache.
    (private_tmp / "templates" / "t.md.j2").write_text("{{ who }}!\n", encoding="utf-8")
    with pytest.raises(AssertionError, match="compiled again"):
        _render(False, private_tmp, compile_allowed=False)


def test_a_damaged_or_impossible_cache_only_costs_a_compile(private_tmp: Path, monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    _render(False, private_tmp)
    for name in _cache_files(private_tmp):
        path = private_tmp / f"_jinja2-cache-{os.getuid()}" / name
        path.write_bytes(path.read_bytes()[:40])  # cut short: the code cannot be read back
    assert _render(False, private_tmp) == "42 ada\n"
    # No private directory to be had (a file where the directory should be): no cache at all.
    other = private_tmp / "other"
    other.mkdir()
    (other / f"_jinja2-cache-{os.getuid()}").write_text("not a directory")
    monkeypatch.setattr(tempfile, "tempdir", str(other))
    assert rendering._compiled_templates("default") is None
    assert _render(False, private_tmp) == "42 ada\n"
