"""A render budget for team templates (``RCA_TEMPLATES_DIR``): they are code we did not write.

Jinja's sandbox stops a template from reaching the interpreter, but not from spending it:
``{{ 'A' * 10**9 }}`` builds a gigabyte, nested ``range`` loops run for hours, ``center(10**9)`` pads
to a gigabyte, and all of it would run inside a Slack request holding the incident's row lock. So a
team template renders under limits, each checked *before* the expensive step where that is possible:

- sequences built by ``*`` and ``+`` (strings, lists) at most :data:`MAX_SEQUENCE` items;
- ``**`` on integers at most :data:`MAX_POWER_BITS` bits of result;
- an integer argument to a filter or a call at most :data:`MAX_SEQUENCE` (widths, counts, repeats);
- a format string (``%``, ``format``) with no width or precision of seven digits or more;
- ``range`` at most :data:`MAX_SEQUENCE` items, and every loop over it checks the clock;
- the output at most :data:`MAX_OUTPUT` characters, and the whole render at most :data:`MAX_SECONDS`.

A template over budget fails with :class:`BudgetExceeded`, whose message says which limit; the caller
(rendering.py) then renders the packaged default and reports the team template's error.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

from jinja2.exceptions import SecurityError

MAX_OUTPUT = 5_000_000  # characters of rendered output
MAX_SEQUENCE = 1_000_000  # items in a string or list built by the template; also the largest int argument
MAX_POWER_BITS = 4_096
MAX_SECONDS = 5.0
_BIG_WIDTH = re.compile(r"\d{7,}")
_deadline: ContextVar[float | None] = ContextVar("render_deadline", default=None)


class BudgetExceeded(SecurityError):
    """A team template went over its render budget."""


def tick() -> None:
    """Fail when the current render is past its deadline (no-op outside a budgeted render)."""
    deadline = _deadline.get()
    if deadline is not None and time.monotonic() > deadline:
        raise BudgetExceeded(f"the template ran longer than {MAX_SECONDS:g} s")


def _size(value: Any) -> int | None:
    return len(value) if isinstance(value, (str, bytes, list, tuple)) else None


def _check_int(value: Any) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_SEQUENCE:
        raise BudgetExceeded(f"the number {str(value)[:20]}… is over the template limit of {MAX_SEQUENCE:,}")


def _check_replace(s: Any, old: Any, new: Any) -> None:
    """``replace`` grows a string by ``count(old) * (len(new) - len(old))``: refuse before it does."""
    grows = all(isinstance(x, str) for x in (s, old, new)) and old and len(new) > len(old)
    if grows and len(s) + s.count(old) * (len(new) - len(old)) > MAX_OUTPUT:
        raise BudgetExceeded(f"a replace() result of more than {MAX_OUTPUT:,} characters")


def check_format(fmt: Any) -> None:
    """Refuse a format string with a huge width or precision (``{:>999999999}``, ``%0999999999d``)."""
    _check_format(fmt)


def _check_format(fmt: Any) -> None:
    if isinstance(fmt, str) and _BIG_WIDTH.search(fmt):
        raise BudgetExceeded("a format width or precision of seven digits or more")


def check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse a binary operation whose result would be over budget, before computing it."""
    tick()
    if operator == "*":
        for seq, n in ((left, right), (right, left)):
            size = _size(seq)
            if size is not None and isinstance(n, int) and size * max(n, 0) > MAX_SEQUENCE:
                raise BudgetExceeded(f"a sequence of more than {MAX_SEQUENCE:,} items")
    elif operator == "+":
        a, b = _size(left), _size(right)
        if a is not None and b is not None and a + b > MAX_SEQUENCE:
            raise BudgetExceeded(f"a sequence of more than {MAX_SEQUENCE:,} items")
    elif operator == "**":
        ints = isinstance(left, int) and isinstance(right, int) and abs(left) > 1
        if ints and (right > MAX_POWER_BITS or abs(left).bit_length() * right > MAX_POWER_BITS):
            raise BudgetExceeded(f"a power of more than {MAX_POWER_BITS} bits")
    elif operator == "%":
        _check_format(left)


def check_call(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    tick()
    for value in (*args, *kwargs.values()):
        _check_int(value)
    owner = getattr(obj, "__self__", None)
    if isinstance(owner, str) and getattr(obj, "__name__", "") == "replace" and len(args) >= 2:
        _check_replace(owner, args[0], args[1])


def guard_filter(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A filter that checks the clock and its arguments first (``center(10**9)``, ``format``)."""

    def guarded(*args: Any, **kwargs: Any) -> Any:
        tick()
        for value in (*args, *kwargs.values()):
            _check_int(value)
            if fn.__name__ == "do_format":
                _check_format(value)
        if fn.__name__ == "do_replace":
            strs = [a for a in args if isinstance(a, str)]
            if len(strs) >= 3:
                _check_replace(*strs[:3])
        result = fn(*args, **kwargs)
        if isinstance(result, str) and len(result) > MAX_OUTPUT:
            raise BudgetExceeded(f"a filter result of more than {MAX_OUTPUT:,} characters")
        return result

    # Jinja passes the context/environment to filters marked with these attributes: keep the marks.
    for attr in ("jinja_pass_arg",):
        if hasattr(fn, attr):
            setattr(guarded, attr, getattr(fn, attr))
    guarded.__name__ = getattr(fn, "__name__", "filter")
    return guarded


def budget_range(*args: int) -> Iterator[int]:
    """``range`` for templates: bounded, and a loop over it checks the clock as it goes."""
    for value in args:
        _check_int(value)
    r = range(*args)
    if len(r) > MAX_SEQUENCE:
        raise BudgetExceeded(f"a range of more than {MAX_SEQUENCE:,} items")
    for i, value in enumerate(r):
        if i % 1024 == 0:
            tick()
        yield value


def render_within_budget(chunks: Iterator[str]) -> str:
    """Join a template's output chunks under the time and size budget."""
    token = _deadline.set(time.monotonic() + MAX_SECONDS)
    try:
        out: list[str] = []
        total = 0
        for chunk in chunks:
            total += len(chunk)
            if total > MAX_OUTPUT:
                raise BudgetExceeded(f"the output is over {MAX_OUTPUT:,} characters")
            out.append(chunk)
            tick()
        return "".join(out)
    finally:
        _deadline.reset(token)
