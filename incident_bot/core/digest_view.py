"""The weekly SEV digest as a template context: the JSON document (core/digest.py) plus what a lead
reads beside it, decided here so the Slack message, the Markdown and the HTML cannot disagree: how a change
against the period before is shown, when a sparkline is drawn, the share within target, the trend, and the
texts of major and open incidents. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from incident_bot.core.capa import ticket_label
from incident_bot.core.digest import (
    METRIC_KEYS,
    METRIC_LABELS,
    DigestInput,
    IncidentRow,
    TrendWeek,
    build_json,
    iso,
    major_incidents,
    metric_summary,
    partial,
    rca_url,
    target_counts,
    target_results,
)
from incident_bot.core.durations import format_duration
from incident_bot.core.learning import learning_view
from incident_bot.core.rca import safe_url
from incident_bot.core.sparkline import sparkline
from incident_bot.core.targets import Target, TargetResult, evaluate_target


def change(current: float | None, previous: float | None, *, higher_is_worse: bool = True) -> dict[str, Any]:
    """``▲ 25%`` / ``▼ 10%`` / ``= 0%`` against the previous period; ``None`` pct when not comparable."""
    if current is None or previous is None:
        return {"arrow": "", "pct": None, "text": "—", "worse": False, "better": False}
    if current == previous:
        return {"arrow": "=", "pct": 0, "text": "= 0%", "worse": False, "better": False}
    up = current > previous
    arrow = "▲" if up else "▼"
    if previous == 0:
        return {"arrow": arrow, "pct": None, "text": f"{arrow} new", "worse": up == higher_is_worse,
                "better": up != higher_is_worse}
    pct = round(abs(current - previous) * 100 / abs(previous))
    text = f"{arrow} {pct}%" if pct else f"{arrow} <1%"
    return {"arrow": arrow, "pct": pct if up else -pct, "text": text, "worse": up == higher_is_worse,
            "better": up != higher_is_worse}


def vs_before(chg: Mapping[str, Any], previous: Any, unit: str = "") -> str:
    """``(▲ 50% vs 2 the period before)``; empty when there is nothing to compare (no stray ``—``)."""
    if chg["text"] == "—" or (chg["arrow"] == "=" and not previous):
        return ""
    return f"({chg['text']} vs {previous}{unit} the period before)"


MIN_SPARK_POINTS = 3


def spark(values: Sequence[float | int | None]) -> str:
    """A sparkline only when at least three weeks have something to draw; otherwise nothing."""
    if sum(1 for v in values if v) < MIN_SPARK_POINTS:
        return ""
    return sparkline(values)


def share(met: int, missed: int) -> int | None:
    """Whole percent within target, None when nothing was judged."""
    judged = met + missed
    return None if judged == 0 else round(met * 100 / judged)


def _local(ts: datetime | None, zone: tzinfo) -> str:
    return "—" if ts is None else ts.astimezone(zone).strftime("%a %d %b %H:%M")


def _target_text(target: Target | None, res: TargetResult | None, inc: IncidentRow) -> str:
    if target is None or res is None:
        return ""
    if res.status == "met":
        return "within target"
    if res.status == "pending":
        return "open, within target so far"
    parts = []
    if "ttd" in res.missed:
        parts.append(f"TTD {format_duration(inc.ttd_s)} > {format_duration(target.ttd_s)}")
    if "ttr" in res.missed:
        ttr = format_duration(inc.ttr_s) if inc.ttr_s is not None else "still open"
        parts.append(f"TTR {ttr} > {format_duration(target.ttr_s)}")
    return "missed: " + ", ".join(parts)


def _trend_point(week: TrendWeek, targets: Mapping[str, Target], now: datetime) -> dict[str, Any]:
    met = missed = 0
    for s in week.samples:
        t = targets.get(s.severity)
        if t is None:
            continue
        res = evaluate_target(t, ttd_s=s.ttd_s, ttr_s=s.ttr_s, impact_started_at=s.impact_started_at, now=now)
        met += res.status == "met"
        missed += res.status == "missed"
    inc = week.metrics.get("incidents") or {}
    mttr = metric_summary(week.metrics, "mttr_s")
    return {"label": week.label, "since": iso(week.since), "until": iso(week.until),
            "total": int(inc.get("total") or 0), "by_severity": dict(inc.get("by_severity") or {}),
            "mttr_mean": mttr["mean"], "mttr_p50": mttr["p50"], "mttr_p90": mttr["p90"],
            "met": met, "missed": missed, "share": share(met, missed)}


def build_view(inp: DigestInput, doc: dict[str, Any] | None = None) -> dict[str, Any]:
    """The template context: the JSON document plus the readable extras (changes, trend, texts)."""
    doc = doc or build_json(inp)
    zone = inp.zone
    results = target_results(inp)
    prev_total = int((inp.previous.get("incidents") or {}).get("total") or 0)
    metrics = []
    for key in METRIC_KEYS:
        cur, prev = doc[key], doc["previous"][key]
        metrics.append({
            "key": key, "label": METRIC_LABELS[key], **cur,
            "mean_text": format_duration(cur["mean"]), "p50_text": format_duration(cur["p50"]),
            "p90_text": format_duration(cur["p90"]), "prev_mean_text": format_duration(prev["mean"]),
            "change": change(cur["mean"], prev["mean"]),
        })
    major = []
    for inc in major_incidents(inp):
        res = results.get(inc.ref)
        ongoing = inc.ttr_s is None
        elapsed = None
        if ongoing and (inc.impact_started_at or inc.detected_at):
            elapsed = int((inp.now - (inc.impact_started_at or inc.detected_at)).total_seconds())
        major.append({
            "ref": inc.ref, "title": inc.title, "severity": inc.severity, "status": inc.status,
            "ttr_s": inc.ttr_s, "ongoing": ongoing, "pagerduty_count": inc.pagerduty_count,
            "pagerduty_text": f"{inc.pagerduty_count} PagerDuty incidents" if inc.pagerduty_count > 1 else "",
            "duration_text": format_duration(inc.ttr_s) if not ongoing
            else f"open for {format_duration(max(0, elapsed or 0))}",
            "detected_text": _local(inc.detected_at, zone),
            "commander": inc.commander_id, "commander_name": inp.names.get(inc.commander_id or "")
            or inc.commander_id, "rca_url": rca_url(inp, inc.ref),
            "channel_id": inc.channel_id, "channel_name": inc.channel_name,
            "service": inc.service,
            "target_status": res.status if res else None,
            "target_text": _target_text(inp.targets.get(inc.severity), res, inc),
        })
    target_rows, met_total, missed_total = [], 0, 0
    counts = target_counts(inp.targets, [(i.severity, results[i.ref]) for i in inp.incidents
                                          if i.ref in results])
    for sev, t in inp.targets.items():
        c = counts[sev]
        met_total += c["met"]
        missed_total += c["missed"]
        target_rows.append({"severity": sev, "ttr_text": format_duration(t.ttr_s) if t.ttr_s else "—",
                            "ttd_text": format_duration(t.ttd_s) if t.ttd_s else "—", **c})
    trend = [_trend_point(w, inp.targets, inp.now) for w in inp.trend]
    # The share's change is against the week before, so only when the period is that trend's last week.
    is_week = bool(inp.trend) and (inp.trend[-1].since, inp.trend[-1].until) == (inp.since, inp.until)
    prev_week = trend[-2] if is_week and len(trend) >= 2 else None
    week_share = share(met_total, missed_total)
    local_since = inp.since.astimezone(zone)
    open_rows = [{"ref": i.ref, "title": i.title, "severity": i.severity, "status": i.status,
                  "detected_text": _local(i.detected_at, zone),
                  "age_text": format_duration(max(0, int((inp.now - i.detected_at).total_seconds()))),
                  "commander_name": inp.names.get(i.commander_id or "") or i.commander_id or "—",
                  "channel_id": i.channel_id, "channel_name": i.channel_name, "rca_url": rca_url(inp, i.ref)}
                 for i in inp.open_incidents]
    services = [{"service": s["service"] or "(no service)", "count": s["count"]} for s in doc["top_services"]]
    share_change = change(week_share, prev_week["share"] if prev_week else None, higher_is_worse=False)
    return {
        "doc": doc,
        "label": inp.label,
        "partial": partial(inp),
        "partial_text": f"partial period: up to {_local(inp.now, zone)}" if partial(inp) else "",
        "open_incidents": open_rows,
        "timezone": inp.timezone,
        "period_text": f"{local_since:%a %d %b %Y} – {_last_day(inp.until, zone):%a %d %b %Y}",
        "generated_at": iso(inp.now),
        "total": doc["incidents"]["total"],
        "total_prev": prev_total,
        "total_change": change(doc["incidents"]["total"], prev_total),
        "total_vs": vs_before(change(doc["incidents"]["total"], prev_total), prev_total),
        "by_severity": [{"severity": s, "count": n} for s, n in doc["incidents"]["by_severity"].items()],
        "metrics": metrics,
        "major": major,
        "targets": target_rows,
        "target_share": {"met": met_total, "missed": missed_total, "pct": week_share,
                         "change": share_change,
                         "change_text": "" if share_change["text"] == "—" else share_change["text"]},
        "trend": trend,
        "spark": {
            "incidents": spark([p["total"] for p in trend]),
            "mttr": spark([p["mttr_mean"] for p in trend]),
            "share": spark([p["share"] for p in trend]),
        },
        "capa": {**doc["capa"], "as_of": inp.capa.as_of.isoformat() if inp.capa.as_of else None,
                 "overdue_items": [
                     {"id": a.id, "title": a.title, "owner": a.owner_id,
                      "owner_name": inp.names.get(a.owner_id or "") or a.owner_id or "no owner",
                      "due": a.due.isoformat(), "incident_ref": a.incident_ref,
                      "days_overdue": (inp.capa.as_of - a.due).days if inp.capa.as_of else None,
                      "ticket_url": a.ticket_url, "ticket_link": safe_url(a.ticket_url),
                      "ticket_label": ticket_label(a.ticket_key)}
                     for a in inp.capa.overdue_items]},
        "top_services": services,
        "missing_rca": doc["missing_rca"],
        "keeps_breaking": learning_view(doc["keeps_breaking"]) if doc["keeps_breaking"] else None,
        "missing_rca_links": [{"ref": r, "url": rca_url(inp, r)} for r in doc["missing_rca"]],
    }


def _last_day(until: datetime, zone: tzinfo) -> date:
    """The last local day inside the half-open period (the day before ``until`` when it is a midnight)."""
    local_until = until.astimezone(zone)
    if (local_until.hour, local_until.minute, local_until.second) == (0, 0, 0):
        return local_until.date() - timedelta(days=1)
    return local_until.date()
