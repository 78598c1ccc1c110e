"""The one Jinja2 environment for documents (RCA, digest): package templates, team overrides, sandbox.

Why this shape:
- Templates ship inside the ``rca_templates`` package and load through the import system, so an
  installed (non-editable) wheel renders exactly like a checkout.
- ``RCA_TEMPLATES_DIR`` is searched first: a team overrides ``rca.md.j2`` or adds templates of its own.
- Team templates are code we did not write, so everything renders in Jinja's sandbox, HTML templates
  (``*.html.j2``) autoescape, and undefined names fail loudly (``StrictUndefined``) instead of
  silently printing nothing.
- A broken team template must not cost anyone their RCA: the error is logged and returned as a
  warning naming the template, line and cause, and the packaged default renders instead.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import traceback
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    FileSystemBytecodeCache,
    FileSystemLoader,
    PackageLoader,
    StrictUndefined,
    TemplateNotFound,
    TemplateSyntaxError,
    select_autoescape,
)
from jinja2.bccache import Bucket
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup, escape

from incident_bot import render_budget
from incident_bot.core.durations import format_duration, utc_text
from incident_bot.core.rca import ActionRow, Field, Link, RcaDocument, Section
from incident_bot.core.rca_parts import Communication, Participant, TimelineEntry
from incident_bot.core.rca_review import QualityFinding

log = logging.getLogger(__name__)
# Warnings are also returned to the caller (the CLI prints them): without logging configured,
# Python's last-resort handler would print each one a second time.
log.addHandler(logging.NullHandler())
PACKAGE = "rca_templates"
_TEMPLATE_SUFFIXES = (".j2", ".jinja", ".jinja2")
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
_CELL_SPECIAL = re.compile(r"[|<>\r\n]")
_NEWLINES = re.compile(r"\s*(?:\r\n|\r|\n)\s*")
_ANGLE = re.compile(r"(?<!\\)([<>])")


class RenderError(Exception):
    """A template could not be rendered, not even the packaged default."""


@dataclass(frozen=True)
class RenderResult:
    text: str
    warnings: list[str] = field(default_factory=list)
    template: str = ""  # where the template that rendered came from ("default" or a path)


# -- filters (shared by every template) ---------------------------------------------------------------

def md_cell(value: Any) -> str:
    """Text safe inside a GitHub-flavoured Markdown table cell: ``|`` escaped, newlines as ``<br>``,
    ``<``/``>`` escaped so a value cannot open an HTML tag in renderers that allow raw HTML."""
    if value is None:
        return ""
    text = str(value)
    if not _CELL_SPECIAL.search(text):  # the common case, kept cheap: RCAs have thousands of cells
        return text.strip()
    text = _angle(text.replace("\\|", "|").replace("|", "\\|"))
    return _NEWLINES.sub("<br>", text).strip()


def md_inline(value: Any) -> str:
    """One line of Markdown (a heading, a list item): newlines fold to spaces."""
    return _angle(" ".join(str(value or "").split()))


def _angle(text: str) -> str:
    """``<`` and ``>`` backslash-escaped: outside text (a PagerDuty title) must not become HTML."""
    return _ANGLE.sub(r"\\\1", text)


def paragraphs(value: Any) -> Markup:
    """Narrative text as HTML: escaped, blank lines make paragraphs, ``- item`` lines make lists."""
    out: list[str] = []
    for block in re.split(r"\n\s*\n", str(value or "").strip()):
        lines = [ln.rstrip() for ln in block.splitlines() if ln.strip()]
        if not lines:
            continue
        if all(_BULLET.match(ln) for ln in lines):
            tag = "ol" if re.match(r"\s*\d", lines[0]) else "ul"
            items = "".join(f"<li>{escape(_BULLET.sub('', ln))}</li>" for ln in lines)
            out.append(f"<{tag}>{items}</{tag}>")
        else:
            out.append("<p>" + "<br>\n".join(str(escape(ln)) for ln in lines) + "</p>")
    return Markup("\n".join(out))


def duration(value: Any) -> str:
    return format_duration(None if value is None else int(value))


def utc(value: datetime | None) -> str:
    return utc_text(value)


FILTERS = {"md_cell": md_cell, "md_inline": md_inline, "paragraphs": paragraphs, "duration": duration,
           "utc": utc}


# -- environments --------------------------------------------------------------------------------------

# Content types whose public attributes are plain data: the sandbox's per-access safety checks are
# skipped for them (same verdict, much cheaper: an RCA reads ~10 attributes per timeline row).
PLAIN_TYPES: set[type] = {RcaDocument, Section, Field, TimelineEntry, ActionRow, Link, Participant, Communication,
                          QualityFinding}


def register_plain_type(cls: type) -> None:
    """Mark a frozen dataclass of plain values (no callables, no objects of the interpreter) as cheap
    to read from templates. Only its non-underscore attributes are served by the fast path."""
    PLAIN_TYPES.add(cls)


class _Sandbox(SandboxedEnvironment):
    """Jinja's sandbox with a fast path for our own content types.

    For an instance of a plain dataclass, the sandbox's checks reduce to "no leading underscore"
    (its internal-attribute rules are about functions, frames, code and generator objects), so the
    fast path gives the same answer; anything else goes through the full checks.

    With ``budgeted`` (team templates), operators, calls, filters and ``range`` are checked against
    the render budget (render_budget.py) before they run.
    """

    budgeted = False

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if self.budgeted:
            render_budget.check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def wrap_str_format(self, value: Any) -> Any:
        # ``.format`` is wrapped when it is looked up: check the format string there.
        if self.budgeted and isinstance(getattr(value, "__self__", None), str):
            render_budget.check_format(value.__self__)
        return super().wrap_str_format(value)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if __self.budgeted:
            render_budget.check_call(__obj, args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) in PLAIN_TYPES and not attribute.startswith("_"):
            try:
                return getattr(obj, attribute)
            except AttributeError:
                return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)


class _CompiledTemplates(FileSystemBytecodeCache):
    """Templates compiled once per user, not on every command: compiling the digest's Markdown template was
    ~50 ms of each ``incident-bot digest`` (bench/RESULTS.md, 2026-12-02). Jinja keeps them in a directory
    only this user can read and write (``$TMPDIR/_jinja2-cache-<uid>``, refused otherwise) and checks each
    against its template's source and the Jinja and Python versions. A cache is never a reason to fail:
    one that cannot be read or written is skipped, and the template compiles as before."""

    def load_bytecode(self, bucket: Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except Exception:  # a damaged file: compile again
            bucket.reset()

    def dump_bytecode(self, bucket: Bucket) -> None:
        with contextlib.suppress(Exception):  # a full or read-only directory: the next run compiles, no more
            super().dump_bytecode(bucket)


def _compiled_templates(kind: str) -> FileSystemBytecodeCache | None:
    """The cache for one kind of environment: a budgeted one compiles the same template into other code
    (its operators intercepted), so each kind has files of its own."""
    try:
        return _CompiledTemplates(pattern=f"incident-bot-{kind}-%s.cache")
    except (OSError, RuntimeError):  # no private temp directory to be had
        return None


def _make_env(loader: BaseLoader, *, budgeted: bool = False) -> SandboxedEnvironment:
    env = _Sandbox(
        loader=loader,
        bytecode_cache=_compiled_templates("budgeted" if budgeted else "default"),
        autoescape=select_autoescape(enabled_extensions=("html.j2", "htm.j2", "xml.j2", "html", "htm"),
                                     default_for_string=False, default=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=True,
        finalize=lambda v: "" if v is None else v,
    )
    env.filters.update(FILTERS)
    if budgeted:
        env.budgeted = True
        # Without interception, Jinja folds constant operations at compile time, outside any check.
        env.intercepted_binops = frozenset({"*", "+", "**", "%"})
        env.filters = {name: render_budget.guard_filter(fn) for name, fn in env.filters.items()}
        env.globals["range"] = render_budget.budget_range
    return env


@lru_cache(maxsize=1)
def default_environment() -> SandboxedEnvironment:
    """The packaged templates only (the fallback)."""
    return _make_env(PackageLoader(PACKAGE, "."))


@lru_cache(maxsize=8)
def environment(templates_dir: str | None = None) -> SandboxedEnvironment:
    """Team templates first (when ``templates_dir`` is set), then the packaged ones."""
    if not templates_dir:
        return default_environment()
    return _make_env(ChoiceLoader([FileSystemLoader(templates_dir), PackageLoader(PACKAGE, ".")]), budgeted=True)


def _where(exc: BaseException, templates_dir: str | None) -> tuple[str | None, int | None]:
    """The template and line an error happened at (Jinja maps template frames back to lines)."""
    if isinstance(exc, TemplateSyntaxError):
        return exc.filename or exc.name, exc.lineno
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.endswith(_TEMPLATE_SUFFIXES)]
    if not frames:
        return None, None
    return frames[-1].filename, frames[-1].lineno


def _in_dir(path: str | None, templates_dir: str | None) -> bool:
    if not path or not templates_dir:
        return False
    return Path(path).resolve().is_relative_to(Path(templates_dir).resolve())


def describe_error(name: str, exc: BaseException, templates_dir: str | None) -> str:
    """``template 'rca.md.j2' line 3 in RCA_TEMPLATES_DIR /x: unexpected '}' (TemplateSyntaxError)``."""
    path, line = _where(exc, templates_dir)
    if _in_dir(path, templates_dir):
        assert path is not None and templates_dir is not None
        shown = str(Path(path).resolve().relative_to(Path(templates_dir).resolve()))
        origin = f" in RCA_TEMPLATES_DIR {templates_dir}"
    else:
        shown, origin = (os.path.basename(path) if path else name), ""
    where = f"template {shown!r}" + (f" line {line}" if line else "")
    cause = str(getattr(exc, "message", None) or exc) or exc.__class__.__name__
    return f"{where}{origin}: {cause} ({exc.__class__.__name__})"


def _render_with(env: SandboxedEnvironment, name: str, context: dict[str, Any]) -> tuple[str, str]:
    template = env.get_template(name)
    if getattr(env, "budgeted", False):
        return render_budget.render_within_budget(template.generate(context)), template.filename or name
    return template.render(context), template.filename or name


def render(template_name: str, context: dict[str, Any], *, templates_dir: str | None = None) -> RenderResult:
    """Render ``template_name``; a failing team template falls back to the packaged default (warned)."""
    warnings: list[str] = []
    if templates_dir and not Path(templates_dir).is_dir():
        warnings.append(f"RCA_TEMPLATES_DIR {templates_dir} is not a directory; using the default templates")
        log.warning("%s", warnings[-1])
        templates_dir = None
    if templates_dir:
        try:
            text, used = _render_with(environment(templates_dir), template_name, context)
            origin = used if _in_dir(used, templates_dir) else "default"
            return RenderResult(text=text, warnings=warnings, template=origin)
        except TemplateNotFound as exc:
            if exc.name != template_name:  # a missing include/import inside a team template
                warnings.append(describe_error(template_name, exc, templates_dir) + "; used the default")
                log.warning("%s", warnings[-1])
            else:
                raise RenderError(f"no template {template_name!r} in {templates_dir} or the package") from exc
        except Exception as exc:  # a team template can fail in any way at run time
            warnings.append(describe_error(template_name, exc, templates_dir) + "; used the default template")
            log.warning("%s", warnings[-1])
    try:
        text, _used = _render_with(default_environment(), template_name, context)
    except TemplateNotFound as exc:
        raise RenderError(f"no template {template_name!r} in the package") from exc
    except Exception as exc:
        raise RenderError(describe_error(template_name, exc, None)) from exc
    return RenderResult(text=text, warnings=warnings, template="default")
