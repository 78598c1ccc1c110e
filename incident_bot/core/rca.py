"""The content of a blameless RCA (postmortem), as plain data for the templates. Pure: no I/O.

Why a content layer at all: the section order, the prompts shown for empty sections and the facts
derived from the milestones are product decisions. Keeping them here means the Markdown and HTML
templates (and a team's own templates in ``RCA_TEMPLATES_DIR``) only lay out; they never decide.

Section order follows the SRE book's example postmortem: header fields, Summary, Impact, Timeline,
Detection, Response, Recovery, Root causes and contributing factors, Trigger, Lessons learned, CAPA
action items, Supporting information.

Template context (what :meth:`RcaDocument.context` gives a template):
``doc`` (this document), ``incident`` (header values by key), ``header`` (ordered ``Field`` list),
``sections`` (ordered ``Section`` list) and ``section`` (the same by key), ``generated_at``.
A ``Section`` has ``key, title, kind`` (text | timeline | lessons | actions | links), ``body`` (the
team's text or None), ``prompt`` and ``prompt_steps`` (shown when empty), ``facts`` (lines derived
from the data), ``parts`` (sub-sections of lessons), ``rows`` (timeline entries, actions or links),
``milestones`` and ``durations`` (timeline only) and ``empty``. Further keys: ``review`` (the
document's status, authors, reviewers), ``participants``, ``communications``, ``appendix`` (bookkeeping
timeline rows), ``findings`` (the quality check: what is missing before the RCA can be final).
People are display names (unknown ids degrade to the id).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from incident_bot.core.capa import action_sort_key, ticket_label
from incident_bot.core.durations import DEFINITIONS, durations, format_duration, utc_text
from incident_bot.core.lifecycle import MILESTONES
from incident_bot.core.people import Directory
from incident_bot.core.rca_parts import (
    MILESTONE_LABELS,
    Communication,
    Participant,
    TimelineEntry,
    TimelineParts,
    TimelineRow,
    communications,
    participants,
    split_timeline,
)
from incident_bot.core.rca_review import IMPACT_FIELDS, LABELS, QualityFinding

NARRATIVE_KEYS: tuple[str, ...] = (
    "summary", "impact", "users_affected", "customer_facing", "slo_budget_spent", "detection", "response",
    "recovery", "root_causes", "trigger", "went_well", "went_wrong", "lucky", "links", "authors",
)
METRIC_LABELS: dict[str, str] = {
    "ttd_s": "Time to detect (TTD)", "tta_s": "Time to acknowledge (TTA)",
    "ttm_s": "Time to mitigate (TTM)", "ttr_s": "Time to resolve (TTR)",
}
PROMPTS: dict[str, str] = {
    "summary": "To fill: two or three sentences: what happened, for how long, who was affected and "
               "how it was fixed.",
    "impact": "To fill: what did users experience, how many were affected and for how long? "
              "Error budget spent, revenue, support tickets.",
    "detection": "To fill: how was it noticed (alert, customer, engineer)? Could it have been noticed "
                 "sooner, and what would have told us?",
    "response": "To fill: who responded and how; what helped and what slowed the response down.",
    "recovery": "To fill: what restored service (rollback, failover, fix) and how recovery was verified.",
    "root_causes": "To fill: the conditions that made this possible, technical and organisational. "
                   "Describe systems and decisions, not people. Try the five whys:",
    "trigger": "To fill: the change or event that turned the latent cause into an outage "
               "(a deploy, a configuration push, a traffic spike).",
    "went_well": "To fill: what worked (alerts that fired, runbooks that helped, quick decisions).",
    "went_wrong": "To fill: what made the incident longer or worse.",
    "lucky": "To fill: what limited the damage by chance rather than by design.",
    "actions": "To fill: no CAPA action items yet. Add one per fix: "
               "`incident-bot actions add {ref} \"title\" --type corrective --owner U123 --due 2026-12-31` "
               "or `/incident action` in the incident channel.",
    "links": "To fill: dashboards, graphs, tickets, related incidents.",
    "authors": "To fill",
}
PROMPTS.update({k: "—" for k in IMPACT_FIELDS})
FIVE_WHYS: tuple[str, ...] = (
    "Why did users see the failure? Because …",
    "Why did that happen? Because …",
    "Why did that happen? Because …",
    "Why did that happen? Because …",
    "Why did that happen? Because …",
)


@dataclass(frozen=True)
class IncidentFacts:
    """The incident's own fields. People are display strings (a name, or a Slack id)."""

    ref: str
    title: str
    severity: str
    status: str
    service: str | None = None
    origin: str = "pagerduty"
    commander: str | None = None
    reporter: str | None = None
    scribe: str | None = None
    pagerduty_url: str | None = None
    slack_channel_name: str | None = None
    slack_channel_id: str | None = None
    close_override_reason: str | None = None


@dataclass(frozen=True)
class ActionRow:
    id: int | None
    title: str
    type: str
    priority: str
    status: str
    owner: str | None = None
    due_date: date | None = None
    ticket_url: str | None = None
    overdue: bool = False
    ticket_key: str | None = None  # the tracker's key when the bot made the ticket (OPS-7, acme/ops#12)

    @property
    def ticket_link(self) -> str | None:
        """The ticket URL when it is safe to put in an href (http or https only)."""
        return safe_url(self.ticket_url)

    @property
    def ticket_label(self) -> str:
        return ticket_label(self.ticket_key)


@dataclass(frozen=True)
class Field:
    key: str
    label: str
    value: str


@dataclass(frozen=True)
class Link:
    label: str
    url: str | None  # only http(s) URLs, so a template can put it in href safely
    text: str = ""


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    kind: str = "text"
    body: str | None = None
    prompt: str | None = None
    prompt_steps: tuple[str, ...] = ()
    facts: tuple[str, ...] = ()
    parts: tuple[Section, ...] = ()
    rows: tuple[Any, ...] = ()
    milestones: tuple[Field, ...] = ()
    durations: tuple[Field, ...] = ()

    @property
    def empty(self) -> bool:
        if self.parts:
            return all(p.empty for p in self.parts)
        return not self.body and not self.rows


@dataclass(frozen=True)
class ReviewInfo:
    """The document's own state (not the incident's): see core/rca_review.py. People are ids."""

    status: str = "draft"
    authors: tuple[str, ...] = ()
    reviewers: tuple[str, ...] = ()
    changed_at: datetime | None = None
    changed_by: str | None = None
    override_reason: str | None = None


@dataclass(frozen=True)
class RcaDocument:
    ref: str
    title: str
    header: tuple[Field, ...]
    sections: tuple[Section, ...]
    generated_at: str
    status: str = "draft"
    status_label: str = "Draft"
    appendix: tuple[TimelineEntry, ...] = ()
    findings: tuple[QualityFinding, ...] = ()
    participants: tuple[Participant, ...] = field(default=())
    communications: tuple[Communication, ...] = ()

    def context(self) -> dict[str, Any]:
        """The variables every RCA template gets (documented in the module docstring)."""
        return {
            "doc": self,
            "incident": {f.key: f.value for f in self.header} | {"title": self.title},
            "header": self.header,
            "sections": self.sections,
            "section": {s.key: s for s in self.sections},
            "generated_at": self.generated_at,
            "appendix": self.appendix,
            "findings": self.findings,
        }


def safe_url(url: str | None) -> str | None:
    """Only http(s) links survive: a ``javascript:`` ticket URL must not become a clickable href."""
    if not url:
        return None
    url = url.strip()
    ok = url.lower().startswith(("https://", "http://")) and not any(c in url for c in " \n\"'<>`")
    return url if ok else None


def _text(value: Any) -> str | None:
    """Narrative values are strings (or lists of lines from a modal); blank means not filled."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        value = "\n".join(f"- {v}" for v in value if str(v).strip())
    value = str(value).strip()
    return value or None


def _text_section(key: str, title: str, narrative: Mapping[str, Any], facts: Sequence[str] = (),
                  steps: Sequence[str] = ()) -> Section:
    body = _text(narrative.get(key))
    return Section(key=key, title=title, body=body, prompt=None if body else PROMPTS[key],
                   prompt_steps=() if body else tuple(steps), facts=tuple(facts))


def _first_actor(rows: Sequence[TimelineRow], milestone: str) -> str | None:
    return next((r.actor for r in rows if r.milestone == milestone and r.actor), None)


def derived_facts(facts: IncidentFacts, ms: Mapping[str, datetime | None], dur: Mapping[str, int | None],
                  rows: Sequence[TimelineRow], people: Directory) -> dict[str, list[str]]:
    """Detection / Response / Recovery lines that the data already answers, so no one retypes them."""
    who = people.name
    detector = {
        "pagerduty": "Detected by a PagerDuty alert",
        "slack": "Declared in Slack" + (f" by {who(facts.reporter)}" if facts.reporter else ""),
        "cli": "Declared from the CLI" + (f" by {who(facts.reporter)}" if facts.reporter else ""),
    }.get(facts.origin, f"Detected ({facts.origin})")
    detection = [f"{detector} at {utc_text(ms.get('detected_at'))}, "
                 f"{format_duration(dur.get('ttd_s'))} after impact started (TTD)."]
    if dur.get("ttd_s") == 0:
        detection.append("Impact start equals detection: if users were hurt earlier, move the impact "
                         "start so TTD is true.")
    response = []
    if ms.get("acknowledged_at"):
        acker = _first_actor(rows, "acknowledged_at")
        response.append(f"Acknowledged at {utc_text(ms['acknowledged_at'])}"
                        + (f" by {who(acker)}" if acker else "")
                        + f", {format_duration(dur.get('tta_s'))} after detection (TTA).")
    else:
        response.append("Never acknowledged (no TTA).")
    if facts.commander:
        response.append(f"Incident commander: {who(facts.commander)}.")
    recovery = []
    steps = (("mitigated_at", "ttm_s", "Impact mitigated"), ("resolved_at", "ttr_s", "Resolved"))
    for m, metric, verb in steps:
        if ms.get(m):
            recovery.append(f"{verb} at {utc_text(ms[m])}, {format_duration(dur.get(metric))} after "
                            f"impact started ({metric[:3].upper()}).")
        else:
            recovery.append(f"Not {verb.split()[-1].lower()} yet.")
    if ms.get("closed_at"):
        recovery.append(f"Closed at {utc_text(ms['closed_at'])}.")
    if facts.close_override_reason:
        recovery.append(f"Closed with open corrective actions; reason: {facts.close_override_reason}")
    return {"detection": detection, "response": response, "recovery": recovery}


def impact_fields(narrative: Mapping[str, Any]) -> tuple[Field, ...]:
    """The structured impact: users affected, customer facing, SLO / error budget spent ("—" if unset)."""
    return tuple(Field(k, label[0].upper() + label[1:].replace(" (yes/no)", ""), _text(narrative.get(k)) or "—")
                 for k, label in IMPACT_FIELDS.items())


def sort_actions(actions: Iterable[ActionRow]) -> list[ActionRow]:
    """Prioritised CAPA: high before medium before low, then the earliest due date, then age."""
    return sorted(actions, key=lambda a: action_sort_key(a.priority, a.due_date, a.id))


def _links(facts: IncidentFacts, actions: Sequence[ActionRow], narrative: Mapping[str, Any]) -> list[Link]:
    links: list[Link] = []
    if facts.pagerduty_url:
        links.append(Link("PagerDuty incident", safe_url(facts.pagerduty_url), facts.pagerduty_url))
    if facts.slack_channel_id or facts.slack_channel_name:
        url = (f"https://slack.com/app_redirect?channel={facts.slack_channel_id}"
               if facts.slack_channel_id and facts.slack_channel_id.isalnum() else None)
        links.append(Link("Slack channel", url, f"#{facts.slack_channel_name or facts.slack_channel_id}"))
    for a in actions:
        if a.ticket_url:
            links.append(Link(f"Ticket for action #{a.id}", safe_url(a.ticket_url), a.ticket_url))
    extra = narrative.get("links")
    lines = extra if isinstance(extra, (list, tuple)) else str(extra or "").splitlines()
    for line in (str(x).strip().removeprefix("- ").strip() for x in lines):
        if not line:
            continue
        words = line.split()
        url = next((w for w in words if safe_url(w)), None)
        label = " ".join(w for w in words if w != url).strip(" :-–") if url else line
        links.append(Link(label or url or line, url, url or ""))
    return links


def build_rca(
    facts: IncidentFacts,
    milestones: Mapping[str, datetime | None],
    timeline: Iterable[TimelineRow],
    actions: Iterable[ActionRow],
    narrative: Mapping[str, Any],
    *,
    people: Directory | None = None,
    review: ReviewInfo | None = None,
    findings: Sequence[QualityFinding] = (),
    generated_at: datetime | None = None,
    parts: TimelineParts | None = None,
) -> RcaDocument:
    """Everything an RCA shows, in order. ``people`` turns ids into display names.

    ``parts``: the timeline's entries, appendix, participants and communications built by the caller
    (the web page's window of a long timeline); ``timeline`` then need only hold the rows that mark a
    milestone (the detection/response facts name who acknowledged)."""
    people = people or Directory()
    review = review or ReviewInfo()
    rows = list(timeline)
    dur = durations(milestones)
    derived = derived_facts(facts, milestones, dur, rows, people)
    who = people.name
    start = milestones.get("impact_started_at") or milestones.get("detected_at")
    authors = (", ".join(who(a) for a in review.authors) or _text(narrative.get("authors"))
               or ", ".join(dict.fromkeys(who(p) for p in (facts.commander, facts.scribe) if p))
               or PROMPTS["authors"])
    status = LABELS.get(review.status, review.status)
    if review.status == "final" and review.override_reason:
        status += f" (signed off with open findings: {review.override_reason})"
    header = (
        Field("ref", "Incident", facts.ref),
        Field("date", "Date (UTC)", start.astimezone(UTC).strftime("%Y-%m-%d") if start else "—"),
        Field("document_status", "Document status", status),
        Field("authors", "Authors", authors),
        Field("reviewers", "Reviewers", ", ".join(who(r) for r in review.reviewers) or "—"),
        Field("commander", "Incident commander", who(facts.commander) or "—"),
        Field("status", "Incident status", facts.status),
        Field("severity", "Severity", facts.severity),
        Field("services", "Services", facts.service or "—"),
    )
    ordered = sort_actions(actions)
    ms_fields = tuple(Field(m, MILESTONE_LABELS[m], utc_text(milestones.get(m))) for m in MILESTONES)
    dur_fields = tuple(Field(k, METRIC_LABELS[k], format_duration(dur.get(k))) for k in DEFINITIONS)
    lessons = tuple(_text_section(k, t, narrative) for k, t in (
        ("went_well", "What went well"), ("went_wrong", "What went wrong"), ("lucky", "Where we got lucky")))
    if parts is None:
        main, appendix = split_timeline(rows, milestones, people)
        comms = communications(rows, milestones.get("impact_started_at"), people, facts.slack_channel_name)
        crew = participants(rows, people, opened_at=milestones.get("detected_at"),
                            roles_now={"commander": facts.commander, "scribe": facts.scribe,
                                       "reporter": facts.reporter})
    else:
        main, appendix = list(parts.main), list(parts.appendix)
        crew, comms = list(parts.participants), list(parts.communications)
    impact = _text_section("impact", "Impact", narrative)
    impact = Section(key="impact", title="Impact", body=impact.body, prompt=impact.prompt,
                     milestones=impact_fields(narrative))
    sections = (
        _text_section("summary", "Summary", narrative),
        impact,
        Section(key="participants", title="Participants", kind="participants", rows=tuple(crew)),
        Section(key="timeline", title="Timeline", kind="timeline", rows=tuple(main),
                milestones=ms_fields, durations=dur_fields),
        Section(key="communications", title="Communications", kind="communications", rows=tuple(comms),
                prompt=None if comms else "No status update was posted (`/incident update <text>`)."),
        _text_section("detection", "Detection", narrative, derived["detection"]),
        _text_section("response", "Response", narrative, derived["response"]),
        _text_section("recovery", "Recovery", narrative, derived["recovery"]),
        _text_section("root_causes", "Root causes and contributing factors", narrative, steps=FIVE_WHYS),
        _text_section("trigger", "Trigger", narrative),
        Section(key="lessons", title="Lessons learned", kind="lessons", parts=lessons),
        Section(key="actions", title="CAPA action items", kind="actions", rows=tuple(ordered),
                prompt=None if ordered else PROMPTS["actions"].format(ref=facts.ref)),
        _links_section(facts, ordered, narrative),
    )
    gen = (generated_at or datetime.now(UTC)).astimezone(UTC)
    return RcaDocument(ref=facts.ref, title=facts.title, header=header, sections=sections,
                       generated_at=utc_text(gen), status=review.status, status_label=status,
                       appendix=tuple(appendix), findings=tuple(findings), participants=tuple(crew),
                       communications=tuple(comms))


def _links_section(facts: IncidentFacts, actions: Sequence[ActionRow],
                   narrative: Mapping[str, Any]) -> Section:
    links = _links(facts, actions, narrative)
    return Section(key="links", title="Supporting information", kind="links", rows=tuple(links),
                   prompt=None if links else PROMPTS["links"])


def apply_narrative(current: Mapping[str, Any],
                    updates: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Merge edits into the stored narrative: (new narrative, changed keys). Blank removes a field;
    an unknown key raises ValueError naming the accepted ones."""
    unknown = sorted(set(updates) - set(NARRATIVE_KEYS))
    if unknown:
        raise ValueError(f"unknown RCA field(s) {', '.join(unknown)}; use {', '.join(NARRATIVE_KEYS)}")
    new, changed = dict(current), []
    for key, value in updates.items():
        text = _text(value)
        if text is None and key in new:
            del new[key]
            changed.append(key)
        elif text is not None and new.get(key) != text:
            new[key] = text
            changed.append(key)
    return new, changed
