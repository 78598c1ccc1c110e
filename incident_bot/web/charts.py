"""Server-side SVG charts for the pages (pygal), made safe for a strict Content-Security-Policy.

pygal writes each chart's CSS in a ``<style>`` element scoped to ``#chart-<uuid>``; under
``default-src 'self'`` the browser refuses inline styles, so the chart would render unstyled and log a
violation. :func:`csp_safe` takes the ``<style>`` out and scopes the same rules to a class named after
the CSS's own hash (``ibc-<hash>``); :func:`chart_css` gives those rules to the one stylesheet the pages
load. The CSS depends only on the pygal Style, so rendering one small chart per Style in use
(:func:`known_css`) makes the stylesheet complete and identical on every replica.
"""

from __future__ import annotations

import hashlib
import html
import logging
import re
import threading
from dataclasses import dataclass
from typing import Any

import pygal

from incident_bot.usecases import digest_chart

log = logging.getLogger(__name__)
_STYLE = re.compile(r"<style[^>]*>(.*?)</style>", re.DOTALL | re.IGNORECASE)
_ID = re.compile(r'\sid="(chart-[0-9a-f-]+)"')
_INLINE_STYLE = re.compile(r'\sstyle="[^"]*"')
# pygal writes colour rules only for the series a chart has: they are left out of the class's hash, and
# the stylesheet keeps the version with the most of them (known_css renders every colour of a Style).
_COLOUR_RULE = re.compile(r"[^{}]*\.color-\d+[^{}]*\{[^}]*\}")
_CSS: dict[str, str] = {}
_LOCK = threading.Lock()

SERIES_COLOURS = ("#0969da", "#54aeff", "#8250df", "#cf222e", "#9a6700", "#1a7f37", "#bf3989")
METRICS = (("ttd_s", "mttd_s", "MTTD", "time to detect"), ("tta_s", "mtta_s", "MTTA", "time to acknowledge"),
           ("ttm_s", "mttm_s", "MTTM", "time to mitigate"), ("ttr_s", "mttr_s", "MTTR", "time to resolve"))


def csp_safe(svg: str) -> str:
    """The SVG without inline CSS or script, its rules registered under a class for :func:`chart_css`."""
    svg = digest_chart._SCRIPT.sub("", svg)
    chart_id = _ID.search(svg)
    css = "".join(_STYLE.findall(svg))
    svg = _INLINE_STYLE.sub("", _STYLE.sub("", svg))
    if chart_id is None:
        return svg
    scoped = html.unescape(css).replace(f"#{chart_id.group(1)}", "@scope@")
    cls = "ibc-" + hashlib.sha256(_COLOUR_RULE.sub("", scoped).encode()).hexdigest()[:10]
    rules = scoped.replace("@scope@", f"svg.{cls}")
    with _LOCK:
        if len(rules) > len(_CSS.get(cls, "")):
            _CSS[cls] = rules
    svg = svg.replace(chart_id.group(0), "", 1)
    return svg.replace('class="pygal-chart"', f'class="pygal-chart {cls}"', 1)


def chart_css() -> str:
    with _LOCK:
        return "\n".join(_CSS[k] for k in sorted(_CSS))


def known_css() -> str:
    """Register the CSS of every Style the pages use (the metrics charts and the digest's three)."""
    line = _line_chart("", ["W1"], unit="min")
    for n in range(len(SERIES_COLOURS)):
        line.add(str(n), [n])
    csp_safe(line.render(is_unicode=True))
    week = [{"label": "W1", "by_severity": {}, "mttr_mean": None, "mttr_p90": None, "share": None}]
    for chart in digest_chart.trend_charts({"trend": week}).values():
        csp_safe(chart)
    return chart_css()


def _line_chart(title: str, labels: list[str], *, unit: str) -> Any:
    chart = pygal.Line(js=[], disable_xml_declaration=True, explicit_size=False, width=720, height=300,
                       style=digest_chart._style(SERIES_COLOURS), legend_at_bottom=True,
                       legend_at_bottom_columns=6, show_y_guides=True, include_x_axis=True,
                       allow_interruptions=True, dots_size=3, truncate_legend=-1, margin=8,
                       x_label_rotation=0 if len(labels) <= 12 else 45, y_title=unit)
    chart.title = title
    chart.x_labels = labels
    return chart


@dataclass(frozen=True)
class WeekFigures:
    label: str
    mean: int | None
    p50: int | None
    p90: int | None
    n: int


@dataclass(frozen=True)
class MetricChart:
    key: str
    label: str
    meaning: str
    svg: str
    weeks: list[WeekFigures]
    targets: list[tuple[str, int]]  # (severity, seconds) drawn as lines


def _minutes(v: int | None) -> float | None:
    return None if v is None else round(v / 60, 1)


def metric_chart(key: str, label: str, meaning: str, weeks: list[WeekFigures],
                 targets: list[tuple[str, int]]) -> MetricChart:
    """Mean, p50 and p90 per week in minutes, and one flat line per response target."""
    labels = [w.label.split("-")[-1] for w in weeks]  # "W47": the year is in the table below
    chart = _line_chart(f"{label} per week (minutes; incidents resolved that week)", labels, unit="minutes")
    chart.add("mean", [_minutes(w.mean) for w in weeks])
    chart.add("p50", [_minutes(w.p50) for w in weeks])
    chart.add("p90", [_minutes(w.p90) for w in weeks])
    for severity, seconds in targets:
        # Dashed by the stylesheet (.ib-metric .serie-3 and later): a per-series stroke_style would
        # change pygal's CSS, and so the class, with the number of targets.
        chart.add(f"{severity} target", [_minutes(seconds)] * len(weeks), show_dots=False)
    return MetricChart(key=key, label=label, meaning=meaning, svg=csp_safe(chart.render(is_unicode=True)),
                       weeks=weeks, targets=targets)
