"""The 8-week trend as inline SVG for the HTML digest, drawn by pygal.

Why pygal: it is a maintained, pure-Python SVG charting library with no runtime dependencies of
consequence, and it writes the SVG itself (no browser, no image backend). Configured with ``js=[]``
the SVG loads nothing from outside, so the HTML file works offline and in a mail client; the only
script pygal still writes is a config object for its (absent) tooltip library, which is dropped.
"""

from __future__ import annotations

import re
from typing import Any

import pygal
from pygal.style import Style

SEV_COLOURS = {"SEV1": "#d7263d", "SEV2": "#f46036", "SEV3": "#e2b53a", "SEV4": "#2e86ab"}
_SCRIPT = re.compile(r"<script\b.*?</script>", re.DOTALL | re.IGNORECASE)


def _style(colours: tuple[str, ...]) -> Style:
    return Style(background="transparent", plot_background="#ffffff", foreground="#333333",
                 foreground_strong="#111111", foreground_subtle="#999999", opacity=".9",
                 opacity_hover="1", colors=colours, font_family="system-ui, sans-serif",
                 label_font_size=11, major_label_font_size=11, legend_font_size=11, title_font_size=13)


def _render(chart: Any, name: str = "chart") -> str:
    svg = _SCRIPT.sub("", chart.render(is_unicode=True))
    # pygal gives every chart the same element ids ("activate-serie-0"): three charts in one page
    # would repeat them (invalid HTML, and a reference could hit the wrong chart). Prefix them.
    return _IDS.sub(lambda m: f'{m.group(1)}{name}-{m.group(2)}', svg)


_IDS = re.compile(r'(id="|href="#|url\(#)(activate-serie-\d+)')


def _base(cls: Any, title: str, labels: list[str], colours: tuple[str, ...], **extra: Any) -> Any:
    chart = cls(js=[], disable_xml_declaration=True, explicit_size=False, width=720, height=280,
                style=_style(colours), legend_at_bottom=True, legend_at_bottom_columns=4,
                print_values=False, show_y_guides=True, x_label_rotation=0, truncate_legend=-1,
                margin=8, **extra)
    chart.title = title
    chart.x_labels = labels
    return chart


def incidents_chart(trend: list[dict[str, Any]]) -> str:
    """Incidents detected per week, stacked by severity."""
    labels = [p["label"] for p in trend]
    chart = _base(pygal.StackedBar, "Incidents per week (detected)", labels,
                  tuple(SEV_COLOURS.values()), min_scale=1, max_scale=6)
    for sev in SEV_COLOURS:
        chart.add(sev, [int(p["by_severity"].get(sev, 0)) for p in trend])
    return _render(chart, "incidents")


def mttr_chart(trend: list[dict[str, Any]]) -> str:
    """MTTR mean and p90 in minutes, over the incidents resolved each week; the y axis starts at 0."""
    labels = [p["label"] for p in trend]

    def minutes(v: int | None) -> float | None:
        return None if v is None else round(v / 60, 1)

    chart = _base(pygal.Line, "MTTR (minutes, incidents resolved that week)", labels, ("#2e86ab", "#9ecae1"),
                  include_x_axis=True, allow_interruptions=True, dots_size=3, margin_right=36,
                  margin_bottom=16)
    chart.add("mean", [minutes(p["mttr_mean"]) for p in trend])
    chart.add("p90", [minutes(p["mttr_p90"]) for p in trend])
    return _render(chart, "mttr")


def target_chart(trend: list[dict[str, Any]]) -> str:
    """Share of the week's targeted incidents that met their response targets (0-100 %)."""
    labels = [p["label"] for p in trend]
    chart = _base(pygal.Bar, "% within response target", labels, ("#3c9d5d",), range=(0, 100),
                  y_labels=[0, 25, 50, 75, 100], show_legend=False)
    chart.add("within target", [p["share"] for p in trend])
    return _render(chart, "targets")


def trend_charts(view: dict[str, Any]) -> dict[str, str]:
    """``{"incidents", "mttr", "targets"}`` SVG strings for the HTML template (inserted with ``|safe``)."""
    trend = view["trend"]
    return {"incidents": incidents_chart(trend), "mttr": mttr_chart(trend), "targets": target_chart(trend)}
