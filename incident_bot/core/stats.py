"""Summary statistics for MTTx figures. Pure: no I/O, integers in, integers out.

Definitions, used everywhere (CLI, digest, Slack, README), so two screens never disagree:

- **Percentiles are nearest-rank.** On the values sorted ascending, the q-th percentile is the value at
  1-based rank ``ceil(q/100 * n)`` (rank 1 for the smallest). It is always a duration that actually
  happened, which is what an SRE wants to read ("half our incidents were resolved within 42m"), and it
  needs no interpolation rule to agree on between SQL and Python. The rank is computed with integer
  arithmetic (:func:`nearest_rank`) so ``0.9 * n`` float noise cannot move it.
- **The mean is rounded to whole seconds, half to even** (Python's ``round``), from the exact rational
  ``sum / n`` -- never from a float average, so a SQL ``SUM`` and a Python ``sum`` give the same figure.
- An empty set has no mean and no percentiles: ``None`` (``null`` in JSON) with ``n = 0``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fractions import Fraction
from typing import TypedDict

PERCENTILES: tuple[int, ...] = (50, 90)


class Summary(TypedDict):
    mean: int | None
    p50: int | None
    p90: int | None
    n: int


def nearest_rank(pct: int, n: int) -> int:
    """1-based rank of the ``pct``-th percentile among ``n`` sorted values: ``ceil(pct * n / 100)``.

    ``pct`` is a whole percentage (0 < pct <= 100). Raises ValueError for ``n < 1``: an empty set has no
    percentile, and callers must say so (None) rather than pick a value.
    """
    if n < 1:
        raise ValueError("a percentile of an empty set is undefined")
    if not 0 < pct <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {pct}")
    return max(1, -(-pct * n // 100))


def rounded_mean(total: int, n: int) -> int | None:
    """``total / n`` rounded to whole seconds, half to even; None when ``n == 0``.

    Takes the sum and the count rather than the values so a SQL ``SUM``/``COUNT`` can feed it.
    """
    if n == 0:
        return None
    return round(Fraction(int(total), int(n)))


def percentile(sorted_values: Sequence[int], pct: int) -> int | None:
    """Nearest-rank percentile of values already sorted ascending; None for an empty sequence."""
    if not sorted_values:
        return None
    return sorted_values[nearest_rank(pct, len(sorted_values)) - 1]


def summary(values: Iterable[int | None]) -> Summary:
    """Mean, p50, p90 and count of the known values; ``None`` entries (a missing end) are left out."""
    return sorted_summary(sorted(int(v) for v in values if v is not None))


def sorted_summary(known: Sequence[int]) -> Summary:
    """:func:`summary` of integers already sorted ascending, none of them None (100,000 durations from
    the database are ranked with one C-level sort, not a generator per value)."""
    return {
        "mean": rounded_mean(sum(known), len(known)),
        "p50": percentile(known, 50),
        "p90": percentile(known, 90),
        "n": len(known),
    }


def empty_summary() -> Summary:
    return {"mean": None, "p50": None, "p90": None, "n": 0}
