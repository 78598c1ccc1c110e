"""Unicode sparklines: a trend that fits in one line of a Slack message or a Markdown table.

Eight block characters give eight heights. A missing value (a week with nothing to measure) is a
middle dot, not a zero bar: "no incidents resolved" must not read as "resolved instantly".
"""

from __future__ import annotations

from collections.abc import Sequence

BARS = "▁▂▃▄▅▆▇█"
GAP = "·"


def sparkline(values: Sequence[float | int | None], *, floor_zero: bool = True) -> str:
    """One character per value, scaled between the smallest and the largest value shown.

    With ``floor_zero`` the scale starts at 0 (counts, durations): 3 vs 4 incidents then looks like the
    small difference it is instead of the lowest vs the highest bar.
    """
    known = [float(v) for v in values if v is not None]
    if not known:
        return GAP * len(values)
    low = min(0.0, min(known)) if floor_zero else min(known)
    high = max(known)
    span = high - low
    out = []
    for v in values:
        if v is None:
            out.append(GAP)
        elif span == 0:
            out.append(BARS[0] if high == 0 else BARS[len(BARS) // 2])
        else:
            out.append(BARS[min(len(BARS) - 1, int((float(v) - low) / span * (len(BARS) - 1) + 0.5))])
    return "".join(out)
